import Foundation
import Support
import TestSupport

/// Helpers for the LinkCheck tests: real tmpfs mounts, files, and running the built tool.
enum Fx {
    /// Mounts a fresh tmpfs at `path` (created if missing), runs `body`, and unmounts in every path.
    static func withTmpfs<T>(at path: String, options: String? = nil, _ body: () throws -> T) throws -> T {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        var args = ["mount", "-t", "tmpfs"]
        if let options { args += ["-o", options] }
        try Subprocess.checked(args + ["hs-test-tmpfs", path])
        defer { _ = try? Subprocess.run(["umount", path]) }
        return try body()
    }

    /// Bind-mounts `source` at `target`, runs `body`, unmounts in every path.
    static func withBindMount<T>(_ source: String, at target: String, _ body: () throws -> T) throws -> T {
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
        try Subprocess.checked(["mount", "--bind", source, target])
        defer { _ = try? Subprocess.run(["umount", target]) }
        return try body()
    }

    static func mkdirs(_ paths: String...) throws {
        for p in paths { try FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true) }
    }

    /// Writes a file (creating parents).
    static func write(_ path: String, _ bytes: [UInt8]) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    /// Deterministic pseudo-random bytes.
    static func bytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var x = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        var out = [UInt8](repeating: 0, count: count)
        for i in 0..<count {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17
            out[i] = UInt8(truncatingIfNeeded: x)
        }
        return out
    }

    static func read(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }

    /// (device, inode, link count) of a path.
    static func inode(_ path: String) throws -> (UInt64, UInt64, UInt64) {
        var st = stat()
        guard lstat(path, &st) == 0 else { throw ToolError("lstat \(path) failed: errno \(errno)") }
        return (UInt64(st.st_dev), UInt64(st.st_ino), UInt64(st.st_nlink))
    }

    static func link(_ a: String, _ b: String) throws {
        guard Glibc.link(a, b) == 0 else { throw ToolError("link \(a) \(b) failed: errno \(errno)") }
    }

    /// Byte paths (names that are not UTF-8, which a String cannot hold).
    static func mkdir(_ path: [UInt8]) throws {
        guard Sys.withCName(path, { Glibc.mkdir($0, 0o755) }) == 0 else { throw ToolError("mkdir \(NameEscape.escape(path)): errno \(errno)") }
    }

    static func write(_ path: [UInt8], _ bytes: [UInt8]) throws {
        let fd = try Sys.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode: 0o644)
        defer { Sys.close(fd) }
        try Sys.writeAll(fd, bytes)
    }

    static func read(_ path: [UInt8]) throws -> [UInt8] {
        let fd = try Sys.open(path, O_RDONLY | O_CLOEXEC)
        defer { Sys.close(fd) }
        var out = [UInt8](repeating: 0, count: Int(try Sys.fstat(fd).size))
        let n = try out.withUnsafeMutableBytes { try Sys.readFull(fd, into: $0) }
        return Array(out[..<n])
    }

    static func inode(_ path: [UInt8]) throws -> (UInt64, UInt64, UInt64) {
        guard let st = try Sys.fstatat(AT_FDCWD, path) else { throw ToolError("lstat \(NameEscape.escape(path)): no such file") }
        return (st.dev, st.ino, st.nlink)
    }

    /// Runs hs-linkcheck.
    static func run(_ args: [String], env: [String: String] = [:], directory: String? = nil) throws -> ProcessResult {
        try Tools.run("hs-linkcheck", args, environment: env, directory: directory)
    }

    /// Runs hs-linkcheck with --json and decodes the object.
    static func runJSON(_ args: [String], env: [String: String] = [:], directory: String? = nil) throws -> (Int32, [String: Any], ProcessResult) {
        let r = try run(args + ["--json"], env: env, directory: directory)
        guard let obj = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any] else {
            throw ToolError("hs-linkcheck --json printed no object: stdout=\(r.stdout) stderr=\(r.stderr)")
        }
        return (r.status, obj, r)
    }

    static func str(_ v: Any?) -> String { v as? String ?? "" }

    static func has(_ v: Any?, _ part: String) -> Bool { str(v).contains(part) }

    static func findings(_ obj: [String: Any]) -> [[String: Any]] { obj["findings"] as? [[String: Any]] ?? [] }
    static func codes(_ obj: [String: Any], severity: String? = nil) -> [String] {
        findings(obj).filter { severity == nil || ($0["severity"] as? String) == severity }.compactMap { $0["code"] as? String }
    }

    /// All names under a directory, recursively (relative paths).
    static func listing(_ dir: String) -> [String] {
        (FileManager.default.enumerator(atPath: dir)?.allObjects as? [String] ?? []).sorted()
    }
}
