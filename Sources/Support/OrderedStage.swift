/// Jobs run in parallel on a `WorkPool`, their results handed on in submission order, with a
/// bound on the results in flight (memory stays bounded however far the producer runs).
///
/// Two ways to take results (pick one per stage):
/// - **pull**: the consumer calls `next()` (another thread than the submitter, or the same
///   one when `isFull`; `map` does the interleaving for a single thread);
/// - **push**: `deliver` given at `init` is called for each result in order, one at a time, on
///   the pool thread that completed the result next in line (or in `finish()`): e.g. compressed
///   gzip members written to the archive while the next ones are compressed.
///
/// A job's error is handed on at its place: in pull mode `next()` throws it after the results
/// before it; in push mode the stage stops delivering, and `submit`/`finish` throw it. As in
/// `WorkPool`, a `CancellationError` gives way to a later job's other error (`map` and push
/// mode wait for the jobs in flight to see it): a job stopped because a later one failed does
/// not say why. The stage's jobs never fail the pool itself, so a stage can share a pool with
/// other work (the stage expects the pool to run every job it took: do not cancel it under
/// the stage).
///
///     // Backup prefetch: read files on 4 threads, archive them in scan order.
///     let pool = WorkPool(threads: 4, name: "prefetch")
///     defer { pool.close() }
///     try OrderedStage<Content>.map(entries, pool: pool, window: 64) { entry in
///         try readContent(entry)              // pool threads
///     } consume: { content in
///         try archive.add(content)            // this thread, in entry order
///     }
package final class OrderedStage<Output: Sendable>: Sendable {
    private struct State {
        var results: [UInt64: Result<Output, any Error>] = [:]
        var bytes: [UInt64: Int] = [:]
        var nextSubmit: UInt64 = 0
        var nextDeliver: UInt64 = 0
        var bytesInFlight = 0
        var delivering = false
        /// Push mode: the error to throw (`WorkPool.reports`) and the result it came from.
        var failure: (sequence: UInt64, error: any Error)?
        /// The pool refused a job (it may have dropped the ones queued).
        var refused = false
        var cancelled = false

        var outstanding: Int { Int(nextSubmit - nextDeliver) }
        var headReady: Bool { results[nextDeliver] != nil }

        mutating func takeHead() -> Result<Output, any Error> {
            let r = results.removeValue(forKey: nextDeliver)!
            bytesInFlight -= bytes.removeValue(forKey: nextDeliver) ?? 0
            nextDeliver += 1
            return r
        }

        /// Push mode: the error to throw now: another error at once, a `CancellationError` once
        /// the jobs in flight finished (one of them may have failed otherwise and stopped it).
        var settledFailure: (any Error)? {
            guard let failure else { return nil }
            return !(failure.error is CancellationError) || refused || results.count == outstanding ? failure.error : nil
        }

        /// Push mode: keeps `error` of result `sequence` when it is the one to throw.
        mutating func fail(_ sequence: UInt64, _ error: any Error) {
            if WorkPool.reports(error, at: sequence, over: failure) { failure = (sequence, error) }
        }
    }

    private static var changed: Int { 0 }
    private let monitor = Monitor(State(), conditions: 1)
    private let pool: WorkPool
    private let window: Int
    private let maxBytes: Int
    private let deliver: (@Sendable (Output) throws -> Void)?

    /// - Parameters:
    ///   - pool: where the jobs run.
    ///   - window: results submitted but not yet handed on, at most (submit blocks beyond).
    ///   - maxBytes: their declared bytes, at most (one larger item is let in alone).
    ///   - deliver: push mode: called with each result in order (see the type's doc).
    package init(pool: WorkPool, window: Int, maxBytes: Int = .max,
                 deliver: (@Sendable (Output) throws -> Void)? = nil) {
        self.pool = pool
        self.window = max(1, window)
        self.maxBytes = maxBytes
        self.deliver = deliver
    }

    /// True when `submit` would block (pull mode from the consuming thread: call `next()`).
    package var isFull: Bool {
        let (w, m) = (window, maxBytes)
        return monitor.withLock { $0.outstanding >= w || ($0.outstanding > 0 && $0.bytesInFlight >= m) }
    }

    /// Results submitted and not yet handed on.
    package var outstanding: Int { monitor.withLock { $0.outstanding } }

    /// Starts `job` on the pool; blocks while the window is full.
    /// - Throws: in push mode the first error (a job's or `deliver`'s); `CancellationError`
    ///   after `cancel()`; the pool's error when it refuses the job.
    package func submit(bytes: Int = 0, _ job: @escaping @Sendable () throws -> Output) throws {
        let (w, m) = (window, maxBytes)
        let seq = try monitor.withLock(waitingOn: Self.changed, until: { s in
            s.settledFailure != nil || s.cancelled
                || (s.failure == nil && (s.outstanding == 0 || (s.outstanding < w && s.bytesInFlight + bytes <= m)))
        }) { (s: inout State) throws -> UInt64 in
            if let f = s.settledFailure { throw f }
            if s.cancelled { throw CancellationError() }
            let seq = s.nextSubmit
            s.nextSubmit += 1
            s.bytesInFlight += bytes
            s.bytes[seq] = bytes
            return seq
        }
        let monitor = monitor, deliver = deliver
        do {
            try pool.submit {
                let result = Result { try job() }
                monitor.withLock { s in
                    s.results[seq] = result
                    // Push mode, stopped already: this error may be why.
                    if s.failure != nil, case .failure(let error) = result { s.fail(seq, error) }
                }
                if let deliver { Self.drain(monitor, deliver) }
                monitor.wakeAll(Self.changed)
            }
        } catch {
            monitor.withLock { s in
                s.results[seq] = .failure(error)
                s.refused = true
                if deliver != nil { s.fail(seq, error) }
            }
            monitor.wakeAll(Self.changed)
            throw error
        }
    }

    /// Pull mode: the next result in submission order, waiting for it; nil when every submitted
    /// result has been handed on.
    /// - Throws: the error of that result's job.
    package func next() throws -> Output? {
        precondition(deliver == nil, "OrderedStage.next() on a stage with a deliver closure")
        let r = monitor.withLock(waitingOn: Self.changed, until: { $0.outstanding == 0 || $0.headReady }) { s in
            s.outstanding == 0 ? nil : s.takeHead()
        }
        guard let r else { return nil }
        monitor.wakeAll(Self.changed)
        return try r.get()
    }

    /// Pull mode: the next result in submission order if it is ready now (does not wait).
    /// - Throws: the error of that result's job.
    package func nextIfReady() throws -> Output? {
        precondition(deliver == nil, "OrderedStage.nextIfReady() on a stage with a deliver closure")
        let r = monitor.withLock { s in s.headReady ? s.takeHead() : nil }
        guard let r else { return nil }
        monitor.wakeAll(Self.changed)
        return try r.get()
    }

    /// Push mode: waits until every submitted result was delivered (or the stage failed).
    /// - Throws: the first error (a job's or `deliver`'s; a `CancellationError` last).
    package func finish() throws {
        if let deliver { Self.drain(monitor, deliver) }
        let failure = monitor.withLock(waitingOn: Self.changed, until: { s in
            !s.delivering && (s.outstanding == 0 || s.settledFailure != nil)
        }) { $0.settledFailure }
        if let failure { throw failure }
    }

    /// Stops: later submissions throw; results not handed on are dropped.
    package func cancel() {
        monitor.withLock { $0.cancelled = true }
        monitor.wakeAll(Self.changed)
    }

    /// Hands on ready results in order, one thread at a time.
    private static func drain(_ monitor: Monitor<State>, _ deliver: @Sendable (Output) throws -> Void) {
        while true {
            let next: (sequence: UInt64, result: Result<Output, any Error>)? = monitor.withLock { s in
                guard !s.delivering, s.failure == nil, !s.cancelled, s.headReady else { return nil }
                s.delivering = true
                return (s.nextDeliver, s.takeHead())
            }
            guard let next else { return }
            var failure: (any Error)?
            do { try deliver(try next.result.get()) } catch { failure = error }
            monitor.withLock { s in
                s.delivering = false
                guard let failure else { return }
                s.fail(next.sequence, failure)
                // Jobs after it that failed already: one may be why it stopped.
                for (k, r) in s.results { if case .failure(let e) = r { s.fail(k, e) } }
            }
            monitor.wakeAll(changed)
            if failure != nil { return }
        }
    }

    /// Runs `transform` over `inputs` on `pool`, at most `window` at a time, and hands each
    /// result to `consume` on the calling thread in input order.
    /// - Throws: the first error of `transform` (by input order) or of `consume`, a
    ///   `CancellationError` only when no job running after it failed otherwise; the inputs
    ///   after it are not started, and the ones running are waited for.
    package static func map<S: Sequence>(_ inputs: S, pool: WorkPool, window: Int, maxBytes: Int = .max,
                                         bytes: (S.Element) -> Int = { _ in 0 },
                                         transform: @escaping @Sendable (S.Element) throws -> Output,
                                         consume: (Output) throws -> Void) throws where S.Element: Sendable {
        let stage = OrderedStage(pool: pool, window: window, maxBytes: maxBytes)
        do {
            for input in inputs {
                while stage.isFull { if let out = try stage.next() { try consume(out) } }
                try stage.submit(bytes: bytes(input)) { try transform(input) }
            }
            while let out = try stage.next() { try consume(out) }
        } catch {
            stage.cancel()
            // Let the jobs in flight finish before returning (they may use the caller's state);
            // one may have failed otherwise and made the one before it throw CancellationError.
            var failure: (sequence: UInt64, error: any Error) = (0, error)
            var sequence: UInt64 = 0
            while stage.outstanding > 0 {
                sequence += 1
                do { _ = try stage.next() } catch {
                    if WorkPool.reports(error, at: sequence, over: failure) { failure = (sequence, error) }
                }
            }
            throw failure.error
        }
    }
}
