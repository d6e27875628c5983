internal import CShims
import Glibc

// What Foundation's Thread, NSLock and NSCondition did for the tools, on pthreads directly:
// hs-backup and hs-restore link FoundationEssentials only (issue 23: the full Foundation's
// start, CoreFoundation's initialisers and relocations, was the largest fixed cost of a run).

/// Starts `body` on a new detached thread, as `Thread { body }.start()` did (`stackSize` 0:
/// the system's default, as Thread's; `name`: shown by ps/top, at most 15 bytes kept).
/// A thread that cannot be created stops the process with the reason: every caller waits
/// for its thread, so going on would hang.
package func startThread(name: String? = nil, stackSize: Int = 0, _ body: @escaping @Sendable () -> Void) {
    final class Start {
        let name: String?, body: @Sendable () -> Void
        init(_ name: String?, _ body: @escaping @Sendable () -> Void) { self.name = name; self.body = body }
    }
    var attr = pthread_attr_t()
    pthread_attr_init(&attr)
    defer { pthread_attr_destroy(&attr) }
    pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
    if stackSize > 0 { pthread_attr_setstacksize(&attr, max(stackSize, Int(PTHREAD_STACK_MIN))) }
    let context = Unmanaged.passRetained(Start(name, body)).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(&thread, &attr, { raw in
        let start = Unmanaged<AnyObject>.fromOpaque(raw!).takeRetainedValue() as! Start
        if let name = start.name { _ = cshims_set_thread_name(String(decoding: name.utf8.prefix(15), as: UTF8.self)) }
        start.body()
        return nil
    }, context)
    if rc != 0 {
        Unmanaged<AnyObject>.fromOpaque(context).release()
        fatalError("cannot start a thread\(name.map { " (\($0))" } ?? ""): \(Sys.strerror(rc))")
    }
}

/// A pthread mutex with one condition variable: the calls of NSLock and NSCondition the
/// code used (`lock`, `unlock`, `wait`, `signal`, `broadcast`, a lock with a time limit).
/// New code uses `Mutex` or `Monitor`.
package final class ThreadLock: @unchecked Sendable {
    // Safe to share: the pthread objects are made for use from several threads.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let cond: UnsafeMutablePointer<pthread_cond_t>

    package init() {
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        cond = .allocate(capacity: 1)
        pthread_cond_init(cond, nil)
    }

    deinit {
        pthread_cond_destroy(cond)
        cond.deallocate()
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    package func lock() { pthread_mutex_lock(mutex) }
    package func unlock() { pthread_mutex_unlock(mutex) }

    /// Locks if that is possible within `seconds`; false when the time ran out.
    package func lock(within seconds: Double) -> Bool {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let whole = seconds.rounded(.down)
        var deadline = timespec(tv_sec: now.tv_sec + Int(whole), tv_nsec: now.tv_nsec + Int((seconds - whole) * 1e9))
        if deadline.tv_nsec >= 1_000_000_000 { deadline.tv_sec += 1; deadline.tv_nsec -= 1_000_000_000 }
        while true {
            let rc = pthread_mutex_timedlock(mutex, &deadline)
            if rc == 0 { return true }
            if rc != EINTR { return false }
        }
    }

    /// With the lock held: releases it, sleeps until `signal`/`broadcast` (or spuriously), re-locks.
    package func wait() { pthread_cond_wait(cond, mutex) }
    package func signal() { pthread_cond_signal(cond) }
    package func broadcast() { pthread_cond_broadcast(cond) }
}
