// Names holding characters that hide part of a name, make it look like another or start a
// line (line/paragraph separators, zero-width and other format characters), backed up for
// real: ls and find print them escaped, and ls, dump and hs-restore --only take back both the
// escaped form and the raw one (what an older version printed).
import Foundation
import Support
import Testing
import TestSupport

@Suite struct FormatCharacterNameTests {
    /// Each character, and its escaped form (the `\xNN` of its UTF-8 bytes).
    static let characters: [(String, String)] = [
        ("\u{2028}", "\\xe2\\x80\\xa8"), ("\u{2029}", "\\xe2\\x80\\xa9"), ("\u{200B}", "\\xe2\\x80\\x8b"),
        ("\u{200C}", "\\xe2\\x80\\x8c"), ("\u{200D}", "\\xe2\\x80\\x8d"), ("\u{2060}", "\\xe2\\x81\\xa0"),
        ("\u{FEFF}", "\\xef\\xbb\\xbf"), ("\u{061C}", "\\xd8\\x9c"), ("\u{180E}", "\\xe1\\xa0\\x8e"),
        ("\u{200E}", "\\xe2\\x80\\x8e"), ("\u{AD}", "\\xc2\\xad"),
    ]

    /// No scalar of the escaped categories in the output (a newline ends each line).
    private func holdsRaw(_ text: String) -> [String] {
        text.unicodeScalars.filter {
            $0 != "\n" && [.control, .format, .lineSeparator, .paragraphSeparator].contains($0.properties.generalCategory)
        }.map { "U+" + String($0.value, radix: 16, uppercase: true) }
    }

    @Test("ls and find show each character escaped; ls, dump and hs-restore --only find the file by the escaped form and by the raw one")
    func escapedAndFoundBack() throws {
        let tmp = try TempDir("hs-format-names")
        let src = tmp.sub("src"), dest = tmp.sub("dst")
        try FileManager.default.createDirectory(atPath: src + "/dir", withIntermediateDirectories: true)
        for (i, (c, _)) in Self.characters.enumerated() {
            try #require(FileManager.default.createFile(atPath: src + "/dir/a\(c)b", contents: Data("file \(i)\n".utf8)))
        }
        let run = try Tools.run("hs-backup", ["run", "-q", "--source", src, "--to", dest, "--name", "fmt"])
        try #require(run.status == 0, "\(run.stderr)")
        let base = ["--to", dest, "--name", "fmt"]

        let ls = try Tools.run("hs-backup", ["ls", "-R"] + base)
        #expect(ls.status == 0, "\(ls.stderr)")
        #expect(holdsRaw(ls.stdout + ls.stderr).isEmpty, "raw in ls: \(holdsRaw(ls.stdout)) \(ls.stdout.debugDescription)")
        let find = try Tools.run("hs-backup", ["find"] + base + ["a*b"])
        #expect(find.status == 0, "\(find.stderr)")
        #expect(holdsRaw(find.stdout + find.stderr).isEmpty, "raw in find: \(find.stdout.debugDescription)")
        let found = find.stdout.split(separator: "\n").filter { !$0.hasPrefix(" ") }
        for (i, (c, escaped)) in Self.characters.enumerated() {
            let shown = "dir/a\(escaped)b"
            #expect(ls.stdout.contains("  \(shown)\n"), "ls: no \(shown) in \(ls.stdout.debugDescription)")
            #expect(found.contains(Substring(shown)), "find: no \(shown) in \(find.stdout.debugDescription)")
            for given in [shown, "dir/a\(c)b"] {
                let one = try Tools.run("hs-backup", ["ls"] + base + [given])
                #expect(one.status == 0 && one.stdout.hasSuffix("  \(shown)\n"), "ls \(given.debugDescription): \(one.stdout.debugDescription) \(one.stderr)")
                let dump = try Tools.run("hs-backup", ["dump"] + base + [given])
                #expect(dump.status == 0 && dump.stdout == "file \(i)\n", "dump \(given.debugDescription): \(dump.stdout.debugDescription) \(dump.stderr)")
            }
        }
        for (form, names) in [("escaped", Self.characters.map { "dir/a\($0.1)b" }), ("raw", Self.characters.map { "dir/a\($0.0)b" })] {
            let to = tmp.sub("restored-\(form)")
            let r = try Tools.run("hs-restore", ["--from", dest, "--name", "fmt", "--to", to] + names.flatMap { ["--only", $0] })
            #expect(r.status == 0, "\(form): \(r.stderr)")
            #expect(holdsRaw(r.stdout + r.stderr).isEmpty, "raw in hs-restore's output: \((r.stdout + r.stderr).debugDescription)")
            for (i, (c, _)) in Self.characters.enumerated() {
                #expect((try? String(contentsOfFile: to + "/dir/a\(c)b", encoding: .utf8)) == "file \(i)\n", "\(form) \(i)")
            }
        }
    }
}
