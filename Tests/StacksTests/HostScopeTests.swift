import Foundation
import Stacks
import Support
import Testing
import TestSupport

/// On a guest, `hs-deploy --check` checks the stacks that guest runs (the ones whose .env is
/// present); `--all` keeps the whole-repository check for CI. The nightly crontab runs the
/// host-scoped check, references only files that exist, and gets the .env files into the
/// backup.
@Suite struct HostScopeTests {
    /// A filled repository where only `keep` has its .env (what one guest looks like).
    func guestRepo(keeping keep: [String]) throws -> FilledRepo {
        let repo = try FilledRepo()
        for s in allStacks where !keep.contains(s) { try FileManager.default.removeItem(atPath: repo.repo.env(s)) }
        return repo
    }

    @Test func checkOnAGuestChecksItsOwnStack() throws {
        let repo = try guestRepo(keeping: ["io"])
        let r = try repo.deploy(["--check"])
        #expect(r.status == 0, "\(describe(r))")
        #expect(r.stdout.contains("1 stack(s) ok: io"), "\(describe(r))")
        #expect(!r.stderr.contains("stacks/asteria/.env"))
        let j = try repo.deploy(["--check", "--json"])
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(j.stdout.utf8)) as? [String: Any])
        #expect((obj["stacks"] as? [[String: Any]])?.map { $0["stack"] as? String } == ["io"])
    }

    @Test func checkStillFailsWhenTheGuestsStackIsBroken() throws {
        let repo = try guestRepo(keeping: ["hera"])
        try repo.edit("stacks/hera/.env") { $0.replacingOccurrences(of: "NTFY_BASE_URL=http://hera:10001", with: "NTFY_BASE_URL=") }
        let r = try repo.deploy(["--check"])
        #expect(r.status == 1, "\(describe(r))")
        #expect(r.stderr.contains("stacks/hera/.env") && r.stderr.contains("NTFY_BASE_URL: empty"))
    }

    @Test func allChecksEveryStackForCI() throws {
        let repo = try guestRepo(keeping: ["io"])
        let r = try repo.deploy(["--check", "--all"])
        #expect(r.status == 1, "\(describe(r))")
        #expect(r.stderr.contains("stacks/asteria/.env: missing"))
        let full = try FilledRepo().deploy(["--check", "--all"])
        #expect(full.status == 0 && full.stdout.contains("7 stack(s) ok"), "\(describe(full))")
    }

    @Test func noStackOnThisHostIsAClearError() throws {
        let repo = try guestRepo(keeping: [])
        let r = try repo.deploy(["--check"])
        #expect(r.status == 1, "\(describe(r))")
        #expect(r.stderr.contains("no stacks/*/.env") && r.stderr.contains("--all"), "\(describe(r))")
    }

    @Test func pullWithoutNamesUsesThisHostsStacksDeployNeedsNames() throws {
        let repo = try guestRepo(keeping: [])
        let pull = try repo.deploy(["--pull"])
        #expect(pull.status == 1 && pull.stderr.contains("no stacks/*/.env"), "\(describe(pull))")
        let bare = try repo.deploy([])
        #expect(bare.status == 2 && bare.stderr.contains("name the stack"), "\(describe(bare))")
        let conflict = try repo.deploy(["--check", "--all", "io"])
        #expect(conflict.status == 2, "\(describe(conflict))")
    }

    /// `--all` is the CI check only: `--pull --all` would start every stack of the repository
    /// on one guest (before: accepted, it ran the deploy of all seven stacks).
    @Test func allGoesWithCheckOnly() throws {
        let repo = try guestRepo(keeping: [])
        let r = try repo.deploy(["--pull", "--all"])
        #expect(r.status == 2, "\(describe(r))")
        #expect(r.stderr.contains("--all goes with --check"), "\(describe(r))")
        #expect(!r.stderr.contains("stacks/asteria/.env"), "no stack was checked or deployed: \(describe(r))")
    }

    // MARK: crontab.example

    /// The job lines of crontab.example (not comments or variable assignments).
    static func crontabLines() throws -> [String] {
        try String(contentsOfFile: repoRoot + "/crontab.example", encoding: .utf8)
            .split(separator: "\n").map(String.init)
            .filter { $0.range(of: "^[0-9*@]", options: .regularExpression) != nil }
    }

    @Test func crontabReferencesOnlyFilesThatExist() throws {
        let text = try String(contentsOfFile: repoRoot + "/crontab.example", encoding: .utf8)
        // Paths in the repository (docs/..., provisioning/..., scripts/..., common/...).
        let re = try NSRegularExpression(pattern: "(?<![\\w/.$])((?:docs|provisioning|scripts|common|stacks|bench)/[A-Za-z0-9_./-]+[A-Za-z0-9_])")
        var seen = 0
        for m in re.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
            let rel = String(text[Range(m.range(at: 1), in: text)!])
            if rel.contains("*") || rel.hasSuffix("/.env") || rel == "common/.env" { continue }   // globs and per-host secrets
            seen += 1
            #expect(FileManager.default.fileExists(atPath: repoRoot + "/" + rel), "crontab.example names \(rel), which does not exist")
        }
        #expect(!text.contains("docs/backup-operations.md"))
        _ = seen
    }

    @Test func crontabRunsTheHostScopedCheck() throws {
        let lines = try Self.crontabLines()
        let check = try #require(lines.first { $0.contains("hs-deploy --check") })
        #expect(!check.contains("--all"), "the nightly check must only check this host's stacks: \(check)")
        // Nothing but options after --check: no stack names.
        let after = check.components(separatedBy: "hs-deploy --check").last ?? ""
        #expect(after.split(separator: " ").allSatisfy { $0.hasPrefix("-") || $0 == "&&" }, "\(check)")
    }

    /// The crontab's own lines, run with `sh` as cron runs them, with `HS_APPDATA=` left empty in
    /// common/.env (a fresh copy of the template that was never filled in): the save line stops
    /// before writing anything (it would write /.home-server-env), and the backup exits 2 saying
    /// that --source is empty, and still tries its failure notifications.
    @Test func crontabLinesWithAnEmptyAppdataFailLoudly() throws {
        let repo = try guestRepo(keeping: ["io"])
        try repo.edit("common/.env") { text in
            text.split(separator: "\n", omittingEmptySubsequences: false)
                .map { $0.hasPrefix("HS_APPDATA=") ? "HS_APPDATA=" : String($0) }.joined(separator: "\n")
        }
        let dest = try TempDir("hs-cron-dest")
        try repo.edit("common/.env") { $0 + "\nHS_BACKUP_DEST=\(dest.path)\n" }
        let lines = try Self.crontabLines()
        func command(_ line: String) -> String {
            // Drop the five schedule fields and the per-host delay (`sleep $(( ... )) && `, checked
            // in SchedulingTests); `\%` is `%` as cron passes it; run in the test checkout
            // instead of /opt/stacks/home-server.
            line.split(separator: " ", omittingEmptySubsequences: true).dropFirst(5).joined(separator: " ")
                .replacingOccurrences(of: #"^sleep \$\(\(.*?\)\) && "#, with: "", options: .regularExpression)
                .replacingOccurrences(of: "\\%", with: "%")
                .replacingOccurrences(of: "cd /opt/stacks/home-server", with: "cd '\(repo.root)'")
        }
        let env = ["PATH": Tools.productsDirectory.path + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                   "HS_NTFY_URL": "http://127.0.0.1:9/backups", "HS_KUMA_BACKUP": "http://127.0.0.1:9/push"]
        let existedBefore = FileManager.default.fileExists(atPath: "/.home-server-env")
        let save = try #require(lines.first { $0.contains("--save-env") })
        let s = try Subprocess.run(["sh", "-c", command(save)], environment: env)
        #expect(s.status != 0, "\(describe(s))")
        #expect(s.stderr.contains("HS_APPDATA"), "\(describe(s))")
        #expect(FileManager.default.fileExists(atPath: "/.home-server-env") == existedBefore, "the save line wrote to /")
        let backup = try #require(lines.first { $0.contains("hs-backup run") })
        let b = try Subprocess.run(["sh", "-c", command(backup)], environment: env)
        #expect(b.status == 2, "\(describe(b))")
        #expect(b.stderr.contains("--source is empty"), "\(describe(b))")
        #expect(b.stderr.contains("ntfy notification"), "the failure notification was not even tried: \(describe(b))")
        #expect((try FileManager.default.contentsOfDirectory(atPath: dest.path)).isEmpty, "the backup wrote into DEST")
    }

    /// The crontab's save-env line, run for real against a guest checkout, followed by the
    /// nightly backup of /opt/appdata: the restored backup holds the .env files, mode 600.
    @Test func envFilesGetIntoTheNightlyBackup() throws {
        let repo = try guestRepo(keeping: ["io"])
        let lines = try Self.crontabLines()
        let save = try #require(lines.first { $0.contains("--save-env") }, "crontab.example has no line that saves the .env files")
        let backup = try #require(lines.first { $0.contains("hs-backup run") })
        func minute(_ l: String) -> Int { let f = l.split(separator: " "); return Int(f[1])! * 60 + Int(f[0])! }
        #expect(minute(save) < minute(backup), "the .env copy must run before the backup")
        // The destination of --save-env must be inside the backed-up source.
        let saveDir = try #require(save.components(separatedBy: "--save-env ").last?.split(separator: " ").first.map(String.init))
        #expect(saveDir.hasPrefix("\"$HS_APPDATA\"/") || saveDir.hasPrefix("/opt/appdata/"), "\(saveDir)")

        let appdata = try TempDir("hs-appdata")
        try FileManager.default.createDirectory(atPath: appdata.sub("radarr"), withIntermediateDirectories: true)
        try "<Config/>".write(toFile: appdata.sub("radarr/config.xml"), atomically: true, encoding: .utf8)
        let target = saveDir.replacingOccurrences(of: "\"$HS_APPDATA\"", with: appdata.path).replacingOccurrences(of: "/opt/appdata", with: appdata.path)
        let r = try repo.deploy(["--save-env", target])
        #expect(r.status == 0, "\(describe(r))")
        #expect(!r.stdout.contains("s3cret-") && !r.stderr.contains("s3cret-"))
        let dest = try TempDir("hs-dest")
        let b = try Tools.run("hs-backup", ["run", "--source", appdata.path, "--to", dest.path, "--name", "io"])
        #expect(b.status == 0, "\(describe(b))")
        let restored = try TempDir("hs-restored")
        let rr = try Tools.run("hs-restore", ["--from", dest.path, "--name", "io", "--to", restored.path, "--force"])
        #expect(rr.status == 0, "\(describe(rr))")
        let rel = String(target.dropFirst(appdata.path.count))
        for f in ["common/.env", "stacks/io/.env"] {
            let p = restored.path + rel + "/" + f
            #expect(FileManager.default.contents(atPath: p) == FileManager.default.contents(atPath: repo.path(f)), "\(f) not in the backup")
            let mode = (try? FileManager.default.attributesOfItem(atPath: p)[.posixPermissions] as? Int) ?? -1
            #expect(mode == 0o600, "\(f) restored with mode \(String(mode, radix: 8))")
        }
        var st = stat()
        #expect(stat(restored.path + rel, &st) == 0 && st.st_mode & 0o077 == 0, "the .env directory is private")
        // Idempotent: a second save changes nothing (the next incremental backup archives nothing new).
        let before = try FileManager.default.attributesOfItem(atPath: target + "/stacks/io/.env")[.modificationDate] as? Date
        Thread.sleep(forTimeInterval: 0.05)
        #expect(try repo.deploy(["--save-env", target]).status == 0)
        #expect(try FileManager.default.attributesOfItem(atPath: target + "/stacks/io/.env")[.modificationDate] as? Date == before)
    }
}

/// A deploy on a guest whose appdata directories were never provisioned is refused before
/// Docker creates them root-owned (the containers running as PUID could not write there).
@Suite struct AppdataGuardTests {
    @Test func deployRefusesMissingAppdataDirectories() throws {
        let dir = try TempDir("hs-appdata-guard")
        let id = String(UUID().uuidString.prefix(8)).lowercased()
        let stack = "hsguard\(id)"
        let missing = "/opt/appdata/hs-test-\(id)/config"
        #expect(!FileManager.default.fileExists(atPath: "/opt/appdata/hs-test-\(id)"))
        let root = dir.sub("repo")
        let fm = FileManager.default
        for d in ["common", "stacks/\(stack)", "stacks/aeos/config/homepage"] {
            try fm.createDirectory(atPath: root + "/" + d, withIntermediateDirectories: true)
        }
        func write(_ rel: String, _ text: String, mode: Int) throws {
            try Data(text.utf8).write(to: URL(fileURLWithPath: root + "/" + rel))
            try fm.setAttributes([.posixPermissions: mode], ofItemAtPath: root + "/" + rel)
        }
        try write("common/.env.template", "PUID=1000\nPGID=1000\n", mode: 0o644)
        try write("common/.env", "PUID=1000\nPGID=1000\n", mode: 0o600)
        try write("stacks/\(stack)/.env.template", "# nothing\n", mode: 0o644)
        try write("stacks/\(stack)/.env", "", mode: 0o600)
        try write("stacks/aeos/config/homepage/services.yaml", "[]\n", mode: 0o644)
        try write("stacks/\(stack)/docker-compose.yml", """
            name: \(stack)
            services:
              app:
                image: hs-test-never-pulled:\(id)
                user: "${PUID}:${PGID}"
                volumes:
                  - \(missing):/config

            """, mode: 0o644)
        let r = try Tools.run("hs-deploy", [stack, "--repo", root])
        #expect(r.status == 1, "\(describe(r))")
        #expect(r.stderr.contains(missing) && r.stderr.contains("hs-provision apply") && r.stderr.contains("--only directories"), "\(describe(r))")
        #expect(!fm.fileExists(atPath: "/opt/appdata/hs-test-\(id)"), "nothing may create it")
        let ps = try Subprocess.run(["docker", "ps", "-a", "--filter", "label=com.docker.compose.project=\(stack)", "--format", "{{.Names}}"])
        #expect(ps.succeeded && ps.stdout.isEmpty)
        // --check does not look at this host's directories (CI has none).
        #expect(try Tools.run("hs-deploy", ["--check", stack, "--repo", root]).status == 0)
    }
}
