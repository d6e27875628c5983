// A real backup set with a chain of changes, and a byte-exact description of trees (the
// source as copied at each backup, a restore, a FUSE mount) to compare them.
import Archive
import Foundation
import Support
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// File system calls on names as bytes (names that are not UTF-8 included).
enum ByteFS {
    static func c(_ b: [UInt8]) -> [CChar] { b.map { CChar(bitPattern: $0) } + [0] }

    static func names(_ dir: [UInt8]) throws -> [[UInt8]] {
        guard let d = opendir(c(dir)) else { throw ToolError("opendir \(NameEscape.escape(dir)): \(String(cString: strerror(errno)))") }
        defer { closedir(d) }
        var out: [[UInt8]] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in Array(raw.prefix(while: { $0 != 0 })) }
            if name == [0x2E] || name == [0x2E, 0x2E] { continue }
            out.append(name)
        }
        return out.sorted { $0.lexicographicallyPrecedes($1) }
    }

    static func write(_ path: [UInt8], _ bytes: [UInt8], mode: mode_t = 0o644) throws {
        let fd = open(c(path), O_WRONLY | O_CREAT | O_TRUNC, mode)
        guard fd >= 0 else { throw ToolError("create \(NameEscape.escape(path)): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, bytes.count - done) }
            guard n > 0 else { throw ToolError("write \(NameEscape.escape(path))") }
            done += n
        }
        fchmod(fd, mode)
    }

    static func read(_ path: [UInt8]) throws -> [UInt8] {
        let fd = open(c(path), O_RDONLY)
        guard fd >= 0 else { throw ToolError("open \(NameEscape.escape(path)): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
            guard n >= 0 else { throw ToolError("read \(NameEscape.escape(path)): \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            out += buf[0 ..< n]
        }
        return out
    }

    /// The `user.*` attributes (what a non-root reader and every restore see), `name=value`.
    static func xattrs(_ path: [UInt8]) -> [String] {
        let all = (try? Sys.readXattrs(.path(path))) ?? []
        return all.filter { $0.name.starts(with: Array("user.".utf8)) }.map { NameEscape.escape($0.name) + "=" + NameEscape.escape($0.value) }
    }
}

/// A tree described entry by entry, keyed by the escaped relative path.
enum TreeDescription {
    struct Options {
        /// Paths (escaped) whose content is not compared (a SQLite database captured through
        /// the online backup API holds the same data in other bytes).
        var contentSkipped: Set<String> = []
        var xattrs = true
    }

    static func describe(_ root: String, _ options: Options = Options()) throws -> [String: String] {
        var out: [String: String] = [:]
        var inodes: [UInt64: (first: String, count: Int)] = [:]
        var linkOf: [String: UInt64] = [:]
        func walk(_ rel: [UInt8]) throws {
            let dir = Array(root.utf8) + (rel.isEmpty ? [] : [0x2F] + rel)
            for n in try ByteFS.names(dir) {
                let r = rel.isEmpty ? n : rel + [0x2F] + n
                let p = Array(root.utf8) + [0x2F] + r
                let key = NameEscape.escape(r)
                var st = stat()
                guard lstat(ByteFS.c(p), &st) == 0 else { throw ToolError("lstat \(key): \(String(cString: strerror(errno)))") }
                var d = "mode=\(String(st.st_mode & 0o7777, radix: 8)) owner=\(st.st_uid):\(st.st_gid) mtime=\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
                if options.xattrs { d += " xattrs=[\(ByteFS.xattrs(p).joined(separator: ","))]" }
                switch st.st_mode & S_IFMT {
                case S_IFDIR:
                    out[key] = "dir " + d
                    try walk(r)
                case S_IFLNK:
                    var buf = [CChar](repeating: 0, count: 4096)
                    let k = readlink(ByteFS.c(p), &buf, 4096)
                    out[key] = "symlink -> " + NameEscape.escape(buf[0 ..< max(k, 0)].map { UInt8(bitPattern: $0) }) + " " + d
                case S_IFREG:
                    let sha = options.contentSkipped.contains(key) ? "(not compared)" : hexString(SHA256Hasher.hash(try ByteFS.read(p)))
                    out[key] = "file size=\(st.st_size) sha=\(sha) " + d
                    if st.st_nlink > 1 {
                        let ino = UInt64(st.st_ino)
                        linkOf[key] = ino
                        if let f = inodes[ino] { inodes[ino] = (f.first, f.count + 1) } else { inodes[ino] = (key, 1) }
                        out[key]! += " nlink=\(st.st_nlink)"
                    }
                default:
                    out[key] = "other " + d
                }
            }
        }
        try walk([])
        // Hardlink groups by their first name (inode numbers differ between trees).
        for (k, ino) in linkOf { out[k]! += " same-inode-as=\(inodes[ino]!.first)" }
        return out
    }

    static func diff(_ expected: [String: String], _ got: [String: String]) -> [String] {
        var out: [String] = []
        for k in Set(expected.keys).union(got.keys).sorted() where expected[k] != got[k] {
            out.append("\(k):\n  expected \(expected[k] ?? "absent")\n  got      \(got[k] ?? "absent")")
        }
        return out
    }
}

/// A backup set of three backups with changes between them, and a `cp -a` copy of the source
/// taken right after each backup.
final class BackupChain: @unchecked Sendable {
    let tmp: TempDir
    var source: String { tmp.sub("src") }
    /// Where the set is: a directory, or an nfs:// URL.
    let dest: String
    let set = "chain"
    private(set) var ids: [String] = []
    /// The source as it was at backup i.
    private(set) var copies: [String] = []
    /// The non-UTF-8 name used in the tree: `caf\xe9.txt`.
    static let latin1 = Array("caf".utf8) + [0xE9] + Array(".txt".utf8)
    static let bigSize = 5 << 20

    /// For the tools (an rclone destination's RCLONE_CONFIG).
    let environment: [String: String]

    /// Added to every `hs-backup run` (an encrypted chain's --recipient and --state-dir).
    let runArguments: [String]

    init(destination: String? = nil, environment: [String: String] = [:], runArguments: [String] = []) throws {
        tmp = try TempDir("hs-browse")
        dest = destination ?? tmp.sub("dst")
        self.environment = environment
        self.runArguments = runArguments
        try build(destination: dest)
    }

    private func sh(_ script: String) throws {
        try Subprocess.checked(["/bin/sh", "-ec", script], directory: source)
    }

    /// Deterministic bytes that do not compress.
    static func noise(_ n: Int, seed: UInt64) -> [UInt8] {
        var x = seed &* 0x9E3779B97F4A7C15 | 1
        var out = [UInt8](repeating: 0, count: n)
        for i in 0 ..< n { x ^= x << 13; x ^= x >> 7; x ^= x << 17; out[i] = UInt8(truncatingIfNeeded: x) }
        return out
    }

    private func backup(_ destination: String) throws {
        let r = try Tools.run("hs-backup", ["run", "-q", "--source", source, "--to", destination, "--name", set] + runArguments, environment: environment)
        guard r.succeeded else { throw ToolError("backup failed: \(r.stderr)") }
        let copy = tmp.sub("copy\(copies.count)")
        try Subprocess.checked(["cp", "-a", source, copy])
        copies.append(copy)
        sleep(1)   // ids are seconds
    }

    private func build(destination: String) throws {
        let s = Array(source.utf8) + [0x2F]
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        try sh("""
            mkdir -p radarr/logs plex hard links emptydir bin media db
            printf '<Config><Port>7878</Port></Config>\\n' > radarr/config.xml
            chmod 600 radarr/config.xml; chown 1000:1000 radarr/config.xml
            setfattr -n user.comment -v 'from the scan' radarr/config.xml
            setfattr -n user.dir -v yes radarr
            i=0; while [ $i -lt 4000 ]; do echo "INFO import movie $i 1080p"; i=$((i+1)); done > radarr/logs/radarr.txt
            printf 'linked\\n' > hard/a; ln hard/a hard/b; ln hard/a hard/c
            ln -s ../radarr/config.xml links/rel; ln -s /opt/appdata/elsewhere links/abs
            chmod 750 emptydir; : > empty
            printf '#!/bin/sh\\n' > bin/tool; chmod 4755 bin/tool
            printf 'old\\n' > old.txt; touch -h -d '1969-07-20 20:17:40 UTC' old.txt
            sqlite3 db/app.db 'create table t(id integer primary key, v text); insert into t(v) values (\"one\"), (\"two\");'
            printf 'newline' > "$(printf 'line\\nbreak.txt')"
            touch -d '2026-01-02 03:04:05.123456789 UTC' radarr/config.xml
            """)
        try ByteFS.write(s + Array("media/".utf8) + Self.latin1, Array("latin-1 name\n".utf8))
        try ByteFS.write(s + Array("plex/big.bin".utf8), Self.noise(Self.bigSize, seed: 1))
        try backup(destination)
        // 2: changed, added, deleted, renamed; a mode, an owner and an xattr changed.
        try sh("""
            printf '<Config><Port>7879</Port></Config>\\n' > radarr/config.xml
            printf 'new\\n' > radarr/new.txt
            rm radarr/logs/radarr.txt
            chmod 640 old.txt
            chown 33:33 empty
            setfattr -n user.comment -v 'changed' hard/a
            """)
        _ = rename(ByteFS.c(s + Array("media/".utf8) + Self.latin1), ByteFS.c(s + Array("media/renamed-".utf8) + Self.latin1))
        try backup(destination)
        // 3: a hardlink gone and one added, a symlink retargeted, a big file changed in the
        // middle, a directory removed.
        var big = Self.noise(Self.bigSize, seed: 1)
        for i in 3_000_000 ..< 3_000_100 { big[i] ^= 0xFF }
        try ByteFS.write(s + Array("plex/big.bin".utf8), big)
        try sh("""
            rm hard/b; ln hard/a hard/d
            rm links/rel; ln -s ../radarr/new.txt links/rel
            rmdir emptydir
            """)
        try backup(destination)
        let r = try Tools.run("hs-backup", ["list", "--to", destination, "--name", set, "--json"], environment: environment)
        struct L: Decodable { struct B: Decodable { var id: String }; var backups: [B] }
        ids = try JSONDecoder().decode(L.self, from: Data(r.stdout.utf8)).backups.map(\.id)
        guard ids.count == 3 else { throw ToolError("expected 3 backups, got \(ids)") }
    }
}
