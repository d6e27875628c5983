// The backup runner's ContentProvider for SQLite: every regular file that starts with
// "SQLite format 3\0" is archived from an online-backup snapshot (`SQLiteSnapshot`) instead of
// being read live; the captured database's -wal/-shm/-journal are left out of the archive.
//
// If a capture fails (the database stays locked past the busy timeout, or it is damaged), the
// file is archived as it is on disk, together with its -wal, and a warning says so: a
// best-effort copy beats no copy, and the warning reaches cron mail and the notification.
import Foundation

/// Substitutes SQLite snapshots for live database files during a backup scan.
package final class SQLiteCaptureProvider: ContentProvider, @unchecked Sendable {
    private let snapshots: SQLiteSnapshot
    private let warn: (String) -> Void
    private let lock = NSLock()
    /// Absolute paths of databases captured in this run (their companions are omitted).
    private var captured: Set<String> = []
    private var _warnings: [String] = []
    private var _count = 0
    private var _bytes: UInt64 = 0

    /// - Parameters:
    ///   - snapshots: where snapshots are written (a private temp directory).
    ///   - warn: called with each warning as it happens (e.g. `Reporter.warning`).
    package init(snapshots: SQLiteSnapshot, warn: @escaping (String) -> Void = { _ in }) {
        self.snapshots = snapshots
        self.warn = warn
    }

    /// Warnings so far (captures that fell back to the live file).
    package var warnings: [String] { lock.lock(); defer { lock.unlock() }; return _warnings }
    /// Databases captured so far, and their snapshot bytes.
    package var capturedCount: Int { lock.lock(); defer { lock.unlock() }; return _count }
    package var capturedBytes: UInt64 { lock.lock(); defer { lock.unlock() }; return _bytes }

    package func plan(relativePath: String, absolutePath: String) throws -> ContentPlan {
        for suffix in SQLiteSnapshot.companionSuffixes where absolutePath.hasSuffix(suffix) {
            let db = String(absolutePath.dropLast(suffix.count))
            lock.lock(); let isCaptured = captured.contains(db); lock.unlock()
            // The scan visits "x.db" before "x.db-wal" (component order), so this is known.
            if isCaptured { return .omit }
            // A -shm is only shared memory: never useful in a backup when its database exists.
            if suffix == "-shm", SQLiteSnapshot.isDatabase(db) { return .omit }
        }
        guard SQLiteSnapshot.isDatabase(absolutePath) else { return .asIs }
        do {
            let info = try snapshots.capture(absolutePath)
            lock.lock()
            captured.insert(absolutePath)
            _count += 1
            _bytes += info.size
            lock.unlock()
            let snaps = snapshots
            return .substitute(SubstitutedContent(path: info.path, size: info.size, cleanup: { snaps.remove(info.path) }))
        } catch {
            let w = "\(relativePath): \(error) Archived the live file (with its -wal) instead; it may not restore cleanly."
            lock.lock(); _warnings.append(w); lock.unlock()
            warn(w)
            return .asIs
        }
    }
}
