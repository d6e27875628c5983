// A real NFS server for tests: nfs-ganesha (VFS FSAL) on 127.0.0.1 with temporary exports on
// free ports. Every URL it hands out names its ports (nfsport=, mountport=), so several servers
// (tests of several modules run at once) never depend on rpcbind registrations.
import Foundation
import Support

#if canImport(Glibc)
import Glibc
#endif

/// Why a ganesha server could not be started or controlled.
package struct GaneshaError: Error, CustomStringConvertible {
    package var message: String
    package var logTail: String
    package var description: String {
        message + (logTail.isEmpty ? "" : "\n--- ganesha log (last lines) ---\n" + logTail)
    }
}

/// An nfs-ganesha server on 127.0.0.1 with three exports in a temporary directory:
///
/// | export | local directory | Pseudo (NFSv4) | access |
/// |---|---|---|---|
/// | `.main` | `exportPath` | `/export` | RW, no_root_squash |
/// | `.readOnly` | `readOnlyExportPath` | `/readonly` | RO |
/// | `.rootSquash` | `rootSquashExportPath` | `/squashed` | RW, root_squash (root becomes 65534; the directory is root-owned 0755) |
///
/// Started by `init` (throws with the log tail when it does not answer within 30 s); stopped
/// by pid with SIGTERM then SIGKILL in `stop()`, on deinit, at process exit, and by a
/// watchdog shell when the test process dies without running atexit handlers.
///
/// Use `GaneshaServer.shared()` plus `makeUniqueDirectory` for ordinary tests; create your
/// own instance for tests that `kill()` or `restart()` the server.
package final class GaneshaServer: @unchecked Sendable {
    /// Which export a URL points into.
    package enum Export: Sendable {
        case main, readOnly, rootSquash
    }

    /// The temporary directory holding the exports, configuration, log and pid file.
    package let baseDirectory: String
    /// The local directory behind the `.main` export (inspect files here directly).
    package let exportPath: String
    /// The local directory behind the read-only export.
    package let readOnlyExportPath: String
    /// The local directory behind the root-squashed export (root-owned, mode 0755).
    package let rootSquashExportPath: String
    package let configPath: String
    package let logPath: String
    package let pidPath: String
    /// The NFS port (TCP, 127.0.0.1).
    package private(set) var nfsPort: UInt16 = 0
    /// The MOUNT protocol port (TCP, 127.0.0.1).
    package private(set) var mountPort: UInt16 = 0

    private let lock = NSLock()
    private var pid: pid_t?
    private var counter = 0
    private let ownsBaseDirectory: Bool

    /// The running daemon's pid, nil when stopped.
    package var processID: pid_t? { lock.lock(); defer { lock.unlock() }; return pid }

    /// Creates the exports and starts the server.
    /// - Throws: `GaneshaError` (with the log tail) when rpcbind or ganesha cannot start.
    package init() throws {
        var template = Array((FileManager.default.temporaryDirectory.path + "/hs-ganesha.XXXXXX").utf8CString)
        guard let p = mkdtemp(&template) else { throw GaneshaError(message: "mkdtemp failed: \(String(cString: strerror(errno)))", logTail: "") }
        baseDirectory = String(cString: p)
        ownsBaseDirectory = true
        exportPath = baseDirectory + "/export"
        readOnlyExportPath = baseDirectory + "/readonly"
        rootSquashExportPath = baseDirectory + "/squashed"
        configPath = baseDirectory + "/ganesha.conf"
        logPath = baseDirectory + "/ganesha.log"
        pidPath = baseDirectory + "/ganesha.pid"
        for dir in [exportPath, readOnlyExportPath, rootSquashExportPath, baseDirectory + "/recovery"] {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        }
        chmod(baseDirectory, 0o755)
        chmod(exportPath, 0o777)
        chmod(readOnlyExportPath, 0o755)
        chmod(rootSquashExportPath, 0o755)
        try "read-only export\n".write(toFile: readOnlyExportPath + "/README", atomically: true, encoding: .utf8)
        do {
            try startWithFreshPorts()
        } catch {
            stop()
            try? FileManager.default.removeItem(atPath: baseDirectory)
            throw error
        }
    }

    deinit {
        stop()
        if ownsBaseDirectory { try? FileManager.default.removeItem(atPath: baseDirectory) }
    }

    // MARK: - Shared instance

    private static let sharedState = SharedState()

    /// One server for the whole test process, started on first use. Throws (every time) if it
    /// could not start: tests that need NFS then fail, they never skip.
    package static func shared() throws -> GaneshaServer {
        try sharedState.get()
    }

    // MARK: - URLs and directories

    /// An `nfs://` URL for `path` inside an export. It always names `version=`, `nfsport=`
    /// and (for NFSv3) `mountport=`.
    /// - Parameters:
    ///   - path: relative path inside the export (`""` for the export itself).
    ///   - export: which export.
    ///   - version: 3 (mounts the export's local path) or 4 (walks the pseudo path).
    ///   - extra: more query arguments, e.g. `["uid": "1000"]`.
    package func url(path: String = "", export: Export = .main, version: Int = 3, extra: [(String, String)] = []) -> String {
        let root: String
        switch (export, version) {
        case (.main, 4): root = "/export"
        case (.readOnly, 4): root = "/readonly"
        case (.rootSquash, 4): root = "/squashed"
        case (.main, _): root = exportPath
        case (.readOnly, _): root = readOnlyExportPath
        case (.rootSquash, _): root = rootSquashExportPath
        }
        let rel = path.split(separator: "/").joined(separator: "/")
        var args = [("version", String(version)), ("nfsport", String(nfsPort))]
        if version == 3 { args.append(("mountport", String(mountPort))) }
        args += extra
        return "nfs://127.0.0.1\(root)" + (rel.isEmpty ? "" : "/" + rel) + "?" + args.map { "\($0.0)=\($0.1)" }.joined(separator: "&")
    }

    /// Creates a fresh, uniquely named directory (mode 0777) at the top of the main export.
    /// - Returns: its name (relative to the export); the local path is `exportPath + "/" + name`.
    package func makeUniqueDirectory(_ label: String = "t") throws -> String {
        lock.lock()
        counter += 1
        let n = counter
        lock.unlock()
        let name = "\(label)-\(getpid())-\(n)-\(UInt32.random(in: 0...UInt32.max))"
        let local = exportPath + "/" + name
        guard mkdir(local, 0o777) == 0 else {
            throw GaneshaError(message: "mkdir \(local) failed: \(String(cString: strerror(errno)))", logTail: "")
        }
        chmod(local, 0o777)
        return name
    }

    /// The last lines of the server's log.
    package func logTail(lines: Int = 30) -> String {
        guard let text = try? String(contentsOfFile: logPath, encoding: .utf8) else { return "" }
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

    // MARK: - Lifecycle

    /// Stops the server: SIGTERM, then SIGKILL after 5 s. Idempotent.
    package func stop() {
        lock.lock()
        let p = pid
        pid = nil
        lock.unlock()
        guard let p else { return }
        Daemon.terminate(p, graceSeconds: 5)
        HarnessProcesses.remove(p)
    }

    /// Kills the server at once with SIGKILL (a crash, as seen by clients). The ports stay
    /// reserved for `restart()`.
    package func kill() {
        lock.lock()
        let p = pid
        pid = nil
        lock.unlock()
        guard let p else { return }
        Daemon.terminate(p, graceSeconds: 0)
        HarnessProcesses.remove(p)
    }

    /// Starts the server again on the same ports and exports (after `kill()` or `stop()`;
    /// stops it first if it runs). URLs handed out before stay valid.
    /// - Throws: `GaneshaError` with the log tail.
    package func restart() throws {
        stop()
        var lastError: (any Error)?
        // The old listening sockets may take a moment to be released.
        for _ in 0..<5 {
            do { try startOnce(); return } catch { lastError = error; usleep(500_000) }
        }
        throw lastError!
    }

    private func startWithFreshPorts() throws {
        try GaneshaServer.ensureRpcbind()
        var lastError: (any Error)?
        for _ in 0..<3 {
            let ports = try Daemon.freePorts(2)
            nfsPort = ports[0]
            mountPort = ports[1]
            do { try startOnce(); return } catch { lastError = error }
        }
        throw lastError!
    }

    private func writeConfig() throws {
        let conf = """
            NFS_CORE_PARAM {
                Protocols = 3, 4;
                NFS_Port = \(nfsPort);
                MNT_Port = \(mountPort);
                Bind_addr = 127.0.0.1;
                Enable_NLM = false;
                Enable_RQUOTA = false;
            }
            NFSV4 { Graceless = true; RecoveryRoot = "\(baseDirectory)/recovery"; }
            EXPORT {
                Export_Id = 1; Path = "\(exportPath)"; Pseudo = /export;
                Access_Type = RW; Squash = No_Root_Squash; SecType = sys; Protocols = 3, 4;
                FSAL { Name = VFS; }
            }
            EXPORT {
                Export_Id = 2; Path = "\(readOnlyExportPath)"; Pseudo = /readonly;
                Access_Type = RO; Squash = No_Root_Squash; SecType = sys; Protocols = 3, 4;
                FSAL { Name = VFS; }
            }
            EXPORT {
                Export_Id = 3; Path = "\(rootSquashExportPath)"; Pseudo = /squashed;
                Access_Type = RW; Squash = Root_Squash; Anonymous_Uid = 65534; Anonymous_Gid = 65534;
                SecType = sys; Protocols = 3, 4;
                FSAL { Name = VFS; }
            }
            LOG { Default_Log_Level = WARN; }

            """
        try conf.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    private func startOnce() throws {
        try writeConfig()
        unlink(pidPath)
        // The daemon keeps the stdout/stderr it inherits: give it a file, not our pipes (or
        // Subprocess.run would wait for their end forever).
        let outPath = baseDirectory + "/ganesha.out"
        let r = try Daemon.runDetaching(["ganesha.nfsd", "-f", configPath, "-L", logPath, "-p", pidPath],
                                               output: outPath)
        guard r.succeeded else {
            let out = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
            throw GaneshaError(message: "ganesha.nfsd -f \(configPath) exited with status \(r.status): \(out)", logTail: logTail())
        }
        // The daemon writes its pid file after forking.
        let deadline = Date().addingTimeInterval(30)
        var daemon: pid_t?
        while Date() < deadline {
            if daemon == nil, let s = try? String(contentsOfFile: pidPath, encoding: .utf8),
               let p = pid_t(s.trimmingCharacters(in: .whitespacesAndNewlines)), p > 0 {
                daemon = p
                lock.lock(); pid = p; lock.unlock()
                HarnessProcesses.add(p)
                Daemon.startWatchdog(daemon: p, command: "ganesha.nfsd")
            }
            if let d = daemon {
                guard Daemon.isAlive(d) else {
                    stop()
                    throw GaneshaError(message: "ganesha.nfsd (pid \(d)) exited during start-up (ports \(nfsPort)/\(mountPort))",
                                       logTail: logTail())
                }
                if answers() { return }
            }
            usleep(100_000)
        }
        stop()
        throw GaneshaError(message: "ganesha.nfsd did not answer NFS on 127.0.0.1:\(nfsPort) within 30 s", logTail: logTail())
    }

    /// True when an independent client (nfs-ls) can list the main export.
    private func answers() -> Bool {
        guard let r = try? Subprocess.run(["nfs-ls", url()]) else { return false }
        return r.succeeded
    }

    // MARK: - Process helpers

    /// Starts rpcbind when it is not running (ganesha registers with it).
    static func ensureRpcbind() throws {
        if let r = try? Subprocess.run(["pgrep", "-x", "rpcbind"]), r.succeeded { return }
        try? FileManager.default.createDirectory(atPath: "/run/rpcbind", withIntermediateDirectories: true)
        var r = try Subprocess.run(["rpcbind", "-w"])
        if !r.succeeded { r = try Subprocess.run(["rpcbind"]) }
        for _ in 0..<50 {
            if let p = try? Subprocess.run(["pgrep", "-x", "rpcbind"]), p.succeeded { return }
            usleep(100_000)
        }
        throw GaneshaError(message: "rpcbind is not running and `rpcbind -w` did not start it (\(r.stderr)); "
                           + "run scripts/services.sh", logTail: "")
    }
}

/// The shared server: started once, its failure remembered.
private final class SharedState: @unchecked Sendable {
    private let lock = NSLock()
    private var result: Result<GaneshaServer, GaneshaError>?

    func get() throws -> GaneshaServer {
        lock.lock()
        defer { lock.unlock() }
        if result == nil {
            do {
                let server = try GaneshaServer()
                HarnessProcesses.removeAtExit(server.baseDirectory)
                result = .success(server)
            } catch let e as GaneshaError {
                result = .failure(e)
            } catch {
                result = .failure(GaneshaError(message: "\(error)", logTail: ""))
            }
        }
        return try result!.get()
    }
}

/// Daemons started by this process, stopped by an atexit handler.
enum HarnessProcesses {
    private static let state = PidSet()

    static func add(_ p: pid_t) {
        state.insert(p)
        state.installAtExitOnce()
    }

    static func remove(_ p: pid_t) { state.remove(p) }

    /// Removes a directory at process exit (after the servers stopped).
    static func removeAtExit(_ directory: String) {
        state.addDirectory(directory)
        state.installAtExitOnce()
    }

    fileprivate static func stopAll() {
        for p in state.drain() { Daemon.terminate(p, graceSeconds: 2) }
        for d in state.drainDirectories() { try? FileManager.default.removeItem(atPath: d) }
    }
}

private final class PidSet: @unchecked Sendable {
    private let lock = NSLock()
    private var pids: Set<pid_t> = []
    private var installed = false

    func insert(_ p: pid_t) { lock.lock(); pids.insert(p); lock.unlock() }
    func remove(_ p: pid_t) { lock.lock(); pids.remove(p); lock.unlock() }
    private var directories: [String] = []
    func drain() -> Set<pid_t> { lock.lock(); defer { lock.unlock() }; let all = pids; pids = []; return all }
    func addDirectory(_ d: String) { lock.lock(); directories.append(d); lock.unlock() }
    func drainDirectories() -> [String] { lock.lock(); defer { lock.unlock() }; let all = directories; directories = []; return all }

    func installAtExitOnce() {
        lock.lock()
        defer { lock.unlock() }
        guard !installed else { return }
        installed = true
        atexit { HarnessProcesses.stopAll() }
    }
}
