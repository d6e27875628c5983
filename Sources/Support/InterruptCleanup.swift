import Foundation

/// What to undo when the process is stopped by a signal (SIGINT, SIGTERM, SIGHUP): files a
/// run created and would remove itself on a normal exit, such as a backup's `.partial`
/// archive and the set's lock. Code that creates such a file registers its removal and
/// unregisters it once the file is committed or removed; the signal handler (hs-backup's
/// `OpsSignalGuard`) calls `runAll` before exiting.
///
/// Actions run on a helper thread with a time limit: a removal on an NFS server that stopped
/// answering must not keep the process from exiting (the next run takes over a lock whose
/// process is gone and removes leftovers).
package final class InterruptCleanup: @unchecked Sendable {
    package static let shared = InterruptCleanup()

    private let lock = NSLock()
    private var actions: [(token: Int, what: String, run: @Sendable () throws -> Void)] = []
    private var next = 0
    /// Set by `runAll`: the process is exiting; `register` no longer returns.
    private var stopping = false
    /// Held while a registered file is being created (`creating`), so `runAll` sees it made.
    private let creation = NSLock()

    /// Registers an action; returns a token for `unregister`.
    /// - Parameter what: a short description for messages ("lock DEST/SET/lock").
    @discardableResult
    package func register(_ what: String, _ action: @escaping @Sendable () throws -> Void) -> Int {
        lock.lock()
        if stopping {
            // The signal handler is cleaning up and the process is about to exit: a file
            // registered now would be created after the cleanup and left behind. Callers
            // register before they create, so holding this thread here creates nothing.
            lock.unlock()
            while true { sleep(60) }
        }
        defer { lock.unlock() }
        next += 1
        actions.append((next, what, action))
        return next
    }

    /// Registers `remove` and runs `create` (which makes the file) as one step with respect to
    /// `runAll`: a signal either comes first (nothing is created: this thread stops here) or
    /// waits until the file exists, then removes it. Returns `create`'s result and the token.
    package func creating<T>(_ what: String, remove: @escaping @Sendable () throws -> Void, _ create: () throws -> T) throws -> (T, Int) {
        creation.lock()
        defer { creation.unlock() }
        let token = register(what, remove)
        do { return (try create(), token) } catch { unregister(token); throw error }
    }

    package func unregister(_ token: Int) {
        lock.lock(); actions.removeAll { $0.token == token }; lock.unlock()
    }

    /// Runs every registered action once, newest first, and waits at most `seconds` for all
    /// of them. Returns a message for each action that failed or did not finish in time.
    /// For the exit path only: afterwards `register` blocks its caller for good.
    package func runAll(within seconds: TimeInterval = 10) -> [String] {
        // Wait (bounded: a create on a frozen NAS must not keep us) for a file being created.
        let held = creation.lock(before: Date().addingTimeInterval(seconds))
        lock.lock()
        stopping = true
        if held { creation.unlock() }
        let todo = actions.reversed()
        actions = []
        lock.unlock()
        guard !todo.isEmpty else { return [] }
        let problems = ProblemList()
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            for a in todo {
                do { try a.run() } catch { problems.append("could not remove \(a.what): \(error)") }
                problems.markDone(a.token)
            }
            done.signal()
        }
        thread.start()
        if done.wait(timeout: .now() + seconds) == .timedOut {
            for a in todo where !problems.isDone(a.token) {
                problems.append("could not remove \(a.what) within \(Int(seconds)) s (the next run removes it)")
            }
        }
        return problems.all
    }
}

private final class ProblemList: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    private var done: Set<Int> = []
    func append(_ s: String) { lock.lock(); items.append(s); lock.unlock() }
    func markDone(_ t: Int) { lock.lock(); done.insert(t); lock.unlock() }
    func isDone(_ t: Int) -> Bool { lock.lock(); defer { lock.unlock() }; return done.contains(t) }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return items }
}
