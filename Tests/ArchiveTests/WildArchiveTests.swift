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
}
