// SQLiteSnapshot: consistent copies of live SQLite databases for the backup runner.
//
// A regular file that starts with the 16 bytes "SQLite format 3\0" is copied through SQLite's
// online backup API (the source opened read-only, all pages in one step, retried while the
// database is busy) into a private temporary file, which the runner streams into the archive
// under the database's own name. The snapshot is switched to rollback (DELETE) journal mode, so
// the restored file opens cleanly without any -wal/-shm. The live database's -wal and -shm are
// never checkpointed, truncated, deleted or archived. (A WAL database that no one has open gets
// an empty -wal and a -shm created by SQLite for the read, with the database's owner and mode.)
//
// Guarantees: the snapshot is a transactionally consistent state of the database that contains
// every transaction committed before the capture started. Not guaranteed: consistency *between*
// two databases, or between a database and other files (stop the stack with --stop-stacks for
// that). A capture needs free space in the temporary directory equal to the database's size.
//
// This file is the only importer of CSQLite.
import CSQLite
import Backup
import FoundationEssentials
import Glibc
import Support
import Synchronization

/// Result of one snapshot.
package struct SQLiteSnapshotInfo: Sendable, Equatable {
    /// Path of the snapshot file (inside the snapshot directory).
    package var path: String
    /// Size of the snapshot in bytes.
    package var size: UInt64
    /// Pages copied.
    package var pages: Int
    /// How often the copy had to wait because the source was busy or locked.
    package var busyRetries: Int
}

/// Errors from capturing a database.
package struct SQLiteSnapshotError: Error, CustomStringConvertible {
    package var path: String
    package var call: String
    package var code: Int32
    package var detail: String
    package var description: String {
        "SQLite snapshot of \(NameEscape.escape(path)) failed in \(call) (code \(code)): \(detail). "
            + "The database was not changed; check that it is readable and that the temporary "
            + "directory has free space for a copy of it."
    }
}

/// Captures consistent snapshots of live SQLite databases into a private temporary directory
/// (mode 0700; snapshot files mode 0600). Call `cleanup()` (or let the value go) to remove it.
///
/// The directory is made by the first capture, not before: a run of a tree without databases
/// (most runs of most sets) neither lists the parent directory nor creates anything in it.
/// That first capture also removes the directories of runs that were killed before their
/// cleanup (`removeAbandoned`): only a run that captured a database can have left one, and a
/// host with databases captures them at every run.
package final class SQLiteSnapshot: Sendable {
    /// The first 16 bytes of every SQLite 3 database file.
    package static let magic: [UInt8] = Array("SQLite format 3".utf8) + [0]
    /// Files next to a database that belong to it and are never archived when it is captured.
    package static let companionSuffixes = ["-wal", "-shm", "-journal"]

    /// Where the private directory is made: $TMPDIR, /tmp, or the `parent` given.
    package let parent: String
    /// How long to keep retrying while the source stays busy or locked.
    package let busyTimeout: TimeInterval
    /// Pages per `sqlite3_backup_step`; -1 copies everything in one step (one read transaction,
    /// so a concurrent writer cannot restart the copy).
    package let pagesPerStep: Int32
    private let state = Mutex((counter: 0, removed: false, directory: String?.none))

    /// Sets up snapshots; nothing is created or listed until the first `capture`.
    /// - Parameters:
    ///   - parent: where to create the directory (default: $TMPDIR or /tmp). Must be on this host.
    ///   - busyTimeout: bound on retries while the source database is busy or locked.
    ///   - pagesPerStep: pages per backup step (-1 = all at once).
    package init(parent: String? = nil, busyTimeout: TimeInterval = 60, pagesPerStep: Int32 = -1) {
        self.parent = parent ?? (Sys.environment("TMPDIR") ?? "/tmp")
        self.busyTimeout = busyTimeout
        self.pagesPerStep = pagesPerStep
    }

    deinit { cleanup() }

    /// The private directory the snapshots are written to; nil until the first capture made it.
    package var directory: String? { state.withLock { $0.directory } }

    /// Removes snapshot directories left by runs that were killed (their process is gone).
    /// Directory names carry the creating pid: `hs-backup-sqlite.<pid>.XXXXXX`.
    package static func removeAbandoned(in parent: String) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: parent) else { return }
        for name in names where name.hasPrefix("hs-backup-sqlite.") {
            let parts = name.split(separator: ".")
            guard parts.count == 3, let pid = Int32(parts[1]), pid > 0 else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH {
                try? FileManager.default.removeItem(atPath: "\(parent)/\(name)")
            }
        }
    }

    /// Removes the snapshot directory (when one was made) and everything in it. Idempotent;
    /// a capture after it fails.
    package func cleanup() {
        let directory = state.withLock { s -> String? in
            guard !s.removed else { return nil }
            s.removed = true
            return s.directory
        }
        if let directory { try? FileManager.default.removeItem(atPath: directory) }
    }

    /// The next snapshot file's path, making the directory on the first call (after removing
    /// abandoned ones).
    /// - Throws: `SQLiteSnapshotError` naming `source` when the directory cannot be made.
    private func nextTarget(for source: String) throws(SQLiteSnapshotError) -> String {
        try state.withLock { s throws(SQLiteSnapshotError) -> String in
            guard !s.removed else {
                throw SQLiteSnapshotError(path: source, call: "capture", code: 0, detail: "the snapshot directory was already removed")
            }
            if s.directory == nil {
                Self.removeAbandoned(in: parent)
                var template = Array("\(parent)/hs-backup-sqlite.\(getpid()).XXXXXX".utf8CString)
                guard let p = mkdtemp(&template) else {
                    throw SQLiteSnapshotError(path: source, call: "mkdtemp(\(parent)/hs-backup-sqlite.*)", code: errno,
                                              detail: "\(Sys.strerror(errno)); set TMPDIR to a writable local directory")
                }
                let dir = String(cString: p)
                chmod(dir, 0o700)
                s.directory = dir
            }
            s.counter += 1
            return "\(s.directory!)/snapshot-\(s.counter).db"
        }
    }

    /// True when `bytes` starts with the SQLite 3 header.
    package static func hasMagic(_ bytes: some Collection<UInt8>) -> Bool {
        bytes.count >= magic.count && zip(bytes.prefix(magic.count), magic).allSatisfy { $0 == $1 }
    }

    /// True when `path` is a regular file (not following symlinks) that starts with the SQLite 3
    /// header. Unreadable files are reported as not being databases.
    package static func isDatabase(_ path: String) -> Bool {
        var st = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_size >= 512 else { return false }
        return hasDatabaseHeader(path)
    }

    /// True when the file at `path` starts with the SQLite 3 header (one open + pread; a final
    /// symlink is not followed, a FIFO does not block). For callers that know it is a regular file.
    package static func hasDatabaseHeader(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var head: (UInt64, UInt64) = (0, 0)
        let n = withUnsafeMutableBytes(of: &head) { pread(fd, $0.baseAddress, 16, 0) }
        return n == 16 && withUnsafeBytes(of: &head) { hasMagic($0) }
    }

    /// True when `name` (a path or file name) is the -wal/-shm/-journal companion of a database
    /// file, i.e. `isDatabase(name minus suffix)`.
    package static func isCompanion(_ path: String) -> Bool {
        for suffix in companionSuffixes where path.hasSuffix(suffix) && path.count > suffix.count {
            if isDatabase(String(path.dropLast(suffix.count))) { return true }
        }
        return false
    }

    /// Copies the live database at `source` into a new snapshot file in `directory`.
    /// The caller removes the snapshot with `remove(_:)` once it is archived.
    /// - Parameter source: path of the database file.
    /// - Returns: where the snapshot is and how the copy went.
    /// - Throws: `SQLiteSnapshotError` naming the failed call; nothing is left behind.
    ///
    /// The corresponding SQLite calls are `sqlite3_open_v2(SQLITE_OPEN_READONLY)`,
    /// `sqlite3_backup_init/step/finish`.
    package func capture(_ source: String) throws -> SQLiteSnapshotInfo {
        let target = try nextTarget(for: source)
        // Create the file ourselves so it is private (0600) from the first byte.
        let fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw SQLiteSnapshotError(path: source, call: "open(\(target))", code: errno,
                                      detail: Sys.strerror(errno))
        }
        close(fd)
        do {
            return try copy(source, to: target)
        } catch {
            remove(target)
            throw error
        }
    }

    /// Removes one snapshot file (and any journal SQLite left next to it).
    package func remove(_ snapshot: String) {
        for suffix in [""] + Self.companionSuffixes { unlink(snapshot + suffix) }
    }

    /// Captures `source`, hands the snapshot to `body`, and removes it afterwards.
    package func withSnapshot<T>(of source: String, _ body: (SQLiteSnapshotInfo) throws -> T) throws -> T {
        let info = try capture(source)
        defer { remove(info.path) }
        return try body(info)
    }

    // MARK: - SQLite calls

    /// libsqlite3, loaded by the first capture (CSQLite: not linked, so a start without
    /// databases does not pay its load).
    private func library(_ source: String) throws -> UnsafePointer<hs_sqlite> {
        guard let api = hs_sqlite() else {
            throw SQLiteSnapshotError(path: source, call: "dlopen(libsqlite3.so.0)", code: -1,
                                      detail: String(cString: hs_sqlite_error()) + "; install Debian's libsqlite3-0 (apt-get install libsqlite3-0)")
        }
        return api
    }

    /// SQLite's message text (never NULL in practice).
    private static func text(_ message: UnsafePointer<CChar>?) -> String {
        message.map { String(cString: $0) } ?? "no message"
    }

    private func copy(_ source: String, to target: String) throws -> SQLiteSnapshotInfo {
        let api = try library(source)
        var src: OpaquePointer?
        var rc = api.pointee.sqlite3_open_v2(source, &src, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nil)
        defer { if src != nil { _ = api.pointee.sqlite3_close_v2(src) } }
        guard rc == SQLITE_OK, let src else {
            throw failure(source, "sqlite3_open_v2(readonly)", rc, src)
        }
        // A read-only connection cannot checkpoint anyway; make sure it never tries.
        _ = csqlite_no_checkpoint_on_close(src)
        _ = api.pointee.sqlite3_busy_timeout(src, 0)  // we retry ourselves, bounded

        var dstHandle: OpaquePointer?
        rc = api.pointee.sqlite3_open_v2(target, &dstHandle, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nil)
        defer { if dstHandle != nil { _ = api.pointee.sqlite3_close_v2(dstHandle) } }
        guard rc == SQLITE_OK, let dst = dstHandle else { throw failure(source, "sqlite3_open_v2(\(target))", rc, dstHandle) }
        try exec(dst, "PRAGMA synchronous=OFF", source: source)

        guard let backup = api.pointee.sqlite3_backup_init(dst, "main", src, "main") else {
            throw failure(source, "sqlite3_backup_init", api.pointee.sqlite3_errcode(dst), dst)
        }
        var retries = 0
        let deadline = Date().addingTimeInterval(busyTimeout)
        var delay: useconds_t = 10_000
        while true {
            rc = api.pointee.sqlite3_backup_step(backup, pagesPerStep)
            if rc == SQLITE_DONE { break }
            if rc == SQLITE_OK { continue }
            if rc == SQLITE_BUSY || rc == SQLITE_LOCKED, Date() < deadline {
                retries += 1
                usleep(delay)
                delay = min(delay * 2, 500_000)
                continue
            }
            let pages = Int(api.pointee.sqlite3_backup_pagecount(backup))
            _ = api.pointee.sqlite3_backup_finish(backup)
            throw SQLiteSnapshotError(path: source, call: "sqlite3_backup_step", code: rc,
                                      detail: Self.text(api.pointee.sqlite3_errstr(rc))
                                        + (rc == SQLITE_BUSY || rc == SQLITE_LOCKED
                                           ? " for \(Int(busyTimeout)) s (\(pages) pages)" : ""))
        }
        let pages = Int(api.pointee.sqlite3_backup_pagecount(backup))
        rc = api.pointee.sqlite3_backup_finish(backup)
        guard rc == SQLITE_OK else { throw failure(source, "sqlite3_backup_finish", rc, dst) }

        // The copied header still says WAL; the restored file must not need a -wal.
        try exec(dst, "PRAGMA journal_mode=DELETE", source: source)
        _ = api.pointee.sqlite3_close_v2(dst)
        dstHandle = nil

        var st = stat()
        guard lstat(target, &st) == 0 else {
            throw SQLiteSnapshotError(path: source, call: "lstat(\(target))", code: errno,
                                      detail: Sys.strerror(errno))
        }
        return SQLiteSnapshotInfo(path: target, size: UInt64(st.st_size), pages: pages, busyRetries: retries)
    }

    private func exec(_ db: OpaquePointer, _ sql: String, source: String) throws {
        let api = try library(source)
        var err: UnsafeMutablePointer<CChar>?
        let rc = api.pointee.sqlite3_exec(db, sql, nil, nil, &err)
        guard rc == SQLITE_OK else {
            let detail = err.map { String(cString: $0) } ?? Self.text(api.pointee.sqlite3_errstr(rc))
            api.pointee.sqlite3_free(err)
            throw SQLiteSnapshotError(path: source, call: "sqlite3_exec(\(sql))", code: rc, detail: detail)
        }
    }

    private func failure(_ path: String, _ call: String, _ rc: Int32, _ db: OpaquePointer?) -> SQLiteSnapshotError {
        guard let api = hs_sqlite() else { return SQLiteSnapshotError(path: path, call: call, code: rc, detail: String(cString: hs_sqlite_error())) }
        let detail = db.map { Self.text(api.pointee.sqlite3_errmsg($0)) } ?? Self.text(api.pointee.sqlite3_errstr(rc))
        return SQLiteSnapshotError(path: path, call: call, code: rc, detail: detail)
    }
}
