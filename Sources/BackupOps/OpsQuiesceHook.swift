// Quiesce as a RunHooks of the backup runner: the stacks are stopped after the set's lock is
// taken (so a run that cannot lock stops nothing) and started again after the run, whether it
// succeeded or failed (and on SIGINT/SIGTERM/SIGHUP, see `Quiesce`).

import Backup
import Synchronization

/// Stops `--stop-stacks` around a backup run.
package final class QuiesceHook: RunHooks, Sendable {
    package let quiesce: Quiesce
    private let warn: @Sendable (String) -> Void
    private let problems = Mutex<[String]>([])
    /// Problems starting the stacks again (also passed to `warn`); the caller reports them.
    package var restartProblems: [String] { problems.withLock { $0 } }

    package init(quiesce: Quiesce, warn: @escaping @Sendable (String) -> Void) {
        self.quiesce = quiesce
        self.warn = warn
    }

    package func beforeRun(_ context: RunContext) throws {
        for w in try quiesce.stop() { warn(w) }
    }

    package func afterRun(_ context: RunContext, outcome: RunOutcome) throws {
        let found = quiesce.start()
        problems.withLock { $0 = found }
        for p in found { warn(p) }
    }
}
