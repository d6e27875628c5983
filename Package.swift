// swift-tools-version:6.1
// home-server toolkit: provisioning, deploy checks, hardlink checks, backup and restore.
// Module layout and ownership rules: see docs/tests.md ("Toolkit layout").
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let argumentParser: Target.Dependency = .product(name: "ArgumentParser", package: "swift-argument-parser")

// The tools' start-up (issue 23: a backup of one small file is mostly process start).
// - --no-export-dynamic: the toolchain's static-stdlib-args.lnk links with -export-dynamic, so
//   every symbol of our own modules (6,964 in hs-backup) went into .dynsym, which the dynamic
//   linker searches first for every symbol any library looks up and which dladdr scans.
//   Nothing looks our symbols up by name. (`--version` 7.4 -> 5.1 ms of CPU.)
// - lld (part of the Swift toolchain). NOT -z pack-relative-relocs (DT_RELR): it would save
//   ~0.5 ms of CPU per start but needs glibc >= 2.36 (GLIBC_ABI_DT_RELR), and the runbook's
//   migration runs the tools on the old server, e.g. Ubuntu 22.04 with glibc 2.35
//   (StartupTests.runsOnGlibc235 and scripts/package.sh check it).
// scripts/package.sh links the shipped multi-call executables with the same flags.
// - libstdc++ linked statically (link/static-libstdc++: a linker script named libstdc++.so,
//   found first, that names GCC's libstdc++.a): the Swift runtime is C++, and loading the shared
//   libstdc++ (its own ~1,700 symbol bindings and static constructors) cost ~0.4 ms of every start.
//   A build with the shared Swift runtime (debug, tests) takes libstdc++.so through
//   libswiftCore.so as before: the executable itself references nothing of the archive.
let toolLinkerSettings: [LinkerSetting] = [.unsafeFlags(["-use-ld=lld", "-Xlinker", "--no-export-dynamic",
                                                         "-L\(Context.packageDirectory)/link/static-libstdc++"],
                                                        .when(platforms: [.linux]))]

let package = Package(
    name: "home-server",
    products: [
        .executable(name: "hs-backup", targets: ["hs-backup"]),
        .executable(name: "hs-restore", targets: ["hs-restore"]),
        .executable(name: "hs-linkcheck", targets: ["hs-linkcheck"]),
        .executable(name: "hs-provision", targets: ["hs-provision"]),
        .executable(name: "hs-deploy", targets: ["hs-deploy"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // System libraries. Each has exactly one Swift owner module (the only importer).
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CLibdeflate", pkgConfig: "libdeflate", providers: [.apt(["libdeflate-dev"])]),
        .systemLibrary(name: "CIsal", pkgConfig: "libisal", providers: [.apt(["libisal-dev"])]),

        // Shared plumbing: subprocesses, output modes (terminal/cron/--json), errors, hashing.
        .target(name: "CShims"),
        // The one dlopen loader of the four libraries below that are loaded on first use.
        .target(name: "CDlopen"),
        // libcrypto (OpenSSL 3, headers from libssl-dev) through dlopen on first use, not linked:
        // most runs need only SHA-256, which runs here on SHA-NI when the CPU has it.
        .target(name: "CCrypto", dependencies: ["CDlopen"]),
        // libsqlite3 (headers from libsqlite3-dev) through dlopen on first use, not linked: only
        // a run that captures a database calls it.
        .target(name: "CSQLite", dependencies: ["CDlopen"]),
        // libnfs (headers from libnfs-dev) through dlopen on first use, not linked: only an
        // nfs:// destination or root calls it.
        .target(name: "CNFS", dependencies: ["CDlopen"]),
        // libfuse3 (headers from libfuse3-dev) through dlopen on first use, not linked: only
        // `hs-backup mount` calls it.
        .target(name: "CFuse", dependencies: ["CDlopen"]),
        .target(name: "Support", dependencies: ["CCrypto", "CShims"], swiftSettings: swiftSettings),
        .target(name: "Gzip", dependencies: ["CZlib", "CLibdeflate", "CIsal"], swiftSettings: swiftSettings),
        .target(name: "NFS", dependencies: ["CNFS", "Support"], swiftSettings: swiftSettings),
        .target(name: "Archive", dependencies: ["Gzip", "Support"], swiftSettings: swiftSettings),
        .target(name: "Storage", dependencies: ["NFS", "Support"], swiftSettings: swiftSettings),
        // The age format (age-encryption.org/v1) as byte streams over Storage's readers and
        // writers; its primitives come from libcrypto through Support.
        .target(name: "Crypto", dependencies: ["Storage", "Support"], swiftSettings: swiftSettings),
        // The one restore executor (tar streams and backup plans into a directory). Release
        // builds without the dynamic exclusivity checks, as Backup (issue 24: swift_beginAccess,
        // its access set and swift_endAccess were ~31M of the 410M instructions the thread that
        // reads the archive spent in a 20k-file restore, ~1,400 per entry: the tree writer's and
        // the executor's stored properties). Debug builds, where the tests run, keep them.
        .target(name: "Restore", dependencies: ["Archive", "Support"],
                swiftSettings: swiftSettings + [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]),
        // Release builds of Backup without Swift's dynamic exclusivity checks (issue 23: the
        // swift_beginAccess/endAccess pair on each access to a class's stored property was ~6-7% of
        // a no-change run's instructions, ~7 per file in the scan's walkers alone). The compile-time
        // checks stay, and debug builds (where every test runs) keep the dynamic ones, so an
        // overlapping access still traps in the tests; no test relies on that trap.
        .target(name: "Backup", dependencies: ["Archive", "Crypto", "Restore", "Storage", "Gzip", "Support"],
                swiftSettings: swiftSettings + [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]),
        // ls, find, diff, dump and the read-only FUSE mount of every backup.
        .target(name: "Browse", dependencies: ["Backup", "Archive", "Restore", "Gzip", "Storage", "Support", "CFuse"], swiftSettings: swiftSettings),
        // Backup operations around a run: SQLite capture, --stop-stacks (docker), ntfy/Uptime Kuma
        // notifications (HTTP), signal handling, prune. Backup itself knows nothing of Docker or HTTP.
        .target(name: "BackupOps", dependencies: ["Backup", "Storage", "Support", "CSQLite"],
                swiftSettings: swiftSettings),
        .target(name: "LinkCheck", dependencies: ["NFS", "Storage", "Support", "Yams"], swiftSettings: swiftSettings),
        .target(name: "Provisioning", dependencies: ["Support", "Yams"], swiftSettings: swiftSettings),
        .target(name: "Stacks", dependencies: ["Support", "Yams"], swiftSettings: swiftSettings),

        // Thin command-line entry points and what they share (bad usage exits 2).
        .target(name: "CommandLineSupport", dependencies: ["Support", argumentParser], swiftSettings: swiftSettings),
        .executableTarget(name: "hs-backup", dependencies: ["CommandLineSupport", "Backup", "BackupOps", "Browse", "Storage", "Support", argumentParser],
                          swiftSettings: swiftSettings, linkerSettings: toolLinkerSettings),
        .executableTarget(name: "hs-restore", dependencies: ["CommandLineSupport", "Backup", "Archive", "Restore", "Storage", "Support", argumentParser],
                          swiftSettings: swiftSettings, linkerSettings: toolLinkerSettings),
        .executableTarget(name: "hs-linkcheck", dependencies: ["CommandLineSupport", "LinkCheck", "Support", argumentParser],
                          swiftSettings: swiftSettings, linkerSettings: toolLinkerSettings),
        .executableTarget(name: "hs-provision", dependencies: ["CommandLineSupport", "Provisioning", "Support", argumentParser],
                          swiftSettings: swiftSettings, linkerSettings: toolLinkerSettings),
        .executableTarget(name: "hs-deploy", dependencies: ["CommandLineSupport", "Stacks", "Support", argumentParser],
                          swiftSettings: swiftSettings, linkerSettings: toolLinkerSettings),
        // Benchmark driver for NFS throughput (bench/nfs-throughput.sh); not a product.
        .executableTarget(name: "nfs-bench", dependencies: ["NFS", "Storage", "Support", "TestSupport"],
                          path: "bench/nfs-bench", swiftSettings: swiftSettings),
        // Benchmark driver for the archive engine (bench/archive-bench.sh); not a product.
        .executableTarget(name: "archive-bench", dependencies: ["Archive", "Backup", "Restore", "Storage", "Support"], path: "bench/archive-bench",
                          swiftSettings: swiftSettings),

        // Tests. TestSupport holds the real-server harnesses (nfs-ganesha), fixture trees and
        // helpers to run the built tools.
        .target(name: "TestSupport", dependencies: ["Archive", "Support"], path: "Tests/TestSupport",
                swiftSettings: swiftSettings),
        .testTarget(name: "SupportTests", dependencies: ["Support", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "CryptoTests", dependencies: ["Crypto", "Storage", "TestSupport"], exclude: ["CCTV"],
                    swiftSettings: swiftSettings),
        .testTarget(name: "GzipTests", dependencies: ["Gzip", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "NFSTests", dependencies: ["NFS", "Storage", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "ArchiveTests", dependencies: ["Archive", "Gzip", "Restore", "TestSupport"], exclude: ["hostile.py", "wild.py", "defects.py"],
                    swiftSettings: swiftSettings),
        .testTarget(name: "BackupTests", dependencies: ["Backup", "BackupOps", "Crypto", "Gzip", "Restore", "Storage", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "BrowseTests", dependencies: ["Browse", "Backup", "Archive", "Storage", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "LinkCheckTests", dependencies: ["LinkCheck", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "ProvisioningTests", dependencies: ["Provisioning", "TestSupport"], exclude: ["Fixtures"],
                    swiftSettings: swiftSettings),
        .testTarget(name: "StacksTests", dependencies: ["Stacks", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "PackageTests", dependencies: ["Support", "TestSupport"], swiftSettings: swiftSettings),
    ],
    swiftLanguageModes: [.v6]
)
