// Process helpers the real-server harnesses share (nfs-ganesha, sshd): start a daemon detached
// from the test's pipes, find free ports, find a process tree, stop by pid, and a watchdog that
// stops a daemon when the test process dies without cleaning up.
import Foundation
import Support

#if canImport(Glibc)
import Glibc
#endif

/// Why a harness could not reach a free port or start a helper.
package struct HarnessError: Error, CustomStringConvertible {
    package var message: String
    package var description: String { message }
}

package enum Daemon {
    /// True when `p` runs (a zombie waiting to be reaped is not running).
    package static func isAlive(_ p: pid_t) -> Bool {
        guard Glibc.kill(p, 0) == 0 else { return false }
        if let stat = try? String(contentsOfFile: "/proc/\(p)/stat", encoding: .utf8),
           let close = stat.lastIndex(of: ")") {
            let state = stat[stat.index(close, offsetBy: 2)...].prefix(1)
            if state == "Z" || state == "X" { return false }
        }
        return true
    }

    /// SIGTERM, then SIGKILL after `graceSeconds` (at once when 0); waits up to 5 s for the end.
    package static func terminate(_ p: pid_t, graceSeconds: Double) {
        guard isAlive(p) else { return }
        if graceSeconds > 0 {
            Glibc.kill(p, SIGTERM)
            let deadline = Date().addingTimeInterval(graceSeconds)
            while Date() < deadline {
                if !isAlive(p) { return }
                usleep(50_000)
            }
        }
        Glibc.kill(p, SIGKILL)
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline && isAlive(p) { usleep(20_000) }
    }

    /// The parent pid of `p` from /proc (nil when it is gone).
    package static func parent(of p: pid_t) -> pid_t? {
        guard let stat = try? String(contentsOfFile: "/proc/\(p)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(close, offsetBy: 2)...].split(separator: " ")
        return fields.count > 1 ? pid_t(fields[1]) : nil
    }

    /// Every process whose parent is in `parents`.
    static func children(of parents: Set<pid_t>) -> Set<pid_t> {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        var out: Set<pid_t> = []
        for n in names {
            guard let p = pid_t(n), let pp = parent(of: p), parents.contains(pp) else { continue }
            out.insert(p)
        }
        return out
    }

    /// Kills `root` and every process below it at once, as a crash of the whole service would:
    /// the tree is frozen (SIGSTOP, so nothing forks meanwhile), collected to a fixed point, then
    /// every member gets SIGKILL.
    /// - Returns: the pids killed besides `root`.
    @discardableResult
    package static func killTree(_ root: pid_t) -> Set<pid_t> {
        var tree: Set<pid_t> = [root]
        Glibc.kill(root, SIGSTOP)
        while true {
            let found = children(of: tree).subtracting(tree)
            if found.isEmpty { break }
            for p in found { Glibc.kill(p, SIGSTOP) }
            tree.formUnion(found)
        }
        for p in tree { Glibc.kill(p, SIGKILL) }
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline && tree.contains(where: isAlive) { usleep(20_000) }
        return tree.subtracting([root])
    }

    /// A detached shell that stops `daemon` (SIGTERM, then SIGKILL) if this test process dies
    /// without cleaning up, as long as `daemon` still runs the program named `command`.
    package static func startWatchdog(daemon: pid_t, command: String) {
        let me = getpid()
        let script = """
            ( while kill -0 \(me) 2>/dev/null && kill -0 \(daemon) 2>/dev/null; do sleep 2; done
              if ! kill -0 \(me) 2>/dev/null && [ "$(cat /proc/\(daemon)/comm 2>/dev/null)" = \(command) ]; then
                kill -TERM \(daemon); sleep 3; kill -KILL \(daemon) 2>/dev/null
              fi ) </dev/null >/dev/null 2>&1 &
            """
        _ = try? runDetaching(["bash", "-c", script], output: "/dev/null")
    }

    /// Runs a program that leaves a daemon behind: the daemon gets no descriptor of the test
    /// process (everything above 2 is closed) and writes to `output`, not to our pipes, so
    /// Subprocess.run returns as soon as the starter exits.
    package static func runDetaching(_ arguments: [String], output: String) throws -> ProcessResult {
        let script = "for fd in $(ls /proc/$$/fd); do [ \"$fd\" -gt 2 ] && eval \"exec $fd>&-\"; done; "
            + "exec \"$0\" \"$@\" </dev/null >>\"\(output)\" 2>&1"
        return try Subprocess.run(["bash", "-c", script] + arguments)
    }

    /// Runs a client of a harness's server to its end, at most `seconds`: stdin is `input`
    /// followed by end of file (/dev/null when nil), stdout and stderr are captured. A server
    /// that stops answering must fail the test, never hang it.
    /// - Returns: nil when the client was still running at the deadline (it and its process
    ///   group were killed).
    package static func runClient(_ arguments: [String], input: Data? = nil, environment: [String: String] = [:],
                                  within seconds: Double) throws -> ProcessResult? {
        let child = try ChildProcess.start(arguments, environment: environment, input: input == nil ? .null : .stream,
                                           captureStdout: true)
        if let input {
            // Small inputs only: the socket buffer takes them whole, so this never blocks.
            _ = try? input.withUnsafeBytes { try child.write($0) }
            child.closeInput()
        }
        return child.wait(upTo: seconds)
    }

    /// Distinct free TCP ports on 127.0.0.1 (bound to port 0, then released).
    package static func freePorts(_ n: Int) throws -> [UInt16] {
        var fds: [Int32] = []
        defer { for fd in fds { Glibc.close(fd) } }
        var ports: [UInt16] = []
        while ports.count < n {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw HarnessError(message: "socket() failed") }
            fds.append(fd)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = 0
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            let ok = withUnsafeMutablePointer(to: &addr) { ptr in
                ptr.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                    bind(fd, sa, len) == 0 && getsockname(fd, sa, &len) == 0
                }
            }
            guard ok else { throw HarnessError(message: "bind to a free port failed: \(String(cString: strerror(errno)))") }
            let port = UInt16(bigEndian: addr.sin_port)
            if !ports.contains(port) { ports.append(port) }
        }
        return ports
    }
}

extension ChildProcess {
    /// Waits at most `seconds` for the child to exit. Past that, kills its process group (the
    /// child and what it started, e.g. sftp's ssh) and returns nil: a test waiting on a client
    /// fails, it never hangs.
    package func wait(upTo seconds: Double) -> ProcessResult? {
        let deadline = Date().addingTimeInterval(seconds)
        while isRunning {
            guard Date() < deadline else {
                signal(SIGKILL, group: true)
                wait()
                return nil
            }
            usleep(20_000)
        }
        return wait()
    }
}
