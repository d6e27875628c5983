import FoundationEssentials
import Glibc

/// Content to archive instead of a live file (e.g. an online-backup copy of a SQLite database).
package struct SubstitutedContent: Sendable {
    /// A file to read the content from (e.g. a temporary snapshot).
    package var path: String
    /// Its size in bytes.
    package var size: UInt64
    /// Called once the backup no longer needs `path` (after the archive is written, or on failure).
    package var cleanup: @Sendable () -> Void

    package init(path: String, size: UInt64, cleanup: @escaping @Sendable () -> Void) {
        self.path = path; self.size = size; self.cleanup = cleanup
    }
}

/// What the backup does with one regular file found by the scan.
package enum ContentPlan: Sendable {
    /// Archive the file as it is on disk (the default): the provider has nothing to do with it.
    /// An unchanged file (same type, size, mtime, ctime, mode, owner as in the previous
    /// backup) that got `.asIs` then is not shown to the provider again.
    case asIs
    /// Archive the file as it is on disk, but ask again next run even when it is unchanged
    /// (e.g. a database whose snapshot failed this time).
    case asIsAskAgain
    /// Leave the file out of the backup entirely (e.g. a live database's `-wal`/`-shm`).
    case omit
    /// Archive this content under the file's path and metadata instead. The backup hashes it
    /// and archives it again only if the hash differs from the previous backup's.
    case substitute(SubstitutedContent)
}

/// Which files a `ContentProvider` wants to `plan`, told from a file's path and size alone:
/// most files of a tree are then never opened for it.
package enum ContentInterest: Sendable {
    /// Archived as is; `plan` is not called.
    case none
    /// `plan` is called (e.g. a database's `-wal`, known by its name).
    case always
    /// `plan` is called only if the file's content starts with these bytes. The backup looks
    /// at them when it reads the file for the archive (no extra open of the file), so `plan`
    /// comes later than for other files, still before the content is archived.
    case ifContentStarts(with: [UInt8])
}

/// Seam (1): decides, per regular file, where its content comes from. Called on the backup's
/// pass in no particular order across files (`x.db-wal` may be planned before `x.db`):
/// implementations must be order-independent. The SQLite capture implements it.
package protocol ContentProvider: AnyObject, Sendable {
    /// Which files `plan` must see (default: all).
    /// - Parameters:
    ///   - relativePath: the path below the source, as bytes (any bytes; `plan` is called
    ///     only for paths that are valid UTF-8, others are archived as they are).
    ///   - size: the file's size as the scan saw it (lstat).
    func interest(relativePath: [UInt8], size: UInt64) -> ContentInterest
    /// - Parameter size: the file's size as the scan saw it (lstat).
    func plan(relativePath: String, absolutePath: String, size: UInt64) throws -> ContentPlan
}

extension ContentProvider {
    package func interest(relativePath: [UInt8], size: UInt64) -> ContentInterest { .always }
}

/// What a run hook learns about the run.
package struct RunContext: Sendable {
    package var source: String
    package var destination: String
    package var set: String
    package var id: String
}

/// How a run ended, for `RunHooks.afterRun`.
package enum RunOutcome: Sendable {
    case success(BackupSummary)
    case failure(String)
}

/// Seam (2): code that runs around a backup: `beforeRun` after the lock is taken and before
/// the scan (e.g. stop containers), `afterRun` always, on success and on failure (e.g. start
/// containers, send a notification). Hooks' `afterRun` run in reverse order of `beforeRun`;
/// only hooks whose `beforeRun` ran get `afterRun`. An error from `beforeRun` fails the run;
/// errors in `afterRun` become warnings.
package protocol RunHooks: AnyObject {
    func beforeRun(_ context: RunContext) throws
    func afterRun(_ context: RunContext, outcome: RunOutcome) throws
}
