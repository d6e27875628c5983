// OpsSignalGuard: what hs-backup does when cron, systemd or a person stops it mid-run
// (SIGINT, SIGTERM, SIGHUP): remove what `InterruptCleanup` holds (the `.partial` archive,
// the set's lock), run the registered cleanups (start stopped stacks again, remove SQLite
// snapshots, report "down"), print the failure object with --json and exit with 128 + the
// signal number.
//
// Not covered: SIGKILL and power loss (nothing can run then); the next run removes stale
// snapshot directories and takes over the stale lock.
import Backup
import FoundationEssentials
import Glibc
import Support
import Synchronization

/// Installs SIGINT/SIGTERM/SIGHUP handlers for the length of a run.
package final class OpsSignalGuard: Sendable {
    package static let signals: [Int32] = [SIGINT, SIGTERM, SIGHUP]
    private struct State {
        var cleanups: [@Sendable (Int32) -> Void] = []
        var fired = false
        var watch: SignalWatch.Token?
    }
    private let state = Mutex(State())

    package init() {
        // Armed when `watch` returns (see SignalWatch: the libdispatch source used here before
        // was armed later, and a signal that came first was dropped).
        let token = SignalWatch.shared.watch(Self.signals) { [self] sig in fire(sig) }
        state.withLock { $0.watch = token }
    }

    /// Adds a cleanup; cleanups run in reverse order of registration.
    package func onSignal(_ cleanup: @escaping @Sendable (Int32) -> Void) {
        state.withLock { $0.cleanups.append(cleanup) }
    }

    /// Removes the handlers (signals get back the disposition they had before).
    package func cancel() {
        let token: SignalWatch.Token? = state.withLock { s in
            defer { s.watch = nil }
            return s.watch
        }
        if let token { SignalWatch.shared.cancel(token) }
    }

    private func fire(_ sig: Int32) {
        let todo: [@Sendable (Int32) -> Void]? = state.withLock { s in
            if s.fired { return nil }
            s.fired = true
            return s.cleanups
        }
        guard let todo else { return }
        Reporter.holdJSONForSignal()
        Reporter.writeStderr("hs-backup: stopped by signal \(sig); cleaning up\n")
        // The partial archive and the lock first (bounded: a stalled NAS must not keep us).
        let problems = InterruptCleanup.shared.runAll(within: 10)
        for p in problems { Reporter.writeStderr("warning: \(p)\n") }
        for c in todo.reversed() { c(sig) }
        // --json: one object on stdout also now (monitoring parses it).
        Reporter.emitStoppedBySignal(sig, problems.isEmpty ? ", and cleaned up" : "; cleaning up: " + problems.joined(separator: "; "))
        // _exit, not exit: the run's other threads (writer, compressors, libdispatch) are still
        // going, and exit's atexit handlers and library destructors tearing down under them
        // crashed the process now and then (SIGSEGV in pthread_rwlock_rdlock instead of 130).
        fflush(nil)   // every stdio stream (nil: all of them)
        _exit(128 + sig)
    }
}
