import FoundationEssentials
import Support
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Says on stderr, every `noticeInterval` seconds, that an NFS call is still waiting for its
/// server, like a kernel client's "server not responding, still trying". One background
/// thread per process, started on first use; calls register with `begin` and `end`.
///
/// The call itself gives up after the client's timeout (`NFSClient.Options`, URL `timeout=`);
/// this only keeps a person (or cron mail) from staring at silence meanwhile.
final class NFSCallMonitor: Sendable {
    static let shared = NFSCallMonitor()
    /// Seconds between two notices about the same waiting call.
    static let noticeInterval: TimeInterval = 15

    private struct Call {
        var server: String
        var started: Date
        var lastNotice: Date
        var timeoutSeconds: Int
    }

    private struct State {
        var calls: [Int: Call] = [:]
        var nextToken = 0
        var started = false
    }
    private let state = Mutex(State())

    /// Registers a call that is about to wait for `server`; returns a token for `end`.
    func begin(server: String, timeoutSeconds: Int) -> Int {
        let (token, start) = state.withLock { s in
            defer { s.started = true }
            s.nextToken += 1
            let now = Date()
            s.calls[s.nextToken] = Call(server: server, started: now, lastNotice: now, timeoutSeconds: timeoutSeconds)
            return (s.nextToken, !s.started)
        }
        if start {
            // A plain pthread for the rest of the process (NFS uses no module of ours, so not
            // Support's startThread). Unnamed, as before: Thread's "nfs-call-monitor" was over
            // the 15 bytes pthread_setname_np takes. Without it only the notices are missing.
            var thread = pthread_t()
            if pthread_create(&thread, nil, { _ in NFSCallMonitor.shared.loop(); return nil }, nil) == 0 { pthread_detach(thread) }
        }
        return token
    }

    func end(_ token: Int) {
        state.withLock { $0.calls[token] = nil }
    }

    private func loop() {
        while true {
            usleep(500_000)
            let now = Date()
            let notices: [String] = state.withLock { s in
                var notices: [String] = []
                for (token, var call) in s.calls where now.timeIntervalSince(call.lastNotice) >= Self.noticeInterval {
                    call.lastNotice = now
                    s.calls[token] = call
                    let waited = Int(now.timeIntervalSince(call.started))
                    let limit = call.timeoutSeconds > 0 ? "; gives up after \(call.timeoutSeconds) s" : ""
                    notices.append("nfs \(NameEscape.escape(call.server)): server not responding, still trying ... (waiting \(waited) s\(limit))\n")
                }
                return notices
            }
            for n in notices { _ = n.withCString { write(STDERR_FILENO, $0, strlen($0)) } }
        }
    }
}
