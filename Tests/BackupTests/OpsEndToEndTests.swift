// hs-backup/hs-restore end to end with the operational features: live SQLite capture, prune
// on dated chains, --stop-stacks against dockerd, --notify/--ping against a loopback server.
import Backup
import BackupOps
import Foundation
import Storage
import Support
import TestSupport
import Testing

private struct RunJSON: Decodable { var id: String; var kind: String; var parent: String? }

/// A tmpfs too small for a backup: a destination that fails with ENOSPC mid-archive.
private final class OpsFullDisk {
    let dir: TempDir
    var path: String { dir.path }
    init() throws {
        dir = try TempDir("hs-ops-full")
        try Subprocess.checked(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir.path])
    }
    deinit { _ = try? Subprocess.run(["umount", "-l", dir.path]) }
}

private func randomFile(_ path: String, bytes: Int) throws {
    var rng = SystemRandomNumberGenerator()
    try Tree.writeBytes(path, (0 ..< bytes).map { _ in UInt8.random(in: 0 ... 255, using: &rng) })
}

private func backup(_ args: [String]) throws -> RunJSON {
    let r = try Tools.run("hs-backup", ["run", "--json"] + args)
    // The live-database writer replaces its `.progress` file while the backup runs: it writes
    // `.progress.tmp`, then renames that over `.progress`, so either name can be left out as
    // replaced (exit 3; the `.tmp` one in CI of session 10, once the scan got faster). Nothing
    // else may be.
    let missing = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])?["missing"] as? [String: Any]
    let onlyProgress = (missing?["first"] as? [[String: Any]] ?? []).allSatisfy {
        guard let path = $0["path"] as? String else { return false }
        return path.hasSuffix("/radarr.db.progress") || path.hasSuffix("/radarr.db.progress.tmp")
    }
    guard r.succeeded || (r.status == 3 && onlyProgress) else { throw ToolError("hs-backup \(args) exited \(r.status): \(r.stderr)") }
    return try JSONDecoder().decode(RunJSON.self, from: Data(r.stdout.utf8))
}

@Suite("hs-backup operations end to end")
struct OpsEndToEndTests {
    @Test("backups of a live WAL database restore consistent and complete, without -wal/-shm")
    func liveDatabaseThroughTheTools() throws {
        let dir = try TempDir("hs-ops-e2e")
        let src = dir.sub("appdata"), dest = dir.sub("nas")
        try Tree.write(src + "/radarr/config.xml", "<Config/>\n")
        let writer = try OpsSQLiteWriter(database: src + "/radarr/radarr.db", minimum: 100)
        var runs: [(id: String, committedBefore: Int)] = []
        for _ in 1 ... 4 {
            let before = writer.committed
            let r = try backup(["--source", src, "--to", dest, "--name", "asteria"])
            runs.append((r.id, before))
            try writer.waitFor(writer.committed + 40)
        }
        #expect(OpsFiles.exists(src + "/radarr/radarr.db-wal") && OpsFiles.exists(src + "/radarr/radarr.db-shm"),
                "the live -wal/-shm are left in place")
        let final = writer.stop()
        #expect(try OpsSQLiteCheck.run(src + "/radarr/radarr.db").counter == final)
        for (i, run) in runs.enumerated() {
            // No -wal/-shm in any archive.
            let archive = dest + "/asteria/\(run.id).tar.gz"
            if OpsFiles.exists(archive) {
                let listing = try Subprocess.checked(["tar", "-tzf", archive]).stdout
                #expect(!listing.contains("-wal") && !listing.contains("-shm"), "\(listing)")
            }
            let target = dir.sub("restore-\(i)")
            let r = try Tools.run("hs-restore", ["--from", dest, "--name", "asteria", "--backup", run.id, "--to", target])
            #expect(r.succeeded, "\(r.stderr)")
            let db = target + "/radarr/radarr.db"
            #expect(!OpsFiles.exists(db + "-wal") && !OpsFiles.exists(db + "-shm"))
            let check = try OpsSQLiteCheck.run(db)
            #expect(check.consistent, "backup \(i) \(run.id): \(check)")
            #expect(check.counter >= run.committedBefore, "backup \(i) lost commits made before it started: \(check.counter) < \(run.committedBefore)")
            #expect(check.journalMode == "delete")
        }
    }

    @Test("prune on dated chains: kept set follows the policy, chains stay whole, every kept backup restores",
          arguments: DestKind.allCases)
    func pruneDatedChains(_ kind: DestKind) throws {
        let dir = try TempDir("hs-ops-e2e")
        let target = try TestDestination(kind)  // a local directory or an nfs-ganesha export
        let src = dir.sub("appdata"), dest = target.spec
        try Tree.makeSample(src)
        // (date, full?) in order; incrementals chain on the previous backup.
        let plan: [(String, Bool)] = [("2026-09-01", true), ("2026-09-02", false), ("2026-09-09", false),
                                      ("2026-10-01", true), ("2026-10-05", false),
                                      ("2026-10-20", true), ("2026-11-01", false), ("2026-11-02", false), ("2026-11-03", false)]
        var ids: [String] = []
        var trees: [String: [String: String]] = [:]
        for (i, (_, full)) in plan.enumerated() {
            try Tree.write(src + "/radarr/version.txt", "version \(i)\n")
            try Tree.write(src + "/sonarr/run-\(i).log", "run \(i)\n")
            let r = try backup(["--source", src, "--to", dest, "--name", "h"] + (full ? ["--full"] : []))
            #expect(r.kind == (full ? "full" : "incremental"))
            if !full { #expect(r.parent == ids.last) }
            ids.append(r.id)
            trees[r.id] = try Tree.describe(src, skipping: ["plex/Plex Media Server/Cache"])  // default exclude
        }
        // Date the backups: rewrite each manifest header's start time and its keyless index's,
        // which prune reads (the ids keep their order); the index records the rewritten
        // manifest's size and SHA-256, as verify checks them.
        let set = BackupSet(destination: target.destination, name: "h")
        for (id, (day, _)) in zip(ids, plan) {
            var m = try set.loadManifest(id)
            m.header.started = OpsChain.date(day).timeIntervalSince1970
            let encoded = try m.encoded()
            try set.destination.writeAtomically(set.manifestPath(id), contents: encoded)
            var index = try #require(try set.readIndex(id))
            index.started = m.header.started
            index.manifest = StoredFile(id: id, size: UInt64(encoded.count), sha256: Digest(SHA256Hasher.hash(encoded)))
            try set.destination.writeAtomically(set.indexPath(id), contents: index.encoded())  // writeIndex writes `.partial`
        }
        // daily 2 -> 11-03, 11-02; monthly 3 -> 11-03, 10-20, 09-09; chains add 11-01 and 09-02, 09-01.
        let expectKept = [0, 1, 2, 5, 6, 7, 8].map { ids[$0] }, expectRemoved = [ids[3], ids[4]]
        let env = ["TZ": "UTC"]
        let args = ["prune", "--to", dest, "--name", "h", "--keep-daily", "2", "--keep-monthly", "3"]
        let dry = try Tools.run("hs-backup", args + ["--dry-run", "--json"], environment: env)
        #expect(dry.succeeded, "\(dry.stderr)")
        let dryReport = try JSONDecoder().decode(PruneReport.self, from: Data(dry.stdout.utf8))
        #expect(dryReport.dryRun && Set(dryReport.removed.map(\.id)) == Set(expectRemoved))
        #expect(try set.committedIDs() == ids, "a dry run removes nothing")

        let real = try Tools.run("hs-backup", args, environment: env)
        #expect(real.succeeded, "\(real.stderr)")
        #expect(real.stdout.contains("removed 2 backups"), "\(real.stdout)")
        #expect(real.stdout.contains("needed by \(ids[2])"), "\(real.stdout)")
        #expect(try set.committedIDs() == expectKept)
        for id in expectRemoved {
            #expect(try set.destination.stat(set.archivePath(id)) == nil && set.destination.stat(set.manifestPath(id)) == nil)
        }
        #expect(try Tools.run("hs-backup", ["verify", "--to", dest, "--name", "h"]).succeeded)
        for id in expectKept {
            let target = dir.sub("restore-\(id)")
            let r = try Tools.run("hs-restore", ["--from", dest, "--name", "h", "--backup", id, "--to", target])
            #expect(r.succeeded, "\(id): \(r.stderr)")
            let diff = Tree.diff(trees[id]!, try Tree.describe(target))
            #expect(diff.isEmpty, "\(id): \(diff.prefix(5))")
        }
        // A second prune with the same policy has nothing left to do.
        let again = try Tools.run("hs-backup", args, environment: env)
        #expect(again.succeeded && again.stdout.contains("removed 0 backups"), "\(again.stdout)")
        // Without a policy: usage error, nothing removed.
        let none = try Tools.run("hs-backup", ["prune", "--to", dest, "--name", "h"])
        #expect(none.status == 2 && none.stderr.contains("--keep-last"))
        #expect(try set.committedIDs() == expectKept)
    }

    @Test("--stop-stacks: restarted after a backup, and after a failed one")
    func stopStacksThroughTheTool() throws {
        let dir = try TempDir("hs-ops-e2e"), compose = try TempDir("hs-ops-e2e")
        let name = OpsDocker.uniqueName("e")
        defer { OpsDocker.down(name) }
        try OpsDocker.up(name, in: compose)
        #expect(try OpsDocker.waitState(name, "app", "running") == "running")
        func startedAt() throws -> String {
            try Subprocess.checked(["docker", "inspect", "-f", "{{.State.StartedAt}}", "\(name)-app-1"]).stdout
        }
        try Tree.write(dir.sub("appdata/app/config.yml"), "a: 1\n")
        let first = try startedAt()
        let ok = try Tools.run("hs-backup", ["run", "--source", dir.sub("appdata"), "--to", dir.sub("nas"), "--name", "h",
                                             "--stop-stacks", name])
        #expect(ok.succeeded, "\(ok.stderr)")
        #expect(try OpsDocker.state(name, "app") == "running" && OpsDocker.state(name, "worker") == "running")
        let second = try startedAt()
        #expect(second != first, "the container was stopped and started again")

        let full = try OpsFullDisk()
        try randomFile(dir.sub("appdata/app/big.bin"), bytes: 1 << 20)
        let failed = try Tools.run("hs-backup", ["run", "--source", dir.sub("appdata"), "--to", full.path, "--name", "h",
                                                 "--stop-stacks", name])
        #expect(failed.status == 1, "\(failed.stdout) \(failed.stderr)")
        #expect(try OpsDocker.state(name, "app") == "running" && OpsDocker.state(name, "worker") == "running")
        #expect(try startedAt() != second, "stopped and started again around the failed backup")
    }

    @Test("--notify posts failures to ntfy, --ping reports down and up")
    func notificationsThroughTheTool() throws {
        let server = try OpsHTTPRecorder()
        let dir = try TempDir("hs-ops-e2e")
        try randomFile(dir.sub("appdata/plex/blob.bin"), bytes: 1 << 20)
        let full = try OpsFullDisk()
        let notify = ["--notify", server.base + "/hs-backups-SECRET", "--ping", server.base + "/api/push/SECRETTOKEN?status=up&msg=OK&ping="]
        let failed = try Tools.run("hs-backup", ["run", "--source", dir.sub("appdata"), "--to", full.path, "--name", "io"] + notify)
        #expect(failed.status == 1)
        #expect(!(failed.stdout + failed.stderr).contains("SECRET"), "secrets in the output: \(failed.stderr)")
        let post = try #require(server.requests.first { $0.method == "POST" })
        #expect(post.path == "/hs-backups-SECRET")
        #expect(post.headers["title"] == "hs-backup run FAILED on io")
        #expect(post.headers["priority"] == "high")
        #expect(!post.body.isEmpty)
        let down = try #require(server.requests.first { $0.method == "GET" })
        #expect(down.query["status"] == "down")

        let ok = try Tools.run("hs-backup", ["run", "--source", dir.sub("appdata"), "--to", dir.sub("nas"), "--name", "io"] + notify)
        #expect(ok.succeeded, "\(ok.stderr)")
        let reqs = server.requests
        #expect(reqs.count == 3, "success sends only the ping without --notify-success: \(reqs.map(\.path))")
        #expect(reqs.last?.query["status"] == "up")
        #expect(reqs.last?.query["msg"]?.contains("backup") == true)

        let verify = try Tools.run("hs-backup", ["verify", "--to", dir.sub("nas"), "--name", "io", "--notify-success"] + notify)
        #expect(verify.succeeded, "\(verify.stderr)")
        #expect(server.requests.count == 5)
        #expect(server.requests.contains { $0.headers["title"] == "hs-backup verify OK on io" })

        let bad = try Tools.run("hs-backup", ["run", "--source", dir.sub("appdata"), "--to", dir.sub("nas"), "--notify", "ntfy.sh/x"])
        #expect(bad.status == 2 && bad.stderr.contains("--notify"))
    }
}

/// A python3 process holding an EXCLUSIVE lock on a rollback-journal database until released.
private final class OpsLockHolder: @unchecked Sendable {
    static let script = """
    import sqlite3, sys, time, os
    db, ready, release = sys.argv[1:4]
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=DELETE")
    con.execute("CREATE TABLE IF NOT EXISTS t(x)")
    con.execute("INSERT INTO t VALUES (1)")
    con.execute("BEGIN EXCLUSIVE")
    con.execute("INSERT INTO t VALUES (2)")
    open(ready, "w").write("locked")
    while not os.path.exists(release):
        time.sleep(0.05)
    con.execute("ROLLBACK")
    """
    private let process = Process()
    private let release: String

    init(database: String) throws {
        release = database + ".release"
        let ready = database + ".ready"
        try Self.script.write(toFile: database + ".lock.py", atomically: true, encoding: .utf8)
        process.executableURL = URL(fileURLWithPath: Subprocess.which("python3")!)
        process.arguments = [database + ".lock.py", database, ready, release]
        try process.run()
        let deadline = Date().addingTimeInterval(20)
        while !OpsFiles.exists(ready) {
            guard Date() < deadline, process.isRunning else { throw ToolError("lock holder did not start") }
            usleep(20_000)
        }
    }

    func unlock() {
        _ = FileManager.default.createFile(atPath: release, contents: nil)
        process.waitUntilExit()
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() } }
}

@Suite("hs-backup operations: locked databases and signals")
struct OpsEndToEndSignalTests {
    @Test("a database locked past the busy timeout is archived as-is with a warning, and ntfy hears of it")
    func lockedDatabaseFallsBack() throws {
        let dir = try TempDir("hs-ops-e2e")
        let server = try OpsHTTPRecorder()
        try Tree.write(dir.sub("appdata/app/notes.txt"), "x\n")
        let holder = try OpsLockHolder(database: dir.sub("appdata/app/locked.db"))
        defer { holder.unlock() }
        let r = try Tools.run("hs-backup", ["run", "--json", "--source", dir.sub("appdata"), "--to", dir.sub("nas"), "--name", "h",
                                            "--notify", server.base + "/topic"],
                              environment: ["HS_BACKUP_SQLITE_BUSY_TIMEOUT": "1"])
        #expect(r.succeeded, "\(r.stderr)")
        #expect(r.stderr.contains("app/locked.db") && r.stderr.contains("sqlite3_backup_step"), "\(r.stderr)")
        let summary = try JSONDecoder().decode(BackupSummary.self, from: Data(r.stdout.utf8))
        #expect(summary.warnings.contains { $0.contains("Archived the live file") })
        let listing = try Subprocess.checked(["tar", "-tzf", dir.sub("nas/h/\(summary.id).tar.gz")]).stdout
        #expect(listing.contains("app/locked.db\n") && listing.contains("app/locked.db-journal"), "\(listing)")
        let post = try #require(server.requests.first)
        #expect(post.headers["title"] == "hs-backup run OK with warnings on h")
        #expect(post.body.contains("locked.db"))
    }

    @Test("SIGTERM mid-run: stacks start again, snapshots are removed, Kuma hears 'down', exit 143")
    func sigtermRestartsStacks() throws {
        let dir = try TempDir("hs-ops-e2e"), compose = try TempDir("hs-ops-e2e")
        let server = try OpsHTTPRecorder()
        let name = OpsDocker.uniqueName("s")
        defer { OpsDocker.down(name) }
        try OpsDocker.up(name, in: compose)
        #expect(try OpsDocker.waitState(name, "app", "running") == "running")
        let tmp = dir.sub("tmp")
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        // A WAL database that is captured first ("a/"), then a locked one that keeps the run busy.
        for sub in ["appdata/a", "appdata/b"] { try FileManager.default.createDirectory(atPath: dir.sub(sub), withIntermediateDirectories: true) }
        let writer = try OpsSQLiteWriter(database: dir.sub("appdata/a/app.db"), minimum: 20)
        writer.stop()
        let holder = try OpsLockHolder(database: dir.sub("appdata/b/locked.db"))
        defer { holder.unlock() }

        let p = Process()
        p.executableURL = URL(fileURLWithPath: Tools.path("hs-backup"))
        p.arguments = ["run", "--source", dir.sub("appdata"), "--to", dir.sub("nas"), "--name", "h",
                       "--stop-stacks", name, "--ping", server.base + "/api/push/T"]
        p.environment = ProcessInfo.processInfo.environment.merging(["TMPDIR": tmp, "HS_BACKUP_SQLITE_BUSY_TIMEOUT": "60"]) { $1 }
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        // Wait until the stack is stopped and the first database is captured.
        let deadline = Date().addingTimeInterval(30)
        var snapshotSeen = false
        while Date() < deadline {
            let dirs = (try? FileManager.default.contentsOfDirectory(atPath: tmp)) ?? []
            snapshotSeen = dirs.contains { d in ((try? FileManager.default.contentsOfDirectory(atPath: tmp + "/" + d)) ?? []).count > 0 }
            if snapshotSeen, try OpsDocker.state(name, "app") == "exited" { break }
            usleep(100_000)
        }
        #expect(snapshotSeen, "a snapshot was being kept in TMPDIR")
        #expect(try OpsDocker.state(name, "app") == "exited", "the stack is stopped while the backup runs")
        #expect(p.isRunning)
        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
        #expect(p.terminationReason == .exit && p.terminationStatus == 143)
        #expect(try OpsDocker.waitState(name, "app", "running") == "running")
        #expect(try OpsDocker.state(name, "worker") == "running")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: tmp)) ?? []).isEmpty, "snapshots removed")
        #expect(server.requests.last?.query["status"] == "down")
        #expect(server.requests.last?.query["msg"]?.contains("signal 15") == true)
    }
}
