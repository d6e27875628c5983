import Foundation
import Testing
import Support
import TestSupport

/// Paths and small helpers shared by the provisioning tests.
enum Fixture {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures").path
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path
    static let templates = repoRoot + "/provisioning"
    static let inventory = dir + "/inventory.yml"
    /// Set UPDATE_GOLDEN=1 to rewrite golden files (then review the diff before committing).
    static let updateGolden = ProcessInfo.processInfo.environment["UPDATE_GOLDEN"] == "1"

    /// Copies a fixture root into a fresh temporary directory (owners and modes kept).
    static func sandbox(_ name: String) throws -> TempDir {
        let t = try TempDir("hs-prov-\(name)")
        try Subprocess.checked(["cp", "-a", dir + "/" + name + "/.", t.path])
        return t
    }

    /// Every regular file under `root` (relative path -> bytes), skipping backups when asked.
    static func files(_ root: String, skipBackups: Bool = true) -> [String: Data] {
        var out: [String: Data] = [:]
        let e = FileManager.default.enumerator(atPath: root)
        while let rel = e?.nextObject() as? String {
            var isDir: ObjCBool = false
            let full = root + "/" + rel
            guard FileManager.default.fileExists(atPath: full, isDirectory: &isDir), !isDir.boolValue else { continue }
            if skipBackups && rel.contains(".hs-backup-") { continue }
            out[rel] = FileManager.default.contents(atPath: full)
        }
        return out
    }

    static func text(_ path: String) -> String {
        String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self)
    }

    /// Runs hs-provision and returns (status, stdout, stderr).
    static func provision(_ args: [String]) throws -> ProcessResult {
        try Tools.run("hs-provision", args)
    }

    /// Compares `actual` with the golden file `golden/<name>` (or rewrites it with UPDATE_GOLDEN=1).
    static func golden(_ name: String, _ actual: String) -> String? {
        let path = dir + "/golden/" + name
        if updateGolden {
            try? FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            do { try Data(actual.utf8).write(to: URL(fileURLWithPath: path)) } catch { Issue.record("could not write the golden file \(path): \(error)") }
            return actual
        }
        return FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
    }
}
