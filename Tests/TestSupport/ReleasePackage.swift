import Foundation
import Support

/// The release package of the tools (`scripts/package.sh`: .deb + tarball), built at most once
/// per test process and shared by every test that installs it (PackageTests, the Ansible
/// bring-up). The build takes minutes (release, static Swift stdlib); it goes to the repo's
/// `.build-release/` scratch directory (incremental across runs) and `.build-release/test-dist/`.
///
/// `HS_PACKAGE_DEB=/path/home-server-tools_X_amd64.deb` uses a package built before instead
/// (the tarball is then expected next to it).
package enum ReleasePackage {
    /// The repository root (this file is Tests/TestSupport/ReleasePackage.swift).
    package static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path

    /// What `scripts/package.sh` wrote.
    package struct Built: Sendable {
        /// dist/home-server-tools_<version>_amd64.deb
        package var deb: String
        /// dist/home-server-tools_<version>_amd64.tar.gz
        package var tarball: String
        /// scripts/package.sh's log (stderr), empty when HS_PACKAGE_DEB was used.
        package var log: String
    }

    private final class Once: @unchecked Sendable {
        let lock = NSLock()
        var result: Result<Built, ToolError>?
    }
    private static let once = Once()

    /// The package, built on first use (later calls in the same process get the same files).
    /// - Throws: `ToolError` with package.sh's output when the build fails.
    package static func built() throws -> Built {
        once.lock.lock()
        defer { once.lock.unlock() }
        if let r = once.result { return try r.get() }
        let r = Result<Built, ToolError> { () throws(ToolError) in try build() }
        once.result = r
        return try r.get()
    }

    private static func build() throws(ToolError) -> Built {
        if let deb = ProcessInfo.processInfo.environment["HS_PACKAGE_DEB"], !deb.isEmpty {
            let tarball = String(deb.dropLast(".deb".count)) + ".tar.gz"
            guard deb.hasSuffix(".deb"), FileManager.default.fileExists(atPath: deb),
                  FileManager.default.fileExists(atPath: tarball) else {
                throw ToolError("HS_PACKAGE_DEB=\(deb): no such .deb (with its .tar.gz next to it); unset it to build one")
            }
            return Built(deb: deb, tarball: tarball, log: "")
        }
        let r: ProcessResult
        do {
            r = try Subprocess.run(["bash", repoRoot + "/scripts/package.sh"],
                                   environment: ["HS_DIST": repoRoot + "/.build-release/test-dist"],
                                   directory: repoRoot)
        } catch {
            throw ToolError("cannot run scripts/package.sh: \(error)")
        }
        let lines = r.stdout.split(separator: "\n").map(String.init)
        guard r.succeeded, lines.count == 2, lines[0].hasSuffix(".deb"), lines[1].hasSuffix(".tar.gz") else {
            throw ToolError("scripts/package.sh failed (exit \(r.status)):\n\(r.stdout.suffix(2000))\n\(r.stderr.suffix(6000))")
        }
        return Built(deb: lines[0], tarball: lines[1], log: r.stderr)
    }
}
