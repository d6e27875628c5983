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
    // Safe to share: `state` is touched only with `mutex` held.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let conds: UnsafeMutablePointer<pthread_cond_t>
    private let condCount: Int
    private var state: State

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
    @inline(__always)
    package func withLock<R, E: Error>(_ body: (inout State) throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&state)
    }

    /// Sleeps on `condition` until `ready(state)` holds, then runs `body` under the same lock.
    package func withLock<R, E: Error>(waitingOn condition: Int = 0, until ready: (inout State) -> Bool,
                                       _ body: (inout State) throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while !ready(&state) { pthread_cond_wait(conds + condition, mutex) }
        return try body(&state)
    }

    /// Wakes one thread waiting on `condition`.
    package func wake(_ condition: Int = 0) { pthread_cond_signal(conds + condition) }

    /// Wakes every thread waiting on `condition`.
    package func wakeAll(_ condition: Int = 0) { pthread_cond_broadcast(conds + condition) }
}
