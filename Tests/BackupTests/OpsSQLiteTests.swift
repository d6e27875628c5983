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
        let snapshots = try SQLiteSnapshot(parent: dir.path)
        #expect(OpsFiles.mode(snapshots.directory) == 0o700)
        for round in 1...6 {
            let walInode = OpsFiles.inode(db + "-wal")
            let walSize = try #require(OpsFiles.size(db + "-wal"))
            let committedBefore = writer.committed
            let info = try snapshots.capture(db)
            #expect(OpsFiles.mode(info.path) == 0o600)
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
        snapshots.cleanup()
        #expect(!OpsFiles.exists(snapshots.directory))
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
        let snapshots = try SQLiteSnapshot(parent: dir.path)
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
        let snapshots = try SQLiteSnapshot(parent: dir.path)
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
        let snapshots = try SQLiteSnapshot(parent: dir.path)
        #expect(SQLiteSnapshot.isDatabase(dir.sub("broken.db")))
        let error = #expect(throws: SQLiteSnapshotError.self) { try snapshots.capture(dir.sub("broken.db")) }
        #expect(error?.description.contains("broken.db") == true)
        #expect(try FileManager.default.contentsOfDirectory(atPath: snapshots.directory).isEmpty)
    }
}

@Suite("SQLite snapshot directories")
struct OpsSQLiteDirectoryTests {
    @Test("directories of dead runs are removed, live ones kept")
    func abandoned() throws {
        let dir = try TempDir("hs-ops-sqlite")
        // A pid that is certainly gone: a finished child.
        let gone = try Subprocess.checked(["sh", "-c", "echo $$"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try FileManager.default.createDirectory(atPath: dir.sub("hs-backup-sqlite.\(gone).abc123/x"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir.sub("hs-backup-sqlite.1.abc123"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir.sub("unrelated.\(gone).abc"), withIntermediateDirectories: true)
        let s = try SQLiteSnapshot(parent: dir.path)
        #expect(!OpsFiles.exists(dir.sub("hs-backup-sqlite.\(gone).abc123")))
        #expect(OpsFiles.exists(dir.sub("hs-backup-sqlite.1.abc123")), "pid 1 is alive")
        #expect(OpsFiles.exists(dir.sub("unrelated.\(gone).abc")))
        #expect(OpsFiles.exists(s.directory) && s.directory.contains("hs-backup-sqlite.\(getpid())."))
    }
}
