// The concurrency kit: the one pool (bounded, errors by submission order, cancel, close joins),
// the ordered stage (submission order, bounded window, errors at their place, push and pull)
// and the bounded queue (bytes bound, order, error after data, cancel releases the producer).
import Foundation
import Support
import Synchronization
import Testing

@Suite struct ConcurrencyKitTests {
    struct Boom: Error, Equatable { var n: Int }

    /// `withLock(within:)`: runs the body when the lock comes in time, nil while another
    /// thread holds it past the limit (then the lock is free again).
    @Test func monitorTimedLockGivesUpWhileHeld() {
        let m = Monitor(0)
        #expect(m.withLock(within: 1) { $0 += 1; return $0 } == 1)
        let held = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0), done = DispatchSemaphore(value: 0)
        startThread {
            m.withLock { _ in held.signal(); release.wait() }
            done.signal()
        }
        held.wait()
        #expect(m.withLock(within: 0.05) { $0 += 1 } == nil)
        release.signal()
        done.wait()
        #expect(m.withLock(within: 1) { $0 } == 1)
    }

    @Test func poolRunsEveryJobAndCloseJoinsTheThreads() throws {
        let pool = WorkPool(threads: 4, maxQueuedItems: 8, name: "t")
        let sum = Atomic<Int>(0)
        for i in 1 ... 1000 { try pool.submit { sum.add(i, ordering: .relaxed) } }
        try pool.wait()
        #expect(sum.load(ordering: .relaxed) == 500_500)
        #expect(pool.liveThreads == 4)
        pool.close()
        #expect(pool.liveThreads == 0)
        #expect(throws: CancellationError.self) { try pool.submit {} }
    }

    @Test func poolBoundsQueuedBytesAndItems() throws {
        let pool = WorkPool(threads: 2, maxQueuedItems: 6, maxQueuedBytes: 1000, name: "t")
        defer { pool.close() }
        let inFlight = Mutex((items: 0, bytes: 0, peakItems: 0, peakBytes: 0))
        for i in 0 ..< 200 {
            let b = i % 50 == 0 ? 5000 : 100   // a job larger than the bound goes in alone
            try pool.submit(bytes: b) {
                usleep(100)
                inFlight.withLock { $0.items -= 1; $0.bytes -= b }
            }
            // Admitted and not finished (a job counts itself out before the pool does, so
            // this never counts more than the pool holds).
            inFlight.withLock { s in
                s.items += 1; s.bytes += b
                s.peakItems = max(s.peakItems, s.items); s.peakBytes = max(s.peakBytes, s.bytes)
            }
        }
        try pool.wait()
        let s = inFlight.withLock { $0 }
        #expect(s.peakItems <= 6, "peak items \(s.peakItems)")
        #expect(s.peakBytes <= 5000, "peak bytes \(s.peakBytes)")
        #expect(s.peakItems >= 2, "the pool let several jobs wait")
    }

    @Test func poolReportsTheFirstErrorBySubmissionOrderAndRunsEarlierJobs() throws {
        let pool = WorkPool(threads: 4, name: "t")
        defer { pool.close() }
        let ran = Mutex(Set<Int>())
        let gate = DispatchSemaphore(value: 0)
        // Job 3 fails late, job 7 fails at once: 3's error is the one reported.
        var tickets: [WorkPool.Ticket] = []
        for i in 0 ..< 8 {
            tickets.append(try pool.submit {
                if i == 3 { gate.wait(); throw Boom(n: 3) }
                if i == 7 { defer { gate.signal() }; throw Boom(n: 7) }
                ran.withLock { _ = $0.insert(i) }
            })
        }
        #expect(throws: Boom(n: 3)) { try pool.wait() }
        #expect(ran.withLock { $0 }.isSuperset(of: [0, 1, 2]))
        #expect(pool.wait(for: tickets[0]))
        #expect(!pool.wait(for: tickets[3]))
        #expect(throws: Boom(n: 3)) { try pool.submit {} }
    }

    @Test func poolCancelDropsQueuedJobs() throws {
        let pool = WorkPool(threads: 1, name: "t")
        defer { pool.close() }
        let gate = DispatchSemaphore(value: 0), started = DispatchSemaphore(value: 0)
        let ran = Atomic<Int>(0)
        try pool.submit { started.signal(); gate.wait(); ran.add(1, ordering: .relaxed) }
        started.wait()
        let later = try pool.submit { ran.add(1, ordering: .relaxed) }
        pool.cancel()
        gate.signal()
        #expect(!pool.wait(for: later))
        #expect(throws: CancellationError.self) { try pool.wait(); try pool.submit {} }
        #expect(ran.load(ordering: .relaxed) == 1)
    }

    @Test func poolForEach() throws {
        let pool = WorkPool(threads: 3, name: "t")
        defer { pool.close() }
        let hits = Mutex([Int](repeating: 0, count: 100))
        try pool.forEach(0 ..< 100, chunk: 7) { i in hits.withLock { $0[i] += 1 } }
        #expect(hits.withLock { $0 } == [Int](repeating: 1, count: 100))
        #expect(throws: Boom(n: 40)) { try pool.forEach(0 ..< 100, chunk: 1) { i in if i == 40 || i == 90 { throw Boom(n: i) } } }
    }

    @Test func orderedStageKeepsSubmissionOrderWithinItsWindow() throws {
        let pool = WorkPool(threads: 4, name: "t")
        defer { pool.close() }
        let running = Atomic<Int>(0), peak = Atomic<Int>(0)
        var out: [Int] = []
        try OrderedStage<Int>.map(Array(0 ..< 300), pool: pool, window: 5) { i in
            let now = running.add(1, ordering: .relaxed).newValue
            _ = peak.max(now, ordering: .relaxed)
            usleep(UInt32((i * 7919) % 300))
            running.subtract(1, ordering: .relaxed)
            return i * 2
        } consume: { out.append($0) }
        #expect(out == (0 ..< 300).map { $0 * 2 })
        #expect(peak.load(ordering: .relaxed) <= 5)
    }

    @Test func orderedStageHandsOnResultsBeforeAnErrorThenTheError() throws {
        let pool = WorkPool(threads: 4, name: "t")
        defer { pool.close() }
        var out: [Int] = []
        #expect(throws: Boom(n: 50)) {
            try OrderedStage<Int>.map(Array(0 ..< 100), pool: pool, window: 8) { i in
                if i == 50 || i == 55 { throw Boom(n: i) }
                return i
            } consume: { out.append($0) }
        }
        #expect(out == Array(0 ..< 50))
        // The stage's errors do not fail the pool.
        try pool.submit {}
        try pool.wait()
    }

    @Test func orderedStagePushModeDeliversInOrderOnePerTime() throws {
        let pool = WorkPool(threads: 4, name: "t")
        defer { pool.close() }
        let delivered = Mutex([Int]())
        let inside = Atomic<Int>(0)
        let stage = OrderedStage<Int>(pool: pool, window: 6, maxBytes: 1 << 20) { v in
            #expect(inside.add(1, ordering: .relaxed).newValue == 1, "one delivery at a time")
            delivered.withLock { $0.append(v) }
            inside.subtract(1, ordering: .relaxed)
        }
        for i in 0 ..< 200 { try stage.submit(bytes: 1000) { usleep(UInt32(i % 13) * 50); return i } }
        try stage.finish()
        #expect(delivered.withLock { $0 } == Array(0 ..< 200))

        let failing = OrderedStage<Int>(pool: pool, window: 4) { v in if v == 10 { throw Boom(n: 10) } }
        var thrown: (any Error)?
        do { for i in 0 ..< 100 { try failing.submit { i } }; try failing.finish() } catch { thrown = error }
        #expect(thrown as? Boom == Boom(n: 10))
    }

    @Test func boundedQueueOrderAndBound() throws {
        let q = BoundedQueue<[UInt8]>(capacityBytes: 64 << 10, wakeBytes: 16 << 10)
        let sizes = (0 ..< 3000).map { i in i % 500 == 0 ? 200 << 10 : 1 + (i * 37) % 5000 }
        let pool = WorkPool(threads: 1, name: "producer")
        defer { pool.close() }
        try pool.submit {
            for (i, n) in sizes.enumerated() { _ = q.put([UInt8](repeating: UInt8(i & 0xff), count: n), bytes: n) }
            q.finish()
        }
        var got = 0, peak = 0
        while let c = try q.take() {
            #expect(c.count == sizes[got], "chunk \(got)")
            #expect(c.first == UInt8(got & 0xff))
            peak = max(peak, q.bytesQueued)
            got += 1
            if got % 97 == 0 { usleep(200) }
        }
        #expect(got == sizes.count)
        #expect(peak <= (64 << 10) + (200 << 10), "peak \(peak)")
    }

    @Test func boundedQueueErrorAfterDataAndCancelReleasesProducer() throws {
        let q = BoundedQueue<[UInt8]>(capacityBytes: 1 << 10, wakeBytes: 1 << 20)
        #expect(q.put([1, 2, 3], bytes: 3))
        q.finish(throwing: Boom(n: 1))
        #expect(try q.take() == [1, 2, 3], "queued below wakeBytes, still delivered at finish")
        #expect(throws: Boom(n: 1)) { try q.take() }

        let full = BoundedQueue<[UInt8]>(capacityBytes: 1 << 10, wakeBytes: 512)
        #expect(full.put([UInt8](repeating: 0, count: 2048), bytes: 2048))
        let released = DispatchSemaphore(value: 0)
        let result = Mutex<Bool?>(nil)
        let pool = WorkPool(threads: 1, name: "producer")
        defer { pool.close() }
        try pool.submit {
            let ok = full.put([9], bytes: 1)   // blocks: the queue is over its capacity
            result.withLock { $0 = ok }
            released.signal()
        }
        #expect(released.wait(timeout: .now() + 0.3) == .timedOut, "the producer waits while the queue is full")
        full.cancel()
        #expect(released.wait(timeout: .now() + 10) == .success)
        #expect(result.withLock { $0 } == false)
    }
}
