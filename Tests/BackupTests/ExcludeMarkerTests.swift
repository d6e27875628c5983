// --exclude-caches and --exclude-if-present of `hs-backup run`, on a real tree, against GNU tar's
// --exclude-caches and --exclude-tag (the reference: same tree, same rules) and through a real
// restore.
import Foundation
@testable import Backup
import Support
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("hs-backup run --exclude-caches / --exclude-if-present")
struct ExcludeMarkerTests {
    static let signature = "Signature: 8a477f597d28d172789f06886806bc55"

    /// Caches at the top (where the scan splits the tree into units), deep inside a unit and
    /// with many entries; tags that do not count (another signature, too short, a symlink to a
    /// valid tag); `.nobackup` markers (a file, an empty one in a big directory).
    func makeTree(_ root: String) throws {
        let tag = Self.signature + "\n# This file is a cache directory tag created by test.\n"
        try Tree.write(root + "/app/config.xml", "<config/>\n")
        try Tree.write(root + "/app/cache/CACHEDIR.TAG", tag)
        try Tree.write(root + "/app/cache/blob1", "cached\n")
        try Tree.write(root + "/app/cache/sub/blob2", "cached deeper\n")
        try Tree.write(root + "/topcache/CACHEDIR.TAG", tag)
        for i in 0 ..< 20 { try Tree.write(root + "/topcache/f\(i)", "cached \(i)\n") }
        try FileManager.default.createDirectory(atPath: root + "/topcache/emptydir", withIntermediateDirectories: true)
        try Tree.write(root + "/deep/a/b/c/keep.txt", "kept\n")
        try Tree.write(root + "/deep/a/b/c/thumbs/CACHEDIR.TAG", Self.signature)  // exactly the signature, no newline
        try Tree.write(root + "/deep/a/b/c/thumbs/t.jpg", "thumb\n")
        try Tree.write(root + "/badtag/CACHEDIR.TAG", "Signature: 00000000000000000000000000000000\n")
        try Tree.write(root + "/badtag/data", "kept: not a cache\n")
        try Tree.write(root + "/shorttag/CACHEDIR.TAG", "Signature: 8a477f597d28d172789f06886806bc5")
        try Tree.write(root + "/shorttag/data", "kept: the tag is one byte short\n")
        try FileManager.default.createDirectory(atPath: root + "/linktag", withIntermediateDirectories: true)
        #expect(symlink("../app/cache/CACHEDIR.TAG", root + "/linktag/CACHEDIR.TAG") == 0)
        try Tree.write(root + "/linktag/data", "kept: a symlinked tag is not followed\n")
        try Tree.write(root + "/marked/.nobackup", "")
        try Tree.write(root + "/marked/data/x", "left out\n")
        try Tree.write(root + "/deep/m/.nobackup", "")
        for i in 0 ..< 12 { try Tree.write(root + "/deep/m/f\(i)", "left out \(i)\n") }
        try Tree.write(root + "/deep/m2/.nobackup-not", "not the marker\n")
        try Tree.write(root + "/deep/m2/f", "kept\n")
        // More than 8 entries: the scan walks wide/'s entries as units on worker threads.
        for i in 0 ..< 10 { try Tree.write(root + "/wide/f\(i)", "kept \(i)\n") }
        try Tree.write(root + "/wide/sub/cache/CACHEDIR.TAG", tag)
        try Tree.write(root + "/wide/sub/cache/c/blob", "left out\n")
        try Tree.write(root + "/wide/sub/mk/.nobackup", "")
        try Tree.write(root + "/wide/sub/mk/blob", "left out\n")
        try Tree.write(root + "/wide/sub/keep", "kept\n")
    }

    /// What GNU tar archives of `src` with --exclude-caches --exclude-tag=.nobackup.
    func gnuTarReference(_ src: String) throws -> Set<String> {
        let tar = try Subprocess.run(["sh", "-c", "tar --exclude-caches --exclude-tag=.nobackup -C \"$1\" -cf - . | tar -tf -", "sh", src])
        try #require(tar.succeeded, "GNU tar: \(tar.stderr)")
        return Set(tar.stdout.split(separator: "\n").map { l -> String in
            var p = l.hasPrefix("./") ? String(l.dropFirst(2)) : String(l)
            if p.hasSuffix("/") { p.removeLast() }
            return p
        }.filter { !$0.isEmpty && $0 != "." })
    }

    func text(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }

    /// Relative paths below `dir` (directories without a trailing slash).
    func find(_ dir: String) throws -> Set<String> {
        let out = try Subprocess.checked(["find", dir, "-mindepth", "1"]).stdout
        return Set(out.split(separator: "\n").map { String($0.dropFirst(dir.count + 1)) })
    }

    @Test("the kept paths equal GNU tar's --exclude-caches --exclude-tag=.nobackup, and restore as they were")
    func sameAsGNUTarAndRestored() throws {
        let work = try TempDir("hs-exclude-markers")
        let src = work.sub("src")
        try makeTree(src)

        let reference = try gnuTarReference(src)
        // What the reference keeps and leaves out (so the comparison cannot pass vacuously).
        for kept in ["app/cache", "app/cache/CACHEDIR.TAG", "topcache", "topcache/CACHEDIR.TAG", "deep/a/b/c/thumbs/CACHEDIR.TAG",
                     "badtag/data", "shorttag/data", "linktag/data", "marked", "marked/.nobackup", "deep/m/.nobackup", "deep/m2/f",
                     "wide/f9", "wide/sub/cache/CACHEDIR.TAG", "wide/sub/mk/.nobackup", "wide/sub/keep"] {
            #expect(reference.contains(kept), "GNU tar left out \(kept)")
        }
        for left in ["app/cache/blob1", "app/cache/sub", "topcache/f0", "topcache/emptydir", "deep/a/b/c/thumbs/t.jpg",
                     "marked/data", "deep/m/f0", "wide/sub/cache/c", "wide/sub/mk/blob"] {
            #expect(!reference.contains(left), "GNU tar kept \(left)")
        }

        let dest = work.sub("dest")
        let run = try Tools.run("hs-backup", ["run", "-q", "--source", src, "--to", dest, "--name", "t",
                                              "--exclude-caches", "--exclude-if-present", ".nobackup"],
                                environment: ["HS_CONFIG": "/dev/null"])
        #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
        let restored = work.sub("restored")
        let restore = try Tools.run("hs-restore", ["--from", dest, "--name", "t", "--to", restored], environment: ["HS_CONFIG": "/dev/null"])
        #expect(restore.status == 0, "\(restore.stdout)\(restore.stderr)")
        let got = try find(restored)
        #expect(got == reference, "only in hs-backup: \(got.subtracting(reference).sorted()); only in GNU tar: \(reference.subtracting(got).sorted())")
        // The tags come back byte for byte (an app finds its cache tagged again).
        #expect(text(restored + "/app/cache/CACHEDIR.TAG") == text(src + "/app/cache/CACHEDIR.TAG"))
        #expect(text(restored + "/deep/a/b/c/thumbs/CACHEDIR.TAG") == Self.signature)

        // An incremental after the cache filled up more: still nothing of it.
        try Tree.write(src + "/app/cache/blob3", "new cache\n")
        try Tree.write(src + "/app/new.txt", "new\n")
        let again = try Tools.run("hs-backup", ["run", "-q", "--source", src, "--to", dest, "--name", "t",
                                                "--exclude-caches", "--exclude-if-present", ".nobackup"],
                                  environment: ["HS_CONFIG": "/dev/null"])
        #expect(again.status == 0, "\(again.stderr)")
        let restored2 = work.sub("restored2")
        #expect(try Tools.run("hs-restore", ["--from", dest, "--name", "t", "--to", restored2], environment: ["HS_CONFIG": "/dev/null"]).succeeded)
        #expect(try find(restored2) == reference.union(["app/new.txt"]))

        // Without the options everything is there (the markers alone exclude nothing).
        let plain = try Tools.run("hs-backup", ["run", "-q", "--source", src, "--to", work.sub("dest-plain"), "--name", "t"],
                                  environment: ["HS_CONFIG": "/dev/null"])
        #expect(plain.status == 0, "\(plain.stderr)")
        let restored3 = work.sub("restored3")
        #expect(try Tools.run("hs-restore", ["--from", work.sub("dest-plain"), "--name", "t", "--to", restored3], environment: ["HS_CONFIG": "/dev/null"]).succeeded)
        #expect(try find(restored3) == find(src))
    }

    @Test("the scanner gives the same entries with 1, 2 and 5 threads (marked directories met at the top and inside units)")
    func scannerIsDeterministicWithMarkers() throws {
        let work = try TempDir("hs-exclude-markers-scan")
        let src = work.sub("src")
        try makeTree(src)
        let reference = try gnuTarReference(src)
        var tables: [[String]] = []
        for threads in [1, 2, 5] {
            let s = Scanner(root: src, excludes: ExcludeSet(patterns: []))
            s.threads = threads
            s.markers = ExcludeMarkers(caches: true, ifPresent: [Array(".nobackup".utf8)])
            let r = try s.scan()
            #expect(r.warnings.isEmpty, "\(r.warnings)")
            tables.append((0 ..< r.table.count).map { r.table.path(r.table.entry($0)) })
        }
        #expect(tables[1] == tables[0] && tables[2] == tables[0])
        #expect(Set(tables[0]) == reference && tables[0].count == reference.count,
                "only in the scan: \(Set(tables[0]).subtracting(reference).sorted()); only in GNU tar: \(reference.subtracting(tables[0]).sorted())")
    }

    @Test("the source directory itself is never a cache: a tagged --source is backed up whole")
    func taggedSourceIsBackedUpWhole() throws {
        let work = try TempDir("hs-exclude-markers-root")
        let src = work.sub("src")
        try Tree.write(src + "/CACHEDIR.TAG", Self.signature + "\n")
        try Tree.write(src + "/.nobackup", "")
        try Tree.write(src + "/data/x", "x\n")
        let run = try Tools.run("hs-backup", ["run", "-q", "--source", src, "--to", work.sub("dest"), "--name", "t",
                                              "--exclude-caches", "--exclude-if-present", ".nobackup"],
                                environment: ["HS_CONFIG": "/dev/null"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(try Tools.run("hs-restore", ["--from", work.sub("dest"), "--name", "t", "--to", work.sub("r")], environment: ["HS_CONFIG": "/dev/null"]).succeeded)
        #expect(try find(work.sub("r")) == ["CACHEDIR.TAG", ".nobackup", "data", "data/x"])
    }

    @Test("--exclude-if-present takes one file name", arguments: ["", ".", "..", "a/b", "/abs"])
    func excludeIfPresentNeedsAName(_ value: String) throws {
        let work = try TempDir("hs-exclude-markers-usage")
        try Tree.write(work.sub("src/x"), "x\n")
        let r = try Tools.run("hs-backup", ["run", "--source", work.sub("src"), "--to", work.sub("dest"), "--name", "t",
                                            "--exclude-if-present", value], environment: ["HS_CONFIG": "/dev/null"])
        #expect(r.status == 2 && r.stderr.contains("--exclude-if-present"), "\(value): \(r.status) \(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: work.sub("dest/t")), "nothing written for a usage error")
    }
}
