internal import CShims
import Glibc

// What Foundation's Thread did for the tools, on pthreads directly (for NSLock and NSCondition:
// `Mutex`, `Monitor`): hs-backup and hs-restore link FoundationEssentials only (issue 23: the
// full Foundation's start, CoreFoundation's initialisers and relocations, was the largest
// fixed cost of a run).

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
