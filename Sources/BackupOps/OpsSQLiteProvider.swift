// The backup runner's ContentProvider for SQLite: every regular file that starts with
// "SQLite format 3\0" is archived from an online-backup snapshot (`SQLiteSnapshot`) instead of
// being read live; the captured database's -wal/-shm/-journal are left out of the archive.
//
// If a capture fails (the database stays locked past the busy timeout, or it is damaged), the
// file is archived as it is on disk, together with its -wal, and a warning says so: a
// best-effort copy beats no copy, and the warning reaches cron mail and the notification.
//
// Files are planned in no fixed order (a database when the backup reads its first bytes, its
// companions by name before that), so a database is captured once, by whichever of `x.db` or
// its companion is planned first; the other gets the result.
import Backup
import FoundationEssentials
import Glibc
import Support
import Synchronization

/// Substitutes SQLite snapshots for live database files during a backup scan.
package final class SQLiteCaptureProvider: ContentProvider, Sendable {
    private let snapshots: SQLiteSnapshot
    private let warn: @Sendable (String) -> Void
    /// What happened to each database in this run, by the database's relative path (its
    /// absolute path names the directory by a descriptor number, which a later directory may
    /// reuse). Held for a whole capture (and the check of a companion's database), so each
    /// database is captured at most once per run.
    /// What each file's capture gave, by relative path, in a table made at the first capture:
    /// freeing an empty `[String: CaptureState]` with the provider looked its generic type up
    /// at run time at the end of every backup without a database (~0.15 ms, issue 23).
    private let states = Mutex<CaptureTable?>(nil)
    private final class CaptureTable {
        var byPath: [String: CaptureState] = [:]
    }
    /// Warnings and counts, readable while a capture runs.
    private let tally = Mutex(Tally())

    private enum CaptureState: Sendable {
        case captured(SQLiteSnapshotInfo)
        case failed
        case notDatabase
    }

    private struct Tally {
        var warnings: [String] = []
        var count = 0
        var bytes: UInt64 = 0
    }

    /// - Parameters:
    ///   - snapshots: where snapshots are written (a private temp directory).
    ///   - warn: called with each warning as it happens (e.g. `Reporter.warning`).
    package init(snapshots: SQLiteSnapshot, warn: @escaping @Sendable (String) -> Void = { _ in }) {
        self.snapshots = snapshots
        self.warn = warn
    }

    /// Warnings so far (captures that fell back to the live file).
    package var warnings: [String] { tally.withLock { $0.warnings } }
    /// Databases captured so far, and their snapshot bytes.
    package var capturedCount: Int { tally.withLock { $0.count } }
    package var capturedBytes: UInt64 { tally.withLock { $0.bytes } }

    /// Companions by name; anything else of at least one page (512 bytes) only if it starts
    /// with the SQLite header, which the backup checks as it reads the file anyway.
    package func interest(relativePath: [UInt8], size: UInt64) -> ContentInterest {
        for suffix in Self.companionSuffixBytes where relativePath.count > suffix.count && relativePath.suffix(suffix.count).elementsEqual(suffix) {
            return .always
        }
        return size >= 512 ? .ifContentStarts(with: SQLiteSnapshot.magic) : .none
    }

    private static let companionSuffixBytes = SQLiteSnapshot.companionSuffixes.map { Array($0.utf8) }

    package func plan(relativePath: String, absolutePath: String, size: UInt64) throws -> ContentPlan {
        for suffix in SQLiteSnapshot.companionSuffixes where absolutePath.hasSuffix(suffix) && relativePath.count > suffix.count {
            let db = String(absolutePath.dropLast(suffix.count))
            let dbRelative = String(relativePath.dropLast(suffix.count))
            switch captureOnce(db, relativePath: dbRelative, knownDatabase: false) {
            case .captured: return .omit
            // A -shm is only shared memory: never useful in a backup when its database exists.
            case .failed: return suffix == "-shm" ? .omit : .asIsAskAgain
            case .notDatabase: break  // "x-wal" next to a file "x" that is no database: just a file
            }
        }
        // A database has at least one page of at least 512 bytes; smaller files are not opened.
        guard size >= 512, SQLiteSnapshot.hasDatabaseHeader(absolutePath) else { return .asIs }
        switch captureOnce(absolutePath, relativePath: relativePath, knownDatabase: true) {
        case .captured(let info):
            let snaps = snapshots
            return .substitute(SubstitutedContent(path: info.path, size: info.size, cleanup: { snaps.remove(info.path) }))
        case .failed:
            return .asIsAskAgain
        case .notDatabase:
            return .asIs
        }
    }

    private func captureOnce(_ db: String, relativePath: String, knownDatabase: Bool) -> CaptureState {
        states.withLock { table in
            let states = table ?? CaptureTable()
            table = states
            // A snapshot already archived (and removed) is taken again: a provider used for a
            // second run must not hand out the first run's snapshot, or nothing.
            if let known = states.byPath[relativePath] {
                guard case .captured(let info) = known, !FileManager.default.fileExists(atPath: info.path) else { return known }
            }
            let state = capture(db, relativePath: relativePath, knownDatabase: knownDatabase)
            states.byPath[relativePath] = state
            return state
        }
    }

    /// Takes the snapshot (call with `states` locked).
    private func capture(_ db: String, relativePath: String, knownDatabase: Bool) -> CaptureState {
        if !knownDatabase && !SQLiteSnapshot.isDatabase(db) { return .notDatabase }
        do {
            let info = try snapshots.capture(db)
            tally.withLock { $0.count += 1; $0.bytes += info.size }
            return .captured(info)
        } catch {
            let w = "\(NameEscape.escape(relativePath)): \(error) Archived the live file (with its -wal) instead; it may not restore cleanly."
            tally.withLock { $0.warnings.append(w) }
            warn(w)
            return .failed
        }
    }
}
