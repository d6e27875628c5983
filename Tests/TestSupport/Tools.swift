// TestSupport: what the integration tests share. Running the built tools, temporary
// directories, fixture trees, and harnesses for real servers (nfs-ganesha).
import Foundation
import Support

/// Locates and runs the toolkit's built executables (they sit next to the test bundle).
package enum Tools {
    /// The build products directory (.build/debug or .build/release).
    package static var productsDirectory: URL {
        // On Linux the test runner is `<products>/home-serverPackageTests.xctest`.
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var dir = exe.deletingLastPathComponent()
        if dir.lastPathComponent.hasSuffix(".xctest") { dir = dir.deletingLastPathComponent() }
        return dir
    }

    /// Full path of a built tool, e.g. `hs-backup`.
    package static func path(_ tool: String) -> String {
        productsDirectory.appendingPathComponent(tool).path
    }

    /// Runs a built tool and captures its output (a non-zero exit is returned, not thrown).
    @discardableResult
    package static func run(_ tool: String, _ arguments: [String], input: Data? = nil,
                            environment: [String: String] = [:], directory: String? = nil) throws -> ProcessResult {
        try Subprocess.run([path(tool)] + arguments, input: input, environment: environment, directory: directory)
    }

    /// True when running under CI (where a missing service must fail the test, never skip).
    package static var inCI: Bool { ProcessInfo.processInfo.environment["CI"] != nil }
}

/// A temporary directory removed when the value is deinitialised.
package final class TempDir: @unchecked Sendable {
    package let path: String
    package var url: URL { URL(fileURLWithPath: path) }

    package init(_ prefix: String = "hs-test") throws {
        let template = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix).XXXXXX").path
        var bytes = Array(template.utf8CString)
        guard let p = mkdtemp(&bytes) else { throw ToolError("mkdtemp failed for \(template)") }
        path = String(cString: p)
    }

    /// A path inside the directory.
    package func sub(_ relative: String) -> String { path + "/" + relative }

    /// FileManager cannot remove a tree deeper than PATH_MAX (HardeningTests.deepPath makes one); GNU rm walks
    /// by descriptor and can, so a failed removal falls back to it rather than leaving the tree in /tmp.
    deinit {
        do { try FileManager.default.removeItem(atPath: path) } catch {
            let rm = Process()
            rm.executableURL = URL(fileURLWithPath: "/bin/rm")
            rm.arguments = ["-rf", "--one-file-system", "--", path]
            if (try? rm.run()) != nil { rm.waitUntilExit() }
        }
    }
}
