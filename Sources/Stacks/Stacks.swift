// Stacks: the model behind hs-deploy. A repository holds `common/.env.template` and
// `stacks/<name>/{docker-compose.yml,.env.template,.env}`; this module
//   - parses .env and .env.template files (EnvFile),
//   - parses compose files through `docker compose config --format json`, the authoritative
//     parser (ComposeProject), and scans their raw text for `${VAR}` references,
//   - parses Homepage's services.yaml (HomepageServices) and compares it with the compose ports,
//   - checks a stack before it starts (StackChecker), guards the NFS storage mount
//     (StorageGuard), and runs `docker compose up -d` / `down` (StackDeployer).
//
// What it guarantees: a stack is never started while a check fails or while a stack that
// bind-mounts the storage path would write into a bare directory on the local disk; .env
// values are never printed (messages are scrubbed of them). What it does not guarantee: that
// the containers are healthy afterwards (the summary shows their state and health), or that
// values in .env are correct beyond being present and non-empty.
import Foundation
import Support

/// A checkout of the home-server repository: where the stacks and templates are.
package struct StackRepository: Sendable {
    /// Absolute path of the repository root.
    package let root: String

    /// - Parameter root: the repository root (relative paths are resolved against the cwd).
    package init(root: String) {
        let url = URL(fileURLWithPath: root, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
        self.root = url.standardizedFileURL.path
    }

    package var commonTemplate: String { root + "/common/.env.template" }
    package var commonEnv: String { root + "/common/.env" }
    package func stackDirectory(_ stack: String) -> String { root + "/stacks/" + stack }
    package func composeFile(_ stack: String) -> String { stackDirectory(stack) + "/docker-compose.yml" }
    package func template(_ stack: String) -> String { stackDirectory(stack) + "/.env.template" }
    package func env(_ stack: String) -> String { stackDirectory(stack) + "/.env" }
    /// Homepage's services list (in the aeos stack).
    package var homepageServices: String { root + "/stacks/aeos/config/homepage/services.yaml" }

    /// `path` relative to the repository root, for messages.
    package func relative(_ path: String) -> String {
        path.hasPrefix(root + "/") ? String(path.dropFirst(root.count + 1)) : path
    }

    /// Every stack: the directories under `stacks/` that hold a docker-compose.yml, sorted.
    /// - Throws: `ToolError` when `stacks/` cannot be read (wrong `--repo`).
    package func allStacks() throws -> [String] {
        let dir = root + "/stacks"
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else {
            throw ToolError.usage("cannot read \(NameEscape.escape(dir)): run hs-deploy from the repository root or pass --repo DIR")
        }
        return names.filter { FileManager.default.fileExists(atPath: composeFile($0)) }.sorted()
    }

    /// The stacks this host runs: those whose `stacks/<name>/.env` exists, sorted.
    package func localStacks() -> [String] {
        ((try? allStacks()) ?? []).filter { FileManager.default.fileExists(atPath: env($0)) }
    }

    /// Validates a stack name given on the command line.
    /// - Throws: `ToolError.usage` naming the known stacks when `stack` is not one of them.
    package func requireStack(_ stack: String) throws {
        let known = try allStacks()
        guard known.contains(stack) else {
            throw ToolError.usage("unknown stack '\(NameEscape.escape(stack))': no \(NameEscape.escape(relative(composeFile(stack)))); "
                                  + "known stacks: \(known.map(NameEscape.escape).joined(separator: ", "))")
        }
    }
}
