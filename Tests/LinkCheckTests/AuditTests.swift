import Foundation
import Testing
@testable import LinkCheck
import Support
import TestSupport

/// A media tree with true copies, existing hardlinks, same-size-different-content files,
/// empty files and unique files; remembers what every file must contain.
struct AuditTree {
    let root: String
    var expected: [String: [UInt8]] = [:]
    /// Library paths (relative to root) that are true copies of a downloads file.
    var copies: [String: String] = [:]
    var wasted: UInt64 = 0

    init(root: String, copiesPerFolder: Int = 2, size: Int = 3000) throws {
        self.root = root
        func put(_ rel: String, _ b: [UInt8]) throws { try Fx.write(root + "/" + rel, b); expected[rel] = b }
        var seed: UInt64 = 1
        for folder in ["movies", "tv", "music"] {
            for i in 0..<copiesPerFolder {
                seed += 1
                // Sizes differ per folder so the groups' wasted bytes differ.
                let b = Fx.bytes(size * (folder == "movies" ? 4 : folder == "tv" ? 2 : 1) + i, seed: seed)
                try put("downloads/torrents/complete/\(folder)/rel\(i)/file\(i).mkv", b)
                try put("library/\(folder)/Title \(i)/file\(i).mkv", b)
                copies["library/\(folder)/Title \(i)/file\(i).mkv"] = "downloads/torrents/complete/\(folder)/rel\(i)/file\(i).mkv"
                wasted += UInt64(b.count)
            }
        }
        // An existing hardlink (fine, link count 2).
        let linked = Fx.bytes(5000, seed: 900)
        try put("downloads/usenet/complete/movies/linked.mkv", linked)
        try Fx.mkdirs(root + "/library/movies/Linked")
        try Fx.link(root + "/downloads/usenet/complete/movies/linked.mkv", root + "/library/movies/Linked/linked.mkv")
        expected["library/movies/Linked/linked.mkv"] = linked
        // Same size, different content (differs only in the last byte, then only in the first).
        var a = Fx.bytes(7000, seed: 901), b = a
        b[b.count - 1] ^= 0xFF
        try put("downloads/usenet/complete/tv/samesize.mkv", a)
        try put("library/tv/Same/samesize.mkv", b)
        a[0] ^= 1
        try put("library/tv/Same/samesize2.mkv", a)
        // Unique files, empty files with the same (zero) size on both sides.
        try put("library/books/unique.epub", Fx.bytes(1234, seed: 902))
        try put("downloads/metube/unique.webm", Fx.bytes(4321, seed: 903))
        try put("library/books/empty.txt", [])
        try put("downloads/metube/empty.txt", [])
        // The same downloads content twice: any one of them is a valid link target.
        let dup = Fx.bytes(6000, seed: 904)
        try put("downloads/jdownloader/dupA.bin", dup)
        try put("downloads/jdownloader/dupB.bin", dup)
        try put("library/comics/dup.bin", dup)
        copies["library/comics/dup.bin"] = "downloads/jdownloader/dup?.bin"
        wasted += UInt64(dup.count)
    }

    /// Every file still has exactly its content.
    func verifyContents() throws {
        for (rel, bytes) in expected {
            let got = try Fx.read(root + "/" + rel)
            #expect(got == bytes, "content of \(rel) changed")
        }
    }
}

@Suite struct AuditTests {
    @Test func auditFindsOnlyTrueCopiesAndReclaimLinksThem() throws {
        let t = try TempDir("lc-audit")
        let tree = try AuditTree(root: t.path)

        let (code, obj, r) = try Fx.runJSON([t.path, "--audit"])
        #expect(code == 1, "\(r.stdout)")
        let audit = try #require(obj["audit"] as? [String: Any])
        #expect(audit["copies"] as? Int == tree.copies.count)
        #expect(audit["wasted_bytes"] as? UInt64 == tree.wasted)
        let pairs = audit["pairs"] as? [[String: Any]] ?? []
        let found = Set(pairs.compactMap { ($0["library"] as? String)?.replacingOccurrences(of: t.path + "/", with: "") })
        #expect(found == Set(tree.copies.keys))
        // Grouped by top-level library folder, largest first.
        let groups = audit["groups"] as? [[String: Any]] ?? []
        #expect(groups.map { $0["folder"] as? String ?? "" } == ["movies", "tv", "music", "comics"])
        #expect(groups.first?["copies"] as? Int == 2)
        let largest = audit["largest"] as? [[String: Any]] ?? []
        #expect(Fx.has(largest.first?["library"], "library/movies/Title 1/"))
        // Only files whose size occurs on both sides were hashed: 9 library + 9 downloads
        // (copies, the same-size files, dup.bin colliding with tv/file0 at 6000 bytes); the
        // existing hardlink, unique and empty files are not.
        #expect(audit["files_hashed"] as? Int == 9 + 9)
        #expect(Fx.codes(obj, severity: "error").contains("wasted-copies"))

        // Text report names groups and offenders.
        let text = try Fx.run([t.path, "--audit"])
        #expect(text.stdout.contains("audit: 7 copies"))
        #expect(text.stdout.contains("  movies: 2 copies"))

        // Dry run: the plan, nothing changes.
        let before = try Fx.inode(t.sub("library/movies/Title 0/file0.mkv"))
        let (dryCode, dry, _) = try Fx.runJSON([t.path, "--reclaim"])
        #expect(dryCode == 1)
        #expect(((dry["reclaim"] as? [String: Any])?["planned"] as? [Any])?.count == 7)
        #expect(((dry["reclaim"] as? [String: Any])?["applied"] as? Bool) == false)
        #expect(try Fx.inode(t.sub("library/movies/Title 0/file0.mkv")) == before)
        let dryText = try Fx.run([t.path, "--reclaim"])
        #expect(dryText.stdout.contains("would link \(t.path)/library/movies/Title 0/file0.mkv -> "))

        // Reclaim for real.
        let (yesCode, yes, yr) = try Fx.runJSON([t.path, "--reclaim", "--yes"])
        #expect(yesCode == 0, "\(yr.stdout)")
        let rec = try #require(yes["reclaim"] as? [String: Any])
        #expect(rec["reclaimed"] as? Int == 7)
        #expect(rec["bytes_reclaimed"] as? UInt64 == tree.wasted)
        #expect((rec["skipped"] as? [Any])?.isEmpty == true)
        for (lib, dl) in tree.copies where !dl.contains("?") {
            let a = try Fx.inode(t.sub(lib)), b = try Fx.inode(t.sub(dl))
            #expect(a.0 == b.0 && a.1 == b.1 && a.2 == 2, "\(lib) not linked to \(dl)")
        }
        let dupLib = try Fx.inode(t.sub("library/comics/dup.bin"))
        let dupA = try Fx.inode(t.sub("downloads/jdownloader/dupA.bin")), dupB = try Fx.inode(t.sub("downloads/jdownloader/dupB.bin"))
        #expect(dupLib.1 == dupA.1 || dupLib.1 == dupB.1)
        // Same size, different content: untouched.
        #expect(try Fx.inode(t.sub("library/tv/Same/samesize.mkv")).2 == 1)
        #expect(try Fx.inode(t.sub("library/tv/Same/samesize2.mkv")).2 == 1)
        #expect(try Fx.inode(t.sub("library/books/empty.txt")).2 == 1)
        try tree.verifyContents()
        #expect(!Fx.listing(t.path).contains { $0.hasSuffix(".hs-reclaim-tmp") })

        // Second run: nothing left.
        let (again, obj2, _) = try Fx.runJSON([t.path, "--audit"])
        #expect(again == 0)
        #expect((obj2["audit"] as? [String: Any])?["copies"] as? Int == 0)
        let (again2, obj3, _) = try Fx.runJSON([t.path, "--reclaim", "--yes"])
        #expect(again2 == 0)
        #expect((obj3["reclaim"] as? [String: Any])?["reclaimed"] as? Int == 0)
    }

    @Test func reclaimRefusesWhenContentChangedAfterAudit() throws {
        let t = try TempDir("lc-race")
        let b = Fx.bytes(10_000, seed: 7)
        try Fx.write(t.sub("downloads/a.bin"), b)
        try Fx.write(t.sub("library/a.bin"), b)
        let audit = try Auditor(libraryRoot: t.sub("library"), downloadsRoot: t.sub("downloads")).run()
        #expect(audit.copies == 1)
        // The library file changes between audit and reclaim (same size).
        var changed = b; changed[5000] ^= 1
        try Fx.write(t.sub("library/a.bin"), changed)
        var r = ReclaimReport()
        Reclaimer().apply(audit.pairs, into: &r)
        #expect(r.reclaimed == 0)
        #expect(r.skipped.first?.reason.contains("contents differ") == true)
        #expect(try Fx.read(t.sub("library/a.bin")) == changed)
        #expect(try Fx.inode(t.sub("library/a.bin")).2 == 1)
    }

    @Test func killedReclaimLeavesEveryFileIntactAndRerunCompletes() throws {
        let t = try TempDir("lc-kill")
        let tree = try AuditTree(root: t.path, copiesPerFolder: 8, size: 20_000)
        #expect(tree.copies.count == 25)
        // SIGKILL right after the 5th temporary link, before its rename: the worst moment.
        let r = try Fx.run([t.path, "--reclaim", "--yes"], env: ["HS_LINKCHECK_TEST_KILL_AFTER_LINKS": "5"])
        #expect(r.status == 128 + 9, "expected SIGKILL, got \(r.status): \(r.stdout) \(r.stderr)")
        try tree.verifyContents()
        let leftovers = Fx.listing(t.path).filter { $0.hasSuffix(".hs-reclaim-tmp") }
        #expect(leftovers.count == 1)
        // Four were reclaimed before the kill; the audit sees the rest plus the leftover.
        let (_, audit, _) = try Fx.runJSON([t.path, "--audit"])
        let a = try #require(audit["audit"] as? [String: Any])
        #expect(a["copies"] as? Int == 25 - 4)
        #expect((a["leftovers"] as? [String])?.count == 1)
        // Rerun completes and removes the leftover.
        let (code, obj, rr) = try Fx.runJSON([t.path, "--reclaim", "--yes"])
        #expect(code == 0, "\(rr.stdout)")
        let rec = try #require(obj["reclaim"] as? [String: Any])
        #expect(rec["reclaimed"] as? Int == 21)
        #expect((rec["leftovers_removed"] as? [String])?.count == 1)
        #expect(!Fx.listing(t.path).contains { $0.hasSuffix(".hs-reclaim-tmp") })
        try tree.verifyContents()
        let (final, _, _) = try Fx.runJSON([t.path, "--audit"])
        #expect(final == 0)
    }

    @Test func sigkillAtAnUnpredictableMomentLosesNothing() throws {
        let t = try TempDir("lc-kill2")
        let tree = try AuditTree(root: t.path, copiesPerFolder: 40, size: 40_000)
        for delayMs in [30, 120] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Tools.path("hs-linkcheck"))
            p.arguments = [t.path, "--reclaim", "--yes"]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            usleep(UInt32(delayMs * 1000))
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            try tree.verifyContents()
        }
        let (code, _, r) = try Fx.runJSON([t.path, "--reclaim", "--yes"])
        #expect(code == 0, "\(r.stdout)")
        try tree.verifyContents()
        let (final, obj, _) = try Fx.runJSON([t.path, "--audit"])
        #expect(final == 0)
        #expect((obj["audit"] as? [String: Any])?["leftovers"] as? [String] == [])
    }

    @Test func leftoverThatIsTheLastNameIsRestoredNotRemoved() throws {
        let t = try TempDir("lc-last")
        let b = Fx.bytes(3000, seed: 21)
        try Fx.write(t.sub("library/movies/.lost.mkv.hs-reclaim-tmp"), b)   // link count 1, no original
        try Fx.write(t.sub("library/movies/kept.mkv"), b)
        try Fx.write(t.sub("downloads/kept.mkv"), b)
        try Fx.link(t.sub("downloads/kept.mkv"), t.sub("library/movies/.kept.mkv.hs-reclaim-tmp"))
        #expect(Reclaimer.originalPath(forTmp: MediaPath("/a/b/.x.mkv.hs-reclaim-tmp")) == MediaPath("/a/b/x.mkv"))
        let (code, obj, r) = try Fx.runJSON([t.path, "--reclaim", "--yes"])
        #expect(code == 0, "\(r.stdout)")
        #expect(((obj["reclaim"] as? [String: Any])?["leftovers_removed"] as? [String])?.count == 2)
        #expect(try Fx.read(t.sub("library/movies/lost.mkv")) == b)
        #expect(Fx.listing(t.sub("library/movies")) == ["kept.mkv", "lost.mkv"])
        #expect(try Fx.inode(t.sub("library/movies/kept.mkv")).2 == 2)
    }

    @Test func reclaimAcrossDevicesIsRefused() throws {
        let t = try TempDir("lc-xreclaim")
        let root = t.sub("storage")
        let b = Fx.bytes(4096, seed: 11)
        try Fx.write(root + "/downloads/x.bin", b)
        try Fx.withTmpfs(at: root + "/library") {
            try Fx.write(root + "/library/x.bin", b)
            let (code, obj, _) = try Fx.runJSON([root, "--reclaim", "--yes"])
            #expect(code == 1)
            #expect(Fx.codes(obj, severity: "error").contains("cross-device"))
            #expect(Fx.codes(obj, severity: "error").contains("reclaim-skipped"))
            #expect((obj["audit"] as? [String: Any])?["copies"] as? Int == 1)
            #expect(try Fx.inode(root + "/library/x.bin").2 == 1)
            #expect(try Fx.read(root + "/library/x.bin") == b)
        }
    }
}

/// Field input: a file whose mtime is after 2262-04-11 (ext4 allows it; a camera with a broken
/// clock is enough) or before 1970. Nanoseconds since 1970 do not fit in 64 bits there: the
/// audit and reclaim must not trap on such a file (it crashed with exit 132 before).
@Suite struct FarTimeAuditTests {
    @Test func auditAndReclaimSurviveTimesOutsideTheNanosecondRange() throws {
        let t = try TempDir("lc-fartime")
        let tree = try AuditTree(root: t.path)
        let far = t.sub("library/movies/Title 0/file0.mkv")
        let early = t.sub("downloads/torrents/complete/movies/rel0/file0.mkv")
        let touch1 = try Subprocess.run(["touch", "-h", "-d", "2400-01-01 00:00:00.5", far])
        let touch2 = try Subprocess.run(["touch", "-h", "-d", "1969-12-31 23:59:59.5", early])
        #expect(touch1.status == 0 && touch2.status == 0)
        let (code, obj, r) = try Fx.runJSON([t.path, "--audit"])
        #expect(code == 1, "exit \(code): \(r.stderr)")
        let audit = try #require(obj["audit"] as? [String: Any])
        #expect(audit["copies"] as? Int == tree.copies.count)
        let reclaim = try Fx.run([t.path, "--reclaim", "--yes"])
        #expect(reclaim.status == 0, "exit \(reclaim.status): \(reclaim.stderr)")
        #expect(try Fx.inode(far) == Fx.inode(early), "the far-future copy was not replaced by a hardlink")
        try tree.verifyContents()
    }
}
