/// An error meant for the person running the tool: says what failed, where, and what to do.
///
/// Exit codes everywhere: 0 success, 1 the check or the work failed, 2 bad usage.
package struct ToolError: Error, CustomStringConvertible {
    package var message: String
    package var exitCode: Int32

    package init(_ message: String, exitCode: Int32 = 1) {
        self.message = message
        self.exitCode = exitCode
    }

    /// Bad usage (exit 2): a wrong option value, a missing path, a target that is not empty.
    package static func usage(_ message: String) -> ToolError { ToolError(message, exitCode: 2) }

    package var description: String { message }
}
