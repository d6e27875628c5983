// The parallel scan (units joined in order), the content provider's unchanged-file skip, and
// manifest bodies (members inflated in parallel, unchanged members reused by the next backup).
import Foundation
import Testing
@testable import Backup
import BackupOps
import Archive
import Gzip
import Restore
import Support
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Wraps the real SQLite provider and records which files it was shown (`looked`: asked for
/// its interest; `asked`: planned).
private final class RecordingProvider: ContentProvider, @unchecked Sendable {
    let inner: SQLiteCaptureProvider
    private let lock = NSLock()
    private var _asked: [String] = []
    private var _looked: [String] = []
    init(_ inner: SQLiteCaptureProvider) { self.inner = inner }
    var asked: Set<String> { lock.lock(); defer { lock.unlock() }; return Set(_asked) }
    var looked: Set<String> { lock.lock(); defer { lock.unlock() }; return Set(_looked) }
    func reset() { lock.lock(); _asked = []; _looked = []; lock.unlock() }
    func interest(relativePath: [UInt8], size: UInt64) -> ContentInterest {
        lock.lock(); _looked.append(String(decoding: relativePath, as: UTF8.self)); lock.unlock()
        return inner.interest(relativePath: relativePath, size: size)
    }
    func plan(relativePath: String, absolutePath: String, size: UInt64) throws -> ContentPlan {
        lock.lock(); _asked.append(relativePath); lock.unlock()
        return try inner.plan(relativePath: relativePath, absolutePath: absolutePath, size: size)
    }
}

private func tableBytes(_ t: ManifestTable) -> ([UInt8], [UInt8]) { (t.records, t.strings) }

@Suite struct ScanTests {
    /// A tree with files at the root, top-level and deeper directories, hardlinks across
    /// top-level directories, symlinks (one to a directory, never followed), excludes at
    /// levels 1 and 2, an empty directory and an unreadable one.
    private func makeTree(_ root: String) throws {
        try Tree.write(root + "/top.txt", "root file\n")
        for app in ["alpha", "beta", "gamma"] {
            for d in 0 ..< 5 {
                for f in 0 ..< 7 { try Tree.write(root + "/\(app)/d\(d)/sub/f\(f).json", "{\"\(app)\": \(d * 10 + f)}\n") }
                try Tree.write(root + "/\(app)/file\(d).txt", String(repeating: "x", count: d * 300))
            }
        }
        try FileManager.default.createDirectory(atPath: root + "/empty", withIntermediateDirectories: true)
        // A chain of small directories above a wide one (Plex's shape): split further down.
        for f in 0 ..< 12 { try Tree.write(root + "/chain/a/b/wide/f\(f).txt", "\(f)") }
        try Tree.write(root + "/chain/a/b/x.txt", "x")
        try Tree.write(root + "/chain/a/b/wide/sub/deeper.txt", "deeper")
        try FileManager.default.createDirectory(atPath: root + "/beta/cache/deep", withIntermediateDirectories: true)
        try Tree.write(root + "/beta/cache/deep/junk.bin", "cache")
        try Tree.write(root + "/skipme/x", "excluded at level 1")
        #expect(link(root + "/alpha/d0/sub/f0.json", root + "/gamma/hard-to-alpha") == 0)
        #expect(link(root + "/alpha/d0/sub/f0.json", root + "/top-hard") == 0)
        #expect(symlink("../alpha", root + "/beta/link-to-alpha") == 0)
        #expect(symlink("alpha", root + "/zz-link") == 0)
    }

    @Test("one thread and several threads give byte-identical tables")
    func deterministicAcrossThreadCounts() throws {
        let dir = try TempDir("hs-scan")
        let root = dir.sub("src")
        try makeTree(root)
        let excludes = ExcludeSet(patterns: ["/skipme", "/beta/cache"])
        var tables: [ScanResult] = []
        for threads in [1, 2, 5] {
            let s = Scanner(root: root, excludes: excludes)
            s.threads = threads
            tables.append(try s.scan())
        }
        for t in tables.dropFirst() {
            #expect(tableBytes(t.table) == tableBytes(tables[0].table))
            #expect(t.warnings == tables[0].warnings)
        }
        let t = tables[0].table
        // Component order, every path once, nothing excluded, nothing below the symlinks.
        var paths: [String] = []
        for i in 0 ..< t.count { paths.append(t.path(t.entry(i))) }
        for i in 1 ..< t.count {
            let c = t.withPath(t.entry(i - 1)) { a in t.withPath(t.entry(i)) { b in comparePaths(a, b) } }
            #expect(c < 0, "\(paths[i - 1]) before \(paths[i])")
        }
        #expect(!paths.contains { $0.hasPrefix("skipme") || $0.hasPrefix("beta/cache") })
        #expect(!paths.contains { $0.hasPrefix("beta/link-to-alpha/") || $0.hasPrefix("zz-link/") })
        #expect(paths.contains("empty") && paths.contains("alpha/d4/sub/f6.json") && paths.contains("top.txt"))
        #expect(paths.contains("chain/a/b/wide/f11.txt") && paths.contains("chain/a/b/wide/sub/deeper.txt") && paths.contains("chain/a/b/x.txt"))
        // What `find` sees, minus the excludes.
        let found = try Subprocess.checked(["find", root, "-mindepth", "1", "-not", "-path", root + "/skipme*",
                                            "-not", "-path", root + "/beta/cache*"]).stdout
            .split(separator: "\n").map { String($0.dropFirst(root.count + 1)) }
        #expect(Set(paths) == Set(found) && paths.count == found.count)
        // Hardlinks across top-level directories: the first in path order holds the content.
        let first = try #require(t.find("alpha/d0/sub/f0.json"))
        #expect(t.entry(first).type == .file)
        for p in ["gamma/hard-to-alpha", "top-hard"] {
            let e = t.entry(try #require(t.find(p)))
            #expect(e.type == .hardlink && t.linkTarget(e) == "alpha/d0/sub/f0.json")
        }
        #expect(t.linkTarget(t.entry(try #require(t.find("zz-link")))) == "alpha")
    }

    @Test("walkers that read small files give the same table; each file's bytes, SHA-256 and xattrs as in it; large, empty and multiply-linked files left to the reader")
    func walkersReadSmallFiles() throws {
        let dir = try TempDir("hs-scanreads")
        let root = dir.sub("src")
        try makeTree(root)
        try Tree.write(root + "/alpha/d1/sub/big.bin", String(repeating: "b", count: (1 << 20) + 1))
        try Tree.write(root + "/alpha/d1/sub/exact.bin", String(repeating: "e", count: 1 << 20))
        try Tree.write(root + "/alpha/d1/sub/empty", "")
        try Subprocess.checked(["setfattr", "-n", "user.hs-test", "-v", "value", root + "/alpha/d2/sub/f1.json"])
        let excludes = ExcludeSet(patterns: ["/skipme", "/beta/cache"])
        func scanner(reads: Bool) -> Backup.Scanner {
            let s = Backup.Scanner(root: root, excludes: excludes)
            s.fileXattrsLeftToReader = true
            s.readsSmallFiles = reads
            return s
        }
        let plain = try scanner(reads: false).scan()
        let stream = try scanner(reads: true).start()
        defer { stream.close() }
        var table = ManifestTable()
        var read: Set<String> = []
        while let s = try stream.next() {
            table.append(s.entry, path: s.path, link: s.link)
            guard let c = s.content else { continue }
            let path = String(decoding: s.path, as: UTF8.self)
            let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: root + "/" + path)))
            let got = try #require(try? c.get(), "\(path) was read")
            #expect(got.bytes == bytes && got.sha256 == SHA256Hasher.hash(bytes), "\(path)")
            #expect(!got.sizeChanged && got.sizeAfter == Int64(bytes.count), "\(path)")
            #expect(s.entry.type == .file && s.entry.size == UInt64(bytes.count) && !s.multiLink, "\(path)")
            let xattrs = try #require(got.xattrs, "\(path): its xattrs were read from the same descriptor")
            #expect(xattrs.map { $0.name }.contains("user.hs-test") == (path == "alpha/d2/sub/f1.json"), "\(path)")
            read.insert(path)
        }
        #expect(tableBytes(table) == tableBytes(plain.table), "reading files does not change the scan")
        #expect(read.contains("alpha/d2/sub/f1.json") && read.contains("alpha/d1/sub/exact.bin") && read.contains("gamma/d4/sub/f6.json"))
        #expect(read.count > 100, "\(read.count) files read by the walkers")
        // Over 1 MiB, empty, or with several links (a hardlink's content is its first path's):
        // opened by the pass, as without content reads.
        for p in ["alpha/d1/sub/big.bin", "alpha/d1/sub/empty", "alpha/d0/sub/f0.json"] { #expect(!read.contains(p), "\(p)") }
    }

    @Test("getdents64 reading: a directory larger than the buffer, sorted, with types")
    func directoryReader() throws {
        let dir = try TempDir("hs-dirents")
        var expected: [String] = []
        for i in 0 ..< 3000 {
            let name = String(format: "entry-%05d-", i) + String(repeating: "n", count: 50)
            expected.append(name)
            if i % 100 == 0 {
                try FileManager.default.createDirectory(atPath: dir.sub(name), withIntermediateDirectories: false)
            } else {
                #expect(FileManager.default.createFile(atPath: dir.sub(name), contents: nil))
            }
        }
        expected.append("a.b"); #expect(FileManager.default.createFile(atPath: dir.sub("a.b"), contents: nil))
        // A name that is the start of another, and bytes above 0x7F (compared unsigned).
        for n in ["ab", "abc", "\u{e9}t\u{e9}", "zz"] { expected.append(n); #expect(FileManager.default.createFile(atPath: dir.sub(n), contents: nil)) }
        let (names, buffer) = readNamesOfDirectory(dir.path)
        #expect(buffer.count < 3000 * 80, "the listing took several getdents64 calls")
        let got = names.map { String(decoding: $0.bytes, as: UTF8.self) }
        #expect(Set(got) == Set(expected) && got.count == expected.count)
        for i in 1 ..< names.count {
            #expect(names[i - 1].bytes.withUnsafeBytes { a in names[i].bytes.withUnsafeBytes { b in comparePaths(a, b) < 0 } })
        }
        for n in names where String(decoding: n.bytes, as: UTF8.self).hasPrefix("entry-") {
            let isDir = Int(String(decoding: n.bytes[6 ..< 11], as: UTF8.self))! % 100 == 0
            #expect((n.type == DirectoryName.directoryType) == isDir)
        }
        // Not a directory: an errno, no names.
        let file = open(dir.sub("a.b"), O_RDONLY)
        defer { close(file) }
        var none: [DirectoryName] = []
        #expect(DirectoryReader.readNames(file, into: &none) == ENOTDIR && none.isEmpty)
    }

    @Test("getdents64 reading: names that tie on their first 8 bytes, are 8 bytes long or shorter, or hold high bytes sort as comparePaths does")
    func directoryReaderSortKeys() throws {
        let dir = try TempDir("hs-dirents-keys")
        var expected: [[UInt8]] = []
        let ascii = ["abcdefgh", "abcdefghi", "abcdefg", "abcdefgi", "abcdefgh0", "abcdefgh00", "abcdefgg~", "a", "ab",
                     "abcdefghij-1", "abcdefghij-2", "abcdefghij", "b", "abcdefgh\u{7f}", "f0000123.txt", "f0000124.txt", "f000012.txt"]
        for n in ascii { expected.append(Array(n.utf8)) }
        // Bytes above 0x7F in and after the first 8 (compared unsigned), and a name whose 8th byte is 0xFF.
        expected += [[0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0xFF], [0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0xFF, 0x01],
                     [0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0xC3, 0xA9], [0xC3, 0xA9], [0xFF, 0xFE]]
        for n in expected {
            let path = (Array((dir.path + "/").utf8) + n + [0]).map { CChar(bitPattern: $0) }
            let fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
            #expect(fd >= 0); if fd >= 0 { close(fd) }
        }
        let (names, _) = readNamesOfDirectory(dir.path)
        let want = expected.sorted { a, b in a.withUnsafeBytes { x in b.withUnsafeBytes { y in comparePaths(x, y) < 0 } } }
        #expect(names.map(\.bytes) == want)
    }

    @Test("find(_:from:) gallops and binary-searches correctly")
    func findFrom() throws {
        var t = ManifestTable()
        let names = (0 ..< 1000).map { String(format: "p%04d", $0 * 2) }
        for n in names { var e = ManifestEntry(); (e.pathOffset, e.pathLength) = t.intern(n); t.append(e) }
        for (i, n) in names.enumerated() {
            var key = n
            #expect(key.withUTF8 { t.find(UnsafeRawBufferPointer($0), from: 0) } == i)
            #expect(key.withUTF8 { t.find(UnsafeRawBufferPointer($0), from: max(0, i - 37)) } == i)
            #expect(key.withUTF8 { t.find(UnsafeRawBufferPointer($0), from: i + 1) } == nil, "not searched before `from`")
            var missing = String(format: "p%04d", i * 2 + 1)
            #expect(missing.withUTF8 { t.find(UnsafeRawBufferPointer($0), from: 0) } == nil)
        }
    }
}

@Suite struct ProviderSkipTests {
    @Test("unchanged files are not shown to the SQLite provider again; databases and changed files are")
    func unchangedFilesSkipTheProvider() throws {
        let dir = try TempDir("hs-provider-skip")
        let src = dir.sub("appdata")
        for i in 0 ..< 40 { try Tree.write(src + "/app/data/item\(i).json", String(repeating: "{\"k\": \(i)}\n", count: 100)) }
        try Tree.write(src + "/app/small.txt", "tiny\n")
        try FileManager.default.createDirectory(atPath: src + "/app/db", withIntermediateDirectories: true)
        _ = try Subprocess.checked(["sqlite3", src + "/app/db/app.db", "CREATE TABLE t(x); INSERT INTO t VALUES (1);"])
        let dest = try TestDestination(.local)
        let snapshots = SQLiteSnapshot()
        defer { snapshots.cleanup() }
        let provider = RecordingProvider(SQLiteCaptureProvider(snapshots: snapshots))
        func run() throws -> (BackupSummary, Manifest) {
            var o = BackupOptions(source: src, destination: dest.destination, set: "t")
            o.contentProvider = provider
            let s = try BackupRunner(options: o, reporter: quiet).run()
            return (s, try BackupSet(destination: dest.destination, name: "t").loadManifest(s.id))
        }
        let (s1, m1) = try run()
        #expect(s1.kind == "full")
        #expect(provider.looked.count == 42, "every file is looked at once: \(provider.looked.count)")
        #expect(provider.asked == ["app/db/app.db"], "only the database is planned (the others do not start with its header)")
        let db = try #require(m1.table.find("app/db/app.db"))
        #expect(m1.table.entry(db).flags & ManifestEntry.flagAskProvider != 0, "a captured database is flagged")
        #expect(m1.table.entry(try #require(m1.table.find("app/data/item3.json"))).flags & ManifestEntry.flagAskProvider == 0)

        // Nothing changed: only the database is looked at (and captured) again.
        provider.reset()
        let (s2, _) = try run()
        #expect(s2.kind == "incremental" && s2.filesArchived == 0)
        #expect(provider.asked == ["app/db/app.db"] && provider.looked == ["app/db/app.db"])

        // Content changed; metadata changed (same owner set again: only ctime moves); a new file;
        // a plain file replaced by a database at the same path.
        try Tree.write(src + "/app/data/item5.json", "changed\n" + String(repeating: "y", count: 600))
        #expect(chown(src + "/app/data/item6.json", getuid(), getgid()) == 0)
        try Tree.write(src + "/app/data/new.json", String(repeating: "n", count: 700))
        try FileManager.default.removeItem(atPath: src + "/app/data/item7.json")
        _ = try Subprocess.checked(["sqlite3", src + "/app/data/item7.json", "CREATE TABLE u(y); INSERT INTO u VALUES (7);"])
        provider.reset()
        let (s3, m3) = try run()
        #expect(provider.looked == ["app/db/app.db", "app/data/item5.json", "app/data/item6.json", "app/data/new.json", "app/data/item7.json"])
        // item6 may be carried (only its ctime moved): planned at once. The others are archived
        // anyway: planned only if they start with the header (the new database does).
        #expect(provider.asked == ["app/db/app.db", "app/data/item6.json", "app/data/item7.json"], "\(provider.asked)")
        #expect(s3.filesArchived >= 3, "item5, new.json and the new database are archived")
        #expect(m3.table.entry(try #require(m3.table.find("app/data/item7.json"))).flags & ManifestEntry.flagAskProvider != 0)

        // The restored database is the captured one and opens.
        let out = dir.sub("out")
        _ = try restore(dest, id: s3.id, to: out)
        let rows = try Subprocess.checked(["sqlite3", out + "/app/data/item7.json", "SELECT y FROM u"]).stdout
        #expect(rows.trimmingCharacters(in: .whitespacesAndNewlines) == "7")
        #expect(try String(contentsOfFile: out + "/app/data/item5.json", encoding: .utf8).hasPrefix("changed\n"))
    }

    @Test("databases are found by their first bytes as files are read: small and large ones, alone in a run, a fake header")
    func databasesFoundAsFilesAreRead() throws {
        let dir = try TempDir("hs-provider-read")
        let src = dir.sub("appdata")
        for i in 0 ..< 30 { try Tree.write(src + "/app/notes/n\(i).txt", String(repeating: "note \(i)\n", count: 90)) }
        try FileManager.default.createDirectory(atPath: src + "/app/db", withIntermediateDirectories: true)
        // Small (read ahead with its neighbours) and large (> 1 MiB: read on its own).
        _ = try Subprocess.checked(["sqlite3", src + "/app/db/small.db", "CREATE TABLE t(x); INSERT INTO t VALUES (41);"])
        _ = try Subprocess.checked(["sqlite3", src + "/app/db/large.db",
                                    "CREATE TABLE b(x); INSERT INTO b VALUES (randomblob(1500000)); INSERT INTO b VALUES (42);"])
        // The header and nothing valid after it: the capture fails, the file is archived as is.
        try Tree.write(src + "/app/db/fake.db", "SQLite format 3\u{0}" + String(repeating: "z", count: 600))
        let snapshots = SQLiteSnapshot()
        defer { snapshots.cleanup() }
        let provider = RecordingProvider(SQLiteCaptureProvider(snapshots: snapshots))
        let dest = try TestDestination(.local)
        var o = BackupOptions(source: src, destination: dest.destination, set: "t")
        o.contentProvider = provider
        let s = try BackupRunner(options: o, reporter: quiet).run()
        #expect(provider.looked.count == 33)
        #expect(provider.asked == ["app/db/small.db", "app/db/large.db", "app/db/fake.db"], "\(provider.asked)")
        #expect(provider.inner.capturedCount == 2)
        #expect(provider.inner.warnings.contains { $0.contains("app/db/fake.db") && $0.contains("Archived the live file") }, "\(provider.inner.warnings)")
        let m = try BackupSet(destination: dest.destination, name: "t").loadManifest(s.id)
        for name in ["small.db", "large.db", "fake.db"] {
            #expect(m.table.entry(try #require(m.table.find("app/db/" + name))).flags & ManifestEntry.flagAskProvider != 0, "\(name)")
        }
        #expect(m.table.entry(try #require(m.table.find("app/notes/n3.txt"))).flags & ManifestEntry.flagAskProvider == 0)
        let out = dir.sub("out")
        _ = try restore(dest, id: s.id, to: out)
        #expect(try Subprocess.checked(["sqlite3", out + "/app/db/small.db", "SELECT x FROM t"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "41")
        #expect(try Subprocess.checked(["sqlite3", out + "/app/db/large.db", "SELECT x FROM b WHERE x = 42"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "42")
        #expect(try Data(contentsOf: URL(fileURLWithPath: out + "/app/db/fake.db")) == Data(contentsOf: URL(fileURLWithPath: src + "/app/db/fake.db")))

        // A run with one new database and nothing else to read: no read-ahead, still captured.
        _ = try Subprocess.checked(["sqlite3", src + "/app/db/new.db", "CREATE TABLE n(x); INSERT INTO n VALUES (43);"])
        provider.reset()
        let s2 = try BackupRunner(options: o, reporter: quiet).run()
        #expect(provider.asked.contains("app/db/new.db"), "\(provider.asked)")
        #expect(s2.filesArchived == 1)
        let out2 = dir.sub("out2")
        _ = try restore(dest, id: s2.id, to: out2)
        #expect(try Subprocess.checked(["sqlite3", out2 + "/app/db/new.db", "SELECT x FROM n"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "43")
    }

    @Test("a database and its -wal planned in either order, or at once, give one capture and no -wal")
    func companionOrder() throws {
        let dir = try TempDir("hs-provider-order")
        let db = dir.sub("app.db")
        _ = try Subprocess.checked(["sqlite3", db, "CREATE TABLE t(x); INSERT INTO t VALUES (1);"])
        let size = UInt64(try #require(OpsFiles.size(db)))
        for round in 0 ..< 12 {
            let snapshots = SQLiteSnapshot()
            defer { snapshots.cleanup() }
            let p = SQLiteCaptureProvider(snapshots: snapshots)
            let plans = ResultSlots<String>(count: 3)
            let work: @Sendable (Int) -> Void = { i in
                let (rel, abs) = i == 0 ? ("app.db", db) : (i == 1 ? ("app.db-wal", db + "-wal") : ("app.db-shm", db + "-shm"))
                let plan = (try? p.plan(relativePath: rel, absolutePath: abs, size: i == 0 ? size : 0)) ?? .asIs
                switch plan {
                case .substitute(let s): plans.set(i, "substitute"); _ = s
                case .omit: plans.set(i, "omit")
                case .asIs: plans.set(i, "asIs")
                case .asIsAskAgain: plans.set(i, "asIsAskAgain")
                }
            }
            if round % 3 == 0 {
                DispatchQueue.concurrentPerform(iterations: 3, execute: work)
            } else if round % 3 == 1 {
                for i in [1, 2, 0] { work(i) }
            } else {
                for i in [0, 1, 2] { work(i) }
            }
            #expect(plans.takeAll() == ["substitute", "omit", "omit"], "round \(round)")
            #expect(p.capturedCount == 1)
        }
    }
}

@Suite struct ManifestBodyTests {
    private func bigTable(_ n: Int, salt: String = "") -> ManifestTable {
        var t = ManifestTable()
        for i in 0 ..< n {
            var e = ManifestEntry()
            (e.pathOffset, e.pathLength) = t.intern(String(format: "app/dir%04d/file%06d.json", i / 100, i))
            e.size = UInt64(i * 7); e.mtime = FileTime(seconds: Int64(i) * 1_000_003, nanoseconds: UInt32(i % 1000)); e.ctime = FileTime(seconds: e.mtime.seconds, nanoseconds: e.mtime.nanoseconds + 5); e.mode = 0o644
            e.hash = Digest(SHA256Hasher.hash(Array("\(salt)\(i)".utf8)))
            t.append(e)
        }
        return t
    }

    private let header = ManifestHeader(id: "x", kind: "full", parent: nil, archives: [], archive: nil, toolVersion: "t", source: "/s",
                                        started: 1, seconds: 2, files: 0, directories: 0, symlinks: 0, filesArchived: 0, treeBytes: 0,
                                        bytesIn: 0, bytesOut: 0, warnings: [])

    /// A manifest file exactly as 0.2.0 wrote it (format 2): magic, header JSON, sizes, the
    /// 128-byte records then the strings as gzip members of up to 4 MiB (listed in `body`;
    /// with `legacyBody`, one gzip stream and no list, as 0.1.0), SHA-256 of everything.
    private func formatTwoFile(_ t: ManifestTable, header: ManifestHeader, legacyBody: Bool = false) throws -> [UInt8] {
        func member(_ b: ArraySlice<UInt8>) -> [UInt8] {
            var out: [UInt8] = []
            b.withUnsafeBytes { GzipMemberEncoder().encodeMember($0, level: .deflate(1), into: &out) }
            return out
        }
        var parts: [ArraySlice<UInt8>] = []
        for area in [t.records, t.strings] {
            var pos = 0
            while pos < area.count { parts.append(area[pos ..< min(pos + (4 << 20), area.count)]); pos += 4 << 20 }
        }
        var h = header
        h.format = 2
        let members = parts.map(member)
        h.body = legacyBody ? nil : zip(parts, members).map { ManifestChunk(length: $0.count, compressed: $1.count, sha256: hexString(SHA256Hasher.hash(Array($0)))) }
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let json = [UInt8](try enc.encode(h))
        var f = Array("HSMANIFEST1\n".utf8)
        withUnsafeBytes(of: UInt32(json.count).littleEndian) { f += $0 }
        f += json
        withUnsafeBytes(of: UInt64(t.records.count).littleEndian) { f += $0 }
        withUnsafeBytes(of: UInt64(t.strings.count).littleEndian) { f += $0 }
        if legacyBody { f += member(ArraySlice(t.records + t.strings)) } else { for m in members { f += m } }
        f += SHA256Hasher.hash(f)
        return f
    }

    @Test("format 3: members decode in order; a no-change manifest copies every member; one change recompresses one member")
    func streamedMembersAndReuse() throws {
        let t = bigTable(90_000)  // ~15 MB of entries: several members
        let first = try Manifest(header: header, table: t).encoded()
        #expect(first.starts(with: Array("HSMANIFEST3\n".utf8)))
        let m1 = try Manifest.decode(first, name: "first")
        #expect(m1.table.records == t.records && m1.table.strings == t.strings)
        let chunks = try #require(m1.header.body)
        #expect(chunks.count >= 5 && m1.header.entries == 90_000 && m1.header.format == 3)

        // Same table: every member is copied byte for byte (and the file still checks out).
        var h2 = header; h2.id = "y"
        let second = try Manifest(header: h2, table: t).encoded(reusing: m1.reusable())
        let m2 = try Manifest.decode(second, name: "second")
        #expect(m2.table.records == t.records && m2.header.body == chunks)
        #expect(second[12 ..< 12 + chunks.map(\.compressed).reduce(0, +)] == first[12 ..< 12 + chunks.map(\.compressed).reduce(0, +)])

        // One entry in the middle changes: only the member holding it is compressed again;
        // the members after it line up with the previous ones (cut points follow the entries).
        var t3 = t
        var e = t3.entry(50_000); e.size += 1; t3.set(50_000, e)
        let third = try Manifest(header: h2, table: t3).encoded(reusing: m1.reusable())
        let m3 = try Manifest.decode(third, name: "third")
        #expect(m3.table.records == t3.records && m3.table.strings == t3.strings)
        let c3 = try #require(m3.header.body)
        #expect(c3.count == chunks.count && zip(c3, chunks).filter { $0 != $1 }.count == 1)

        // A flipped byte in a member is found (its SHA-256), and named as damage.
        var bad = first
        bad[200] ^= 0x55
        #expect { try Manifest.decode(bad, name: "bad") } throws: { "\($0)".contains("damaged") }
        // A cut-off file (no end marker) is damage too.
        #expect { try Manifest.decode(Array(first.dropLast(10)), name: "cut") } throws: { "\($0)".contains("truncated") }
    }

    /// An empty source (a fresh appdata directory): the manifest has no members at all. Before
    /// the fix its header offset left out the magic and every later run called it damaged.
    @Test("an empty tree: a manifest without members, and the tools back it up, verify and restore it")
    func emptyTree() throws {
        let m = try Manifest.decode(try Manifest(header: header, table: ManifestTable()).encoded(), name: "empty")
        #expect(m.table.count == 0 && m.header.body == [] && m.header.entries == 0)
        let dir = try TempDir("hs-empty")
        try FileManager.default.createDirectory(atPath: dir.sub("src"), withIntermediateDirectories: true)
        for _ in 0 ..< 2 {
            let r = try Tools.run("hs-backup", ["run", "--source", dir.sub("src"), "--to", dir.sub("dest"), "--name", "e"])
            #expect(r.status == 0 && r.stderr.isEmpty, "\(r.stdout) \(r.stderr)")
        }
        let v = try Tools.run("hs-backup", ["verify", "--to", dir.sub("dest"), "--name", "e"])
        #expect(v.status == 0, "\(v.stdout) \(v.stderr)")
        let list = try Tools.run("hs-backup", ["list", "--to", dir.sub("dest"), "--name", "e"])
        #expect(list.stdout.contains("incremental"), "the second run is an incremental of the first: \(list.stdout)")
        let out = try Tools.run("hs-restore", ["--from", dir.sub("dest"), "--name", "e", "--to", dir.sub("out")])
        let restored = (try? FileManager.default.contentsOfDirectory(atPath: dir.sub("out"))) ?? ["(no target)"]
        #expect(out.status == 0 && restored.isEmpty, "\(out.stderr)")
    }

    /// An altered manifest cannot point a restore at another file of the destination: archive
    /// ids are plain names, and every slot an entry may use is a listed archive.
    @Test("archive ids with a path, or slots that are not listed archives, make the manifest damaged")
    func archiveIdsArePlainNames() throws {
        var t = ManifestTable()
        var e = ManifestEntry()
        e.archive = 0
        t.append(e, path: Array("a.txt".utf8), link: [])
        for (archives, slots) in [(["../../etc/x"], nil), (["ok"], ["ok", "other"]), (["a/b"], ["a/b"])] as [([String], [String]?)] {
            var h = header
            h.archives = archives
            h.archiveSlots = slots
            let file = try Manifest(header: h, table: t).encoded()
            #expect { try Manifest.decode(file, name: "hostile") } throws: { "\($0)".contains("damaged") }
        }
        // The names are read from the file: the message shows them escaped (NameEscape).
        for (archives, slots, shown) in [(["a\n\u{1B}[2J"], nil, "'a\\n\\x1b[2J'"), (["ok"], ["ok", "\u{1B}x"], "slot \\x1b")] as [([String], [String]?, String)] {
            var h = header
            h.archives = archives
            h.archiveSlots = slots
            let file = try Manifest(header: h, table: t).encoded()
            #expect { try Manifest.decode(file, name: "hostile") } throws: {
                "\($0)".contains(shown) && !"\($0)".unicodeScalars.contains { $0.value < 0x20 }
            }
        }
        var h = header
        h.archives = ["20261130T030000Z"]
        h.archiveSlots = ["", "20261130T030000Z"]
        t.set(0, { var x = t.entry(0); x.archive = 1; return x }())
        let ok = try Manifest.decode(try Manifest(header: h, table: t).encoded(), name: "fine")
        #expect(ok.items().map(\.archive) == ["20261130T030000Z"])
    }

    @Test("format-2 manifests of 0.2.0 (and 0.1.0's single stream) still load and are valid parents")
    func formatTwoLoads() throws {
        let t = bigTable(50_000, salt: "legacy")
        for legacyBody in [false, true] {
            let old = try formatTwoFile(t, header: header, legacyBody: legacyBody)
            let m = try Manifest.decode(old, name: "legacy")
            #expect(m.header.format == 2 && (m.header.body == nil) == legacyBody)
            #expect(m.table.records == t.records && m.table.strings == t.strings)
            // The streaming reader gives the same entries.
            let r = try ManifestReader(bytes: old, name: "legacy")
            var n = 0
            while let rec = try r.next() { #expect(rec.path == t.pathBytes(t.entry(n))); n += 1 }
            #expect(n == t.count)
            // And it is a valid parent: nothing can be reused from it, everything is compressed.
            let next = try Manifest(header: header, table: t).encoded(reusing: m.reusable())
            #expect(try Manifest.decode(next, name: "next").table.records == t.records)
            // A damaged body is refused.
            var bad = old
            bad[bad.count - 40] ^= 0x55
            let err = #expect(throws: ManifestError.self) { try Manifest.decode(bad, name: "bad") }
            #expect(err?.isDamage == true)
        }
    }

    /// Writes a manifest file exactly as 0.1.x did: 112-byte records with Int64 nanosecond
    /// times, `"format": 1`, and (unless `legacyBody`) the member list.
    private func formatOneFile(_ entries: [(path: String, link: String, type: UInt8, mtimeNs: Int64, ctimeNs: Int64, size: UInt64)],
                               legacyBody: Bool) throws -> [UInt8] {
        var records: [UInt8] = [], strings: [UInt8] = []
        func le<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { records += $0 } }
        for e in entries {
            let po = UInt32(strings.count); strings += Array(e.path.utf8)
            let lo = UInt32(strings.count); strings += Array(e.link.utf8)
            le(po); le(UInt32(e.path.utf8.count)); le(lo); le(UInt32(e.link.utf8.count))
            records += [e.type, 0, 0, 0]
            le(UInt32(0o644)); le(UInt32(1000)); le(UInt32(1001))
            le(e.size); le(e.mtimeNs); le(e.ctimeNs)
            le(e.type == 0 ? UInt32(0) : UInt32.max); le(UInt32(0))
            le(UInt64(77)); le(UInt64(512))
            records += SHA256Hasher.hash(Array(e.path.utf8))
        }
        #expect(records.count == entries.count * 112)
        func member(_ b: [UInt8]) -> [UInt8] {
            var out: [UInt8] = []
            b.withUnsafeBytes { GzipMemberEncoder().encodeMember($0, level: .deflate(1), into: &out) }
            return out
        }
        let (mr, ms) = (member(records), member(strings))
        var h: [String: Any] = ["format": 1, "id": "old", "kind": "full", "archives": ["old"], "archive": "old", "toolVersion": "0.1.0",
                                "source": "/s", "started": 1.0, "seconds": 2.0, "files": entries.count, "directories": 0, "symlinks": 0,
                                "filesArchived": 1, "treeBytes": 0, "bytesIn": 0, "bytesOut": 0, "warnings": [String]()]
        if !legacyBody {
            h["body"] = [["length": records.count, "compressed": mr.count, "sha256": hexString(SHA256Hasher.hash(records))],
                         ["length": strings.count, "compressed": ms.count, "sha256": hexString(SHA256Hasher.hash(strings))]]
            h["scanFlags"] = 1
        }
        let json = try JSONSerialization.data(withJSONObject: h, options: [.sortedKeys])
        var f = Array("HSMANIFEST1\n".utf8)
        withUnsafeBytes(of: UInt32(json.count).littleEndian) { f += $0 }
        f += json
        withUnsafeBytes(of: UInt64(records.count).littleEndian) { f += $0 }
        withUnsafeBytes(of: UInt64(strings.count).littleEndian) { f += $0 }
        if legacyBody {
            // 0.1.0: one gzip stream over records and strings.
            f += member(records + strings)
        } else {
            f += mr + ms
        }
        f += SHA256Hasher.hash(f)
        return f
    }

    @Test("format-1 manifests (0.1.0 single stream and 0.1.x members) load: times, strings, archives")
    func formatOneLoads() throws {
        let entries: [(path: String, link: String, type: UInt8, mtimeNs: Int64, ctimeNs: Int64, size: UInt64)] = [
            ("a", "", 1, 1_700_000_000_123_456_789, 1_700_000_000_000_000_001, 0),
            ("a/f.txt", "", 0, -5, -1_000_000_000, 42),
            ("a/l", "f.txt", 2, 0, 999_999_999, 0),
            ("b", "", 0, Int64.max, Int64.min, 7),
        ]
        for legacyBody in [true, false] {
            let m = try Manifest.decode(try formatOneFile(entries, legacyBody: legacyBody), name: "v1")
            #expect(m.header.format == 1 && !m.header.hasXattrHashes)
            let items = Array(m.items())
            #expect(items.map { String(decoding: $0.path, as: UTF8.self) } == ["a", "a/f.txt", "a/l", "b"])
            #expect(items[0].mtime == FileTime(seconds: 1_700_000_000, nanoseconds: 123_456_789))
            #expect(items[1].mtime == FileTime(seconds: -1, nanoseconds: 999_999_995))
            #expect(items[1].ctime == FileTime(seconds: -1, nanoseconds: 0))
            #expect(items[2].ctime == FileTime(seconds: 0, nanoseconds: 999_999_999))
            #expect(items[3].mtime == FileTime(seconds: 9_223_372_036, nanoseconds: 854_775_807))
            #expect(items[3].ctime == FileTime(seconds: -9_223_372_037, nanoseconds: 145_224_192))
            #expect(items[2].type == .symlink && items[2].link == Array("f.txt".utf8))
            #expect(items[1].archive == "old" && items[0].archive == nil && items[1].size == 42 && items[1].memberSkip == 512)
            #expect(items[1].hash == Digest(SHA256Hasher.hash(Array("a/f.txt".utf8))) && items[1].xattrHash == 0)
            // Re-encoded, it is a format-3 manifest with the same entries.
            let again = try Manifest.decode(try m.encoded(reusing: m.reusable()), name: "v3")
            #expect(again.header.format == 3 && Array(again.items()) == items)
        }
    }

    @Test("format 3 keeps the full time range, names as bytes and xattr hashes; a newer format is refused by name")
    func formatTwoRange() throws {
        var t = ManifestTable()
        let times = [FileTime(seconds: .max, nanoseconds: 999_999_999), FileTime(seconds: .min, nanoseconds: 0),
                     FileTime(seconds: 15_000_000_000, nanoseconds: 1), FileTime(seconds: -2, nanoseconds: 750_000_000)]
        for (i, tm) in times.enumerated() {
            var e = ManifestEntry()
            (e.pathOffset, e.pathLength) = t.intern([0x66, 0xFF, UInt8(0x30 + i)])
            e.mtime = tm; e.ctime = times[(i + 1) % times.count]; e.xattrHash = UInt64(i) &* 0x9E37_79B9_7F4A_7C15
            t.append(e)
        }
        let m = try Manifest.decode(try Manifest(header: header, table: t).encoded(), name: "v2")
        let items = Array(m.items())
        #expect(items.map(\.mtime) == times)
        #expect(items.map(\.ctime) == times.indices.map { times[($0 + 1) % times.count] })
        #expect(items.map(\.path) == (0 ..< 4).map { [0x66, 0xFF, UInt8(0x30 + $0)] })
        #expect(items[3].xattrHash == 3 &* 0x9E37_79B9_7F4A_7C15)
        // A manifest of a newer format is refused by name, not as damage.
        let file = try Manifest(header: header, table: t).encoded()
        var h = try Manifest.decode(file, name: "v3").header
        h.format = 4
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let json = [UInt8](try enc.encode(h))
        let bodyBytes = h.body!.map(\.compressed).reduce(0, +)
        var future = Array(file[0 ..< 12 + bodyBytes])
        let at = UInt64(future.count)
        future += json
        withUnsafeBytes(of: at.littleEndian) { future += $0 }
        withUnsafeBytes(of: UInt32(json.count).littleEndian) { future += $0 }
        future += SHA256Hasher.hash(json) + Array("HSMEND3\n".utf8)
        #expect { try Manifest.decode(future, name: "future") } throws: { "\($0)".contains("newer hs-backup") }
    }
}

/// `DirectoryReader.readNames` of the directory at `path`: its names and the getdents64 buffer
/// it used (each read expected to succeed).
private func readNamesOfDirectory(_ path: String) -> (names: [DirectoryName], buffer: [UInt8]) {
    let fd = open(path, O_RDONLY | O_DIRECTORY)
    #expect(fd >= 0)
    defer { close(fd) }
    var names: [DirectoryName] = []
    var buffer: [UInt8] = []
    #expect(DirectoryReader.readNames(fd, into: &names, buffer: &buffer) == nil)
    return (names, buffer)
}
