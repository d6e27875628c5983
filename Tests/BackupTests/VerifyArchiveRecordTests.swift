// hs-backup verify of a destination where an archive is another backup's under the same id:
// each backup is checked against what its own index records for every archive it needs.
import Foundation
import Support
import TestSupport
import Testing

@Suite("verify: every archive against every backup's record of it")
struct VerifyArchiveRecordTests {
    /// Two hosts' sets named io backed up in the same second (faketime: the same id X), the
    /// second host's at DST; host a's later incremental Y copied there by hand. DST's X.tar.gz
    /// is host b's, Y's index and manifest name host a's.
    struct Scenario {
        let work: TempDir
        let x: String, y: String
        var nas: String { work.sub("nas") }
        var dst: String { work.sub("dst") }

        init(_ label: String, otherText: String) throws {
            let work = try TempDir("hs-verify-\(label)")
            self.work = work
            let env = ["FAKETIME_DONT_FAKE_MONOTONIC": "1", "NO_FAKE_STAT": "1"]
            for (src, text) in [("a", "AAAA\n"), ("b", otherText)] {
                try Tree.write(work.sub(src + "/app/f"), text)
                try Subprocess.checked(["touch", "-d", "2020-01-01 UTC", work.sub(src + "/app/f"), work.sub(src + "/app"), work.sub(src)])
            }
            func run(_ clock: String, _ src: String, _ to: String) throws -> String {
                let r = try Subprocess.run(["faketime", "-f", clock, Tools.path("hs-backup"), "run", "-q", "--source", work.sub(src),
                                            "--to", work.sub(to), "--name", "io", "--json"], environment: env)
                #expect(r.status == 0, "\(r.stderr)")
                let id = ((try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any])?["id"] as? String
                return try #require(id, "\(r.stdout)")
            }
            let x = try run("2026-12-01 03:00:00", "a", "nas")
            #expect(try run("2026-12-01 03:00:00", "b", "dst") == x, "the same id")
            try Tree.write(work.sub("a/app/g"), "more\n")
            let y = try run("2026-12-01 03:00:10", "a", "nas")
            for ext in ["tar.gz", "index", "manifest"] {
                try FileManager.default.copyItem(atPath: work.sub("nas/io/\(y).\(ext)"), toPath: work.sub("dst/io/\(y).\(ext)"))
            }
            self.x = x
            self.y = y
        }

        func sha256(_ path: String) throws -> String {
            String(try Subprocess.checked(["sha256sum", path]).stdout.prefix(16))
        }
    }

    /// What a verify of `s` at DST must say about Y.
    private func expectYDamaged(_ s: Scenario, _ r: ProcessResult, sizes: Bool = false) throws {
        let out = r.stdout + r.stderr
        let want = try s.sha256("\(s.nas)/io/\(s.x).tar.gz"), got = try s.sha256("\(s.dst)/io/\(s.x).tar.gz")
        #expect(r.status == 1, "\(out)")
        let line = out.split(separator: "\n").first { $0.contains("damaged: \(s.y):") } ?? ""
        #expect(line.contains("\(s.x).tar.gz") && line.contains(want) && line.contains(got), "\(out)")
        #expect(line.contains("hs-backup copy"), "says what to do: \(out)")
        // What Y's manifest says of the files it needs from X names Y's manifest, not only X's archive.
        #expect(out.split(separator: "\n").allSatisfy { !$0.contains("damaged: \(s.x)") || $0.contains("(as \(s.y).manifest records it)") },
                "X itself is whole at DST: \(out)")
    }

    @Test("an archive of the same size but other bytes than a later backup's index records: that backup is damaged (all, and latest)")
    func sameSizeOtherArchive() throws {
        let s = try Scenario("same", otherText: "BBBB\n")
        #expect(FileManager.default.contents(atPath: "\(s.nas)/io/\(s.x).tar.gz")?.count
                    == FileManager.default.contents(atPath: "\(s.dst)/io/\(s.x).tar.gz")?.count)
        let restore = try Tools.run("hs-restore", ["--from", s.dst, "--name", "io", "--to", s.work.sub("r")])
        #expect(restore.status == 1, "the premise: Y cannot be restored at DST")
        try expectYDamaged(s, try Tools.run("hs-backup", ["verify", "--to", s.dst, "--name", "io"]))
        try expectYDamaged(s, try Tools.run("hs-backup", ["verify", "--to", s.dst, "--name", "io", "--backup", "latest"]))
        let own = try Tools.run("hs-backup", ["verify", "--to", s.dst, "--name", "io", "--backup", s.x])
        #expect(own.status == 0, "X is whole by its own records: \(own.stdout) \(own.stderr)")
        let nas = try Tools.run("hs-backup", ["verify", "--to", s.nas, "--name", "io"])
        #expect(nas.status == 0, "\(nas.stdout) \(nas.stderr)")
        // Without Y's index (a backup made before indexes) Y's manifest still finds it: every
        // manifest that places a file in X.tar.gz is compared, not only X's.
        try FileManager.default.removeItem(atPath: "\(s.dst)/io/\(s.y).index")
        let noIndex = try Tools.run("hs-backup", ["verify", "--to", s.dst, "--name", "io"])
        #expect(noIndex.status == 1 && noIndex.stderr.contains("\(s.x).tar.gz: app/f: content does not match its SHA-256 (as \(s.y).manifest records it)"),
                "\(noIndex.stdout) \(noIndex.stderr)")
    }

    @Test("an archive of another size than a later backup's index records: that backup is damaged (all, and latest)")
    func otherSizeArchive() throws {
        let s = try Scenario("size", otherText: "BBBBBBBB but longer\n")
        #expect(FileManager.default.contents(atPath: "\(s.nas)/io/\(s.x).tar.gz")?.count
                    != FileManager.default.contents(atPath: "\(s.dst)/io/\(s.x).tar.gz")?.count)
        try expectYDamaged(s, try Tools.run("hs-backup", ["verify", "--to", s.dst, "--name", "io"]))
        try expectYDamaged(s, try Tools.run("hs-backup", ["verify", "--to", s.dst, "--name", "io", "--backup", "latest"]))
    }
}
