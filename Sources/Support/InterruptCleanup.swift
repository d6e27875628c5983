import FoundationEssentials
import Glibc
import Dispatch
import Synchronization

/// What to undo when the process is stopped by a signal (SIGINT, SIGTERM, SIGHUP): files a
/// run created and would remove itself on a normal exit, such as a backup's `.partial`
/// archive and the set's lock. Code that creates such a file registers its removal and
/// unregisters it once the file is committed or removed; the signal handler (`SignalGuard`,
/// hs-restore's own) calls `runAll` before exiting.
///
/// Actions run on a helper thread with a time limit: a removal on an NFS server that stopped
/// answering must not keep the process from exiting (the next run takes over a lock whose
/// process is gone and removes leftovers).
package final class InterruptCleanup: Sendable {
    package static let shared = InterruptCleanup()
    /// A cleanup of its own (tests); the tools use `shared`.
    package init() {}

    private typealias Action = (token: Int, what: String, run: @Sendable () throws -> Void)
    private struct State {
        var actions: [Action] = []
        var next = 0
        /// Set by `runAll`: the process is exiting; `register` no longer returns.
        var stopping = false
        /// What to do about what was left (`leaveToUser`); nil: hs-backup's next run removes it.
        var leftover: String?
    }
    private let state = Mutex(State())
    /// Held while a registered file is being created (`creating`) or a backup committed
    /// (`committing`), so `runAll` sees it made; `runAll` waits for it with a time limit.
    private let creation = Monitor(())
    /// Set first thing by `runAll`; writers of files under their final names (`beginWriting`)
    /// see it between two files.
    private let stopRequested = Atomic<Bool>(false)
    /// Runs of such files being written now (`beginWriting` ... `endWriting`).
    private let writing = Atomic<Int>(0)

    /// Registers an action; returns a token for `unregister`.
    /// - Parameter what: a short description for messages ("lock DEST/SET/lock").
    @discardableResult
    package func register(_ what: String, _ action: @escaping @Sendable () throws -> Void) -> Int {
        let token: Int? = state.withLock { s in
            if s.stopping { return nil }
            s.next += 1
            s.actions.append((s.next, what, action))
            return s.next
        }
        guard let token else {
            // The signal handler is cleaning up and the process is about to exit: a file
            // registered now would be created after the cleanup and left behind. Callers
            // register before they create, so holding this thread here creates nothing.
            parkForStop()
        }
        return token
    }

    /// Registers `remove` and runs `create` (which makes the file) as one step with respect to
    /// `runAll`: a signal either comes first (nothing is created: this thread stops here) or
    /// waits until the file exists, then removes it. Returns `create`'s result and the token.
    package func creating<T>(_ what: String, remove: @escaping @Sendable () throws -> Void, _ create: () throws -> T) throws -> (T, Int) {
        try creation.withLock { _ in
            let token = register(what, remove)
            do { return (try create(), token) } catch { unregister(token); throw error }
        }
    }

    /// Starts a run of files written under their final names, with no registration per file
    /// (hs-restore's writer threads, a batch of small files): a file cut short by the process's
    /// death would look restored, so the signal's handler (`runAll`) waits, bounded, until
    /// every run under way stopped at a file boundary. Returns false when a signal came first:
    /// write nothing, and wait for the end (`waitIfStopping`). Between two files, check
    /// `isStopping`; end the run with `endWriting`.
    package func beginWriting() -> Bool {
        // Sequentially consistent on both sides (this add and load; `runAll`'s store and
        // load): either `runAll` sees this run, or this run sees the stop.
        writing.add(1, ordering: .sequentiallyConsistent)
        guard !stopRequested.load(ordering: .sequentiallyConsistent) else {
            endWriting()
            return false
        }
        return true
    }

    package func endWriting() { writing.subtract(1, ordering: .releasing) }

    /// One entry made under its final name and given its metadata (a symlink, a FIFO) as a run
    /// of its own (`beginWriting`); after a signal, waits for the end instead.
    package func writingOne<T>(_ body: () throws -> T) rethrows -> T {
        guard beginWriting() else { parkForStop() }
        defer { endWriting() }
        return try body()
    }

    /// Waits for good, for a signal's handler is ending the process: a run of `beginWriting`
    /// that saw the stop (after its `endWriting`), `register` after the stop, `waitIfStopping`.
    package func parkForStop() -> Never {
        while true { sleep(60) }
    }

    /// True once a signal's handler started (`runAll`): a run of files stops before its next file.
    package var isStopping: Bool { stopRequested.load(ordering: .relaxed) }

    /// Marks the process as exiting (`register` stops its callers) and takes the actions,
    /// newest first.
    private func stop() -> [Action] {
        state.withLock { s in
            s.stopping = true
            defer { s.actions = [] }
            return Array(s.actions.reversed())
        }
    }

    /// For a tool whose next run does not clean up after this one (hs-restore): messages about
    /// what was left say `advice` (e.g. "remove it by hand") instead.
    package func leaveToUser(_ advice: String) {
        state.withLock { $0.leftover = advice }
    }

    /// Returns at once unless a signal's handler is cleaning up (`runAll` started); then waits
    /// for good, for that handler ends the process (with the signal's exit status). For the run's
    /// own end (`ToolCommand.main`: an exit of its own, 0 or an error's 1, must not come first)
    /// and for a thread that `committing` told `Stopping`.
    package func waitIfStopping() {
        guard stopRequested.load(ordering: .sequentiallyConsistent) || state.withLock({ $0.stopping }) else { return }
        parkForStop()
    }

    package func unregister(_ token: Int) {
        state.withLock { $0.actions.removeAll { $0.token == token } }
    }

    /// Thrown by `committing` when a signal came first: the process is exiting and its
    /// cleanup removes the files the commit would have kept.
    package struct Stopping: Error, CustomStringConvertible {
        package var description: String { "stopped by a signal before the commit" }
    }

    /// Runs `commit` (the rename that commits a backup, then `unregister` of the files it
    /// kept) as one step with respect to `runAll`, which would otherwise remove a `.partial`
    /// archive or index between the manifest's rename and their unregistering: a signal during
    /// `commit` is handled after it, and after a signal `commit` is not started (`Stopping`).
    package func committing<T>(_ commit: () throws -> T) throws -> T {
        try creation.withLock { _ in
            guard !state.withLock({ $0.stopping }) else { throw Stopping() }
            return try commit()
        }
    }

    /// Runs every registered action once, newest first, and waits at most `seconds` for all
    /// of them. Returns a message for each action that failed or did not finish in time.
    /// For the exit path only: afterwards `register` blocks its caller for good.
    package func runAll(within seconds: TimeInterval = 10) -> [String] {
        let early = waitForWriters(within: seconds)
        // Wait (bounded: a create or a commit on a frozen NAS must not keep us) for a file
        // being created or a commit under way.
        guard let todo = creation.withLock(within: seconds, { _ in stop() }) else {
            // A commit may still be renaming: removing a `.partial` now could take the archive
            // of a backup it commits. Leave everything to the next run's cleanup.
            let todo = stop()
            let advice = state.withLock { $0.leftover } ?? "the next run removes what no commit kept"
            return early + (todo.isEmpty ? [] : ["a file was being created or a backup committed and did not finish within \(Int(seconds)) s: "
                + "left \(todo.map(\.what).joined(separator: ", ")) (\(advice))"])
        }
        guard !todo.isEmpty else { return early }
        let problems = ProblemList()
        let done = DispatchSemaphore(value: 0)
        startThread {
            for a in todo {
                do { try a.run() } catch { problems.append("could not remove \(a.what): \(error)") }
                problems.markDone(a.token)
            }
            done.signal()
        }
        if done.wait(timeout: .now() + seconds) == .timedOut {
            let advice = state.withLock { $0.leftover } ?? "the next run removes it"
            for a in todo where !problems.isDone(a.token) {
                problems.append("could not remove \(a.what) within \(Int(seconds)) s (\(advice))")
            }
        }
        return early + problems.all
    }

    /// Stops the runs of `beginWriting` at their next file boundary and waits for them, at most
    /// `seconds` (a write to a NAS that stopped answering must not keep the process); a message
    /// when some did not stop in time.
    private func waitForWriters(within seconds: TimeInterval) -> [String] {
        stopRequested.store(true, ordering: .sequentiallyConsistent)
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while writing.load(ordering: .sequentiallyConsistent) > 0 && ContinuousClock.now < deadline { usleep(1000) }
        let n = writing.load(ordering: .sequentiallyConsistent)
        guard n > 0 else { return [] }
        return ["\(n) writer thread\(n == 1 ? " was" : "s were") still writing a file after \(Int(seconds)) s: "
                + "the file\(n == 1 ? "" : "s") being written may be cut short"]
    }
}

private final class ProblemList: Sendable {
    private let state = Mutex((items: [String](), done: Set<Int>()))
    func append(_ s: String) { state.withLock { $0.items.append(s) } }
    func markDone(_ t: Int) { state.withLock { _ = $0.done.insert(t) } }
    func isDone(_ t: Int) -> Bool { state.withLock { $0.done.contains(t) } }
    var all: [String] { state.withLock { $0.items } }
}
