import Foundation
import Support

/// Copies the repository's filled-in .env files (`common/.env`, `stacks/*/.env`: API keys,
/// tunnel tokens, passwords) into a directory inside the backed-up tree, so the nightly
/// `hs-backup --source /opt/appdata` holds them. Layout: `DIR/common/.env`,
/// `DIR/stacks/<stack>/.env`; directories 0700, files 0600, owned by whoever runs it (root
/// from cron). A file is rewritten only when its content or mode differs (atomically: temp
/// file, fsync, rename), so an unchanged night adds nothing to the incremental backup; a copy
/// whose .env no longer exists is removed. Values are never printed.
///
/// Restore: `cp -a DIR/. /opt/stacks/home-server/` (after restoring /opt/appdata).
package enum EnvBackup {
    /// - Returns: 0 when every .env was copied, 1 when there was none or a copy failed.
    /// - Throws: `ToolError.usage` when DIR is inside the repository (it would copy itself).
    package static func save(repo: StackRepository, to dir: String, reporter: Reporter) throws -> Int32 {
        let target = URL(fileURLWithPath: dir, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath)).standardizedFileURL.path
        if target == repo.root || target.hasPrefix(repo.root + "/") {
            throw ToolError.usage("--save-env \(NameEscape.escape(dir)) is inside the repository \(NameEscape.escape(repo.root)): give a directory in the backed-up tree, e.g. /opt/appdata/.home-server-env")
        }
        var files: [(source: String, rel: String)] = []
        if FileManager.default.fileExists(atPath: repo.commonEnv) { files.append((repo.commonEnv, "common/.env")) }
        for s in repo.localStacks() { files.append((repo.env(s), "stacks/\(s)/.env")) }
        guard !files.isEmpty else {
            reporter.error("hs-deploy --save-env: no common/.env or stacks/*/.env in \(NameEscape.escape(repo.root)): nothing to save (fill in the .env files first)")
            return 1
        }
        var updated = 0
        do {
            try makePrivateDirectory(target)
            for f in files {
                guard let data = FileManager.default.contents(atPath: f.source) else {
                    throw ToolError("cannot read \(NameEscape.escape(f.source)): run hs-deploy --save-env as root (the .env files are mode 600)")
                }
                let dest = target + "/" + f.rel
                try makePrivateDirectory((dest as NSString).deletingLastPathComponent)
                if try write(data, to: dest) { updated += 1 }
            }
            // Copies of .env files that are gone (a stack moved to another host).
            let wanted = Set(files.map(\.rel))
            let stacksDir = target + "/stacks"
            for s in (try? FileManager.default.contentsOfDirectory(atPath: stacksDir)) ?? [] where !wanted.contains("stacks/\(s)/.env") {
                try? FileManager.default.removeItem(atPath: "\(stacksDir)/\(s)/.env")
                try? FileManager.default.removeItem(atPath: "\(stacksDir)/\(s)")
            }
        } catch let e as ToolError {
            reporter.error("hs-deploy --save-env: \(e.message)")
            return 1
        }
        reporter.info("hs-deploy --save-env: \(files.count) .env file(s) in \(NameEscape.escape(target)) (\(updated) updated)")
        return 0
    }

    /// Creates `dir` (and parents) and makes it 0700.
    static func makePrivateDirectory(_ dir: String) throws {
        do { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) } catch {
            throw ToolError("cannot create \(NameEscape.escape(dir)): \(Sys.strerror(errno))")
        }
        guard chmod(dir, 0o700) == 0 else { throw ToolError("cannot chmod 700 \(NameEscape.escape(dir)): \(Sys.strerror(errno))") }
    }

    /// Writes `data` to `path` with mode 0600 unless it already holds exactly that.
    /// - Returns: true when the file was written.
    static func write(_ data: Data, to path: String) throws -> Bool {
        var st = stat()
        if lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_mode & 0o777 == 0o600,
           FileManager.default.contents(atPath: path) == data {
            return false
        }
        do throws(AtomicFile.Failure) {
            try AtomicFile.replace(path, with: Array(data), temporary: path + ".hs-tmp-\(getpid())", mode: 0o600)
        } catch where error.call == "create" {
            throw ToolError("cannot create \(NameEscape.escape(error.path)): \(error.reason)")
        } catch {
            throw ToolError("cannot write \(NameEscape.escape(path)): \(error.reason)")
        }
        return true
    }
}
