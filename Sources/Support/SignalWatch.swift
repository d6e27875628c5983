// SignalWatch: how the tools take SIGINT, SIGTERM and SIGHUP (hs-backup's run guard, the stack
// quiescing, the FUSE mount). A handler is armed before `watch` returns, and it runs on a thread
// of its own that nothing else uses.
//
// Not a libdispatch signal source, which all three used before: libdispatch arms a source later,
// on its manager thread (that is where it calls sigaction), and the tools had set SIG_IGN first
// (Apple's advice for sources), so a signal that came before the manager thread ran was dropped by
// the kernel. CI saw it on 2026-12-07: SIGINT to a backup that had just started, and the backup
// went on, committed and exited 0. libdispatch also installs its handler only for the first
// source of a signal in a process: after a cancel reset the signal to SIG_DFL, a later source of
// it was never armed at all. Here a C handler (CShims) writes the signal's number to a pipe;
// one thread ("hs-signals") reads the pipe and calls the handlers watching that signal.
internal import CShims
import FoundationEssentials
import Glibc
import Synchronization

package final class SignalWatch: Sendable {
    /// The one watch of the process (a signal's disposition is process-wide).
    package static let shared = SignalWatch()

    package struct Token: Hashable, Sendable { fileprivate let id: Int }

    private struct Watcher {
        let id: Int
        let signals: [Int32]
        let handler: @Sendable (Int32) -> Void
    }
    private struct State {
        var watchers: [Watcher] = []
        var next = 0
        /// The pipe's write end (the C handler's), -1 until the first watch.
        var writeEnd: Int32 = -1
    }
    private let state = Mutex(State())

    /// Calls `handler` with the signal's number, on the "hs-signals" thread, for each of
    /// `signals` delivered to the process until `cancel(token)`. Armed when this returns.
    /// - Parameter keepIgnored: signals left alone (not watched) when they are ignored now
    ///   (SIGHUP under `nohup`).
    package func watch(_ signals: [Int32], keepIgnored: Set<Int32> = [],
                       _ handler: @escaping @Sendable (Int32) -> Void) -> Token {
        let others = signals.filter { !Self.takeable.contains($0) }
        if !others.isEmpty { Self.unblock(others) }   // (in the calling thread: the reader unblocks only `takeable`)
        return state.withLock { s in
            if s.writeEnd < 0 { s.writeEnd = startReader() }
            s.next += 1
            let mine = signals.filter { !(keepIgnored.contains($0) && cshims_signal_is_ignored($0) != 0) }
            // Watched before armed: the reader takes this lock before it looks for watchers.
            s.watchers.append(Watcher(id: s.next, signals: mine, handler: handler))
            if s.writeEnd >= 0 {
                for sig in mine where !s.watchers.dropLast().contains(where: { $0.signals.contains(sig) }) {
                    if cshims_signal_forward(sig, s.writeEnd) != 0 {
                        Self.warn("cannot take signal \(sig): \(Sys.strerror(errno)) (it keeps its default action)")
                    }
                }
            }
            return Token(id: s.next)
        }
    }

    /// The signals a watch took (`keepIgnored` left out).
    package func watched(_ token: Token) -> [Int32] {
        state.withLock { s in s.watchers.first { $0.id == token.id }?.signals ?? [] }
    }

    /// Ends a watch; a signal nobody watches any more gets back the disposition it had before
    /// it was first watched.
    package func cancel(_ token: Token) {
        state.withLock { s in
            guard let i = s.watchers.firstIndex(where: { $0.id == token.id }) else { return }
            let gone = s.watchers.remove(at: i)
            for sig in gone.signals where !s.watchers.contains(where: { $0.signals.contains(sig) }) {
                cshims_signal_restore(sig)
            }
        }
    }

    /// The pipe and its reader thread; -1 (and a warning) if no pipe can be made.
    private func startReader() -> Int32 {
        var fds: [Int32] = [-1, -1]
        guard cshims_pipe_cloexec(&fds) == 0 else {
            Self.warn("cannot watch for signals: pipe2: \(Sys.strerror(errno)) (a signal stops the tool without cleanup)")
            return -1
        }
        // The handler must never block: a full pipe (64 KiB of signals nobody read) drops one.
        _ = fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK)
        let readEnd = fds[0]
        startThread(name: "hs-signals", stackSize: 256 << 10) { [self] in readLoop(readEnd) }
        return fds[1]
    }

    /// The signals the tools watch, unblocked in the reader thread: the kernel gives a signal to a
    /// thread that does not block it, and the C handler runs there. A signal mask is inherited: a
    /// tool started by a thread that blocks SIGTERM (a supervisor's worker thread) had it blocked
    /// in every thread, and a SIGTERM stayed pending while a backup committed and exited 0. A
    /// watch of any other signal unblocks it in the thread that calls `watch`.
    private static let takeable: [Int32] = [SIGHUP, SIGINT, SIGTERM]

    private static func unblock(_ signals: [Int32]) {
        var set = sigset_t()
        sigemptyset(&set)
        for sig in signals { sigaddset(&set, sig) }
        let rc = pthread_sigmask(SIG_UNBLOCK, &set, nil)
        if rc != 0 { warn("cannot unblock signals \(signals): \(Sys.strerror(rc)) (a blocked signal waits until unblocked)") }
    }

    private func readLoop(_ fd: Int32) {
        Self.unblock(Self.takeable)
        var buffer = [UInt8](repeating: 0, count: 64)
        while true {
            let n = buffer.withUnsafeMutableBytes { b in Sys.retry { read(fd, b.baseAddress, b.count) } }
            guard n > 0 else {
                Self.warn("stopped watching for signals: read: \(n < 0 ? Sys.strerror(errno) : "end of pipe")")
                return
            }
            for byte in buffer[..<n] {
                let sig = Int32(byte)
                let handlers = state.withLock { s in s.watchers.filter { $0.signals.contains(sig) }.map(\.handler) }
                for h in handlers { h(sig) }
            }
        }
    }

    private static func warn(_ message: String) {
        let line = Array("warning: \(message)\n".utf8)
        line.withUnsafeBytes { b in _ = Sys.retry { write(2, b.baseAddress, b.count) } }
    }
}
