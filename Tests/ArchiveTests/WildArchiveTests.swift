// Archives from the wild (GNU tar in every format and sparse version, bsdtar, Python tarfile,
// header quirks GNU tar accepts) extract with `hs-restore --archive` to exactly what GNU tar
// extracts from them, compared as bytes by wild.py (device nodes excepted).
import Foundation
import Glibc
import Support
import Testing
import TestSupport

@Suite struct WildArchiveTests {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("wild.py").path

    @Test func everyWildArchiveExtractsLikeGNUTar() throws {
        let tmp = try TempDir("archive-wild")
        let corpus = tmp.sub("corpus")
        let made = try run(["python3", Self.script, "make", corpus])
        try #require(made.succeeded, "wild.py: \(made.stderr)")
        let cases = try JSONDecoder().decode([String: String].self, from: Data(contentsOf: URL(fileURLWithPath: corpus + "/cases.json")))
        #expect(cases.count >= 20)
        for (file, origin) in cases.sorted(by: { $0.key < $1.key }) {
            let ref = tmp.sub("ref-" + file), got = tmp.sub("got-" + file)
            try FileManager.default.createDirectory(atPath: ref, withIntermediateDirectories: true)
            let gnu = try run(["tar", "--xattrs", "--xattrs-include=*", "-xf", corpus + "/" + file, "-C", ref])
            try #require(gnu.succeeded, "GNU tar cannot extract \(file): \(gnu.stderr)")
            let r = try Tools.run("hs-restore", ["--archive", corpus + "/" + file, "--to", got])
            #expect(r.status == 0, "\(file) (\(origin)): \(r.stderr)")
            guard r.status == 0 else { continue }
            let cmp = try run(["python3", Self.script, "compare", ref, got])
            #expect(cmp.succeeded, "\(file) (\(origin)) extracts differently from GNU tar:\n\(cmp.stdout)\(cmp.stderr)")
        }
    }

    /// Archives GNU tar extracts that `--archive` refused before (a pax mtime with trailing
    /// garbage, GNU sparse 1.0 without name/realsize, sparse data a few bytes shorter or longer
    /// than the map, no end-of-archive blocks after a hardlink): exit 0, the oddity named in a
    /// warning (the content is compared with GNU tar's by the test above).
    @Test func oddArchivesRestoreWithAWarning() throws {
        let tmp = try TempDir("archive-odd")
        let corpus = tmp.sub("corpus")
        let made = try run(["python3", Self.script, "make", corpus])
        try #require(made.succeeded, "wild.py: \(made.stderr)")
        let odd = try JSONDecoder().decode([String: String].self, from: Data(contentsOf: URL(fileURLWithPath: corpus + "/odd.json")))
        #expect(odd.count == 5)
        for (file, word) in odd.sorted(by: { $0.key < $1.key }) {
            for extra in [[], ["--dry-run"]] {
                let r = try Tools.run("hs-restore", ["--archive", corpus + "/" + file, "--to", tmp.sub("t-\(extra.count)-" + file)] + extra)
                #expect(r.status == 0, "\(file) \(extra): \(r.stderr)")
                #expect(r.stderr.contains("warning:") && r.stderr.contains(word), "\(file) \(extra): no warning naming '\(word)': \(r.stderr)")
            }
        }
    }

    /// The archive's own "." entry: its mode and mtime go to the target directory, as GNU tar
    /// does (a warning when that makes the target writable by others); --no-overwrite-dir
    /// leaves the target alone.
    @Test func dotEntryIsAppliedToTheTargetLikeGNUTar() throws {
        let tmp = try TempDir("archive-dot")
        let src = tmp.sub("src")
        try FileManager.default.createDirectory(atPath: src + "/d", withIntermediateDirectories: true)
        try Data("x\n".utf8).write(to: URL(fileURLWithPath: src + "/d/f"))
        for (mode, warns) in [(0o750, false), (0o777, true)] {
            #expect(chmod(src, mode_t(mode)) == 0)
            #expect(try run(["touch", "-d", "2001-02-03 04:05:06.789", src]).succeeded)
            let archive = tmp.sub("a-\(mode).tar.gz")
            #expect(try run(["tar", "-czf", archive, "-C", src, "."]).succeeded)
            let ref = tmp.sub("ref-\(mode)"), got = tmp.sub("got-\(mode)"), kept = tmp.sub("kept-\(mode)")
            for d in [ref, got, kept] { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true) }
            #expect(try run(["tar", "-xzf", archive, "-C", ref]).succeeded)
            let r = try Tools.run("hs-restore", ["--archive", archive, "--to", got])
            #expect(r.status == 0, "\(r.stderr)")
            var a = stat(), b = stat(), c = stat()
            #expect(stat(ref, &a) == 0 && stat(got, &b) == 0)
            #expect(a.st_mode == b.st_mode && a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec,
                    "GNU tar \(String(a.st_mode, radix: 8)) \(a.st_mtim.tv_sec), restore \(String(b.st_mode, radix: 8)) \(b.st_mtim.tv_sec)")
            #expect(r.stderr.contains("writable") == warns, "\(mode): \(r.stderr)")
            #expect(stat(kept, &c) == 0)
            let before = c.st_mode
            let k = try Tools.run("hs-restore", ["--archive", archive, "--to", kept, "--no-overwrite-dir"])
            #expect(k.status == 0, "\(k.stderr)")
            #expect(stat(kept, &c) == 0 && c.st_mode == before && !k.stderr.contains("writable"))
        }
    }
}
