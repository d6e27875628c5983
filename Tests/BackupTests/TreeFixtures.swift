import Foundation
import Support
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Helpers for backup tests: build trees, mutate them, and describe them for comparison.
enum Tree {
    static func write(_ path: String, _ text: String, mode: mode_t = 0o644, mtime: Int? = nil) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        chmod(path, mode)
        if let mtime { setMtime(path, seconds: mtime, nanos: 123_456_789) }
    }

    static func writeBytes(_ path: String, _ bytes: [UInt8]) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    static func setMtime(_ path: String, seconds: Int, nanos: Int) {
        var t = [timespec(tv_sec: seconds, tv_nsec: nanos), timespec(tv_sec: seconds, tv_nsec: nanos)]
        utimensat(AT_FDCWD, path, &t, AT_SYMLINK_NOFOLLOW)
    }

    static func mtimeNs(_ path: String) -> (Int, Int) {
        var st = stat()
        lstat(path, &st)
        return (st.st_mtim.tv_sec, st.st_mtim.tv_nsec)
    }

    /// A small appdata-like tree with every entry type the backup handles.
    static func makeSample(_ root: String) throws {
        try write(root + "/radarr/config.xml", "<Config><Port>7878</Port></Config>\n", mode: 0o600)
        try write(root + "/radarr/logs/radarr.txt", String(repeating: "INFO import movie 1080p\n", count: 2000))
        try writeBytes(root + "/plex/Metadata/aa/poster.jpg", (0 ..< 70000).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 7) })
        try write(root + "/plex/Plex Media Server/Cache/junk.bin", "cache")
        try write(root + "/sonarr/sonarr.db", String(repeating: "page", count: 5000))
        try write(root + "/sonarr/deep/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z/" + String(repeating: "long-name-", count: 12) + ".txt", "long path\n")
        try write(root + "/homepage/ünïcødé file.yaml", "title: home\n")
        try write(root + "/homepage/empty", "")
        try write(root + "/homepage/script.sh", "#!/bin/sh\necho hi\n", mode: 0o755)
        symlink("config.xml", root + "/radarr/config.link")
        symlink("/opt/appdata/elsewhere", root + "/radarr/abs.link")
        link(root + "/radarr/config.xml", root + "/radarr/config.hard")
        mkdir(root + "/emptydir", 0o750)
        chown(root + "/homepage/script.sh", 1234, 5678)
    }

    /// Describes every entry under `root` (not the root itself): type, mode, owner, mtime ns,
    /// content hash or link target, and hardlink groups.
    static func describe(_ root: String, skipping: Set<String> = []) throws -> [String: String] {
        var out: [String: String] = [:]
        var inodes: [UInt64: String] = [:]
        func walk(_ rel: String) throws {
            let dir = rel.isEmpty ? root : root + "/" + rel
            for name in try FileManager.default.contentsOfDirectory(atPath: dir).sorted() {
                let r = rel.isEmpty ? name : rel + "/" + name
                if skipping.contains(r) { continue }
                let p = root + "/" + r
                var st = stat()
                guard lstat(p, &st) == 0 else { continue }
                var d = "mode=\(String(st.st_mode & 0o7777, radix: 8)) uid=\(st.st_uid) gid=\(st.st_gid)"
                switch st.st_mode & S_IFMT {
                case S_IFDIR:
                    d = "dir " + d + " mtime=\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
                    out[r] = d
                    try walk(r)
                case S_IFLNK:
                    let t = (try? FileManager.default.destinationOfSymbolicLink(atPath: p)) ?? "?"
                    out[r] = "symlink -> \(t) uid=\(st.st_uid) mtime=\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
                default:
                    let data = try [UInt8](Data(contentsOf: URL(fileURLWithPath: p)))
                    d = "file " + d + " mtime=\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec) size=\(st.st_size) sha=\(hexString(SHA256Hasher.hash(data)))"
                    if st.st_nlink > 1 {
                        let key = UInt64(st.st_ino)
                        if let first = inodes[key] { d += " hardlink-of=\(first)" } else { inodes[key] = r; d += " links=\(st.st_nlink)" }
                    }
                    out[r] = d
                }
            }
        }
        try walk("")
        return out
    }

    /// Differences between two descriptions, for readable failures.
    static func diff(_ a: [String: String], _ b: [String: String]) -> [String] {
        var out: [String] = []
        for k in Set(a.keys).union(b.keys).sorted() where a[k] != b[k] {
            out.append("\(k): expected \(a[k] ?? "absent") got \(b[k] ?? "absent")")
        }
        return out
    }

    /// `cp -a` copy (keeps modes, owners, ns mtimes, symlinks, hardlinks).
    static func copy(_ from: String, _ to: String) throws {
        try Subprocess.checked(["cp", "-a", from, to])
    }
}
