import Foundation

/// Runs a tool's body and turns its outcome into an exit code, printing errors the way every
/// tool does: `error: <what failed, where, what to do>` on stderr.
///
/// Executables use it as:
/// ```
/// func run() async throws {
///     let code = await toolMain { try await Something.run(...) }   // body returns 0 or 1
///     if code != 0 { throw ExitCode(code) }
/// }
/// ```
/// - Returns: the body's exit code; a `ToolError`'s code; 1 for any other error.
package func toolMain(_ body: () async throws -> Int32) async -> Int32 {
    do {
        return try await body()
    } catch let e as ToolError {
        Reporter.writeStderr("error: \(e.message)\n")
        return e.exitCode
    } catch {
        Reporter.writeStderr("error: \(error)\n")
        return 1
    }
}
