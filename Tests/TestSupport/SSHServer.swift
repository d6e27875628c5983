// A real SSH/SFTP server for tests: Debian's OpenSSH `sshd` on 127.0.0.1 on a free port, with
// its own host key, one client key in its own authorized_keys, and an rclone configuration
// (a temporary RCLONE_CONFIG) with an `sftp` remote reaching it and a `local` remote.
import Foundation
import Support
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Why sshd could not be started or controlled.
package struct SSHServerError: Error, CustomStringConvertible {
    package var message: String
    package var logTail: String
    package var description: String {
        message + (logTail.isEmpty ? "" : "\n--- sshd log (last lines) ---\n" + logTail)
    }
}

/// An OpenSSH server on 127.0.0.1 serving SFTP (`sftp-server`, files created 0600) for the
/// user running the tests, with keys only this instance knows:
///
/// | file | what |
/// |---|---|
/// | `hostKeyPath` | the server's ed25519 host key (in `knownHostsPath` for `[127.0.0.1]:port`) |
/// | `clientKeyPath` | the client's ed25519 key (no passphrase), in `authorized_keys` |
/// | `rcloneConfigPath` | `[sftp]` (this server, key auth, known hosts checked) and `[local]` |
/// | `dataPath` | a directory for test data; `remote(_:)` names paths in it |
///
/// Started by `init` (throws with the log tail when it does not accept an SFTP session within
/// 30 s; fails, never skips, when `sshd` is not installed). `kill()` kills the listener and every
/// session process at once (a crash or a network cut, as clients see it); `restart()` starts it
/// again on the same port and keys. Stopped by pid in `stop()`, on deinit, at process exit, and
/// by a watchdog shell when the test process dies without running atexit handlers.
///
/// Use `SSHServer.shared()` plus `makeUniqueDirectory` for ordinary tests; create your own
/// instance for tests that `kill()` or `restart()` the server.
package final class SSHServer: Sendable {
    package let baseDirectory: String
    /// Test data lives here (inspect files here directly).
    package let dataPath: String
    package let hostKeyPath: String
    package let clientKeyPath: String
    package let knownHostsPath: String
    package let configPath: String
    package let logPath: String
    package let pidPath: String
    /// `[sftp]` and `[local]` remotes; pass it as RCLONE_CONFIG (see `environment`).
    package let rcloneConfigPath: String
    /// The user the SFTP remote logs in as (the one running the tests).
    package let user: String
    /// The SSH port (TCP, 127.0.0.1).
    package let port: UInt16

    private struct State { var pid: pid_t?; var counter = 0 }
    private let state = Mutex(State())

    /// The listening daemon's pid, nil when stopped or killed.
    package var processID: pid_t? { state.withLock { $0.pid } }

    /// Creates the keys and configuration and starts the server.
    /// - Throws: `SSHServerError` (with the log tail) when sshd is missing or does not answer.
    package init() throws {
        guard let sshd = Subprocess.which("/usr/sbin/sshd") ?? Subprocess.which("sshd") else {
            throw SSHServerError(message: "sshd is not installed (Debian package openssh-server; scripts/bootstrap.sh installs it)", logTail: "")
        }
        var template = Array((FileManager.default.temporaryDirectory.path + "/hs-sshd.XXXXXX").utf8CString)
        guard let p = mkdtemp(&template) else {
            throw SSHServerError(message: "mkdtemp failed: \(String(cString: strerror(errno)))", logTail: "")
        }
        baseDirectory = String(cString: p)
        dataPath = baseDirectory + "/data"
        hostKeyPath = baseDirectory + "/host_ed25519"
        clientKeyPath = baseDirectory + "/client_ed25519"
        knownHostsPath = baseDirectory + "/known_hosts"
        configPath = baseDirectory + "/sshd_config"
        logPath = baseDirectory + "/sshd.log"
        pidPath = baseDirectory + "/sshd.pid"
        rcloneConfigPath = baseDirectory + "/rclone.conf"
        user = getpwuid(getuid()).map { String(cString: $0.pointee.pw_name) } ?? "root"
        do { port = try Daemon.freePorts(1)[0] } catch {
            try? FileManager.default.removeItem(atPath: baseDirectory)
            throw error
        }
        do {
            try FileManager.default.createDirectory(atPath: dataPath, withIntermediateDirectories: true)
            try writeKeysAndConfig()
            try start(sshd)
        } catch {
            stop()
            try? FileManager.default.removeItem(atPath: baseDirectory)
            throw error
        }
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(atPath: baseDirectory)
    }

    // MARK: - Shared instance

    private static let sharedResult = Mutex<Result<SSHServer, SSHServerError>?>(nil)

    /// One server for the whole test process, started on first use. Throws (every time) if it
    /// could not start: tests that need SFTP then fail, they never skip.
    package static func shared() throws -> SSHServer {
        try sharedResult.withLock { result in
            if result == nil {
                do {
                    let server = try SSHServer()
                    HarnessProcesses.removeAtExit(server.baseDirectory)
                    result = .success(server)
                } catch let e as SSHServerError {
                    result = .failure(e)
                } catch {
                    result = .failure(SSHServerError(message: "\(error)", logTail: ""))
                }
            }
            return try result!.get()
        }
    }

    // MARK: - Remotes and directories

    /// The environment that makes rclone use this server's configuration.
    package var environment: [String: String] { ["RCLONE_CONFIG": rcloneConfigPath] }

    /// The rclone path (`sftp:/abs/path`) of `relative` inside `dataPath`, reached over SFTP.
    package func remote(_ relative: String = "") -> String { "sftp:" + local(relative) }

    /// The same directory through rclone's local backend (`local:/abs/path`).
    package func localRemote(_ relative: String = "") -> String { "local:" + local(relative) }

    /// The local path of `relative` inside `dataPath`.
    package func local(_ relative: String) -> String {
        let rel = relative.split(separator: "/").joined(separator: "/")
        return rel.isEmpty ? dataPath : dataPath + "/" + rel
    }

    /// Creates a fresh, uniquely named directory in `dataPath`; returns its name.
    package func makeUniqueDirectory(_ label: String = "t") throws -> String {
        let n = state.withLock { s -> Int in s.counter += 1; return s.counter }
        let name = "\(label)-\(getpid())-\(n)-\(UInt32.random(in: 0...UInt32.max))"
        guard mkdir(dataPath + "/" + name, 0o700) == 0 else {
            throw SSHServerError(message: "mkdir \(dataPath)/\(name) failed: \(String(cString: strerror(errno)))", logTail: "")
        }
        return name
    }

    /// The last lines of the server's log.
    package func logTail(lines: Int = 30) -> String {
        guard let text = try? String(contentsOfFile: logPath, encoding: .utf8) else { return "" }
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

    // MARK: - Lifecycle

    /// Stops the listener and every session process (SIGKILL: nothing of sshd needs a clean
    /// shutdown). Idempotent.
    package func stop() { kill() }

    /// Kills the listener and every session process below it with SIGKILL, at once: a crash or
    /// a cut network as clients see it. The port stays reserved for `restart()`.
    /// - Returns: the session processes killed (besides the listener).
    @discardableResult
    package func kill() -> Set<pid_t> {
        guard let p = state.withLock({ s -> pid_t? in defer { s.pid = nil }; return s.pid }) else { return [] }
        let sessions = Daemon.killTree(p)
        HarnessProcesses.remove(p)
        return sessions
    }

    /// The processes serving connections now (children of the listener and below).
    package func sessionProcesses() -> Set<pid_t> {
        guard let p = processID else { return [] }
        var tree: Set<pid_t> = [p]
        while true {
            let found = Daemon.children(of: tree).subtracting(tree)
            if found.isEmpty { break }
            tree.formUnion(found)
        }
        return tree.subtracting([p])
    }

    /// Starts the server again on the same port and keys (after `kill()` or `stop()`).
    /// - Throws: `SSHServerError` with the log tail.
    package func restart() throws {
        stop()
        guard let sshd = Subprocess.which("/usr/sbin/sshd") ?? Subprocess.which("sshd") else {
            throw SSHServerError(message: "sshd is not installed", logTail: "")
        }
        var lastError: (any Error)?
        for _ in 0..<5 {  // the old listening socket may take a moment to be released
            do { try start(sshd); return } catch { lastError = error; usleep(500_000) }
        }
        throw lastError!
    }

    // MARK: - Start-up

    private func writeKeysAndConfig() throws {
        for key in [hostKeyPath, clientKeyPath] {
            let r = try Subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hs-test", "-f", key])
            guard r.succeeded else { throw SSHServerError(message: "ssh-keygen -f \(key) failed: \(r.stderr)", logTail: "") }
        }
        let hostPub = try String(contentsOfFile: hostKeyPath + ".pub", encoding: .utf8).split(separator: " ").prefix(2).joined(separator: " ")
        try "[127.0.0.1]:\(port) \(hostPub)\n".write(toFile: knownHostsPath, atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(atPath: clientKeyPath + ".pub", toPath: baseDirectory + "/authorized_keys")
        let sftpServer = ["/usr/lib/openssh/sftp-server", "/usr/libexec/sftp-server"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        } ?? "internal-sftp"
        let conf = """
            Port \(port)
            ListenAddress 127.0.0.1
            HostKey \(hostKeyPath)
            PidFile \(pidPath)
            AuthorizedKeysFile \(baseDirectory)/authorized_keys
            PubkeyAuthentication yes
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            PermitRootLogin prohibit-password
            UsePAM no
            StrictModes no
            MaxStartups 200
            MaxSessions 200
            LogLevel INFO
            Subsystem sftp \(sftpServer) -u 0077

            """
        try conf.write(toFile: configPath, atomically: true, encoding: .utf8)
        let rclone = """
            [sftp]
            type = sftp
            host = 127.0.0.1
            port = \(port)
            user = \(user)
            key_file = \(clientKeyPath)
            known_hosts_file = \(knownHostsPath)
            shell_type = unix
            md5sum_command = md5sum
            sha1sum_command = sha1sum

            [local]
            type = local

            """
        try rclone.write(toFile: rcloneConfigPath, atomically: true, encoding: .utf8)
        chmod(rcloneConfigPath, 0o600)
    }

    private func start(_ sshd: String) throws {
        if getuid() == 0 { mkdir("/run/sshd", 0o755) }  // privilege separation directory
        unlink(pidPath)
        let out = baseDirectory + "/sshd.out"
        let check = try Subprocess.run([sshd, "-t", "-f", configPath])
        guard check.succeeded else {
            throw SSHServerError(message: "sshd -t -f \(configPath) rejected the configuration: \(check.stderr)", logTail: "")
        }
        let r = try Daemon.runDetaching([sshd, "-f", configPath, "-E", logPath], output: out)
        guard r.succeeded else {
            let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
            throw SSHServerError(message: "\(sshd) -f \(configPath) exited with status \(r.status): \(text)", logTail: logTail())
        }
        let deadline = Date().addingTimeInterval(30)
        var daemon: pid_t?
        while Date() < deadline {
            if daemon == nil, let s = try? String(contentsOfFile: pidPath, encoding: .utf8),
               let p = pid_t(s.trimmingCharacters(in: .whitespacesAndNewlines)), p > 0 {
                daemon = p
                state.withLock { $0.pid = p }
                HarnessProcesses.add(p)
                Daemon.startWatchdog(daemon: p, command: "sshd")
            }
            if let d = daemon {
                guard Daemon.isAlive(d) else {
                    stop()
                    throw SSHServerError(message: "sshd (pid \(d)) exited during start-up (port \(port))", logTail: logTail())
                }
                if answers(within: max(1, deadline.timeIntervalSinceNow)) { return }
            }
            usleep(100_000)
        }
        stop()
        throw SSHServerError(message: "sshd did not accept an SFTP session on 127.0.0.1:\(port) within 30 s", logTail: logTail())
    }

    /// True when an independent client (OpenSSH's sftp, with the test keys) can list `dataPath`
    /// within `seconds` (ConnectTimeout bounds only the connect and banner waits).
    private func answers(within seconds: Double) -> Bool {
        let args = ["sftp", "-b", "-", "-P", String(port), "-i", clientKeyPath, "-o", "UserKnownHostsFile=\(knownHostsPath)",
                    "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "\(user)@127.0.0.1"]
        let r = try? Daemon.runClient(args, input: Data("ls \(dataPath)\n".utf8), within: seconds)
        return r?.succeeded == true
    }
}
