// SQLite capture against a real writer process: snapshots of a live WAL database are
// consistent and complete; plain file copies of the same database are not.
import Backup
import BackupOps
import Foundation
import Support
import TestSupport
import Testing

@Suite("SQLite snapshot of live databases")
struct OpsSQLiteTests {
    @Test("header detection: databases, companions, non-databases")
    func detection() throws {
        let dir = try TempDir("hs-ops-sqlite")
        let db = dir.sub("app.db")
        _ = try Subprocess.checked(["sqlite3", db, "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);"])
        try "SQLite format 3 but text".write(toFile: dir.sub("fake.db"), atomically: true, encoding: .utf8)
        try Data(count: 4096).write(to: URL(fileURLWithPath: dir.sub("zeros.db")))
        try Data(count: 100).write(to: URL(fileURLWithPath: dir.sub("app.db-shm")))
        try FileManager.default.createSymbolicLink(atPath: dir.sub("link.db"), withDestinationPath: db)
        #expect(SQLiteSnapshot.isDatabase(db))
        #expect(!SQLiteSnapshot.isDatabase(dir.sub("fake.db")))
        #expect(!SQLiteSnapshot.isDatabase(dir.sub("zeros.db")))
        #expect(!SQLiteSnapshot.isDatabase(dir.sub("link.db")), "symlinks are archived as symlinks")
        #expect(!SQLiteSnapshot.isDatabase(dir.sub("missing.db")))
        #expect(SQLiteSnapshot.isCompanion(dir.sub("app.db-shm")))
        #expect(SQLiteSnapshot.isCompanion(dir.sub("app.db-wal")), "by name, even when absent")
        #expect(!SQLiteSnapshot.isCompanion(dir.sub("fake.db-wal")))
    }

    @Test("snapshots taken while a writer commits are consistent, complete and need no -wal")
    func liveWriterSnapshots() throws {
        let dir = try TempDir("hs-ops-sqlite")
        let db = dir.sub("radarr.db")
        let writer = try OpsSQLiteWriter(database: db, minimum: 100)
        let snapshots = SQLiteSnapshot(parent: dir.path)
        #expect(snapshots.directory == nil, "made by the first capture")
        for round in 1...6 {
            let walInode = OpsFiles.inode(db + "-wal")
            let walSize = try #require(OpsFiles.size(db + "-wal"))
            let committedBefore = writer.committed
            let info = try snapshots.capture(db)
            #expect(OpsFiles.mode(info.path) == 0o600)
            #expect(OpsFiles.mode(try #require(snapshots.directory)) == 0o700)
            // The live WAL is neither removed, replaced nor truncated.
            #expect(OpsFiles.exists(db + "-wal") && OpsFiles.exists(db + "-shm"))
            #expect(OpsFiles.inode(db + "-wal") == walInode)
            #expect((OpsFiles.size(db + "-wal") ?? 0) >= walSize)
            // "Restore" the snapshot alone, under its own name, into an empty directory.
            let restored = dir.sub("restore-\(round)/radarr.db")
            try FileManager.default.createDirectory(atPath: dir.sub("restore-\(round)"), withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: info.path, toPath: restored)
            snapshots.remove(info.path)
            #expect(!OpsFiles.exists(info.path))
            let header = try #require(OpsFiles.bytes(restored))
            #expect(header[18] == 1 && header[19] == 1, "rollback journal mode in the header, not WAL")
            let check = try OpsSQLiteCheck.run(restored)
            #expect(check.consistent, "round \(round): \(check)")
            #expect(check.counter >= committedBefore, "round \(round): snapshot lost commits made before it started (\(check.counter) < \(committedBefore))")
            #expect(check.journalMode == "delete")
            #expect(!OpsFiles.exists(restored + "-wal"))
            try writer.waitFor(writer.committed + 30)
        }
        let last = writer.stop()
        let live = try OpsSQLiteCheck.run(db)
        #expect(live.consistent && live.counter == last, "live database after the snapshots: \(live)")
        let made = try #require(snapshots.directory)
        snapshots.cleanup()
        #expect(!OpsFiles.exists(made))
    }

    @Test("a crashed writer's -wal is read, not touched")
    func crashedWriter() throws {
        let dir = try TempDir("hs-ops-sqlite")
        let db = dir.sub("kuma.db")
        let writer = try OpsSQLiteWriter(database: db, minimum: 120)
        writer.kill()
        let committed = writer.committed
        let walBefore = try #require(OpsFiles.bytes(db + "-wal"))
        #expect(!walBefore.isEmpty)
        let dbBefore = try #require(OpsFiles.bytes(db))
        let snapshots = SQLiteSnapshot(parent: dir.path)
        let check = try snapshots.withSnapshot(of: db) { info in try OpsSQLiteCheck.run(info.path) }
        #expect(check.consistent && check.counter >= committed, "\(check), committed \(committed)")
        #expect(OpsFiles.bytes(db + "-wal") == walBefore, "the -wal must not be checkpointed, truncated or removed")
        #expect(OpsFiles.bytes(db) == dbBefore, "the database file must not be written")
    }

    @Test("a stopped WAL database: -wal/-shm SQLite creates to read it belong to the database's owner")
    func stoppedWALDatabaseOwnership() throws {
        let dir = try TempDir("hs-ops-sqlite")
        let db = dir.sub("app.db")
        _ = try Subprocess.checked(["sqlite3", db, "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (42);"])
        #expect(!OpsFiles.exists(db + "-wal"), "closed cleanly: no -wal")
        chown(db, 1000, 1001)
        chmod(db, 0o660)
        let before = try #require(OpsFiles.bytes(db))
        let snapshots = SQLiteSnapshot(parent: dir.path)
        let rows = try snapshots.withSnapshot(of: db) { info in
            try Subprocess.checked(["sqlite3", "-readonly", info.path, "SELECT x FROM t"]).stdout
        }
        #expect(rows == "42\n")
        #expect(OpsFiles.bytes(db) == before)
        // Read-only WAL readers need a -shm (and -wal); SQLite creates them with the database's
        // owner and mode, so the app (running as its PUID) can still open its database.
        for suffix in ["-wal", "-shm"] where OpsFiles.exists(db + suffix) {
            var st = stat()
            lstat(db + suffix, &st)
            #expect(st.st_uid == 1000 && st.st_gid == 1001 && st.st_mode & 0o777 == 0o660, "\(suffix)")
            #expect(suffix != "-wal" || OpsFiles.size(db + suffix) == 0)
        }
    }

    @Test("plain copies of the same live database lose commits or are torn")
    func plainCopiesAreTorn() throws {
        let dir = try TempDir("hs-ops-sqlite")
        let db = dir.sub("sonarr.db")
        let writer = try OpsSQLiteWriter(database: db, minimum: 100)
        var lostCommits = 0, torn = 0
        var outcomes: [String] = []
        for round in 1...4 {
            // 1. The .db alone (what a file-by-file copy that skips -wal gets).
            let copyDir = dir.sub("copy-\(round)")
            try FileManager.default.createDirectory(atPath: copyDir, withIntermediateDirectories: true)
            let before = writer.committed
            try FileManager.default.copyItem(atPath: db, toPath: copyDir + "/alone.db")
            let alone = try OpsSQLiteCheck.run(copyDir + "/alone.db")
            if alone.counter < before || !alone.consistent { lostCommits += 1 }
            outcomes.append("db alone (committed \(before)): \(alone)")
            // 2. -wal first, .db a moment later (what a tree walk does when the -wal sorts first
            //    or the walk is slow): pages from two moments.
            try FileManager.default.copyItem(atPath: db + "-wal", toPath: copyDir + "/pair.db-wal")
            // Wait for a checkpoint: the writer then restarts the WAL with new salts (bytes 16-23
            // of the WAL header), and the .db holds pages newer than the copied WAL.
            let salt = try #require(OpsFiles.bytes(copyDir + "/pair.db-wal")).dropFirst(16).prefix(8)
            let deadline = Date().addingTimeInterval(30)
            while OpsFiles.bytes(db + "-wal").map({ $0.dropFirst(16).prefix(8) }) == salt, Date() < deadline {
                try writer.waitFor(writer.committed + 5)
            }
            try writer.waitFor(writer.committed + 20)
            try FileManager.default.copyItem(atPath: db, toPath: copyDir + "/pair.db")
            let pair = try OpsSQLiteCheck.run(copyDir + "/pair.db")
            if !pair.consistent { torn += 1 }
            outcomes.append("-wal then db: \(pair)")
        }
        writer.stop()
        #expect(lostCommits >= 1, "no plain .db copy missed a commit: \(outcomes)")
        #expect(torn >= 1, "no -wal/.db copy pair was torn: \(outcomes)")
        print("plain copies: \(lostCommits)/4 lost commits, \(torn)/4 torn")
    }

    @Test("a file that is not a database fails with the path and call named, leaving nothing")
    func notADatabase() throws {
        let dir = try TempDir("hs-ops-sqlite")
        var bytes = SQLiteSnapshot.magic
        bytes += [UInt8](repeating: 0xAB, count: 4000)
        try Data(bytes).write(to: URL(fileURLWithPath: dir.sub("broken.db")))
        let snapshots = SQLiteSnapshot(parent: dir.path)
        #expect(SQLiteSnapshot.isDatabase(dir.sub("broken.db")))
        let error = #expect(throws: SQLiteSnapshotError.self) { try snapshots.capture(dir.sub("broken.db")) }
        #expect(error?.description.contains("broken.db") == true)
        #expect(try FileManager.default.contentsOfDirectory(atPath: #require(snapshots.directory)).isEmpty)
    }
}

@Suite("SQLite snapshot directories")
struct OpsSQLiteDirectoryTests {
    @Test("the first capture makes the directory and removes those of dead runs, live ones kept; nothing before it")
    func abandoned() throws {
        let dir = try TempDir("hs-ops-sqlite")
        // A pid that is certainly gone: a finished child.
        let gone = try Subprocess.checked(["sh", "-c", "echo $$"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try FileManager.default.createDirectory(atPath: dir.sub("hs-backup-sqlite.\(gone).abc123/x"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir.sub("hs-backup-sqlite.1.abc123"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir.sub("unrelated.\(gone).abc"), withIntermediateDirectories: true)
        let data = try TempDir("hs-ops-sqlite-data")
        _ = try Subprocess.checked(["sqlite3", data.sub("app.db"), "CREATE TABLE t(x); INSERT INTO t VALUES (7);"])
        let before = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        let s = SQLiteSnapshot(parent: dir.path)
        #expect(s.directory == nil)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() == before, "nothing made or removed before a capture")
        let rows = try s.withSnapshot(of: data.sub("app.db")) { info in
            try Subprocess.checked(["sqlite3", "-readonly", info.path, "SELECT x FROM t"]).stdout
        }
        #expect(rows == "7\n")
        #expect(!OpsFiles.exists(dir.sub("hs-backup-sqlite.\(gone).abc123")))
        #expect(OpsFiles.exists(dir.sub("hs-backup-sqlite.1.abc123")), "pid 1 is alive")
        #expect(OpsFiles.exists(dir.sub("unrelated.\(gone).abc")))
        let made = try #require(s.directory)
        #expect(OpsFiles.exists(made) && made.contains("hs-backup-sqlite.\(getpid()).") && OpsFiles.mode(made) == 0o700)
        s.cleanup()
        #expect(!OpsFiles.exists(made))
        #expect(throws: SQLiteSnapshotError.self) { try s.capture(data.sub("app.db")) }
    }

    @Test("hs-backup run: a tree without databases makes nothing in TMPDIR and leaves it alone; one with a database cleans up after dead runs and itself")
    func runMakesTheDirectoryOnlyForDatabases() throws {
        let tmp = try TempDir("hs-ops-sqlite-tmp")
        let work = try TempDir("hs-ops-sqlite-run")
        let gone = try Subprocess.checked(["sh", "-c", "echo $$"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let abandoned = tmp.sub("hs-backup-sqlite.\(gone).zz9xyz")
        try FileManager.default.createDirectory(atPath: abandoned + "/x", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: work.sub("src/app"), withIntermediateDirectories: true)
        try Data("plain text, no database\n".utf8).write(to: URL(fileURLWithPath: work.sub("src/app/notes.txt")))
        let env = ["TMPDIR": tmp.path]
        let plain = try Tools.run("hs-backup", ["run", "--source", work.sub("src"), "--to", work.sub("dest"), "--name", "s"], environment: env)
        #expect(plain.status == 0, "\(plain.stdout)\(plain.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp.path) == ["hs-backup-sqlite.\(gone).zz9xyz"],
                "a run without databases neither makes a snapshot directory nor cleans")
        // A WAL database (header bytes 18-19 = 2): its snapshot is switched to rollback mode (1),
        // so the restored header says whether the run captured it.
        _ = try Subprocess.checked(["sqlite3", work.sub("src/app/app.db"), "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (7);"])
        #expect(OpsFiles.bytes(work.sub("src/app/app.db"))?[18] == 2)
        let withDB = try Tools.run("hs-backup", ["run", "--source", work.sub("src"), "--to", work.sub("dest"), "--name", "s"], environment: env)
        #expect(withDB.status == 0, "\(withDB.stdout)\(withDB.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp.path).isEmpty, "the dead run's directory and this run's are gone")
        let restored = try Tools.run("hs-restore", ["--from", work.sub("dest"), "--name", "s", "--to", work.sub("restored")])
        #expect(restored.status == 0, "\(restored.stderr)")
        #expect(OpsFiles.bytes(work.sub("restored/app/app.db"))?[18] == 1, "the database was archived from a snapshot")
    }
}
