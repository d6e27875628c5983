import FoundationEssentials
import Glibc

/// Runs a tool's body and turns its outcome into an exit code, printing errors the way every
/// tool does: `error: <what failed, where, what to do>` on stderr.
///
/// Executables use it as:
/// ```
/// func run() throws {
///     let code = toolMain { try Something.run(...) }   // body returns 0 or 1
///     if code != 0 { throw ExitCode(code) }
/// }
/// ```
/// - Returns: the body's exit code; a `ToolError`'s code; 1 for any other error.
/// With `--json` on the command line a failure also prints `{"error": "...", "exit_code": N}`
/// on stdout, so a JSON consumer always gets one object per invocation.
package func toolMain(_ body: () throws -> Int32) -> Int32 {
    do {
        return try body()
    } catch {
        let code = (error as? ToolError)?.exitCode ?? (error as? any ExitCodeCarrying)?.exitCode ?? 1
        reportFailure(HumanError.describe(error), exitCode: code)
        return code
    }
}

/// Prints a failure the toolkit's way: `error: ...` on stderr and, when `--json` was given,
/// the JSON error object on stdout.
package func reportFailure(_ message: String, exitCode: Int32) {
    Reporter.writeStderr("error: \(message)\n")
    if Reporter.jsonRequested { Reporter.emitJSONError(message, exitCode: exitCode) }
}

/// A typed error that says which exit code it means (2: bad usage, 1: the work failed), for
/// errors thrown below the command line that are not `ToolError`s.
package protocol ExitCodeCarrying: Error {
    var exitCode: Int32 { get }
}
