import FoundationEssentials
import Glibc

/// The one way to run work in parallel: a fixed set of threads taking jobs from a bounded
/// FIFO queue, with errors propagated and cancellation.
///
/// - **Bounded**: `submit` blocks while `maxQueuedItems` jobs are waiting or running, or while
///   their declared `bytes` would pass `maxQueuedBytes` (a job larger than that bound is let in
///   once nothing else is pending), so a producer cannot run far ahead of the threads.
/// - **Errors**: a job that throws fails the pool. The first error *by submission order* wins
///   (a run reports the same error whichever thread got there first), except that any other
///   error wins over a `CancellationError`: a job that stopped because a later one failed (a
///   full disk) does not say why (see `reports`). Jobs submitted before the first failed one
///   still run, queued jobs after it are dropped, and later `submit`s throw the error.
///   `wait()` throws it.
/// - **Cancel**: `cancel()` drops the queued jobs; running ones finish; `submit` then throws
///   `CancellationError` (or the first job error).
/// - **Lifetime**: threads are started by `init` and joined by `close()` (call it in a `defer`);
///   `deinit` lets them exit without joining.
///
/// Threads may sleep on I/O (ext4's journal, NFS): for filesystem work use more threads than
/// cores. For results handed on in submission order, put an `OrderedStage` on the pool.
///
///     let pool = WorkPool(threads: 8, maxQueuedBytes: 8 << 20, name: "restore-writer")
///     defer { pool.close() }
///     for file in files {
///         try pool.submit(bytes: file.data.count) { try write(file) }   // blocks when full
///     }
///     try pool.wait()   // every job done; throws the first failure
package final class WorkPool: Sendable {
    /// A submitted job, to wait for it alone.
    package struct Ticket: Hashable, Sendable {
        package let sequence: UInt64
    }

    private struct Job {
        var sequence: UInt64
        var bytes: Int
        var run: @Sendable () throws -> Void
    }

    private struct State {
        var queue: [Job] = []
        var head = 0
        var pendingItems = 0          // queued + running
        var pendingBytes = 0
        var unfinished = Set<UInt64>()
        var nextSequence: UInt64 = 0
        /// The error reported (`WorkPool.reports`).
        var failure: (sequence: UInt64, error: any Error)?
        /// The first job (by submission order) that failed, whatever its error.
        var firstFailed = UInt64.max
        var cancelled = false
        var closing = false
        var live = 0

        var hasWork: Bool { head < queue.count }

        mutating func pop() -> Job {
            let job = queue[head]
            queue[head] = Job(sequence: 0, bytes: 0, run: {})
            head += 1
            if head == queue.count {
                queue.removeAll(keepingCapacity: true); head = 0
            } else if head >= 1024 && head * 2 >= queue.count {
                queue.removeFirst(head); head = 0
            }
            return job
        }

        /// Drops queued jobs (all, or those submitted after `sequence`).
        mutating func dropQueued(after sequence: UInt64? = nil) {
            var kept: [Job] = []
            for job in queue[head...] {
                if let sequence, job.sequence < sequence { kept.append(job); continue }
                pendingItems -= 1
                pendingBytes -= job.bytes
                unfinished.remove(job.sequence)
            }
            queue = kept
            head = 0
        }

        func stopError() -> (any Error)? {
            if let failure { return failure.error }
            return cancelled ? CancellationError() : nil
        }
    }

    private static let workAvailable = 0
    private static let progress = 1
    private let monitor: Monitor<State>
    private let maxQueuedItems: Int
    private let maxQueuedBytes: Int
    /// The number of threads.
    package let threads: Int

    /// Starts `threads` threads (at least one).
    /// - Parameters:
    ///   - maxQueuedItems: jobs waiting or running before `submit` blocks.
    ///   - maxQueuedBytes: declared bytes of those jobs before `submit` blocks.
    ///   - stackSize: each thread's stack.
    ///   - name: the threads' name (shown by `top -H`, `perf`).
    package init(threads: Int, maxQueuedItems: Int = 4096, maxQueuedBytes: Int = .max,
                 stackSize: Int = 1 << 20, name: String = "hs-pool") {
        self.threads = max(1, threads)
        self.maxQueuedItems = max(1, maxQueuedItems)
        self.maxQueuedBytes = maxQueuedBytes
        var state = State()
        state.live = self.threads
        monitor = Monitor(state, conditions: 2)
        for i in 0 ..< self.threads {
            let monitor = monitor
            startThread(name: "\(name)-\(i)", stackSize: stackSize) { WorkPool.work(monitor) }
        }
    }

    deinit { shutdown(join: false) }

    /// Queues `job`; blocks while the pool is full.
    /// - Returns: a ticket to wait for this job alone (`wait(for:)`).
    /// - Throws: the pool's first job error once a job failed, `CancellationError` after
    ///   `cancel()`/`close()`; nothing is queued then.
    @discardableResult
    package func submit(bytes: Int = 0, _ job: @escaping @Sendable () throws -> Void) throws -> Ticket {
        let (limitItems, limitBytes) = (maxQueuedItems, maxQueuedBytes)
        let ticket = try monitor.withLock(waitingOn: Self.progress, until: { s in
            s.stopError() != nil || s.pendingItems == 0
                || (s.pendingItems < limitItems && s.pendingBytes + bytes <= limitBytes)
        }) { (s: inout State) throws -> Ticket in
            if let e = s.stopError() { throw e }
            let seq = s.nextSequence
            s.nextSequence += 1
            s.pendingItems += 1
            s.pendingBytes += bytes
            s.unfinished.insert(seq)
            s.queue.append(Job(sequence: seq, bytes: bytes, run: job))
            return Ticket(sequence: seq)
        }
        monitor.wake(Self.workAvailable)
        return ticket
    }

    /// Waits until every job submitted so far has run (or was dropped).
    /// - Throws: the first job error (by submission order, a `CancellationError` last), if any
    ///   job failed.
    package func wait() throws {
        let failure = monitor.withLock(waitingOn: Self.progress, until: { $0.pendingItems == 0 }) { $0.failure?.error }
        if let failure { throw failure }
    }

    /// Waits until the job of `ticket` has run or was dropped.
    /// - Returns: false when it failed or was dropped (cancel, an earlier failure).
    @discardableResult
    package func wait(for ticket: Ticket) -> Bool {
        monitor.withLock(waitingOn: Self.progress, until: { !$0.unfinished.contains(ticket.sequence) }) { s in
            s.firstFailed > ticket.sequence && !s.cancelled
        }
    }

    /// True when the job of `ticket` has run or was dropped (does not wait).
    package func isFinished(_ ticket: Ticket) -> Bool {
        monitor.withLock { !$0.unfinished.contains(ticket.sequence) }
    }

    /// True once a job failed or the pool was cancelled: a producer can stop early.
    package var isStopped: Bool { monitor.withLock { $0.stopError() != nil } }

    /// The job error reported so far (`wait()`'s), if any.
    package var firstError: (any Error)? { monitor.withLock { $0.failure?.error } }

    /// Runs `body(i)` for every i in `range` on the threads, `chunk` indices per job, and waits
    /// for those jobs.
    /// - Throws: the first error of `body` (by index), or the pool's.
    package func forEach(_ range: Range<Int>, chunk: Int = 32, _ body: @escaping @Sendable (Int) throws -> Void) throws {
        var tickets: [Ticket] = []
        var start = range.lowerBound
        while start < range.upperBound {
            let part = start ..< min(range.upperBound, start + max(1, chunk))
            tickets.append(try submit { for i in part { try body(i) } })
            start = part.upperBound
        }
        var ok = true
        for t in tickets where !wait(for: t) { ok = false }
        if !ok { throw firstError ?? CancellationError() }
    }

    /// Drops the queued jobs; running ones finish; later submissions throw.
    package func cancel() {
        monitor.withLock { s in s.cancelled = true; s.dropQueued() }
        monitor.wakeAll(Self.progress)
    }

    /// Threads not yet exited (0 after `close()`).
    package var liveThreads: Int { monitor.withLock { $0.live } }

    /// Cancels, lets running jobs finish and joins the threads. Idempotent.
    package func close() { shutdown(join: true) }

    private func shutdown(join: Bool) {
        monitor.withLock { s in s.cancelled = true; s.closing = true; s.dropQueued() }
        monitor.wakeAll(Self.workAvailable)
        monitor.wakeAll(Self.progress)
        if join { monitor.withLock(waitingOn: Self.progress, until: { $0.live == 0 }) { _ in } }
    }

    private static func work(_ monitor: Monitor<State>) {
        while true {
            let job: Job? = monitor.withLock(waitingOn: workAvailable, until: { $0.hasWork || $0.closing }) { s in
                s.hasWork ? s.pop() : nil
            }
            guard let job else { break }
            var error: (any Error)?
            do { try job.run() } catch let e { error = e }
            monitor.withLock { s in
                s.pendingItems -= 1
                s.pendingBytes -= job.bytes
                s.unfinished.remove(job.sequence)
                guard let error else { return }
                if job.sequence < s.firstFailed {
                    s.firstFailed = job.sequence
                    s.dropQueued(after: job.sequence)
                }
                if reports(error, at: job.sequence, over: s.failure) { s.failure = (job.sequence, error) }
            }
            monitor.wakeAll(progress)
        }
        monitor.withLock { $0.live -= 1 }
        monitor.wakeAll(progress)
    }

    /// Whether `error`, thrown by the job submitted `sequence`th, is the one to report rather
    /// than `current`: a `CancellationError` only when no job failed otherwise (a job that
    /// stopped because a later one failed does not say why), else the first by submission
    /// order (the same error whichever thread got there first).
    static func reports(_ error: any Error, at sequence: UInt64, over current: (sequence: UInt64, error: any Error)?) -> Bool {
        guard let current else { return true }
        let stopped = error is CancellationError, currentStopped = current.error is CancellationError
        return stopped == currentStopped ? sequence < current.sequence : currentStopped
    }
}
