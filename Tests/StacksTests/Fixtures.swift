import Foundation
import Stacks
import Support
import TestSupport

/// The repository this test file lives in (Tests/StacksTests/Fixtures.swift -> root).
let repoRoot: String = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().path

let allStacks = ["aeos", "apollo", "asteria", "atlas", "helios", "hera", "io"]

/// Keys whose values are secrets.
func isSecretKey(_ key: String) -> Bool {
    ["KEY", "TOKEN", "SECRET", "PASSWORD", "CLAIM"].contains { key.uppercased().contains($0) }
}

/// The value a filled-in test .env gets for an empty template variable. Distinctive, so a
/// test can prove it reached the container config and was never printed.
func testValue(_ key: String) -> String { "s3cret-\(key.lowercased())-v4lue" }

/// A copy of the repository's stacks/ and common/ in a temporary directory, with every
/// .env filled from its template (empty values get `testValue(KEY)`, @optional ones stay
/// empty) and chmod 600 — what a user does before deploying.
final class FilledRepo: @unchecked Sendable {
    let dir: TempDir
    var root: String { dir.path }
    var repo: StackRepository { StackRepository(root: root) }

    init() throws {
        dir = try TempDir("hs-stacks")
        try Subprocess.checked(["cp", "-r", repoRoot + "/stacks", repoRoot + "/common", root + "/"])
        for t in [root + "/common/.env.template"] + allStacks.map({ root + "/stacks/\($0)/.env.template" }) {
            let tpl = try EnvFile.load(t)
            var out = ""
            for e in tpl.entries {
                let v = e.value.isEmpty && !e.optional ? testValue(e.key) : e.value
                out += "\(e.key)=\(v)\n"
            }
            let env = String(t.dropLast(".template".count))
            try write(env, out, mode: 0o600)
        }
    }

    func write(_ path: String, _ text: String, mode: Int = 0o644) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
    }

    func path(_ rel: String) -> String { root + "/" + rel }

    func read(_ rel: String) throws -> String { try String(contentsOfFile: path(rel), encoding: .utf8) }

    /// Rewrites a file by a closure.
    func edit(_ rel: String, _ change: (String) -> String) throws {
        let attrs = try FileManager.default.attributesOfItem(atPath: path(rel))
        try write(path(rel), change(try read(rel)), mode: (attrs[.posixPermissions] as? Int) ?? 0o644)
    }

    /// The stack's compose file as `docker compose config --format json` parses it.
    func project(_ stack: String, interpolate: Bool = true, profiles: [String] = []) throws -> ComposeProject {
        try DockerCompose(envFiles: [repo.commonEnv, repo.env(stack)], composeFile: repo.composeFile(stack),
                          profiles: profiles).config(interpolate: interpolate)
    }

    /// Runs hs-deploy with `--repo` pointing here.
    func deploy(_ args: [String]) throws -> ProcessResult {
        try Tools.run("hs-deploy", args + ["--repo", root])
    }
}

/// Text of a tool run for failure messages.
func describe(_ r: ProcessResult) -> String { "exit \(r.status)\nstdout: \(r.stdout)\nstderr: \(r.stderr)" }
