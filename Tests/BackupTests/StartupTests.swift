// What every start of hs-backup costs, kept small (issue 23's sparse row: a run of one small
// file is mostly process start): no networking libraries linked, no help dump for -q/-v.
import Backup
import Foundation
import Support
import TestSupport
import Testing

@Suite("Start-up: linked libraries and the repeated-option check")
struct StartupTests {
    /// A temporary directory with src/f.txt ("hello\n") in it.
    static func oneFileSource(_ prefix: String) throws -> TempDir {
        let work = try TempDir(prefix)
        try FileManager.default.createDirectory(atPath: work.sub("src"), withIntermediateDirectories: true)
        try Data("hello\n".utf8).write(to: URL(fileURLWithPath: work.sub("src/f.txt")))
        return work
    }

    /// FoundationNetworking (URLSession) brought libcurl, gnutls, krb5, ldap, ssh2 and p11-kit
    /// into every start; the notifications use curl(1) as a child process instead.
    @Test("the tools link no networking library (curl runs as a child process only when a notification is sent)")
    func noNetworkingLibraries() throws {
        for tool in ["hs-backup", "hs-restore", "hs-linkcheck", "hs-provision", "hs-deploy"] {
            let ldd = try Subprocess.checked(["ldd", Tools.path(tool)]).stdout
            for lib in ["FoundationNetworking", "libcurl", "libgnutls", "libgssapi", "libldap", "libssh2", "libp11-kit"] {
                #expect(!ldd.contains(lib), "\(tool) links \(lib):\n\(ldd)")
            }
        }
    }

    /// Every start paid the loads of libcrypto.so.3 (~1.8 ms of CPU) and libsqlite3.so.0
    /// (~0.3 ms). The tools stay PIEs (ASLR) and load libcrypto only when a run needs it (age,
    /// remote hashes, SHA-256 on a CPU without SHA-NI) and libsqlite3 only to capture a
    /// database. They do not pack their relative relocations (DT_RELR, ~0.5 ms per start): that
    /// needs glibc >= 2.36, and the runbook's migration runs them on the old server, e.g.
    /// Ubuntu 22.04 with glibc 2.35 (no glibc symbol newer than 2.35 either).
    @Test("the tools are PIEs that glibc 2.35 can start, and libcrypto and libsqlite3 are not linked")
    func runsOnGlibc235AndNoLibcrypto() throws {
        for tool in ["hs-backup", "hs-restore", "hs-linkcheck", "hs-provision", "hs-deploy"] {
            let dynamic = try Subprocess.checked(["readelf", "-d", Tools.path(tool)]).stdout
            #expect(!dynamic.contains("(RELR)"), "\(tool) has DT_RELR (needs glibc >= 2.36):\n\(dynamic)")
            #expect(dynamic.contains("Flags: PIE"), "\(tool) is not a PIE:\n\(dynamic)")
            let needs = try Subprocess.checked(["readelf", "-V", Tools.path(tool)]).stdout
            #expect(!needs.contains("GLIBC_ABI_DT_RELR"), "\(tool) needs GLIBC_ABI_DT_RELR (glibc >= 2.36)")
            let newest = try Subprocess.checked(["objdump", "-T", Tools.path(tool)]).stdout
                .split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "(" || $0 == ")" })
                .filter { $0.hasPrefix("GLIBC_") && $0.dropFirst(6).first?.isNumber == true }
                .map { $0.dropFirst(6).split(separator: ".").map { Int($0) ?? 0 } }
                .max { $0.lexicographicallyPrecedes($1) }
            let version = try #require(newest, "\(tool): no GLIBC_ versions in objdump -T")
            #expect(!([2, 35] as [Int]).lexicographicallyPrecedes(version), "\(tool) needs glibc \(version) (> 2.35)")
            let ldd = try Subprocess.checked(["ldd", Tools.path(tool)]).stdout
            #expect(!ldd.contains("libcrypto") && !ldd.contains("libsqlite3"), "\(tool) links libcrypto or libsqlite3:\n\(ldd)")
        }
    }

    /// Every start also paid the loads of libnfs.so.13 and libfuse3.so.3, though only an nfs://
    /// destination needs libnfs and only `hs-backup mount` libfuse3: CNFS and CFuse dlopen them
    /// on first use.
    @Test("libnfs and libfuse3 are not NEEDED by any tool; an nfs:// backup loads libnfs and not libfuse3")
    func libnfsAndLibfuseOnlyWhenNeeded() throws {
        for tool in ["hs-backup", "hs-restore", "hs-linkcheck", "hs-provision", "hs-deploy"] {
            let dynamic = try Subprocess.checked(["readelf", "-d", Tools.path(tool)]).stdout
            let needed = dynamic.split(separator: "\n").filter { $0.contains("(NEEDED)") }
            #expect(!needed.isEmpty, "\(tool): no NEEDED entries:\n\(dynamic)")
            for lib in ["libnfs", "libfuse", "libcrypto", "libsqlite3"] {
                #expect(!needed.contains { $0.contains("[" + lib) }, "\(tool) needs \(lib):\n\(needed.joined(separator: "\n"))")
            }
        }
        // (A local backup loads neither: libcryptoOnlyWhenNeeded.)
        let work = try Self.oneFileSource("hs-startup-nfs")
        let nfs = try GaneshaServer.shared()
        let url = nfs.url(path: try nfs.makeUniqueDirectory("startup"))
        let remote = try Tools.run("hs-backup", ["run", "--source", work.sub("src"), "--to", url, "--name", "r"],
                                   environment: ["LD_DEBUG": "files"])
        #expect(remote.status == 0 && remote.stderr.contains("file=libnfs.so.13"), "exit \(remote.status): \(remote.stderr.suffix(2000))")
        #expect(!remote.stderr.contains("file=libfuse3.so.3"), "an nfs:// backup loaded libfuse3")
    }

    @Test("without a loadable libnfs.so.13 a backup to and a restore from nfs:// fail: exit 1, the library and its package named, nothing written")
    func missingLibnfs() throws {
        let work = try Self.oneFileSource("hs-startup-nolibnfs")
        let nfs = try GaneshaServer.shared()
        let dir = try nfs.makeUniqueDirectory("nolibnfs")
        let url = nfs.url(path: dir)
        let broken = try UnloadableLibrary.environment("libnfs.so.13", in: work)
        let expected = "libnfs.so.13 is not installed or cannot be loaded"

        let backup = try Tools.run("hs-backup", ["run", "--source", work.sub("src"), "--to", url, "--name", "b"], environment: broken)
        #expect(backup.status == 1 && backup.stderr.contains(expected) && backup.stderr.contains("apt-get install libnfs13"),
                "exit \(backup.status): \(backup.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: nfs.exportPath + "/" + dir).isEmpty, "the failed backup wrote to the export")

        // With the library, the same backup works; a restore from it without the library fails.
        let ok = try Tools.run("hs-backup", ["run", "--source", work.sub("src"), "--to", url, "--name", "b"])
        #expect(ok.status == 0, "exit \(ok.status): \(ok.stderr)")
        let restore = try Tools.run("hs-restore", ["--from", url, "--name", "b", "--to", work.sub("restored")], environment: broken)
        #expect(restore.status == 1 && restore.stderr.contains(expected) && restore.stderr.contains("apt-get install libnfs13"),
                "exit \(restore.status): \(restore.stderr)")
        #expect(!FileManager.default.fileExists(atPath: work.sub("restored")), "the failed restore created its target")
    }

    /// The full Foundation's start (its relocations, CoreFoundation's initialisers, the larger
    /// conformance tables every dynamic cast scans) was the largest fixed cost of a nightly run
    /// (issue 23, bench/start-floor: a hello linked as the tools are starts in ~4.2 ms with
    /// FoundationEssentials, ~5.8 ms with Foundation). hs-backup and hs-restore link
    /// FoundationEssentials only; hs-provision, hs-deploy and hs-linkcheck keep Foundation (Yams).
    @Test("hs-backup and hs-restore contain no symbol of Foundation proper, CoreFoundation or ICU")
    func essentialsOnly() throws {
        for tool in ["hs-backup", "hs-restore"] {
            let found = try Self.foundationSymbols(Tools.path(tool))
            #expect(found.isEmpty, "\(tool) links the full Foundation: \(found.prefix(8).joined(separator: ", "))")
            let ldd = try Subprocess.checked(["ldd", Tools.path(tool)]).stdout
            for lib in ["libFoundation.so", "libFoundationInternationalization", "lib_FoundationICU", "libCoreFoundation"] {
                #expect(!ldd.contains(lib), "\(tool) loads \(lib):\n\(ldd)")
            }
        }
    }

    /// Symbols (defined or wanted) of Foundation proper (`$s10Foundation`; FoundationEssentials
    /// is `$s20FoundationEssentials`), FoundationInternationalization, CoreFoundation
    /// (`CF...`/`__CF...` functions) or ICU (`_FoundationICU`, `ucal_`, `u_`, `udat_`, `ures_`)
    /// in an executable (`nm`; the dynamic symbols too, for a build that links them as .so).
    /// Not `__CFUniChar...`: FoundationEssentials' own Unicode tables (from CoreFoundation's
    /// sources, in libFoundationEssentials).
    /// scripts/package.sh makes the same check of the shipped backup executable.
    static func foundationSymbols(_ path: String) throws -> [String] {
        let names = try Subprocess.checked(["nm", "--no-demangle", path]).stdout + (try Subprocess.checked(["nm", "-D", "--no-demangle", path]).stdout)
        let prefixes = ["$s10Foundation", "$s31FoundationInternationalization", "_FoundationICU", "CF", "__CF", "_CF",
                        "ucal_", "udat_", "ures_", "u_"]
        return names.split(separator: "\n").compactMap { line in
            guard let name = line.split(separator: " ").last.map(String.init) else { return nil }
            return prefixes.contains { name.hasPrefix($0) } && !name.hasPrefix("__CFUniChar") ? name : nil
        }
    }

    @Test("a backup of a small tree loads libcrypto only without SHA-NI, and neither libnfs nor libfuse3; an encrypted one loads libcrypto and works")
    func libcryptoOnlyWhenNeeded() throws {
        let work = try Self.oneFileSource("hs-startup-crypto")
        let plain = try Tools.run("hs-backup", ["run", "--source", work.sub("src"), "--to", work.sub("plain"), "--name", "p"],
                                  environment: ["LD_DEBUG": "files"])
        #expect(plain.status == 0, "exit \(plain.status): \(plain.stderr.suffix(2000))")
        let loaded = plain.stderr.contains("file=libcrypto.so.3")
        #expect(loaded == !SHA256Hasher.nativeAvailable, "libcrypto loaded: \(loaded), SHA-NI: \(SHA256Hasher.nativeAvailable)")
        #expect(!plain.stderr.contains("file=libsqlite3.so.0"), "libsqlite3 loaded without a database")
        #expect(!plain.stderr.contains("file=libnfs.so.13") && !plain.stderr.contains("file=libfuse3.so.3"), "a local backup loaded libnfs or libfuse3")

        // A live database: libsqlite3 is loaded and the copy is the database's.
        try Subprocess.checked(["sqlite3", work.sub("src/app.db"), "CREATE TABLE t(x); INSERT INTO t VALUES ('kept');"])
        let withDB = try Tools.run("hs-backup", ["run", "--source", work.sub("src"), "--to", work.sub("db"), "--name", "d"],
                                   environment: ["LD_DEBUG": "files"])
        #expect(withDB.status == 0 && withDB.stderr.contains("file=libsqlite3.so.0"),
                "exit \(withDB.status): \(withDB.stdout)\(withDB.stderr.suffix(2000))")
        try FileManager.default.removeItem(atPath: work.sub("src/app.db"))

        try Subprocess.checked(["age-keygen", "-o", work.sub("key.txt")])
        let recipient = try Subprocess.checked(["age-keygen", "-y", work.sub("key.txt")]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let sealed = try Tools.run("hs-backup", ["run", "--source", work.sub("src"), "--to", work.sub("sealed"), "--name", "s",
                                                 "--recipient", recipient], environment: ["LD_DEBUG": "files"])
        #expect(sealed.status == 0 && sealed.stderr.contains("file=libcrypto.so.3"), "exit \(sealed.status): \(sealed.stderr.suffix(2000))")
        let opened = try Tools.run("hs-restore", ["--from", work.sub("sealed"), "--name", "s", "--identity", work.sub("key.txt"),
                                                  "--to", work.sub("restored")])
        #expect(opened.status == 0, "exit \(opened.status): \(opened.stderr)")
        #expect(try String(contentsOfFile: work.sub("restored/f.txt"), encoding: .utf8) == "hello\n")
    }

    /// `RepeatedOptions.possible` lets `-q`, `-v`, `-qv` through without the help dump: exact
    /// only while those short names are the verbosity flags wherever they exist.
    @Test("-q and -v are flags (quiet, verbose) in every command of the five tools; no other short name is q or v")
    func shortFlagsAreVerbosityOnly() throws {
        let bad = try Hardening.argumentProblems { a, where_ in
            let names = a["names"] as? [[String: Any]] ?? []
            let shorts = names.filter { $0["kind"] as? String == "short" }.compactMap { $0["name"] as? String }
            let longs = names.filter { $0["kind"] as? String == "long" }.compactMap { $0["name"] as? String }
            for s in shorts where s == "q" || s == "v" {
                let expected = s == "q" ? "quiet" : "verbose"
                if a["kind"] as? String != "flag" || longs != [expected] { return "\(where_): -\(s) is \(a["kind"] ?? "?") \(longs)" }
            }
            return nil
        }
        #expect(bad.isEmpty, "short names q/v that are not the verbosity flags: \(bad)")
    }

    @Test("with -q, -v or -qv given (also twice), a single-value option given twice is still a usage error")
    func repeatedOptionWithQuiet() throws {
        let work = try TempDir("hs-startup-usage")
        for flags in [["-q"], ["-v"], ["-q", "-q"], ["-qv"]] {
            let r = try Tools.run("hs-backup", ["run"] + flags + ["--source", work.path, "--to", work.sub("a"), "--to", work.sub("b")])
            #expect(r.status == 2 && r.stderr.contains("--to was given twice"), "\(flags): exit \(r.status): \(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: work.sub("a")) && !FileManager.default.fileExists(atPath: work.sub("b")))
        }
        // -q alone with single options: the backup runs and prints nothing.
        try FileManager.default.createDirectory(atPath: work.sub("src"), withIntermediateDirectories: true)
        try Data("x\n".utf8).write(to: URL(fileURLWithPath: work.sub("src/f.txt")))
        let ok = try Tools.run("hs-backup", ["run", "-q", "--source", work.sub("src"), "--to", work.sub("dest"), "--name", "q"])
        #expect(ok.status == 0 && ok.stdout.isEmpty, "exit \(ok.status): \(ok.stdout)\(ok.stderr)")
    }

    /// The lock file is written without JSONEncoder (`SetLock.Holder.json`): JSONDecoder must
    /// read back exactly the holder, whatever its strings hold.
    @Test("the lock file's JSON, written by hand, decodes to the same holder")
    func lockJSONDecodes() throws {
        let hosts = ["vm", "nas.example.net", "quo\"te", "back\\slash", "tab\tnew\nline\r", "ctl\u{01}\u{1F}", "é中😀", ""]
        for (i, host) in hosts.enumerated() {
            for operation in [nil, "backup", "prune \"x\"\u{7F}"] {
                let h = SetLock.Holder(host: host, pid: Int32(i * 1000 + 7), started: [1_765_061_078.123456, 0, 1e12 + 0.5, 1.0 / 3][i % 4],
                                       operation: operation)
                let back = try JSONDecoder().decode(SetLock.Holder.self, from: Data(h.json))
                #expect(back == h, "\(String(decoding: h.json, as: UTF8.self))")
            }
        }
    }
}
