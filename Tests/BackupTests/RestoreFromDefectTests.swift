// Defects of issue #12 on the `hs-restore --from` path, and parity with `--archive`.
import Foundation
import Testing
@testable import Backup
import Gzip
import Storage
import Restore
import Support
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

@Suite struct RestoreFromDefectTests {
    /// Manifest records as hs-backup writes them, built by hand (to make manifests no hs-backup
    /// writes): each entry with its path right after its record.
    static func records(_ entries: [(ManifestEntry, String)]) -> [UInt8] {
        var records: [UInt8] = []
        for (entry, p) in entries {
            var e = entry
            e.pathOffset = 0; e.pathLength = UInt32(p.utf8.count); e.linkOffset = 0; e.linkLength = 0
            var rec = [UInt8](repeating: 0, count: ManifestTable.recordSize)
            rec.withUnsafeMutableBytes { ManifestTable.encode(e, into: $0, at: 0) }
            records += rec + Array(p.utf8)
        }
        return records
    }

    /// A format-3 manifest file: the magic, the gzip members, the header's JSON and the trailer.
    static func manifestFile(header: ManifestHeader, members: [UInt8]) throws -> [UInt8] {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let json = [UInt8](try enc.encode(header))
        var file3 = Manifest.magic3 + members
        let jsonOffset = UInt64(file3.count)
        file3 += json
        withUnsafeBytes(of: jsonOffset.littleEndian) { file3 += $0 }
        withUnsafeBytes(of: UInt32(json.count).littleEndian) { file3 += $0 }
        file3 += SHA256Hasher.hash(json) + Array("HSMEND3\n".utf8)
        return file3
    }

    /// A backup of a tree holding one file, `x.txt`, and its manifest as loaded, with that
    /// file's entry (the start of the tests that hand-build manifests from it).
    static func oneFileBackup(in work: TempDir) throws
        -> (dest: TestDestination, summary: BackupSummary, set: BackupSet, manifest: Manifest, file: ManifestEntry) {
        let src = work.sub("src")
        try Tree.write(src + "/x.txt", "x\n")
        let dest = try TestDestination(.local)
        let s = try backup(src, dest)
        let set = BackupSet(destination: dest.destination, name: "t")
        let manifest = try set.loadManifest(s.id)
        let file = try #require((0 ..< manifest.table.count).map { manifest.table.entry($0) }.first { $0.type == .file })
        return (dest, s, set, manifest, file)
    }

    @Test func mtimeBefore1970WithAFractionRestores() throws {
        let work = try TempDir("restore-old-mtime")
        let src = work.sub("src")
        try Tree.write(src + "/old.txt", "before 1970\n")
        Tree.setMtime(src + "/old.txt", seconds: -1, nanos: 500_000_000)
        try Tree.write(src + "/d/older.txt", "1950\n")
        Tree.setMtime(src + "/d/older.txt", seconds: -631_152_000, nanos: 1)
        let dest = try TestDestination(.local)
        let s = try backup(src, dest)
        let out = work.sub("out")
        _ = try restore(dest, id: s.id, to: out)
        #expect(Tree.mtimeNs(out + "/old.txt") == (-1, 500_000_000))
        #expect(Tree.mtimeNs(out + "/d/older.txt") == (-631_152_000, 1))
    }

    @Test func sparseFileKeepsItsHoles() throws {
        let work = try TempDir("restore-sparse")
        let src = work.sub("src")
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        let fd = open(src + "/disk.img", O_WRONLY | O_CREAT, 0o644)
        #expect(ftruncate(fd, 256 << 20) == 0)
        _ = pwrite(fd, "data", 4, 100 << 20)
        close(fd)
        let dest = try TestDestination(.local)
        let s = try backup(src, dest)
        let out = work.sub("out")
        _ = try restore(dest, id: s.id, to: out)
        var a = stat(), b = stat()
        #expect(lstat(src + "/disk.img", &a) == 0 && lstat(out + "/disk.img", &b) == 0)
        #expect(b.st_size == 256 << 20)
        #expect(abs(Int(b.st_blocks) - Int(a.st_blocks)) * 512 <= 1 << 20, "source \(a.st_blocks * 512) bytes allocated, restore \(b.st_blocks * 512)")
    }

    @Test func onlyTwoHardlinksOfOneInodeGiveOneInode() throws {
        let work = try TempDir("restore-only-links")
        let src = work.sub("src")
        try Tree.write(src + "/a", "shared\n")
        link(src + "/a", src + "/b")
        link(src + "/a", src + "/c")
        let dest = try TestDestination(.local)
        let s = try backup(src, dest)
        let out = work.sub("out")
        _ = try restore(dest, id: s.id, to: out, only: ["b", "c"])
        var b = stat(), c = stat()
        #expect(lstat(out + "/b", &b) == 0 && lstat(out + "/c", &c) == 0)
        #expect(b.st_ino == c.st_ino && b.st_nlink == 2)
        #expect(!FileManager.default.fileExists(atPath: out + "/a"))
    }

    /// `--from` and `--archive` of the same (full) backup give identical trees.
    @Test func fromAndArchiveGiveIdenticalTrees() throws {
        let work = try TempDir("restore-parity")
        let src = work.sub("src")
        try Tree.makeSample(src)
        try Tree.write(src + "/old.txt", "old\n")
        Tree.setMtime(src + "/old.txt", seconds: -1, nanos: 500_000_000)
        try Tree.write(src + "/future.txt", "future\n")
        Tree.setMtime(src + "/future.txt", seconds: 10_413_792_000, nanos: 7)
        let dest = try TestDestination(.local)
        let s = try backup(src, dest)
        let viaFrom = work.sub("from"), viaArchive = work.sub("archive")
        _ = try restore(dest, id: s.id, to: viaFrom)
        let r = try Tools.run("hs-restore", ["--archive", dest.dir.sub("t/\(s.id).tar.gz"), "--to", viaArchive])
        #expect(r.status == 0, "\(r.stderr)")
        let d = Tree.diff(try Tree.describe(viaFrom), try Tree.describe(viaArchive))
        #expect(d.isEmpty, "--from and --archive differ:\n\(d.prefix(10).joined(separator: "\n"))")
        let d2 = Tree.diff(try Tree.describe(src, skipping: [cacheDir]), try Tree.describe(viaFrom))
        #expect(d2.isEmpty, "--from differs from the source:\n\(d2.prefix(10).joined(separator: "\n"))")
    }

    /// A backup set whose archive was replaced on the NAS by a hostile one: the restore
    /// stops (exit 1) and nothing outside the target changes.
    @Test func hostileArchiveInABackupSetIsRefused() throws {
        let work = try TempDir("restore-hostile-set")
        let outside = work.sub("outside")
        try Tree.write(outside + "/victim", "safe\n")
        let src = work.sub("src")
        try Tree.write(src + "/victim", "pwned\n")
        try Tree.write(src + "/x.txt", "x\n")
        let dest = try TestDestination(.local)
        let s = try backup(src, dest)
        // Same member layout, but the entry names climb out of the target.
        let archive = dest.dir.sub("t/\(s.id).tar.gz")
        let py = """
        import gzip, sys
        raw = bytearray(gzip.open(sys.argv[1]).read())
        i = raw.find(b"victim")
        while i >= 0:
            raw[i:i + 6] = b"../out"
            i = raw.find(b"victim", i + 6)
        # fix every header checksum
        for off in range(0, len(raw) - 512, 512):
            h = raw[off:off + 512]
            if h[257:262] == b"ustar":
                h[148:156] = b" " * 8
                h[148:156] = b"%06o\\0 " % sum(h)
                raw[off:off + 512] = h
        open(sys.argv[1], "wb").write(gzip.compress(bytes(raw)))
        """
        let p = try Subprocess.run(["python3", "-c", py, archive])
        try #require(p.status == 0, "\(p.stderr)")
        let r = try Tools.run("hs-restore", ["--from", dest.spec, "--name", "t", "--to", work.sub("t")])
        #expect(r.status == 1, "\(r.stdout) \(r.stderr)")
        #expect((try? String(contentsOfFile: outside + "/victim", encoding: .utf8)) == "safe\n")
    }

    /// A manifest altered on the NAS (its checksum recomputed) is as hostile as any archive:
    /// `..` is refused, nothing is written through a symlink the manifest plants, an
    /// absolute path lands inside the target; nothing outside changes.
    @Test func alteredManifestIsTreatedAsHostile() throws {
        let work = try TempDir("restore-hostile-manifest")
        let outside = work.sub("outside")
        try Tree.write(outside + "/victim", "safe\n")
        let before = try Tree.describe(outside)
        let (dest, s, set, original, file) = try Self.oneFileBackup(in: work)
        /// The backup's manifest plus `extra` entries (path, type, link target), in path order
        /// as any manifest must be (an out-of-order one is refused as damaged before anything).
        func tampered(_ extra: [(String, ManifestEntryType, String)]) throws {
            var all: [(ManifestEntry, [UInt8], [UInt8])] = []
            for i in 0 ..< original.table.count {
                let e = original.table.entry(i)
                all.append((e, original.table.pathBytes(e), Array(original.table.linkBytes(e))))
            }
            for (path, type, link) in extra {
                var e = type == .file ? file : ManifestEntry()
                e.type = type
                e.mode = type == .directory ? 0o755 : 0o644
                all.append((e, Array(path.utf8), Array(link.utf8)))
            }
            all.sort { a, b in a.1.withUnsafeBytes { x in b.1.withUnsafeBytes { comparePaths(x, $0) < 0 } } }
            var t = ManifestTable()
            for (entry, path, link) in all {
                var e = entry
                (e.pathOffset, e.pathLength) = t.intern(path)
                (e.linkOffset, e.linkLength) = t.intern(link)
                t.append(e)
            }
            try dest.destination.writeAtomically(set.manifestPath(s.id), contents: try Manifest(header: original.header, table: t).encoded())
        }
        let cases: [(String, [(String, ManifestEntryType, String)], Int32, String)] = [
            ("dotdot", [("../outside/victim", .file, "")], 1, "parent-traversal"),
            ("through-symlink", [("lnk", .symlink, outside), ("lnk/sub", .directory, "")], 1, "symlink-in-path"),
            ("absolute", [(outside + "/planted", .directory, "")], 0, "leading '/'"),
        ]
        for (name, extra, status, word) in cases {
            try tampered(extra)
            let r = try Tools.run("hs-restore", ["--from", dest.spec, "--name", "t", "--to", work.sub("t-" + name)])
            #expect(r.status == status, "\(name): \(r.stdout) \(r.stderr)")
            #expect(r.stderr.contains(word), "\(name): \(r.stderr)")
            #expect(Tree.diff(before, try Tree.describe(outside)).isEmpty, "\(name) changed the outside directory")
        }
        #expect(FileManager.default.fileExists(atPath: work.sub("t-absolute") + outside + "/planted"))

        // Entries out of path order (as no hs-backup writes them): refused as damaged, and
        // nothing is restored.
        var unordered = ManifestTable()
        for p in ["x.txt", "a.txt"] {
            var e = file
            (e.pathOffset, e.pathLength) = unordered.intern(p)
            (e.linkOffset, e.linkLength) = unordered.intern("")
            unordered.append(e)
        }
        #expect(throws: OutOfOrder.self) { try Manifest(header: original.header, table: unordered).encoded() }
        let good = try Manifest(header: original.header, table: original.table).encoded()
        // Swap the first member for one whose entries are reversed: built by hand below.
        let records = Self.records(["x.txt", "a.txt"].map { (file, $0) })
        var member: [UInt8] = []
        records.withUnsafeBytes { GzipMemberEncoder().encodeMember($0, level: .deflate(1), into: &member) }
        var header = try Manifest.decode(good, name: "good").header
        header.body = [ManifestChunk(length: records.count, compressed: member.count, sha256: hexString(SHA256Hasher.hash(records)))]
        header.entries = 2
        let file3 = try Self.manifestFile(header: header, members: member)
        try dest.destination.writeAtomically(set.manifestPath(s.id), contents: file3)
        let r = try Tools.run("hs-restore", ["--from", dest.spec, "--name", "t", "--to", work.sub("t-unordered")])
        #expect(r.status == 1 && r.stderr.contains("out of order"), "\(r.stdout) \(r.stderr)")
        let restored = (try? FileManager.default.contentsOfDirectory(atPath: work.sub("t-unordered"))) ?? []
        #expect(restored.isEmpty, "the manifest is checked whole before anything is written: \(restored)")
    }

    /// The plan's first read of the manifest checks what spans members (it reads them side by
    /// side): the order across members and the header's entry count, and a damaged later
    /// member, all refused before anything is written; a good two-member manifest restores.
    @Test func manifestCheckedAcrossMembersBeforeAnythingIsWritten() throws {
        let work = try TempDir("restore-manifest-members")
        let (dest, s, set, original, file) = try Self.oneFileBackup(in: work)
        var dir = ManifestEntry()
        dir.type = .directory
        dir.mode = 0o755
        /// A format-3 manifest whose members hold these entries (path, is it the file), with
        /// `entries` in its header and member `badSHA` (if any) listed with a wrong SHA-256.
        func write(_ members: [[(String, Bool)]], entries: Int? = nil, badSHA: Int? = nil) throws {
            var header = original.header
            header.body = []
            var body: [UInt8] = []
            for (k, list) in members.enumerated() {
                let records = Self.records(list.map { ($0.1 ? file : dir, $0.0) })
                var member: [UInt8] = []
                records.withUnsafeBytes { GzipMemberEncoder().encodeMember($0, level: .deflate(1), into: &member) }
                let sha = hexString(SHA256Hasher.hash(k == badSHA ? records + [0] : records))
                header.body!.append(ManifestChunk(length: records.count, compressed: member.count, sha256: sha))
                body += member
            }
            header.entries = entries ?? members.reduce(0) { $0 + $1.count }
            let file3 = try Self.manifestFile(header: header, members: body)
            try dest.destination.writeAtomically(set.manifestPath(s.id), contents: file3)
        }
        func refused(_ name: String, _ why: String) throws {
            let r = try Tools.run("hs-restore", ["--from", dest.spec, "--name", "t", "--to", work.sub(name)])
            #expect(r.status == 1 && r.stderr.contains(why), "\(name): \(r.stdout) \(r.stderr)")
            let restored = (try? FileManager.default.contentsOfDirectory(atPath: work.sub(name))) ?? []
            #expect(restored.isEmpty, "\(name): the manifest is checked whole before anything is written: \(restored)")
        }
        let many = (0 ..< 40).map { ("d\(1000 + $0)", false) }
        try write([many, [("x.txt", true)]])
        let good = try restore(dest, id: s.id, to: work.sub("t-good"))
        _ = good
        #expect(try String(contentsOfFile: work.sub("t-good/x.txt"), encoding: .utf8) == "x\n")
        #expect(FileManager.default.fileExists(atPath: work.sub("t-good/d1039")))
        try write([many, [("x.txt", true)], [("d1000z", false)]])
        try refused("t-order", "out of order")
        try write([many, [("x.txt", true)]], entries: 42)
        try refused("t-count", "41 entries, the header says 42")
        try write([many, [("x.txt", true)], [("z", false)]], badSHA: 2)
        try refused("t-sha", "member 2")
    }

    /// A directory's xattrs live in the archive that last held the directory. When no file
    /// of that archive is carried any more (here: the only file changed), the archive must stay
    /// listed in later manifests, or restoring them loses the directory's xattrs (and cleanup
    /// calls the archive an orphan). Before the fix the restored `d` had no `user.k`.
    @Test func directoryXattrsSurviveIncrementals() throws {
        let work = try TempDir("restore-dir-xattrs")
        let src = work.sub("src")
        try Tree.write(src + "/d/.keep", "")
        try Tree.write(src + "/f.txt", "one\n")
        try Subprocess.checked(["setfattr", "-n", "user.k", "-v", "on-d", src + "/d"])
        let dest = try TestDestination(.local)
        _ = try backup(src, dest)
        try Tree.write(src + "/f.txt", "two, longer\n")
        try Tree.write(src + "/d/.keep", "changed")  // B2 reads neither file from B1's archive
        _ = try backup(src, dest)
        let last = try backup(src, dest)
        let out = work.sub("out")
        _ = try restore(dest, id: last.id, to: out)
        let r = try Subprocess.run(["getfattr", "--only-values", "-n", "user.k", out + "/d"])
        #expect(r.stdout == "on-d", "\(r.stdout) \(r.stderr)")
    }

    /// xattrs of every namespace and POSIX ACLs (access and default) come back on files,
    /// directories and symlinks, through `--from` and `--archive` alike (as root).
    @Test func xattrsAndACLsRestoreBothWays() throws {
        let work = try TempDir("restore-xattrs")
        let src = work.sub("src")
        try Tree.write(src + "/f.txt", "content\n")
        try Tree.write(src + "/d/inner.txt", "inner\n")
        try Subprocess.checked(["setfattr", "-n", "user.color", "-v", "blue", src + "/f.txt"])
        try Subprocess.checked(["setfattr", "-n", "user.bin", "-v", "0x00ff0a3d", src + "/f.txt"])
        try Subprocess.checked(["setfattr", "-n", "trusted.t", "-v", "trusted-value", src + "/f.txt"])
        try Subprocess.checked(["setfattr", "-n", "user.dir", "-v", "on-a-dir", src + "/d"])
        try Subprocess.checked(["setfacl", "-m", "u:1234:rw,g:2345:r", src + "/f.txt"])
        try Subprocess.checked(["setfacl", "-m", "u:1234:rwx", src + "/d"])
        try Subprocess.checked(["setfacl", "-d", "-m", "u:1234:rx,g:2345:rwx", src + "/d"])
        // A symlink's own xattrs (Linux allows trusted.* and security.* on symlinks).
        try FileManager.default.createSymbolicLink(atPath: src + "/link", withDestinationPath: "f.txt")
        try Subprocess.checked(["setfattr", "-h", "-n", "trusted.l", "-v", "on-a-link", src + "/link"])
        func dump(_ root: String) throws -> String {
            let r = try Subprocess.run(["getfattr", "-R", "-d", "-m", "-", "-h", "--absolute-names", root])
            return r.stdout.replacingOccurrences(of: root + "/", with: "").split(separator: "\n").filter { !$0.isEmpty }.joined(separator: "\n")
        }
        let expected = try dump(src)
        #expect(expected.contains("trusted.t") && expected.contains("system.posix_acl_default"), "fixture: \(expected)")
        let dest = try TestDestination(.local)
        let s = try backup(src, dest)
        let viaFrom = work.sub("from"), viaArchive = work.sub("archive")
        _ = try restore(dest, id: s.id, to: viaFrom)
        let r = try Tools.run("hs-restore", ["--archive", dest.dir.sub("t/\(s.id).tar.gz"), "--to", viaArchive])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try dump(viaFrom) == expected)
        #expect(try dump(viaArchive) == expected)
    }
}
