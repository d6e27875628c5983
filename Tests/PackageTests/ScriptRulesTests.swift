import Foundation
import Testing
import TestSupport

/// Rules every script of the repository keeps (issue 15): it stops on a failed build or test,
/// the user install never touches Docker, test dependencies or running services, and the
/// test bootstrap stops nothing. Read from the scripts' text, so a rule broken by an edit
/// fails here before a machine is set up with it.
@Suite struct ScriptRulesTests {
    static let repo = ReleasePackage.repoRoot

    /// Script lines without comments (a `#` at the start or after whitespace).
    static func code(_ path: String) throws -> [String] {
        let text = try String(contentsOfFile: repo + "/" + path, encoding: .utf8)
        return text.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            var s = String(line)
            if let r = s.range(of: #"(^|\s)#"#, options: .regularExpression), !s.hasPrefix("#!") { s = String(s[..<r.lowerBound]) }
            return s
        }
    }

    /// Every shell script: scripts/, bench/ (a bench that times a failed build or a crashed
    /// run reports a number that means nothing) and .ci/run.
    static var scripts: [String] {
        ["scripts", "bench"].flatMap { dir in
            ((try? FileManager.default.contentsOfDirectory(atPath: repo + "/" + dir)) ?? [])
                .filter { $0.hasSuffix(".sh") }.sorted().map { dir + "/" + $0 }
        } + [".ci/run"]
    }

    @Test func everyScriptStopsOnFailureAndHidesNoExitStatus() throws {
        #expect(Self.scripts.count >= 11, "\(Self.scripts)")
        #expect(Self.scripts.contains("bench/backup-bench.sh") && Self.scripts.contains("bench/linkcheck-bench.sh"), "\(Self.scripts)")
        for path in Self.scripts {
            let lines = try Self.code(path)
            #expect(lines.contains("set -euo pipefail"), "\(path): no `set -euo pipefail` line")
            for (i, line) in lines.enumerated() {
                #expect(!line.contains("|| true"), "\(path):\(i + 1): `|| true` hides a failure: \(line)")
                #expect(!line.contains("|| :"), "\(path):\(i + 1): `|| :` hides a failure: \(line)")
                // A build piped into grep fails the pipeline when grep filters every line out;
                // progress filtering is done with sed, which keeps the build's status.
                if line.contains("swift build") && line.contains("|") {
                    #expect(!line.contains("grep"), "\(path):\(i + 1): filter build output with sed, not grep: \(line)")
                }
            }
        }
    }

    @Test func userInstallNeverInstallsTestDependenciesDockerOrStopsServices() throws {
        let install = try Self.code("scripts/install.sh").joined(separator: "\n")
        #expect(install.contains("apt-get install"), "install.sh does not install the package with apt")
        for banned in ["docker.io", "docker-ce", "compose", "pip ", "pip3", "ganesha", "pkill", "systemctl", "service ", "debootstrap"] {
            #expect(!install.contains(banned), "install.sh mentions \(banned)")
        }
        // It may install the build dependencies to build the package, never the test ones.
        for line in install.split(separator: "\n") where line.contains("bootstrap.sh") {
            #expect(line.contains("--build-only"), "install.sh runs the test bootstrap: \(line)")
        }
        let demo = try Self.code("scripts/demo.sh").joined(separator: "\n")
        for line in demo.split(separator: "\n") where line.contains("bootstrap.sh") {
            #expect(line.contains("--build-only"), "demo.sh runs the test bootstrap: \(line)")
        }
    }

    @Test func testBootstrapStopsNothingAndKeepsAnExistingDocker() throws {
        let lines = try Self.code("scripts/bootstrap.sh")
        let text = lines.joined(separator: "\n")
        for banned in ["pkill", "killall", "kill ", "systemctl disable", "systemctl stop", "service nfs-ganesha stop"] {
            #expect(!text.contains(banned), "bootstrap.sh stops a service (\(banned))")
        }
        // docker.io is added in one place, only when the decision says so (BootstrapDecisionTests
        // runs the decision itself); docker-ce is looked for first.
        #expect(text.contains("installed docker-ce"), "bootstrap.sh does not look for docker-ce")
        let dockerIO = lines.filter { $0.contains("wanted+=(docker.io)") }
        #expect(dockerIO.count == 1 && dockerIO[0].contains("[ \"$decision\" = docker.io ]"), "\(dockerIO)")
        // A compose plugin is linked only where none exists, never over /usr/libexec's.
        #expect(!text.contains("/usr/libexec/docker/cli-plugins"), "bootstrap.sh writes over the system's compose plugin path")
        // Build and test dependencies are separate lists; --build-only installs only the first.
        #expect(text.contains("BUILD_PACKAGES=(") && text.contains("TEST_PACKAGES=(") && text.contains("--build-only"))
    }
}
