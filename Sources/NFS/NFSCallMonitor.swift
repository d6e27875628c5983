import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Says on stderr, every `noticeInterval` seconds, that an NFS call is still waiting for its
/// server, like a kernel client's "server not responding, still trying". One background
/// thread per process, started on first use; calls register with `begin` and `end`.
///
/// The call itself gives up after the client's timeout (`NFSClient.Options`, URL `timeout=`);
/// this only keeps a person (or cron mail) from staring at silence meanwhile.
final class NFSCallMonitor: @unchecked Sendable {
    static let shared = NFSCallMonitor()
    /// Seconds between two notices about the same waiting call.
    static let noticeInterval: TimeInterval = 15

    private struct Call {
        var server: String
        var started: Date
        var lastNotice: Date
        var timeoutSeconds: Int
    }

    private let lock = NSLock()
    private var calls: [Int: Call] = [:]
    private var nextToken = 0
    private var started = false

    /// Registers a call that is about to wait for `server`; returns a token for `end`.
    func begin(server: String, timeoutSeconds: Int) -> Int {
        lock.lock(); defer { lock.unlock() }
        if !started {
            started = true
            let t = Thread { [self] in loop() }
            t.name = "nfs-call-monitor"
            t.start()
        }
        nextToken += 1
        let now = Date()
        calls[nextToken] = Call(server: server, started: now, lastNotice: now, timeoutSeconds: timeoutSeconds)
        return nextToken
    }

    func end(_ token: Int) {
        lock.lock(); calls[token] = nil; lock.unlock()
    }

    private func loop() {
        while true {
            usleep(500_000)
            let now = Date()
            var notices: [String] = []
            lock.lock()
            for (token, var call) in calls where now.timeIntervalSince(call.lastNotice) >= Self.noticeInterval {
                call.lastNotice = now
                calls[token] = call
                let waited = Int(now.timeIntervalSince(call.started))
                let limit = call.timeoutSeconds > 0 ? "; gives up after \(call.timeoutSeconds) s" : ""
                notices.append("nfs \(call.server): server not responding, still trying ... (waiting \(waited) s\(limit))\n")
            }
            lock.unlock()
            for n in notices { _ = n.withCString { write(STDERR_FILENO, $0, strlen($0)) } }
        }
    }
}
