// Support: plumbing every tool shares. Subprocesses, output modes (terminal progress, one
// summary line for cron mail, --json), user-facing errors with exit codes, SHA-256.
import FoundationEssentials
import Glibc
import Dispatch
internal import CShims

/// The result of a finished subprocess.
package struct ProcessResult: Sendable {
    package var status: Int32
    package var stdout: String
    package var stderr: String
    package var succeeded: Bool { status == 0 }
}

/// A subprocess that exited non-zero or could not be started.
package struct ProcessFailure: Error, CustomStringConvertible {
    package var command: [String]
    package var status: Int32
    package var stderr: String
    package var description: String {
        let cmd = command.joined(separator: " ")
        let err = stderr.trimmingWhitespaceAndNewlines()
        return "`\(cmd)` exited with status \(status)" + (err.isEmpty ? "" : ": \(err)")
    }
}

/// Runs programs. The one place in the toolkit that starts subprocesses.
package enum Subprocess {
    /// Finds `name` on PATH (or returns it unchanged if it contains a slash).
    package static func which(_ name: String) -> String? {
        if name.contains("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// Runs `arguments[0]` with the rest as arguments, capturing stdout and stderr.
    /// A non-zero exit does not throw; check `status` (or use `checked`).
    /// - Parameters:
    ///   - arguments: program (looked up on PATH) and its arguments.
    ///   - input: bytes written to the program's stdin (stdin is /dev/null when nil).
    ///   - environment: extra variables merged over the current environment.
    ///   - directory: working directory.
    /// - Throws: `ProcessFailure` with status 127 when the program cannot be started.
    @discardableResult
    package static func run(_ arguments: [String], input: Data? = nil, environment: [String: String] = [:],
                            directory: String? = nil) throws -> ProcessResult {
        precondition(!arguments.isEmpty)
        guard let exe = which(arguments[0]) else {
            throw ProcessFailure(command: arguments, status: 127, stderr: "\(arguments[0]): command not found")
        }
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        let child = try spawn(exe, arguments: arguments, environment: env, directory: directory,
                              withInput: input != nil)
        if let input, let stdinFD = child.stdin {
            // Feed stdin on its own thread; a child that stops reading gets EPIPE, not a hang.
            startThread {
                // The SIGPIPE of a write to a pipe nobody reads goes to the writing thread: blocked
                // here, it stays pending until the thread ends, and write returns EPIPE. Unblocked,
                // it would end the whole process (nothing here ignores SIGPIPE).
                var pipeSignal = sigset_t()
                sigemptyset(&pipeSignal)
                sigaddset(&pipeSignal, SIGPIPE)
                pthread_sigmask(SIG_BLOCK, &pipeSignal, nil)
                input.withUnsafeBytes { raw in
                    var off = 0
                    while off < raw.count {
                        let n = Sys.retry { write(stdinFD, raw.baseAddress! + off, raw.count - off) }
                        if n < 0 { break }
                        off += n
                    }
                }
                close(stdinFD)
            }
        }
        let (out, err, status) = drain(child)
        return ProcessResult(status: status, stdout: String(decoding: out, as: UTF8.self),
                             stderr: String(decoding: err, as: UTF8.self))
    }

    /// Like `run`, but throws `ProcessFailure` on a non-zero exit.
    @discardableResult
    package static func checked(_ arguments: [String], input: Data? = nil, environment: [String: String] = [:],
                                directory: String? = nil) throws -> ProcessResult {
        let r = try run(arguments, input: input, environment: environment, directory: directory)
        guard r.succeeded else { throw ProcessFailure(command: arguments, status: r.status, stderr: r.stderr) }
        return r
    }
}

/// A started child: its pid and our ends of its pipes.
struct SpawnedChild {
    var pid: pid_t
    var stdin: Int32?
    var stdout: Int32
    var stderr: Int32
}

extension Subprocess {
    /// Starts `exe` with posix_spawn: stdin from a pipe (or /dev/null), stdout and stderr to
    /// pipes. Foundation's `Process` is not used: on Linux it considers a child running until
    /// every process that inherited its internal descriptor has exited, so a tool that starts a
    /// daemon (mount starting rpc.statd, a service script) would make it wait forever.
    static func spawn(_ exe: String, arguments: [String], environment: [String: String], directory: String?,
                      withInput: Bool) throws -> SpawnedChild {
        func makePipe() throws -> (read: Int32, write: Int32) {
            var fds: [Int32] = [0, 0]
            guard cshims_pipe_cloexec(&fds) == 0 else {
                throw ProcessFailure(command: arguments, status: 127, stderr: "pipe2 failed: \(Sys.strerror(errno))")
            }
            return (fds[0], fds[1])
        }
        let outPipe = try makePipe(), errPipe = try makePipe()
        let inPipe = withInput ? try makePipe() : nil
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let inPipe {
            posix_spawn_file_actions_adddup2(&actions, inPipe.read, 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        posix_spawn_file_actions_adddup2(&actions, outPipe.write, 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe.write, 2)
        if let directory { cshims_spawn_addchdir(&actions, directory) }
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup(exe)] + arguments.dropFirst().map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { argv.forEach { free($0) }; envp.forEach { free($0) } }
        var attr = cleanSpawnAttributes(ownProcessGroup: false)
        defer { posix_spawnattr_destroy(&attr) }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, exe, &actions, &attr, argv, envp)
        close(outPipe.write); close(errPipe.write)
        if let inPipe { close(inPipe.read) }
        guard rc == 0 else {
            close(outPipe.read); close(errPipe.read)
            if let inPipe { close(inPipe.write) }
            throw ProcessFailure(command: arguments, status: 127, stderr: "cannot start \(exe): \(Sys.strerror(rc))")
        }
        return SpawnedChild(pid: pid, stdin: inPipe?.write, stdout: outPipe.read, stderr: errPipe.read)
    }

    /// Spawn attributes that start a program with no signal blocked, whatever the calling thread
    /// blocks (a mask is inherited from the thread that spawns: a worker thread's, or that of a
    /// supervisor that started the tool, and docker, apt-get or a hook then never saw SIGTERM or
    /// SIGCHLD), with `defaults` and SIGCHLD at their default dispositions (an ignored SIGCHLD
    /// takes `wait` from the child) and every other ignored signal left ignored (`nohup`'s
    /// SIGHUP, a shell's SIGINT for a background job: meant for the whole command). With
    /// `ownProcessGroup`, in a process group of its own. The caller destroys it.
    static func cleanSpawnAttributes(defaults signals: [Int32] = [], ownProcessGroup: Bool) -> posix_spawnattr_t {
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in signals + [SIGCHLD] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attr, &none)
        var flags = Int32(POSIX_SPAWN_SETSIGDEF) | Int32(POSIX_SPAWN_SETSIGMASK)
        if ownProcessGroup {
            posix_spawnattr_setpgroup(&attr, 0)
            flags |= Int32(POSIX_SPAWN_SETPGROUP)
        }
        posix_spawnattr_setflags(&attr, Int16(flags))
        return attr
    }

    /// Reads stdout and stderr together (neither pipe can fill up and block the child) until
    /// both reach end of file and the child has exited — or, once it has exited, until the
    /// pipes stay quiet for half a second: a daemon the child started may hold them open
    /// forever, and waiting for its end of file would hang the tool.
    /// - Returns: both outputs and the exit status (128 + signal number when killed).
    static func drain(_ child: SpawnedChild) -> ([UInt8], [UInt8], Int32) {
        var buffers: [[UInt8]] = [[], []]
        var fds = [pollfd(fd: child.stdout, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: child.stderr, events: Int16(POLLIN), revents: 0)]
        var chunk = [UInt8](repeating: 0, count: 65536)
        var status: Int32?
        var exitedAt: UInt64 = 0
        func reap(_ flags: Int32) {
            var st: Int32 = 0
            let r = Sys.retry { waitpid(child.pid, &st, flags) }
            guard r == child.pid else { return }
            // WIFEXITED / WEXITSTATUS / WTERMSIG are macros Swift cannot import.
            let signal = st & 0x7f
            status = signal == 0 ? (st >> 8) & 0xff : 128 + signal
            exitedAt = DispatchTime.now().uptimeNanoseconds
        }
        while fds.contains(where: { $0.fd >= 0 }) {
            let n = poll(&fds, 2, 100)
            if n < 0 && errno != EINTR { break }
            if n > 0 {
                for i in 0..<2 where fds[i].fd >= 0 && fds[i].revents != 0 {
                    let r = Sys.retry { chunk.withUnsafeMutableBytes { read(fds[i].fd, $0.baseAddress, $0.count) } }
                    if r > 0 {
                        buffers[i] += chunk[0..<r]
                    } else {
                        close(fds[i].fd)
                        fds[i].fd = -1
                    }
                }
            }
            if status == nil { reap(WNOHANG) }
            if status != nil {
                let quietFor: UInt64 = n == 0 ? 500_000_000 : 5_000_000_000
                if DispatchTime.now().uptimeNanoseconds - exitedAt > quietFor { break }
            }
        }
        for fd in fds where fd.fd >= 0 { close(fd.fd) }
        if status == nil { reap(0) }
        return (buffers[0], buffers[1], status ?? 127)
    }
}
