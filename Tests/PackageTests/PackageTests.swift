import Foundation
import Support
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The release package (`scripts/package.sh`) is what goes onto real hosts: it must install
/// with apt on a Debian 12 system that has no Swift toolchain, pull only runtime libraries,
/// and the installed tools must do their jobs there. The package is built once per test run
/// (TestSupport's `ReleasePackage`); the chroot is a fresh `debootstrap --variant=minbase
/// bookworm` root (TestSupport's `DebianRoot`). Fails, never skips, without root, debootstrap,
/// the Debian mirror or nfs-ganesha.
@Suite struct PackageTests {
    static let tools = ["hs-backup", "hs-restore", "hs-linkcheck", "hs-provision", "hs-deploy"]
    /// hs-linkcheck, hs-provision and hs-deploy (with Foundation: Yams needs it).
    static let executable = "usr/lib/home-server-tools/home-server-tools"
    /// hs-backup and hs-restore, with FoundationEssentials only (issue 23: a faster start).
    static let backupExecutable = "usr/lib/home-server-tools/home-server-backup"
    static let executables = [backupExecutable, executable]
    /// The multi-call executable `tool` is a symlink to.
    static func executable(of tool: String) -> String { tool == "hs-backup" || tool == "hs-restore" ? backupExecutable : executable }

    static func run(_ argv: [String], directory: String? = nil) throws -> ProcessResult {
        try Subprocess.run(argv, environment: ["LC_ALL": "C"], directory: directory)
    }

    /// The Debian package owning each library the executable needs (NEEDED + ldd + dpkg -S),
    /// computed here independently of package.sh.
    static func owningPackages(of executable: String) throws -> Set<String> {
        let elf = try run(["readelf", "-d", executable])
        try #require(elf.succeeded, "readelf -d \(executable): \(elf.stderr)")
        let needed = elf.stdout.split(separator: "\n").filter { $0.contains("(NEEDED)") }.compactMap { line -> String? in
            guard let a = line.firstIndex(of: "["), let b = line.lastIndex(of: "]") else { return nil }
            return String(line[line.index(after: a)..<b])
        }
        try #require(!needed.isEmpty, "no NEEDED entries in \(executable)")
        let ldd = try run(["ldd", executable])
        try #require(ldd.succeeded, "ldd \(executable): \(ldd.stderr)")
        var owners = Set<String>()
        for so in needed {
            // "\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)" or "\t/lib64/ld-linux-x86-64.so.2 (0x...)"
            let lines = ldd.stdout.split(separator: "\n").map { $0.split(whereSeparator: { $0 == " " || $0 == "\t" }) }
            let words = try #require(lines.first { $0.first == Substring(so) || ($0.first?.hasSuffix("/" + so) ?? false) },
                                     "ldd does not list \(so):\n\(ldd.stdout)")
            let line = words.joined(separator: " ")
            let path = try #require(words.first { $0.hasPrefix("/") }.map(String.init), "no path for \(so) in: \(line)")
            let real = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
            let candidates = [path, real, "/usr" + path, "/usr" + real] + [path, real].filter { $0.hasPrefix("/usr/") }.map { String($0.dropFirst(4)) }
            var owner: String?
            for c in candidates {
                let q = try run(["dpkg-query", "-S", c])
                if q.succeeded, let first = q.stdout.split(separator: ":").first { owner = String(first); break }
            }
            owners.insert(try #require(owner, "no Debian package owns \(path) (\(so))"))
        }
        return owners
    }

    @Test(.timeLimit(.minutes(45))) func debianPackageAndTarballHoldTwoStaticExecutablesAndRuntimeDepends() throws {
        let built = try ReleasePackage.built()
        let name = "home-server-tools_\(homeServerVersion)_amd64"
        #expect(built.deb.hasSuffix("/" + name + ".deb"), "\(built.deb)")
        #expect(built.tarball.hasSuffix("/" + name + ".tar.gz"), "\(built.tarball)")

        // Control fields: the version is the one --version prints.
        let fields = try Self.run(["dpkg-deb", "-f", built.deb, "Package", "Version", "Architecture", "Depends"])
        try #require(fields.succeeded, "dpkg-deb -f: \(fields.stderr)")
        var control: [String: String] = [:]
        for line in fields.stdout.split(separator: "\n") {
            let kv = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if kv.count == 2 { control[kv[0]] = kv[1] }
        }
        #expect(control["Package"] == "home-server-tools")
        #expect(control["Version"] == homeServerVersion)
        #expect(control["Architecture"] == "amd64")
        let dependsEntries = (control["Depends"] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let depends = Set(dependsEntries.map { String($0.split(separator: " ")[0]) })

        // The payload: two executables, five symlinks to them.
        let x = try TempDir("hs-package-x")
        let ex = try Self.run(["dpkg-deb", "-x", built.deb, x.path])
        try #require(ex.succeeded, "dpkg-deb -x: \(ex.stderr)")
        for t in Self.tools {
            let dest = try? FileManager.default.destinationOfSymbolicLink(atPath: x.sub("usr/bin/" + t))
            #expect(dest == "../lib/home-server-tools/" + URL(fileURLWithPath: Self.executable(of: t)).lastPathComponent,
                    "/usr/bin/\(t) -> \(dest ?? "missing")")
        }
        var owners = Set<String>()
        var newestGlibc: [Int] = []
        for exe in Self.executables.map(x.sub) {
            #expect(FileManager.default.isExecutableFile(atPath: exe))

            // Linked to no library of the Swift toolchain; stripped.
            let ldd = try Self.run(["ldd", exe])
            #expect(ldd.succeeded && !ldd.stdout.contains("not found"), "\(ldd.stdout)")
            for bad in ["/opt/swift", "libswift", "libFoundation", "libdispatch", "libBlocksRuntime", "usr/lib/swift"] {
                #expect(!ldd.stdout.contains(bad), "ldd \(exe) shows \(bad):\n\(ldd.stdout)")
            }
            let file = try Self.run(["file", "-L", exe])
            #expect(file.stdout.contains("ELF 64-bit") && file.stdout.contains(", stripped"), "\(file.stdout)")

            // A PIE (ASLR) without packed relative relocations (DT_RELR needs glibc >= 2.36; the
            // runbook's old server may run glibc 2.35), and libcrypto, libsqlite3, libnfs and libfuse3
            // not linked: CCrypto, CSQLite, CNFS and CFuse dlopen() them on first use.
            let dynamic = try Self.run(["readelf", "-d", exe])
            #expect(!dynamic.stdout.contains("(RELR)") && dynamic.stdout.contains("Flags: PIE"), "\(exe): \(dynamic.stdout)")
            for lib in ["libcrypto", "libsqlite3", "libnfs", "libfuse3"] {
                #expect(!ldd.stdout.contains(lib), "\(lib) is linked:\n\(ldd.stdout)")
                #expect(!dynamic.stdout.split(separator: "\n").contains { $0.contains("(NEEDED)") && $0.contains("[" + lib + ".") },
                        "\(lib) is NEEDED:\n\(dynamic.stdout)")
            }

            // The newest glibc symbol version the executable uses, at most 2.35 (Ubuntu 22.04,
            // the runbook's old server).
            let dynsyms = try Self.run(["objdump", "-T", exe])
            var versions = dynsyms.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "(" || $0 == ")" })
                .filter { $0.hasPrefix("GLIBC_") && $0.dropFirst(6).first?.isNumber == true }
                .map { $0.dropFirst(6).split(separator: ".").map { Int($0) ?? 0 } }
            let versionNeeds = try Self.run(["readelf", "-V", exe])
            if versionNeeds.stdout.contains("GLIBC_ABI_DT_RELR") { versions.append([2, 36]) }
            let glibc = try #require(versions.max { $0.lexicographicallyPrecedes($1) }, "no GLIBC_ versions in objdump -T \(exe)")
            if newestGlibc.lexicographicallyPrecedes(glibc) { newestGlibc = glibc }
            #expect(glibc.lexicographicallyPrecedes([2, 36]), "\(exe) needs glibc \(glibc): glibc 2.35 (Ubuntu 22.04) could not run it")
            #expect(!versionNeeds.stdout.contains("GLIBC_ABI_DT_RELR"), "\(exe) needs GLIBC_ABI_DT_RELR (glibc >= 2.36)")
            owners.formUnion(try Self.owningPackages(of: exe))
        }
        // libc6 at least the newest glibc symbol version the executables use; only it versioned.
        let newest = newestGlibc.map(String.init).joined(separator: ".")
        #expect(dependsEntries.contains("libc6 (>= \(newest))"), "Depends \(dependsEntries) lacks libc6 (>= \(newest))")
        #expect(dependsEntries.filter { $0.contains("(") }.count == 1, "only libc6 is versioned: \(dependsEntries)")
        // hs-backup's and hs-restore's executable holds no ICU data (the full Foundation's; the
        // symbol check is scripts/package.sh's, before stripping): it is a fraction of the other.
        let sizes = Self.executables.map { (try? FileManager.default.attributesOfItem(atPath: x.sub($0))[.size] as? Int) ?? 0 }
        #expect(sizes[0] > 0 && sizes[0] * 2 < sizes[1], "home-server-backup \(sizes[0]) bytes, home-server-tools \(sizes[1])")

        // Depends = exactly the Debian packages owning the libraries the executable needs, curl
        // (the notifications run curl(1); no networking library is linked), libssl3,
        // libsqlite3-0, libnfs13 and libfuse3-3 (the owners of libcrypto.so.3, libsqlite3.so.0,
        // libnfs.so.13 and libfuse3.so.3, loaded with dlopen).
        let dlopened: Set<String> = ["libssl3", "libsqlite3-0", "libnfs13", "libfuse3-3"]
        #expect(owners.isDisjoint(with: dlopened), "a library loaded with dlopen is NEEDED: \(owners.sorted())")
        #expect(depends == owners.union(["curl"]).union(dlopened),
                "Depends \(depends.sorted()) but the executables need \(owners.sorted()), curl, \(dlopened.sorted())")
        #expect(!owners.contains("libcurl4") && !owners.contains("libgnutls30"), "a networking library is linked: \(owners.sorted())")
        #expect(depends.isSuperset(of: ["libnfs13", "libfuse3-3", "zlib1g", "libdeflate0", "libisal2", "libsqlite3-0", "libssl3", "libc6"]), "\(depends.sorted())")
        for d in depends {
            #expect(!d.contains("swift") && !d.hasSuffix("-dev") && !d.contains("docker") && !d.contains("ganesha"), "Depends has \(d)")
        }

        // The tarball: the same executables (byte for byte) under home-server-tools-<v>/.
        let list = try Self.run(["tar", "-tvzf", built.tarball])
        try #require(list.succeeded, "tar -tzf: \(list.stderr)")
        let top = "home-server-tools-\(homeServerVersion)/"
        for t in Self.tools {
            #expect(list.stdout.contains(top + "bin/\(t) -> ../lib/home-server-tools/" + URL(fileURLWithPath: Self.executable(of: t)).lastPathComponent),
                    "\(t) missing:\n\(list.stdout)")
        }
        let t = try TempDir("hs-package-t")
        let untar = try Self.run(["tar", "-xzf", built.tarball, "-C", t.path])
        try #require(untar.succeeded, "\(untar.stderr)")
        for exe in Self.executables {
            #expect(FileManager.default.contentsEqual(atPath: t.sub(top + String(exe.dropFirst("usr/".count))), andPath: x.sub(exe)), "\(exe)")
        }
        let help = try Self.run([t.sub(top + "bin/hs-restore"), "--help"])
        #expect(help.succeeded && help.stdout.contains("USAGE: hs-restore"), "\(help.stdout)\(help.stderr)")

        // The tarball's man pages and completions: the .deb's, byte for byte, in the places
        // /usr/local is searched (man-db, bash-completion and fish through XDG_DATA_DIRS,
        // Debian zsh's fpath); no units or conffile (those need the package).
        var pairs = [("share/man/man7/home-server-tools.7.gz", "usr/share/man/man7/home-server-tools.7.gz")]
        for tool in Self.tools {
            pairs += [("share/man/man1/\(tool).1.gz", "usr/share/man/man1/\(tool).1.gz"),
                      ("share/bash-completion/completions/\(tool)", "usr/share/bash-completion/completions/\(tool)"),
                      ("share/zsh/site-functions/_\(tool)", "usr/share/zsh/vendor-completions/_\(tool)"),
                      ("share/fish/vendor_completions.d/\(tool).fish", "usr/share/fish/vendor_completions.d/\(tool).fish")]
        }
        for (inTar, inDeb) in pairs {
            #expect(FileManager.default.fileExists(atPath: x.sub(inDeb)), "the .deb lacks \(inDeb)")
            #expect(FileManager.default.contentsEqual(atPath: t.sub(top + inTar), andPath: x.sub(inDeb)), "tarball \(inTar) differs from the .deb's \(inDeb) (or is missing)")
        }
        let manual = try Self.run(["sh", "-c", "zcat \"$1\" | groff -man -Tutf8 -ww", "sh", t.sub(top + "share/man/man1/hs-backup.1.gz")])
        #expect(manual.succeeded && manual.stdout.contains("hs-backup") && manual.stderr.isEmpty,
                "groff of the tarball's hs-backup.1.gz: \(manual.stderr)")
        let completion = try Self.run(["bash", "-c", ". \"$1\" && complete -p hs-backup", "bash", t.sub(top + "share/bash-completion/completions/hs-backup")])
        #expect(completion.succeeded && completion.stdout.contains("hs-backup"), "the tarball's bash completion does not register hs-backup: \(completion.stdout)\(completion.stderr)")
        #expect(!list.stdout.contains("systemd") && !list.stdout.contains("etc/default"), "the tarball has units or the conffile:\n\(list.stdout)")
    }

    @Test(.timeLimit(.minutes(45))) func aptInstallsThePackageIntoFreshDebianWithoutToolchainAndTheToolsWork() throws {
        let built = try ReleasePackage.built()
        let debian = try DebianRoot(prefix: "hs-package-chroot")
        defer { debian.close() }
        let root = debian.root

        // 1. A fresh Debian 12 with no Swift toolchain.
        #expect(try debian.run(["sh", "-c", "command -v swift || command -v swiftc"]).status != 0)
        #expect(!FileManager.default.fileExists(atPath: root + "/opt/swift"))
        let before = try debian.installedPackages()
        #expect(!before.contains("home-server-tools"))

        // 2. scripts/install.sh PATH.deb, run inside the root (apt-get install of the .deb).
        let debName = (built.deb as NSString).lastPathComponent
        try Subprocess.checked(["install", "-D", "-m", "0644", built.deb, root + "/tmp/" + debName])
        try Subprocess.checked(["install", "-D", "-m", "0755", ReleasePackage.repoRoot + "/scripts/install.sh",
                                root + "/opt/home-server/scripts/install.sh"])
        try debian.checked(["apt-get", "update", "-qq"])
        let install = try debian.run(["bash", "/opt/home-server/scripts/install.sh", "/tmp/" + debName])
        try #require(install.succeeded, "install.sh failed:\n\(install.stdout.suffix(3000))\n\(install.stderr.suffix(3000))")
        let after = try debian.installedPackages()
        let added = after.subtracting(before)
        #expect(added.contains("home-server-tools"))
        for absent in ["docker.io", "docker-ce", "containerd", "runc", "nfs-ganesha", "nfs-ganesha-vfs", "python3-pip",
                       "python3", "debootstrap", "rpcbind", "libnfs-dev", "zlib1g-dev", "libssl-dev"] {
            #expect(!after.contains(absent), "\(absent) was installed (added: \(added.sorted()))")
        }
        #expect(added.allSatisfy { !$0.contains("swift") && !$0.hasSuffix("-dev") }, "\(added.sorted())")
        for exe in Self.executables {
            let ldd = try debian.checked(["ldd", "/" + exe])
            #expect(!ldd.stdout.contains("not found"), "\(ldd.stdout)")
        }

        // 3. Every tool answers --version with the package version, and --help with its own usage.
        for t in Self.tools {
            let v = try debian.run([t, "--version"])
            #expect(v.status == 0 && v.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == homeServerVersion,
                    "\(t) --version: exit \(v.status) stdout \(v.stdout) stderr \(v.stderr)")
            let h = try debian.run([t, "--help"])
            #expect(h.status == 0 && h.stdout.contains("USAGE: \(t)"), "\(t) --help: \(h.stdout)\(h.stderr)")
        }
        let bare = try debian.run(["/" + Self.executable])
        #expect(bare.status == 2 && bare.stderr.contains("start it as one of hs-linkcheck"), "\(bare.stderr)")
        let bareBackup = try debian.run(["/" + Self.backupExecutable])
        #expect(bareBackup.status == 2 && bareBackup.stderr.contains("start it as one of hs-backup, hs-restore"), "\(bareBackup.stderr)")
        let byArg = try debian.run(["/" + Self.executable, "hs-deploy", "--help"])
        #expect(byArg.status == 0 && byArg.stdout.contains("USAGE: hs-deploy"), "\(byArg.stdout)\(byArg.stderr)")
        // The tool's own arguments only (Swift reads them from the kernel, not from argv).
        let byArgVersion = try debian.run(["/" + Self.backupExecutable, "hs-backup", "--version"])
        #expect(byArgVersion.status == 0 && byArgVersion.stdout == homeServerVersion + "\n", "\(byArgVersion.stdout)\(byArgVersion.stderr)")

        // 4. Backup and restore of a small tree with the installed tools: to a local directory
        //    and to an NFS export through libnfs (nfs-ganesha on 127.0.0.1).
        try Self.makeTree(root + "/srv/appdata")
        let local = try debian.run(["hs-backup", "--source", "/srv/appdata", "--to", "/srv/backups", "--name", "smoke"])
        #expect(local.succeeded, "hs-backup (local): \(local.stdout)\(local.stderr)")
        let verify = try debian.run(["hs-backup", "verify", "--to", "/srv/backups", "--name", "smoke"])
        #expect(verify.succeeded, "hs-backup verify: \(verify.stdout)\(verify.stderr)")
        let restore = try debian.run(["hs-restore", "--from", "/srv/backups", "--name", "smoke", "--to", "/srv/restored"])
        #expect(restore.succeeded, "hs-restore (local): \(restore.stdout)\(restore.stderr)")
        #expect(try Self.describe(root + "/srv/appdata") == Self.describe(root + "/srv/restored"))

        // The same with age encryption: libcrypto.so.3 (libssl3, from Depends) is loaded with
        // dlopen for X25519, HKDF and ChaCha20-Poly1305.
        let keys = try TempDir("hs-package-age")
        try Subprocess.checked(["age-keygen", "-o", keys.sub("key.txt")])
        let recipient = try Subprocess.checked(["age-keygen", "-y", keys.sub("key.txt")]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try Subprocess.checked(["install", "-D", "-m", "0600", keys.sub("key.txt"), root + "/root/age-key.txt"])
        let sealed = try debian.run(["hs-backup", "--source", "/srv/appdata", "--to", "/srv/backups-age", "--name", "sealed",
                                     "--recipient", recipient])
        #expect(sealed.succeeded, "hs-backup --recipient: \(sealed.stdout)\(sealed.stderr)")
        let opened = try debian.run(["hs-restore", "--from", "/srv/backups-age", "--name", "sealed", "--identity", "/root/age-key.txt",
                                     "--to", "/srv/restored-age"])
        #expect(opened.succeeded, "hs-restore --identity: \(opened.stdout)\(opened.stderr)")
        #expect(try Self.describe(root + "/srv/appdata") == Self.describe(root + "/srv/restored-age"))

        // A live SQLite database is captured through libsqlite3.so.0 (libsqlite3-0, from Depends,
        // loaded with dlopen) and restores readable.
        try Subprocess.checked(["mkdir", "-p", root + "/srv/dbapp"])
        // A WAL database (header byte 18 = 2): its snapshot is switched to rollback mode (1), so
        // the restored header says the run captured it.
        try Subprocess.checked(["sqlite3", root + "/srv/dbapp/app.db", "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES ('kept');"])
        let withDB = try debian.run(["hs-backup", "--source", "/srv/dbapp", "--to", "/srv/backups-db", "--name", "db"])
        #expect(withDB.succeeded, "hs-backup (SQLite): \(withDB.stdout)\(withDB.stderr)")
        let dbBack = try debian.run(["hs-restore", "--from", "/srv/backups-db", "--name", "db", "--to", "/srv/restored-db"])
        #expect(dbBack.succeeded, "hs-restore (SQLite): \(dbBack.stdout)\(dbBack.stderr)")
        let header = FileManager.default.contents(atPath: root + "/srv/restored-db/app.db").map { [UInt8]($0.prefix(20)) } ?? []
        #expect(header.count == 20 && header[18] == 1, "the database was not archived from a snapshot: header \(header)")
        #expect(try Subprocess.checked(["sqlite3", root + "/srv/restored-db/app.db", "SELECT x FROM t"]).stdout == "kept\n")

        let nfs = try GaneshaServer.shared()
        let dir = try nfs.makeUniqueDirectory("package")
        let url = nfs.url(path: dir)
        let remote = try debian.run(["hs-backup", "--source", "/srv/appdata", "--to", url, "--name", "smoke"])
        #expect(remote.succeeded, "hs-backup (nfs): \(remote.stdout)\(remote.stderr)")
        #expect(FileManager.default.fileExists(atPath: nfs.exportPath + "/" + dir + "/smoke"), "no set on the export")
        let fromNFS = try debian.run(["hs-restore", "--from", url, "--name", "smoke", "--to", "/srv/restored-nfs"])
        #expect(fromNFS.succeeded, "hs-restore (nfs): \(fromNFS.stdout)\(fromNFS.stderr)")
        #expect(try Self.describe(root + "/srv/appdata") == Self.describe(root + "/srv/restored-nfs"))

        // 5. hs-provision plan for a guest: reads the root's state, changes nothing.
        //    As in the runbook: from a checkout of the repository (stacks/ next to provisioning/).
        for dir in ["provisioning", "stacks"] {
            try Subprocess.checked(["mkdir", "-p", root + "/srv/home-server"])
            try Subprocess.checked(["cp", "-a", ReleasePackage.repoRoot + "/" + dir, root + "/srv/home-server/" + dir])
        }
        try """
            truenas: {server: truenas, media_export: /mnt/tank/media}
            defaults: {puid: 1000, pgid: 1000, docker_source: debian, repo: https://example.invalid/home-server.git}
            hosts:
              pve: {role: proxmox}
              testguest: {role: guest, kind: lxc, vmid: 900, proxmox: pve, stack: hera, tailscale: false}

            """.write(toFile: root + "/srv/home-server/provisioning/inventory.yml", atomically: true, encoding: .utf8)
        let dpkgBefore = try String(contentsOfFile: root + "/var/lib/dpkg/status", encoding: .utf8)
        let plan = try debian.run(["hs-provision", "plan", "--inventory", "/srv/home-server/provisioning/inventory.yml",
                                   "--host", "testguest", "--only", "packages", "--only", "docker", "--only", "directories"])
        #expect(plan.status == 0, "hs-provision plan: \(plan.stdout)\(plan.stderr)")
        #expect(plan.stdout.contains("docker.io"), "plan does not show the docker.io install:\n\(plan.stdout)")
        #expect(plan.stdout.hasSuffix("plan: 3 step(s) would change, 0 ok, 0 failed\n"), "\(plan.stdout)")
        #expect(try String(contentsOfFile: root + "/var/lib/dpkg/status", encoding: .utf8) == dpkgBefore, "plan changed dpkg's database")
        #expect(plan.stdout.contains("/opt/appdata/ntfy"), "plan does not show hera's appdata directories:\n\(plan.stdout)")
        #expect(!FileManager.default.fileExists(atPath: root + "/opt/appdata/ntfy"), "plan created directories")

        // 6. docs/runbook.md, "hs-linkcheck": the layout is created and hardlinks work.
        try debian.checked(["mkdir", "-p", "/srv/media"])
        let initTree = try debian.run(["hs-linkcheck", "/srv/media", "--init", "--puid", "1000", "--pgid", "1000"])
        #expect(initTree.succeeded, "hs-linkcheck --init: \(initTree.stdout)\(initTree.stderr)")
        let check = try debian.run(["hs-linkcheck", "/srv/media"])
        #expect(check.succeeded, "hs-linkcheck: \(check.stdout)\(check.stderr)")

        // 7. docs/runbook.md, "Restore drill": verify the latest backup, restore it into a scratch
        //    directory, restore one app with --only.
        let drillVerify = try debian.run(["hs-backup", "verify", "--to", url, "--name", "smoke", "--backup", "latest"])
        #expect(drillVerify.succeeded, "\(drillVerify.stdout)\(drillVerify.stderr)")
        let drill = try debian.run(["hs-restore", "--from", url, "--name", "smoke", "--backup", "latest", "--to", "/var/tmp/drill"])
        #expect(drill.succeeded, "\(drill.stdout)\(drill.stderr)")
        #expect(try Self.describe(root + "/srv/appdata") == Self.describe(root + "/var/tmp/drill"))
        let one = try debian.run(["hs-restore", "--from", url, "--name", "smoke", "--to", "/var/tmp/drill-radarr", "--only", "radarr"])
        #expect(one.succeeded, "\(one.stdout)\(one.stderr)")
        #expect(try Self.describe(root + "/srv/appdata/radarr") == Self.describe(root + "/var/tmp/drill-radarr/radarr"))
        #expect(!FileManager.default.fileExists(atPath: root + "/var/tmp/drill-radarr/sonarr"))

        // 8. docs/runbook.md, "Migration": the old server runs the tools from the tarball
        //    (extracted into /usr/local there), takes a full backup of its hand-built appdata;
        //    the new guest restores the apps it runs next to the directories hs-provision made,
        //    moves them into place and gives them to PUID:PGID.
        try Subprocess.checked(["install", "-D", "-m", "0644", built.tarball, root + "/tmp/" + (built.tarball as NSString).lastPathComponent])
        try debian.checked(["mkdir", "-p", "/opt/oldserver/usr/local"])
        try debian.checked(["tar", "-xzf", "/tmp/" + (built.tarball as NSString).lastPathComponent, "-C", "/opt/oldserver/usr/local",
                            "--strip-components=1"])
        try Self.makeTree(root + "/srv/docker-data")
        let migrate = nfs.url(path: try nfs.makeUniqueDirectory("migration"))
        let old = try debian.run(["/opt/oldserver/usr/local/bin/hs-backup", "--source", "/srv/docker-data", "--to", migrate,
                                  "--name", "oldserver", "--full"])
        #expect(old.succeeded, "old server backup: \(old.stdout)\(old.stderr)")
        try debian.checked(["mkdir", "-p", "/opt/appdata/radarr", "/opt/appdata/sonarr"])
        let pull = try debian.run(["hs-restore", "--from", migrate, "--name", "oldserver", "--to", "/opt/appdata.migrated",
                                   "--only", "radarr", "--only", "sonarr"])
        #expect(pull.succeeded, "migration restore: \(pull.stdout)\(pull.stderr)")
        for app in ["radarr", "sonarr"] {
            try debian.checked(["rmdir", "/opt/appdata/" + app])
            try debian.checked(["mv", "/opt/appdata.migrated/" + app, "/opt/appdata/" + app])
            try debian.checked(["chown", "-R", "1000:1000", "/opt/appdata/" + app])
            let a = try Self.describe(root + "/srv/docker-data/" + app), b = try Self.describe(root + "/opt/appdata/" + app)
            #expect(a.keys.sorted() == b.keys.sorted(), "\(app): entries differ")
            for (k, v) in a where !v.hasPrefix("\(S_IFLNK | 0o777) ") {
                // Same content, mode and mtime; owner is now PUID:PGID.
                let strip = { (d: String) in d.split(separator: " ").enumerated().filter { $0.offset != 1 }.map(\.element).joined(separator: " ") }
                #expect(strip(v) == strip(b[k] ?? ""), "\(app)/\(k): \(v) vs \(b[k] ?? "missing")")
                #expect(b[k]?.split(separator: " ").dropFirst().first == "1000:1000", "\(app)/\(k): \(b[k] ?? "")")
            }
        }
        try debian.checked(["rmdir", "/opt/appdata.migrated"])
    }

    /// A small appdata-like tree: nested files, modes, owners, a symlink, a hardlink, an empty directory.
    static func makeTree(_ path: String) throws {
        let fm = FileManager.default
        for d in ["radarr/MediaCover/1", "sonarr/logs", "empty"] {
            try fm.createDirectory(atPath: path + "/" + d, withIntermediateDirectories: true)
        }
        var rng = SystemRandomNumberGenerator()
        let files: [(String, Int, mode_t)] = [("radarr/config.xml", 300, 0o600), ("radarr/MediaCover/1/poster.jpg", 200_000, 0o644),
                                              ("sonarr/logs/sonarr.txt", 50_000, 0o640), ("sonarr/sonarr.db", 40_960, 0o644)]
        for (rel, size, mode) in files {
            let bytes = (0..<size).map { _ in UInt8.random(in: 0...255, using: &rng) }
            try Data(bytes).write(to: URL(fileURLWithPath: path + "/" + rel))
            chmod(path + "/" + rel, mode)
        }
        chown(path + "/sonarr/logs/sonarr.txt", 1000, 1000)
        try fm.createSymbolicLink(atPath: path + "/radarr/config.link", withDestinationPath: "config.xml")
        link(path + "/radarr/config.xml", path + "/radarr/config.hardlink")
    }

    /// Every entry under `root`: type, mode, owner, mtime (s), size, content hash, link target, and
    /// which entries share an inode (hardlinks).
    static func describe(_ root: String) throws -> [String: String] {
        var out: [String: String] = [:]
        var pathsOfInode: [UInt64: [String]] = [:]
        var inodeOfPath: [String: UInt64] = [:]
        let e = try #require(FileManager.default.enumerator(atPath: root))
        while let rel = e.nextObject() as? String {
            let p = root + "/" + rel
            var st = stat()
            try #require(lstat(p, &st) == 0, "lstat \(p)")
            var d = "\(st.st_mode) \(st.st_uid):\(st.st_gid)"
            switch st.st_mode & S_IFMT {
            case S_IFLNK: d += " -> " + ((try? FileManager.default.destinationOfSymbolicLink(atPath: p)) ?? "?")
            case S_IFREG:
                let bytes = [UInt8](FileManager.default.contents(atPath: p) ?? Data())
                d += " \(st.st_size) \(st.st_mtim.tv_sec) " + hexString(SHA256Hasher.hash(bytes))
                if st.st_nlink > 1 {
                    pathsOfInode[UInt64(st.st_ino), default: []].append(rel)
                    inodeOfPath[rel] = UInt64(st.st_ino)
                }
            default: d += " \(st.st_mtim.tv_sec)"
            }
            out[rel] = d
        }
        for (rel, ino) in inodeOfPath {
            out[rel, default: ""] += " links " + (pathsOfInode[ino] ?? []).sorted().joined(separator: ",")
        }
        return out
    }
}
