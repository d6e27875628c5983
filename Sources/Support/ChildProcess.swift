import FoundationEssentials
import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif
internal import CShims

/// A child's input closed under a writer: the child exited or stopped reading.
package struct ChildInputClosed: Error, CustomStringConvertible {
    package var command: String
    package var errno: Int32
    package var description: String { "\(command) stopped reading its input (\(String(cString: strerror(errno))))" }
}

/// A subprocess that keeps running while the caller works: its stdin is a stream the caller
/// writes (or /dev/null), its stderr (and stdout, when asked) is collected by a thread so the
/// child never blocks on a full pipe. The sibling of `Subprocess.run` for long transfers and
/// servers (rclone `rcat`, `rclone rcd`).
///
/// - The child gets default dispositions for SIGPIPE, SIGINT, SIGTERM and SIGHUP (whatever
///   this process ignores) and, with `ownProcessGroup`, a process group of its own, so a
///   Ctrl-C at the terminal reaches this process, which decides what to stop.
/// - stdin is one end of a socket pair written with MSG_NOSIGNAL: a child that dies makes
///   `write` throw `ChildInputClosed`, never SIGPIPE this process.
/// - Only the last `stderrLimit` bytes of stderr are kept (`stderrTail`).
package final class ChildProcess: Sendable {
    package enum Input: Sendable { case null, stream }

    package let pid: Glibc.pid_t
    /// The command line, for messages.
    package let command: [String]
    private let input: Mutex<Int32>
    private let output = CollectedOutput()
    private let readersDone = DispatchGroup()
    private let exit = Mutex<Int32?>(nil)
    private let captureStdout: Bool
    private let stderrLimit: Int

    /// Starts `arguments[0]` (looked up on PATH) with the rest as arguments.
    /// - Parameters:
    ///   - environment: variables merged over the current environment.
    ///   - input: `.stream` to write the child's stdin with `write`, `.null` for /dev/null.
    ///   - captureStdout: keep stdout (returned by `wait`); otherwise it goes to /dev/null.
    ///   - ownProcessGroup: start the child in a process group of its own.
    ///   - stderrLimit: how many of the last bytes of stderr to keep.
    /// - Throws: `ProcessFailure` with status 127 when the program cannot be started.
    package static func start(_ arguments: [String], environment: [String: String] = [:], input: Input = .null,
                              captureStdout: Bool = false, ownProcessGroup: Bool = true,
                              stderrLimit: Int = 64 << 10) throws -> ChildProcess {
        precondition(!arguments.isEmpty)
        guard let exe = Subprocess.which(arguments[0]) else {
            throw ProcessFailure(command: arguments, status: 127, stderr: "\(arguments[0]): command not found")
        }
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        return try ChildProcess(exe: exe, arguments: arguments, environment: env, input: input, captureStdout: captureStdout,
                                ownProcessGroup: ownProcessGroup, stderrLimit: stderrLimit)
    }

    private init(exe: String, arguments: [String], environment: [String: String], input: Input, captureStdout: Bool,
                 ownProcessGroup: Bool, stderrLimit: Int) throws {
        command = arguments
        self.captureStdout = captureStdout
        self.stderrLimit = stderrLimit
        func fail(_ what: String, _ err: Int32) -> ProcessFailure {
            ProcessFailure(command: arguments, status: 127, stderr: "\(what) failed: \(String(cString: strerror(err)))")
        }
        var errPipe: [Int32] = [-1, -1], outPipe: [Int32] = [-1, -1], sock: [Int32] = [-1, -1]
        guard cshims_pipe_cloexec(&errPipe) == 0 else { throw fail("pipe2", errno) }
        if captureStdout, cshims_pipe_cloexec(&outPipe) != 0 {
            let e = errno; close(errPipe[0]); close(errPipe[1]); throw fail("pipe2", e)
        }
        if input == .stream, socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &sock) != 0 {
            let e = errno
            for fd in errPipe + outPipe where fd >= 0 { close(fd) }
            throw fail("socketpair", e)
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if input == .stream {
            posix_spawn_file_actions_adddup2(&actions, sock[1], 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        if captureStdout {
            posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        } else {
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        }
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        var attr = Subprocess.cleanSpawnAttributes(defaults: [SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT], ownProcessGroup: ownProcessGroup)
        defer { posix_spawnattr_destroy(&attr) }
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup(exe)] + arguments.dropFirst().map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { argv.forEach { free($0) }; envp.forEach { free($0) } }
        var child: Glibc.pid_t = 0
        let rc = posix_spawn(&child, exe, &actions, &attr, argv, envp)
        close(errPipe[1])
        if captureStdout { close(outPipe[1]) }
        if input == .stream { close(sock[1]) }
        guard rc == 0 else {
            close(errPipe[0])
            if captureStdout { close(outPipe[0]) }
            if input == .stream { close(sock[0]) }
            throw ProcessFailure(command: arguments, status: 127, stderr: "cannot start \(exe): \(String(cString: strerror(rc)))")
        }
        pid = child
        self.input = Mutex(input == .stream ? sock[0] : -1)
        collect(errPipe[0], stderr: true)
        if captureStdout { collect(outPipe[0], stderr: false) }
    }

    deinit {
        closeInput()
        if exit.withLock({ $0 }) == nil {
            kill(pid, SIGKILL)
            _ = wait()
        }
    }

    /// A thread that reads `fd` to its end into the collected output.
    private func collect(_ fd: Int32, stderr: Bool) {
        readersDone.enter()
        let limit = stderrLimit
        startThread { [output, readersDone] in
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                output.buffers.withLock { c in
                    if stderr {
                        c.stderr += chunk[0..<n]
                        if c.stderr.count > limit { c.stderr.removeFirst(c.stderr.count - limit) }
                    } else {
                        c.stdout += chunk[0..<n]
                    }
                }
            }
            close(fd)
            readersDone.leave()
        }
    }

    /// Writes all of `bytes` to the child's stdin.
    /// - Throws: `ChildInputClosed` when the child no longer reads (it exited or closed stdin).
    package func write(_ bytes: UnsafeRawBufferPointer) throws {
        let fd = input.withLock { $0 }
        guard fd >= 0 else { throw ChildInputClosed(command: command.first ?? "", errno: EBADF) }
        var off = 0
        while off < bytes.count {
            let n = send(fd, bytes.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL))
            if n < 0 {
                if errno == EINTR { continue }
                throw ChildInputClosed(command: command.first ?? "", errno: errno)
            }
            off += n
        }
    }

    /// Closes the child's stdin (it sees end of file). Idempotent.
    package func closeInput() {
        let fd = input.withLock { fd -> Int32 in defer { fd = -1 }; return fd }
        if fd >= 0 { close(fd) }
    }

    /// Sends `signal` to the child (to its whole process group when it has one of its own).
    package func signal(_ signal: Int32, group: Bool = false) {
        guard exit.withLock({ $0 }) == nil else { return }
        kill(group ? -pid : pid, signal)
    }

    /// The last bytes the child wrote to stderr so far, as text.
    package var stderrTail: String { String(decoding: output.buffers.withLock { $0.stderr }, as: UTF8.self) }

    /// True while the child has not been reaped.
    package var isRunning: Bool {
        if exit.withLock({ $0 }) != nil { return false }
        var st: Int32 = 0
        let r = waitpid(pid, &st, WNOHANG)
        guard r == pid else { return r == 0 }
        exit.withLock { $0 = Self.status(st) }
        return false
    }

    /// Waits for the child to exit and its output to end (at most 2 s after the exit: a
    /// process it started may keep the pipes open).
    /// - Returns: the exit status (128 + signal number when killed), stdout (when captured) and
    ///   the kept end of stderr.
    @discardableResult
    package func wait() -> ProcessResult {
        if exit.withLock({ $0 }) == nil {
            var st: Int32 = 0
            var r: Glibc.pid_t
            repeat { r = waitpid(pid, &st, 0) } while r < 0 && errno == EINTR
            let status = r == pid ? Self.status(st) : 127
            exit.withLock { if $0 == nil { $0 = status } }
        }
        _ = readersDone.wait(timeout: .now() + 2)
        let (out, err) = output.buffers.withLock { ($0.stdout, $0.stderr) }
        return ProcessResult(status: exit.withLock { $0 } ?? 127, stdout: String(decoding: out, as: UTF8.self),
                             stderr: String(decoding: err, as: UTF8.self))
    }

    /// WIFEXITED / WEXITSTATUS / WTERMSIG are macros Swift cannot import.
    private static func status(_ st: Int32) -> Int32 {
        let signal = st & 0x7f
        return signal == 0 ? (st >> 8) & 0xff : 128 + signal
    }
}

/// What a child wrote, filled by its reader threads (a class of its own so the threads do not
/// keep the `ChildProcess` alive).
private final class CollectedOutput: Sendable {
    let buffers = Mutex<(stdout: [UInt8], stderr: [UInt8])>(([], []))
}
