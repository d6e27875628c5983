import Foundation
import Testing
@testable import Backup
import Archive
import Restore
import Storage
import Support
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Where a test's backups go. Every destination test runs against each kind.
enum DestKind: String, CaseIterable, CustomStringConvertible, Sendable {
    case local
    /// nfs-ganesha on 127.0.0.1 (one server per test process, a fresh directory per test).
    case nfs
    var description: String { rawValue }
}

/// A destination for one test (a fresh directory, or a fresh nfs-ganesha export).
final class TestDestination: @unchecked Sendable {
    let dir: TempDir
    let spec: String
    let destination: any Destination

    init(_ kind: DestKind) throws {
        dir = try TempDir("hs-backup-dest")
        switch kind {
        case .local:
            spec = dir.path
        case .nfs:
            let g = try GaneshaServer.shared()
            let name = try g.makeUniqueDirectory("backup")
            spec = g.url(path: name)
        }
        destination = try openDestination(spec)
    }
}

let quiet = Reporter(mode: .plain)
let cacheDir = "plex/Plex Media Server/Cache"

func backup(_ src: String, _ dest: TestDestination, full: Bool = false, set: String = "t") throws -> BackupSummary {
    var o = BackupOptions(source: src, destination: dest.destination, set: set)
    o.forceFull = full
    return try BackupRunner(options: o, reporter: quiet).run()
}

@discardableResult
func restore(_ dest: TestDestination, id: String, to: String, only: [String] = [], set: String = "t", force: Bool = false) throws -> RestoreSummary {
    try restore(dest.destination, id: id, to: to, only: only, set: set, force: force)
}

/// Restores backup `id` of `set` with the restore executor (as `hs-restore --from`).
@discardableResult
func restore(_ destination: any Destination, id: String, to: String, only: [String] = [], set: String = "t", force: Bool = false) throws -> RestoreSummary {
    var policy = RestorePolicy()
    policy.allowNonEmptyTarget = force
    let selection = PathSelection(only.map { Array($0.utf8) })
    let source = try BackupRestore.source(destination: destination, set: set, backup: id, selection: selection)
    return try RestoreExecutor(target: to, policy: policy, selection: selection).run(source)
}

@Suite struct ManifestTests {
    @Test func roundTripAndOrder() throws {
        var t = ManifestTable()
        for p in ["a", "a/b", "a.b", "b"] {
            var e = ManifestEntry()
            (e.pathOffset, e.pathLength) = t.intern(p)
            e.size = UInt64(p.count); e.mtime = FileTime(seconds: -1, nanoseconds: 999_999_995); e.hash = Digest(SHA256Hasher.hash(Array(p.utf8)))
            t.append(e)
        }
        // Component order: a directory's children come right after it.
        for i in 1 ..< t.count {
            let c = t.withPath(t.entry(i - 1)) { a in t.withPath(t.entry(i)) { b in comparePaths(a, b) } }
            #expect(c < 0)
        }
        let h = ManifestHeader(id: "x", kind: "full", parent: nil, archives: [], archive: nil, toolVersion: "t", source: "/s",
                               started: 1, seconds: 2, files: 4, directories: 0, symlinks: 0, filesArchived: 0, treeBytes: 0,
                               bytesIn: 0, bytesOut: 0, warnings: [])
        var bytes = try Manifest(header: h, table: t).encoded()
        let m = try Manifest.decode(bytes, name: "test")
        #expect(m.table.count == 4)
        #expect(m.table.path(m.table.entry(2)) == "a.b")
        #expect(m.table.entry(3).mtime == FileTime(seconds: -1, nanoseconds: 999_999_995))
        #expect(m.table.entry(1).hash == Digest(SHA256Hasher.hash(Array("a/b".utf8))))
        #expect(m.table.find("a.b") == 2 && m.table.find("zz") == nil)
        bytes[bytes.count / 2] ^= 1
        let err = #expect(throws: ManifestError.self) { try Manifest.decode(bytes, name: "test") }
        #expect(err?.isDamage == true)
    }

    @Test func defaultExcludesKeepPosters() {
        let x = ExcludeSet(patterns: ["*.tmp", "/radarr/logs"])
        #expect(x.matches("plex/Library/Application Support/Plex Media Server/Cache"))
        #expect(x.matches("plex/Library/Application Support/Plex Media Server/Codecs"))
        #expect(x.matches("plex/Library/Application Support/Plex Media Server/Crash Reports"))
        #expect(x.matches("jellyfin/transcodes"))
        #expect(x.matches("a/b/c.tmp"))
        #expect(x.matches("radarr/logs"))
        #expect(!x.matches("sonarr/radarr/logs"))
        #expect(!x.matches("plex/Library/Application Support/Plex Media Server/Metadata"))
        #expect(!x.matches("radarr/MediaCover"))
        #expect(!x.matches("plex/CacheNotReally"))
    }
}

@Suite struct BackupChainTests {
    /// add, modify, delete, rename, file->dir, file->symlink, content changed with mtime
    /// restored: restoring every point equals a copy taken at that point.
    @Test(arguments: DestKind.allCases) func chainRestoresEveryPoint(kind: DestKind) throws {
        let work = try TempDir("hs-backup-chain")
        let src = work.sub("src")
        try Tree.makeSample(src)
        let dest = try TestDestination(kind)
        var points: [(String, String)] = []  // (id, snapshot dir)
        func point(_ n: Int) throws -> BackupSummary {
            let s = try backup(src, dest)
            let snap = work.sub("snap\(n)")
            try Tree.copy(src, snap)
            points.append((s.id, snap))
            return s
        }
        let s0 = try point(0)
        #expect(s0.kind == "full")
        #expect(s0.warnings.isEmpty)

        // 1: add, modify, delete, rename.
        try Tree.write(src + "/radarr/new.txt", "new file\n")
        try Tree.write(src + "/radarr/logs/radarr.txt", "rotated\n")
        unlink(src + "/homepage/empty")
        rename(src + "/sonarr/sonarr.db", src + "/sonarr/sonarr-renamed.db")
        let s1 = try point(1)
        #expect(s1.kind == "incremental")
        #expect(s1.filesArchived == 3)  // new.txt, radarr.txt, the renamed db

        // 2: type changes: file -> dir, file -> symlink, dir -> file.
        unlink(src + "/radarr/new.txt")
        try Tree.write(src + "/radarr/new.txt/inside", "now a directory\n")
        unlink(src + "/homepage/script.sh")
        symlink("../radarr/config.xml", src + "/homepage/script.sh")
        try FileManager.default.removeItem(atPath: src + "/emptydir")
        try Tree.write(src + "/emptydir", "was a dir\n")
        _ = try point(2)

        // 3: content changed, size and mtime restored (only ctime differs).
        let cfg = src + "/radarr/config.xml"
        let (sec, ns) = Tree.mtimeNs(cfg)
        let old = try String(contentsOfFile: cfg, encoding: .utf8)
        try Tree.write(cfg, old.replacingOccurrences(of: "7878", with: "7979"), mode: 0o600)
        Tree.setMtime(cfg, seconds: sec, nanos: ns)
        let s3 = try point(3)
        #expect(s3.filesArchived == 1)

        // 4: nothing changed but ctime (chmod there and back): hash check, no re-archive.
        chmod(src + "/radarr/logs/radarr.txt", 0o600); chmod(src + "/radarr/logs/radarr.txt", 0o644)
        let s4 = try point(4)
        #expect(s4.filesArchived == 0)
        #expect(s4.bytesOut == 0)

        for (n, (id, snap)) in points.enumerated() {
            let out = work.sub("restore\(n)")
            _ = try restore(dest, id: id, to: out)
            let want = try Tree.describe(snap, skipping: [cacheDir])
            let got = try Tree.describe(out)
            let d = Tree.diff(want, got)
            #expect(d.isEmpty, "restore of point \(n) (\(id)) differs:\n\(d.prefix(10).joined(separator: "\n"))")
        }
    }

    @Test(arguments: DestKind.allCases) func onlyRestoresSubpathsAndRefusesNonEmptyTarget(kind: DestKind) throws {
        let work = try TempDir("hs-backup-only")
        let src = work.sub("src")
        try Tree.makeSample(src)
        let dest = try TestDestination(kind)
        let s = try backup(src, dest)
        let out = work.sub("out")
        let r = try restore(dest, id: s.id, to: out, only: ["radarr/logs", "homepage/script.sh"])
        #expect(r.counts.files == 2)
        let got = try Tree.describe(out)
        #expect(Set(got.keys) == ["radarr", "radarr/logs", "radarr/logs/radarr.txt", "homepage", "homepage/script.sh"])
        let want = try Tree.describe(src)
        #expect(got["radarr/logs/radarr.txt"] == want["radarr/logs/radarr.txt"])
        #expect { try restore(dest, id: s.id, to: out) } throws: { error in
            guard case RestoreError.target(.notEmpty, _) = error else { return false }
            return true
        }
        _ = try restore(dest, id: s.id, to: out, force: true)
        #expect(Tree.diff(try Tree.describe(src, skipping: [cacheDir]), try Tree.describe(out)).isEmpty)
    }

    /// Disaster recovery without this tool: plain GNU tar (and bsdtar) read a full archive.
    @Test(arguments: DestKind.allCases) func fullArchiveExtractsWithGNUTar(kind: DestKind) throws {
        let work = try TempDir("hs-backup-gnutar")
        let src = work.sub("src")
        try Tree.makeSample(src)
        let dest = try TestDestination(kind)
        let s = try backup(src, dest)
        let archive = work.sub("a.tar.gz")
        try Data(try dest.destination.readAll("t/\(s.id).tar.gz")).write(to: URL(fileURLWithPath: archive))
        for (tool, args) in [("tar", ["--numeric-owner", "-xzpf"]), ("bsdtar", ["--numeric-owner", "-xpf"])] {
            let out = work.sub("x-\(tool)")
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            try Subprocess.checked([tool] + args + [archive, "-C", out])
            // tar keeps whole-second mtimes: compare everything else exactly, mtimes to the second.
            func strip(_ d: [String: String]) -> [String: String] {
                d.mapValues { v in
                    v.hasPrefix("symlink") ? v.replacingOccurrences(of: #" mtime=\S+"#, with: "", options: .regularExpression)
                        : v.replacingOccurrences(of: #"mtime=(\d+)\.\d+"#, with: "mtime=$1", options: .regularExpression)
                }
            }
            let want = strip(try Tree.describe(src, skipping: [cacheDir]))
            let got = strip(try Tree.describe(out))
            let d = Tree.diff(want, got)
            #expect(d.isEmpty, "\(tool) extraction differs:\n\(d.prefix(10).joined(separator: "\n"))")
        }
    }
}
