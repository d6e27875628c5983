// SignalGuard: what a tool does when cron, systemd or a person stops it mid-run (SIGINT,
// SIGTERM, SIGHUP): remove what `InterruptCleanup` holds (hs-backup's `.partial` archive, the
// set's lock), run the registered cleanups (start stopped stacks again, remove SQLite
// snapshots, report "down" to the monitors), print the failure object with --json and exit
// with 128 + the signal number.
//
// `ToolCommand.main` arms the process's one guard for the length of every command of the five
// tools, before the command can wait on anything (a destination that does not answer keeps a
// run up to the NFS timeout; `docker compose`, apt): no command has to remember it. One that
// takes the signals its own way disarms it once its own watch is armed (hs-restore dies of the
// signal, a FUSE mount unmounts).
//
// Not covered: SIGKILL and power loss (nothing can run then); the next run removes stale
// snapshot directories and takes over the stale lock.
import FoundationEssentials
import Glibc
import Synchronization

/// The process's SIGINT/SIGTERM/SIGHUP handling for the length of a command's run.
package final class SignalGuard: Sendable {
    package static let signals: [Int32] = [SIGINT, SIGTERM, SIGHUP]
    /// The one guard of the process (a signal's disposition is process-wide).
    package static let shared = SignalGuard()

    private struct State {
        var cleanups: [@Sendable (Int32) -> Void] = []
        var fired = false
        var watch: SignalWatch.Token?
    }
    private let state = Mutex(State())

    private init() {}

    /// Takes the signals from now on; armed when this returns (see SignalWatch: the libdispatch
    /// source used here before was armed later, and a signal that came first was dropped). A
    /// signal that is ignored now stays ignored: `nohup`, or a job a script starts with `&`,
    /// asked for that.
    package func arm() {
        let token = SignalWatch.shared.watch(Self.signals, keepIgnored: Set(Self.signals)) { [self] sig in fire(sig) }
        let earlier = state.withLock { s in
            defer { s.watch = token }
            return s.watch
        }
        if let earlier { SignalWatch.shared.cancel(earlier) }
    }

    /// Adds a cleanup; cleanups run in reverse order of registration.
    package func onSignal(_ cleanup: @escaping @Sendable (Int32) -> Void) {
        state.withLock { $0.cleanups.append(cleanup) }
    }

    /// Gives the signals back (the disposition they had before `arm`): at the end of the run, or
    /// for a command that takes them its own way, once its own watch is armed. When a signal is
    /// being handled already, waits for good: the handler ends the process (an exit of the
    /// run's own must not come first).
    package func disarm() {
        let (token, fired) = state.withLock { s in
            defer { s.watch = nil }
            return (s.watch, s.fired)
        }
        if fired { InterruptCleanup.shared.parkForStop() }
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
        // (The tool's name from argv[0]: known without building the command tree.)
        let tool = CommandLine.arguments.first?.split(separator: "/").last.map(String.init) ?? "hs-backup"
        Reporter.writeStderr("\(tool): stopped by signal \(sig); cleaning up\n")
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
