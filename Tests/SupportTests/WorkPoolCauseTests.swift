// Which error a run of parallel jobs reports when one job's failure stops the others: the real
// cause, not the CancellationError of a job submitted before it that it stopped (copy to a
// full disk reported "CancellationError()" in 4 of 6 runs, session 16).
import Foundation
import Support
import Synchronization
import Testing

@Suite struct WorkPoolCauseTests {
    struct Boom: Error, Equatable { var n: Int }
    struct GaveUp: Error {}

    /// Waits (polling) until `condition` holds; throws after a minute instead of hanging.
    static func await(_ condition: () -> Bool) throws {
        let deadline = Date().addingTimeInterval(60)
        while !condition() {
            if Date() > deadline { throw GaveUp() }
            usleep(200)
        }
    }

    @Test func poolReportsTheRealErrorNotTheCancellationItCaused() throws {
        let pool = WorkPool(threads: 4, name: "t")
        defer { pool.close() }
        // Job 0 runs until the pool stops (job 1 failed for real), then gives up as stopped.
        let t0 = try pool.submit { try Self.await { pool.isStopped }; throw CancellationError() }
        let t1 = try pool.submit { throw Boom(n: 1) }
        #expect(throws: Boom(n: 1)) { try pool.wait() }
        #expect(pool.firstError as? Boom == Boom(n: 1))
        #expect(throws: Boom(n: 1)) { try pool.submit {} }
        // Both jobs failed: neither ticket says it ran.
        #expect(!pool.wait(for: t0))
        #expect(!pool.wait(for: t1))
    }

    @Test func poolReportsTheFirstRealErrorBySubmissionOrder() throws {
        let pool = WorkPool(threads: 4, name: "t")
        defer { pool.close() }
        let failed2 = Atomic<Bool>(false)
        // Job 2 fails first (in time), job 1 after it, job 0 stops: job 1's error is reported.
        try pool.submit { try Self.await { pool.isStopped }; throw CancellationError() }
        try pool.submit { try Self.await { failed2.load(ordering: .relaxed) }; throw Boom(n: 1) }
        try pool.submit { defer { failed2.store(true, ordering: .relaxed) }; throw Boom(n: 2) }
        #expect(throws: Boom(n: 1)) { try pool.wait() }
    }

    @Test func poolForEachReportsTheRealError() throws {
        let pool = WorkPool(threads: 4, name: "t")
        defer { pool.close() }
        #expect(throws: Boom(n: 3)) {
            try pool.forEach(0 ..< 4, chunk: 1) { i in
                if i == 0 { try Self.await { pool.isStopped }; throw CancellationError() }
                if i == 3 { throw Boom(n: 3) }
            }
        }
    }

    @Test func poolCancelledFromOutsideStillThrowsCancellationError() throws {
        let pool = WorkPool(threads: 2, name: "t")
        defer { pool.close() }
        let started = DispatchSemaphore(value: 0)
        try pool.submit { started.signal(); try Self.await { pool.isStopped }; throw CancellationError() }
        started.wait()
        pool.cancel()
        #expect(throws: CancellationError.self) { try pool.wait() }
    }

    @Test func orderedStageMapReportsTheRealErrorNotTheCancellationItCaused() throws {
        let pool = WorkPool(threads: 4, name: "t")
        defer { pool.close() }
        // As copy does: a failing job sets a stop flag; jobs running see it and stop.
        let stop = Atomic<Bool>(false), failed3 = Atomic<Bool>(false)
        var out: [Int] = []
        #expect(throws: Boom(n: 2)) {
            try OrderedStage<Int>.map(Array(0 ..< 8), pool: pool, window: 8) { i in
                switch i {
                case 1: try Self.await { stop.load(ordering: .relaxed) }; throw CancellationError()
                case 2: try Self.await { failed3.load(ordering: .relaxed) }; stop.store(true, ordering: .relaxed); throw Boom(n: 2)
                case 3: failed3.store(true, ordering: .relaxed); throw Boom(n: 3)
                default: return i
                }
            } consume: { out.append($0) }
        }
        #expect(out == [0], "results before the first failure are handed on")
        try pool.submit {}
        try pool.wait()
    }

    @Test func orderedStageMapStillThrowsCancellationErrorWhenNothingElseFailed() throws {
        let pool = WorkPool(threads: 2, name: "t")
        defer { pool.close() }
        #expect(throws: CancellationError.self) {
            try OrderedStage<Int>.map(Array(0 ..< 6), pool: pool, window: 4) { i in
                if i == 2 { throw CancellationError() }
                return i
            } consume: { _ in }
        }
    }

    @Test func orderedStagePushModeReportsTheRealErrorNotTheCancellationItCaused() throws {
        let pool = WorkPool(threads: 4, name: "t")
        defer { pool.close() }
        let stop = Atomic<Bool>(false)
        let delivered = Mutex([Int]())
        let stage = OrderedStage<Int>(pool: pool, window: 8) { v in delivered.withLock { $0.append(v) } }
        var thrown: (any Error)?
        do {
            for i in 0 ..< 6 {
                try stage.submit {
                    if i == 1 { try Self.await { stop.load(ordering: .relaxed) }; throw CancellationError() }
                    if i == 4 { stop.store(true, ordering: .relaxed); throw Boom(n: 4) }
                    return i
                }
            }
            try stage.finish()
        } catch { thrown = error }
        #expect(thrown as? Boom == Boom(n: 4), "\(String(describing: thrown))")
        #expect(delivered.withLock { $0 } == [0])
    }
}
