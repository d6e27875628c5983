// Support: plumbing every tool shares. Subprocesses, output modes (terminal progress, one
// summary line for cron mail, --json), user-facing errors with exit codes, SHA-256.
import Foundation

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
        let err = stderr.trimmingCharacters(in: .whitespacesAndNewlines)
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
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = Array(arguments.dropFirst())
        if !environment.isEmpty {
            p.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        }
        if let directory { p.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let outPipe = Pipe(), errPipe = Pipe()
        p.standardOutput = outPipe
        p.standardError = errPipe
        let inPipe: Pipe? = input == nil ? nil : Pipe()
        if let inPipe { p.standardInput = inPipe } else { p.standardInput = FileHandle.nullDevice }
        do { try p.run() } catch {
            throw ProcessFailure(command: arguments, status: 127, stderr: "cannot start \(exe): \(error)")
        }
        // Drain both pipes concurrently so neither can fill up and block the child.
        let box = OutputBox()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            box.setErr(errPipe.fileHandleForReading.readDataToEndOfFile()); group.leave()
        }
        if let inPipe, let input {
            DispatchQueue.global().async {
                try? inPipe.fileHandleForWriting.write(contentsOf: input)
                try? inPipe.fileHandleForWriting.close()
            }
        }
        let out = outPipe.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        p.waitUntilExit()
        let status = p.terminationReason == .uncaughtSignal ? 128 + p.terminationStatus : p.terminationStatus
        return ProcessResult(status: status, stdout: String(decoding: out, as: UTF8.self),
                             stderr: String(decoding: box.err, as: UTF8.self))
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

private final class OutputBox: @unchecked Sendable {
    private let lock = NSLock()
    private var _err = Data()
    func setErr(_ d: Data) { lock.lock(); _err = d; lock.unlock() }
    var err: Data { lock.lock(); defer { lock.unlock() }; return _err }
}
