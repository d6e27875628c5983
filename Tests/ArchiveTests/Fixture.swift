// Test fixtures for the archive engine: trees described as data, created on disk, and
// snapshots of trees for comparison (content, mode, owner, mtime, link targets, xattrs).
import Archive
import Foundation
import Restore
import Glibc
import Support
import TestSupport

/// One node of a fixture tree.
enum TestNode {
    case dir(String, mode: UInt32 = 0o755, uid: UInt32 = 0, gid: UInt32 = 0, mtime: (Int64, UInt32) = (1_700_000_000, 0))
    case file(String, content: [UInt8], mode: UInt32 = 0o644, uid: UInt32 = 0, gid: UInt32 = 0,
              mtime: (Int64, UInt32) = (1_700_000_000, 0), xattrs: [String: [UInt8]] = [:])
    /// A sparse file: `size` apparent bytes, `head` written at 0 and `tail` at the end.
    case sparse(String, size: UInt64, head: [UInt8], tail: [UInt8])
    case symlink(String, target: String)
    case hardlink(String, to: String)
    case fifo(String, mode: UInt32 = 0o640)
}

enum Fixture {
    static func pseudoRandom(_ n: Int, seed: UInt64) -> [UInt8] {
        var x = seed | 1
        var out = [UInt8](repeating: 0, count: n)
        for i in 0..<n { x ^= x << 13; x ^= x >> 7; x ^= x << 17; out[i] = UInt8(truncatingIfNeeded: x) }
        return out
    }

    static func text(_ n: Int) -> [UInt8] {
        let line = Array("2026-11-27 03:00:01|INFO|Radarr import movie /storage/library/movies done\n".utf8)
        return (0..<n).map { line[$0 % line.count] }
    }

    /// The round-trip tree the issue asks for.
    static var standard: [TestNode] {
        let long1 = String(repeating: "a", count: 90), long2 = String(repeating: "b", count: 90)
        let long3 = String(repeating: "c", count: 90)
        return [
            .dir("plain"),
            .file("plain/hello.txt", content: Array("hello\n".utf8), mtime: (1_700_000_001, 123_456_789)),
            .file("plain/empty", content: []),
            .dir("plain/emptydir", mode: 0o700),
            .dir(long1), .dir(long1 + "/" + long2), .dir(long1 + "/" + long2 + "/" + long3),
            .file(long1 + "/" + long2 + "/" + long3 + "/" + String(repeating: "n", count: 120), content: text(3000)),
            .file(String(repeating: "z", count: 255), content: Array("max name".utf8)),
            .dir("ünïcödé"),
            .file("ünïcödé/日本語 ファイル.txt", content: Array("こんにちは\n".utf8)),
            .file("ünïcödé/emoji-🎉.bin", content: pseudoRandom(5000, seed: 9)),
            .file("with space.txt", content: Array("space\n".utf8)),
            .file("tab\tname", content: Array("tab\n".utf8)),
            .file("new\nline", content: Array("newline\n".utf8)),
            .dir("shared", mode: 0o2775, uid: 1234, gid: 5678),
            .file("shared/owned", content: text(10_000), mode: 0o640, uid: 1234, gid: 5678, mtime: (1_600_000_000, 500_000_000)),
            .file("shared/nobody", content: text(100), mode: 0o600, uid: 65534, gid: 65534),
            .file("shared/bigid", content: text(100), uid: 3_000_000, gid: 4_000_000),
            .file("suid-tool", content: Array("#!/bin/sh\n".utf8), mode: 0o4755),
            .file("attrs.txt", content: Array("xattrs\n".utf8),
                  xattrs: ["user.comment": Array("hello world".utf8), "user.binary": [0, 1, 2, 255, 10, 61]]),
            .symlink("abs-link", target: "/etc/hostname"),
            .symlink("rel-link", target: "plain/hello.txt"),
            .symlink("dangling", target: "nope/missing"),
            .symlink("plain/up-link", target: "../with space.txt"),
            .symlink("long-link", target: String(repeating: "t", count: 150) + "/ü"),
            .file("hard-a", content: text(20_000)),
            .hardlink("plain/hard-b", to: "hard-a"),
            .fifo("pipe"),
            .file("random-5m.bin", content: pseudoRandom(5 << 20, seed: 42)),
            .file("text-3m.log", content: text(3 << 20)),
            .sparse("sparse.img", size: 24 << 20, head: Array("HEAD".utf8), tail: Array("TAIL".utf8)),
        ]
    }

    /// Creates the nodes under `root` (parents first; metadata of directories last).
    static func create(_ nodes: [TestNode], under root: String) throws {
        func p(_ rel: String) -> String { root + "/" + rel }
        var dirs: [(String, UInt32, UInt32, UInt32, (Int64, UInt32))] = []
        for n in nodes {
            switch n {
            case let .dir(rel, mode, uid, gid, mtime):
                try FileManager.default.createDirectory(atPath: p(rel), withIntermediateDirectories: true)
                dirs.append((rel, mode, uid, gid, mtime))
            case let .file(rel, content, mode, uid, gid, mtime, xattrs):
                try Data(content).write(to: URL(fileURLWithPath: p(rel)))
                for (k, v) in xattrs {
                    let rc = v.withUnsafeBytes { setxattrC(p(rel), k, $0.baseAddress, $0.count, 0) }
                    if rc != 0 { throw ToolError("setxattr \(k) on \(rel) failed: errno \(errno)") }
                }
                try check(chown(p(rel), uid, gid), "chown \(rel)")
                try check(chmod(p(rel), mode_t(mode)), "chmod \(rel)")
                try setTimes(p(rel), mtime)
            case let .sparse(rel, size, head, tail):
                let fd = open(p(rel), O_WRONLY | O_CREAT | O_TRUNC, 0o644)
                defer { close(fd) }
                _ = head.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
                _ = tail.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(size) - off_t(tail.count)) }
                try setTimes(p(rel), (1_700_000_100, 0))
            case let .symlink(rel, target):
                try check(symlink(target, p(rel)), "symlink \(rel)")
            case let .hardlink(rel, to):
                try check(link(p(to), p(rel)), "link \(rel)")
            case let .fifo(rel, mode):
                try check(mkfifo(p(rel), mode_t(mode)), "mkfifo \(rel)")
                try check(chmod(p(rel), mode_t(mode)), "chmod \(rel)")
            }
        }
        for (rel, mode, uid, gid, mtime) in dirs.reversed() {
            try check(chown(p(rel), uid, gid), "chown \(rel)")
            try check(chmod(p(rel), mode_t(mode)), "chmod \(rel)")
            try setTimes(p(rel), mtime)
        }
    }

    static func check(_ rc: Int32, _ what: String) throws {
        if rc != 0 { throw ToolError("\(what) failed: \(String(cString: strerror(errno)))") }
    }

    static func setTimes(_ path: String, _ t: (Int64, UInt32)) throws {
        var ts = [timespec(tv_sec: Int(t.0), tv_nsec: Int(t.1)), timespec(tv_sec: Int(t.0), tv_nsec: Int(t.1))]
        try check(utimensat(AT_FDCWD, path, &ts, AT_SYMLINK_NOFOLLOW), "utimensat \(path)")
    }
}

@_silgen_name("setxattr") func setxattrC(_ path: UnsafePointer<CChar>, _ name: UnsafePointer<CChar>, _ value: UnsafeRawPointer?, _ size: Int, _ flags: Int32) -> Int32

/// What a comparison looks at for one node.
struct NodeInfo: Equatable, CustomStringConvertible {
    var type: String
    var mode: UInt32
    var uid: UInt32
    var gid: UInt32
    var size: UInt64
    var mtime: Int64
    var mtimeNs: Int
    var link: String?
    var sha: String?
    var xattrs: [String: [UInt8]]
    var description: String {
        "\(type) mode=\(String(mode, radix: 8)) \(uid):\(gid) size=\(size) mtime=\(mtime).\(mtimeNs) link=\(link ?? "-") sha=\(sha?.prefix(12) ?? "-") xattrs=\(xattrs.keys.sorted())"
    }
}

struct TreeSnapshot {
    var nodes: [String: NodeInfo] = [:]
    /// Paths grouped by inode (hardlink groups with more than one name).
    var hardlinkGroups: Set<[String]> = []

    init(_ root: String) {
        var inodes: [UInt64: [String]] = [:]
        func walk(_ rel: String) {
            let dir = rel.isEmpty ? root : root + "/" + rel
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return }
            for name in names {
                let r = rel.isEmpty ? name : rel + "/" + name
                let full = root + "/" + r
                var st = stat()
                guard lstat(full, &st) == 0 else { continue }
                var info = NodeInfo(type: "", mode: UInt32(st.st_mode & 0o7777), uid: st.st_uid, gid: st.st_gid, size: 0,
                                    mtime: Int64(st.st_mtim.tv_sec), mtimeNs: st.st_mtim.tv_nsec, link: nil, sha: nil, xattrs: [:])
                switch st.st_mode & S_IFMT {
                case S_IFDIR: info.type = "dir"
                case S_IFREG:
                    info.type = "file"; info.size = UInt64(st.st_size)
                    info.sha = (try? Data(contentsOf: URL(fileURLWithPath: full))).map { hexString(SHA256Hasher.hash(Array($0))) }
                    if st.st_nlink > 1 { inodes[UInt64(st.st_ino), default: []].append(r) }
                case S_IFLNK:
                    info.type = "symlink"
                    info.link = (try? FileManager.default.destinationOfSymbolicLink(atPath: full))
                    info.mode = 0
                case S_IFIFO: info.type = "fifo"
                default: info.type = "other"
                }
                if info.type == "file" || info.type == "dir" { info.xattrs = readUserXattrs(path: full) }
                nodes[r] = info
                if info.type == "dir" { walk(r) }
            }
        }
        walk("")
        hardlinkGroups = Set(inodes.values.filter { $0.count > 1 }.map { $0.sorted() })
    }

    /// Differences from `other`, as readable lines (empty when equal).
    func differences(from other: TreeSnapshot, ignoreSymlinkTimes: Bool = true, ignoreXattrs: Bool = false,
                     ignoring: Set<String> = []) -> [String] {
        var out: [String] = []
        for path in Set(nodes.keys).union(other.nodes.keys).sorted() where !ignoring.contains(path) {
            guard var a = nodes[path] else { out.append("only in extracted: \(path)"); continue }
            guard var b = other.nodes[path] else { out.append("missing: \(path)"); continue }
            if ignoreSymlinkTimes && a.type == "symlink" { a.mtime = 0; a.mtimeNs = 0; b.mtime = 0; b.mtimeNs = 0 }
            if ignoreXattrs { a.xattrs = [:]; b.xattrs = [:] }
            if a != b { out.append("\(path):\n  expected \(a)\n  got      \(b)") }
        }
        if hardlinkGroups != other.hardlinkGroups {
            out.append("hardlink groups differ: expected \(hardlinkGroups.sorted { $0.description < $1.description }) got \(other.hardlinkGroups.sorted { $0.description < $1.description })")
        }
        return out
    }
}

/// Writes an archive of `root` with the engine into `archivePath`.
@discardableResult
func writeArchive(of root: String, to archivePath: String, options: ArchiveWriterOptions = ArchiveWriterOptions()) throws -> ArchiveIndex {
    let fd = open(archivePath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw ToolError("cannot create \(archivePath)") }
    defer { close(fd) }
    let writer = ArchiveWriter(sink: { bytes in
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n != bytes.count { throw ToolError("short write to \(archivePath)") }
    }, options: options)
    try DirectoryArchiver.archive(root, into: writer)
    return try writer.finish()
}

func run(_ args: [String]) throws -> ProcessResult {
    try Subprocess.run(args)
}

/// Extracts an archive with the restore executor (as `hs-restore --archive` does).
@discardableResult
func extract(_ source: any ByteSource, to target: String, policy: RestorePolicy = RestorePolicy(), start: ExtractStart? = nil,
             endOffset: UInt64? = nil, onFile: ((TarEntry) -> Void)? = nil) throws -> RestoreSummary {
    try RestoreExecutor(target: target, policy: policy).run(try ArchiveStreamSource(source, start: start, endOffset: endOffset), onFile: onFile)
}
