import Dispatch
import Foundation
import Glibc
import Support
import Synchronization
import Testing

/// `SignalWatch`: a signal sent at any moment after `watch` returned reaches its handler, also
/// when the watch is the second one in the process and when every thread of libdispatch's
/// global queue is busy. (hs-backup's signal guard, the stack quiescing and the FUSE mount each
/// used a libdispatch signal source on `.global()` after `signal(sig, SIG_IGN)`: the source is
/// armed later, on libdispatch's manager thread, and a signal that came before was ignored. CI
/// saw it on 2026-12-07: SIGINT sent to a running backup, the backup committed and exited 0.)
@Suite("SignalWatch: armed when watch returns", .serialized)
struct SignalWatchTests {
    /// Waits up to `seconds` for `count` calls of a handler.
    final class Calls: Sendable {
        private let n = Mutex(0)
        private let sem = DispatchSemaphore(value: 0)
        func hit() { n.withLock { $0 += 1 }; sem.signal() }
        var count: Int { n.withLock { $0 } }
        func wait(_ seconds: Double) -> Bool { sem.wait(timeout: .now() + seconds) == .success }
    }

    @Test("a signal sent right after watch() returns reaches the handler, in 50 watches in a row")
    func armedWhenWatchReturns() {
        for attempt in 1 ... 50 {
            let calls = Calls()
            let token = SignalWatch.shared.watch([SIGWINCH]) { _ in calls.hit() }
            kill(getpid(), SIGWINCH)
            let got = calls.wait(3)
            SignalWatch.shared.cancel(token)
            #expect(got, "watch \(attempt): SIGWINCH sent right after watch() returned never reached the handler")
            if !got { return }
        }
    }

    @Test("the second watch of a signal in one process gets it too (after the first was cancelled)")
    func secondWatchAfterCancel() {
        let first = Calls()
        let t1 = SignalWatch.shared.watch([SIGUSR2]) { _ in first.hit() }
        usleep(200_000)   // armed whichever way it is armed
        kill(getpid(), SIGUSR2)
        #expect(first.wait(3), "the first watch did not get SIGUSR2")
        SignalWatch.shared.cancel(t1)
        let second = Calls()
        let t2 = SignalWatch.shared.watch([SIGUSR2]) { _ in second.hit() }
        usleep(200_000)
        kill(getpid(), SIGUSR2)
        #expect(second.wait(3), "the second watch did not get SIGUSR2")
        SignalWatch.shared.cancel(t2)
        #expect(first.count == 1)
    }

    @Test("the handler runs while every thread of libdispatch's global queue is blocked")
    func handlerRunsWhileGlobalQueueIsBusy() {
        let calls = Calls()
        let token = SignalWatch.shared.watch([SIGWINCH]) { _ in calls.hit() }
        usleep(200_000)
        let release = DispatchSemaphore(value: 0)
        let started = Calls()
        let blockers = 4 * ProcessInfo.processInfo.activeProcessorCount + 4
        for _ in 0 ..< blockers {
            DispatchQueue.global().async { started.hit(); release.wait() }
        }
        _ = started.wait(2)   // at least one blocker runs
        usleep(300_000)       // the pool is as full as it gets
        kill(getpid(), SIGWINCH)
        let got = calls.wait(3)
        for _ in 0 ..< blockers { release.signal() }
        SignalWatch.shared.cancel(token)
        #expect(got, "SIGWINCH did not reach the handler while \(started.count) blocks held the global queue")
    }

    @Test("cancel gives the signal back its earlier disposition; two watchers of one signal both run")
    func cancelRestoresAndWatchersShare() {
        var before = sigaction()
        sigaction(SIGUSR1, nil, &before)
        let a = Calls(), b = Calls()
        let ta = SignalWatch.shared.watch([SIGUSR1]) { _ in a.hit() }
        let tb = SignalWatch.shared.watch([SIGUSR1]) { _ in b.hit() }
        kill(getpid(), SIGUSR1)
        #expect(a.wait(3) && b.wait(3), "both watchers: \(a.count), \(b.count)")
        SignalWatch.shared.cancel(ta)
        kill(getpid(), SIGUSR1)
        #expect(b.wait(3), "the remaining watcher")
        #expect(a.count == 1, "a cancelled watcher is not called")
        SignalWatch.shared.cancel(tb)
        var after = sigaction()
        sigaction(SIGUSR1, nil, &after)
        #expect(unsafeBitCast(after.__sigaction_handler.sa_handler, to: Int.self)
                == unsafeBitCast(before.__sigaction_handler.sa_handler, to: Int.self))
    }

    @Test("with keepIgnored, a signal ignored at start (nohup's SIGHUP) stays ignored and is not watched")
    func keepIgnored() {
        let old = signal(SIGHUP, SIG_IGN)
        defer { signal(SIGHUP, old) }
        let token = SignalWatch.shared.watch([SIGHUP, SIGWINCH], keepIgnored: [SIGHUP]) { _ in }
        #expect(SignalWatch.shared.watched(token) == [SIGWINCH])
        var now = sigaction()
        sigaction(SIGHUP, nil, &now)
        #expect(unsafeBitCast(now.__sigaction_handler.sa_handler, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self))
        SignalWatch.shared.cancel(token)
    }
}
