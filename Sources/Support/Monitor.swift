import Glibc

/// A value behind a lock, with condition variables to wait for a change of it: the one
/// blocking primitive of the concurrency kit (`WorkPool`, `OrderedStage`, `BoundedQueue` are
/// built on it).
///
/// Use `Mutex` (Synchronization) for state that is only read and changed under a lock; use a
/// `Monitor` only when a thread must sleep until another changes the state. After changing
/// what a waiter waits for, call `wake(_:)` (one waiter) or `wakeAll(_:)`: waiters re-check
/// their condition under the lock, so waking outside the lock loses nothing.
///
///     let m = Monitor(0, conditions: 1)
///     // producer
///     m.withLock { $0 += 1 }; m.wakeAll()
///     // consumer: sleeps until the count is positive, then takes one
///     m.withLock(waitingOn: 0, until: { $0 > 0 }) { $0 -= 1 }
///
/// The corresponding libc calls are `pthread_mutex_lock` and `pthread_cond_wait`.
package final class Monitor<State>: @unchecked Sendable {
    // Safe to share: `state` is touched only with `mutex` held. Inlinable (the lock and wait
    // calls, not the fields' use): other modules' calls are specialized for their State, not
    // the generic code looked up at run time (ArchiveWriter checks its pipeline per entry).
    @usableFromInline let mutex: UnsafeMutablePointer<pthread_mutex_t>
    @usableFromInline let conds: UnsafeMutablePointer<pthread_cond_t>
    private let condCount: Int
    @usableFromInline var state: State

    /// - Parameter conditions: how many separate conditions waiters can wait on (e.g. one for
    ///   "work available", one for "work done", so finishing work does not wake idle workers).
    package init(_ state: sending State, conditions: Int = 1) {
        self.state = state
        condCount = max(1, conditions)
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        conds = .allocate(capacity: condCount)
        for i in 0 ..< condCount { pthread_cond_init(conds + i, nil) }
    }

    deinit {
        for i in 0 ..< condCount { pthread_cond_destroy(conds + i) }
        conds.deallocate()
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` with the state, under the lock.
    @inlinable @inline(__always)
    package func withLock<R, E: Error>(_ body: (inout State) throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&state)
    }

    /// Runs `body` with the state, under the lock, if the lock comes within `seconds`; nil
    /// (`body` not run) when the time ran out (`pthread_mutex_timedlock`).
    package func withLock<R, E: Error>(within seconds: Double, _ body: (inout State) throws(E) -> R) throws(E) -> R? {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let whole = seconds.rounded(.down)
        var deadline = timespec(tv_sec: now.tv_sec + Int(whole), tv_nsec: now.tv_nsec + Int((seconds - whole) * 1e9))
        if deadline.tv_nsec >= 1_000_000_000 { deadline.tv_sec += 1; deadline.tv_nsec -= 1_000_000_000 }
        while true {
            let rc = pthread_mutex_timedlock(mutex, &deadline)
            if rc == 0 { break }
            if rc != EINTR { return nil }
        }
        defer { pthread_mutex_unlock(mutex) }
        return try body(&state)
    }

    /// Sleeps on `condition` until `ready(state)` holds, then runs `body` under the same lock.
    @inlinable
    package func withLock<R, E: Error>(waitingOn condition: Int = 0, until ready: (inout State) -> Bool,
                                       _ body: (inout State) throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while !ready(&state) { pthread_cond_wait(conds + condition, mutex) }
        return try body(&state)
    }

    /// Wakes one thread waiting on `condition`.
    @inlinable
    package func wake(_ condition: Int = 0) { pthread_cond_signal(conds + condition) }

    /// Wakes every thread waiting on `condition`.
    @inlinable
    package func wakeAll(_ condition: Int = 0) { pthread_cond_broadcast(conds + condition) }
}
