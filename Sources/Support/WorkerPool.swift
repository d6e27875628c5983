import Foundation

/// A fixed set of threads that run submitted work in FIFO order, with a bound on the bytes
/// (as the submitter declares them) and on the number of items waiting or running, so a
/// producer cannot run far ahead of the writers.
///
/// Used for filesystem work that is latency-bound (mkdir, create+write, chown/chmod/utimens on
/// a VM disk): several threads keep several metadata operations in flight. The pool knows
/// nothing about errors: work items record their own (see `FirstError`).
///
/// Lifetime: the threads hold the pool; call `shutdown()` (e.g. in a `defer`) when done. It
/// drops queued work, waits for running items and joins every thread.
package final class WorkerPool: @unchecked Sendable {
    private struct Item {
        var bytes: Int
        var work: @Sendable () -> Void
        var whenDone: (@Sendable () -> Void)?
    }

    private let cond = NSCondition()
    private var queue: [Item] = []
    private var head = 0
    private var pendingBytes = 0
    private var pendingItems = 0      // queued + running
    private var running = 0
    private var cancelled = false
    private var closed = false
    private var live: Int
    private let maxPendingBytes: Int
    private let maxPendingItems: Int
    private let exited = DispatchSemaphore(value: 0)
    package let threads: Int

    package init(threads: Int, maxPendingBytes: Int = 8 << 20, maxPendingItems: Int = 4096, stackSize: Int = 1 << 20) {
        self.threads = max(1, threads)
        self.live = self.threads
        self.maxPendingBytes = maxPendingBytes
        self.maxPendingItems = maxPendingItems
        for _ in 0 ..< self.threads {
            let t = Thread { [self] in self.loop() }
            t.stackSize = stackSize
            t.start()
        }
    }

    /// Threads not yet exited (0 after `shutdown()`).
    package var liveThreads: Int { cond.lock(); defer { cond.unlock() }; return live }

    /// Queues `work`; blocks while the pool holds too many bytes or items (an item larger than
    /// the byte bound is accepted once nothing else is pending). `whenDone` runs under the
    /// pool's lock after `work` (for completion flags read with `wait(until:)`). Returns false,
    /// without running anything, once the pool is cancelled or shut down.
    @discardableResult
    package func submit(bytes: Int = 0, _ work: @escaping @Sendable () -> Void, whenDone: (@Sendable () -> Void)? = nil) -> Bool {
        cond.lock(); defer { cond.unlock() }
        while !cancelled && pendingItems > 0
                && (pendingBytes + bytes > maxPendingBytes || pendingItems >= maxPendingItems) {
            cond.wait()
        }
        if cancelled { return false }
        pendingBytes += bytes
        pendingItems += 1
        queue.append(Item(bytes: bytes, work: work, whenDone: whenDone))
        cond.signal()
        return true
    }

    /// Waits until everything submitted has run (or was dropped by `cancel()`).
    package func waitAll() {
        cond.lock(); defer { cond.unlock() }
        while pendingItems > 0 { cond.wait() }
    }

    /// Waits until `predicate` (evaluated under the pool's lock) holds or the pool is shut down.
    package func wait(until predicate: () -> Bool) {
        cond.lock(); defer { cond.unlock() }
        while !predicate() && !closed { cond.wait() }
    }

    /// Evaluates `body` under the pool's lock (reads of what `whenDone` writes).
    package func locked<R>(_ body: () throws -> R) rethrows -> R {
        cond.lock(); defer { cond.unlock() }
        return try body()
    }

    /// Runs `body(i)` for every i in 0..<count on the pool threads, `chunk` indices per item,
    /// and waits for all of them.
    package func forEach(_ count: Int, chunk: Int = 32, _ body: @escaping @Sendable (Int) -> Void) {
        var start = 0
        while start < count {
            let range = start ..< min(count, start + chunk)
            submit({ for i in range { body(i) } })
            start = range.upperBound
        }
        waitAll()
    }

    /// Drops queued work (running items finish); later submissions are refused.
    package func cancel() {
        cond.lock(); defer { cond.unlock() }
        cancelled = true
        dropQueued()
        cond.broadcast()
    }

    /// Cancels, waits for running items and joins the threads. Idempotent.
    package func shutdown() {
        cond.lock()
        if closed { cond.unlock(); return }
        cancelled = true
        closed = true
        dropQueued()
        cond.broadcast()
        cond.unlock()
        for _ in 0 ..< threads { exited.wait() }
    }

    private func dropQueued() {
        for i in head ..< queue.count {
            pendingBytes -= queue[i].bytes
            pendingItems -= 1
        }
        queue.removeAll()
        head = 0
    }

    private func loop() {
        defer {
            cond.lock(); live -= 1; cond.broadcast(); cond.unlock()
            exited.signal()
        }
        while true {
            cond.lock()
            while queue.count == head && !closed { cond.wait() }
            if queue.count == head { cond.unlock(); return }   // closed and nothing queued
            let item = queue[head]
            queue[head] = Item(bytes: 0, work: {}, whenDone: nil)
            head += 1
            if head == queue.count {
                queue.removeAll(keepingCapacity: true); head = 0
            } else if head >= 1024 && head * 2 >= queue.count {
                queue.removeFirst(head); head = 0
            }
            running += 1
            cond.unlock()
            item.work()
            cond.lock()
            running -= 1
            pendingBytes -= item.bytes
            pendingItems -= 1
            item.whenDone?()
            cond.broadcast()
            cond.unlock()
        }
    }
}

/// The first error of parallel work, by the order of the work item that failed (the lowest
/// order wins, so a run reports the same error whichever thread got there first).
package final class FirstError: @unchecked Sendable {
    private let lock = NSLock()
    private var best: (order: Int, error: any Error)?
    private var flag = false

    package init() {}

    package func record(_ error: any Error, order: Int) {
        lock.lock(); defer { lock.unlock() }
        if best == nil || order < best!.order { best = (order, error) }
        flag = true
    }

    package var failed: Bool { lock.lock(); defer { lock.unlock() }; return flag }
    package var error: (any Error)? { lock.lock(); defer { lock.unlock() }; return best?.error }

    /// Throws the recorded error, if any.
    package func check() throws { if let e = error { throw e } }
}

/// A value handed to work on other threads that the caller knows is safe to share there
/// (read only meanwhile, or touched on disjoint parts).
package struct UnsafeSendable<T>: @unchecked Sendable {
    package let value: T
    package init(_ value: T) { self.value = value }
}
