/// How a run of any tool ends: its exit status, defined once for the toolkit (every tool's
/// `--help` and the README list them from here).
///
/// - 0 `success`: done.
/// - 1 `failure`: the work or the check failed (nothing committed, damage found, ...).
/// - 2 `usage`: bad usage (an option's value, a missing or repeated option); nothing ran.
/// - 3 `filesMissing`: a backup was committed, but files of the source are not in it: they
///   exist and could not be read (EACCES on a root-squashed NFS or FUSE source), or were
///   swapped or changed type while the run read them. As restic's exit 3 ("snapshot
///   created, some files could not be read"). Files that vanished between the scan and the
///   read are normal on a live host (logs, temp files): a warning, exit 0.
///
/// Monitors get `monitor`: 3 is a *warning*, not a failure (the backup exists and restores):
/// - Uptime Kuma push (`--ping`): `status=up`, `msg=WARNING: committed, N files missing: ...`;
/// - ntfy (`--notify`): posted even without `--notify-success`, title "... OK, FILES MISSING",
///   priority high, tags `warning`;
/// - Healthchecks (`--healthchecks`): the success ping, the body starting with
///   "committed, files missing"; Prometheus metrics: the exit code 3, and the last-success
///   time updated (a backup was committed).
package enum ExitStatus: Int32, Sendable, CaseIterable {
    case success = 0
    case failure = 1
    case usage = 2
    case filesMissing = 3

    /// What a monitor makes of a run that ended so.
    package enum Monitor: Sendable, Equatable {
        case ok, warning, failed
    }

    package var monitor: Monitor {
        switch self {
        case .success: .ok
        case .filesMissing: .warning
        case .failure, .usage: .failed
        }
    }

    /// A few words for people and monitors ("committed, files missing").
    package var meaning: String {
        switch self {
        case .success: "success"
        case .failure: "failed"
        case .usage: "bad usage"
        case .filesMissing: "committed, files missing"
        }
    }

    /// What the `--help` of the tools that never exit 3 says about it.
    package static let onlyBackupRun = "Exit code 3 (a backup committed with files missing) is hs-backup run's only."
}
