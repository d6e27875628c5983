// Paths a person typed (--to, --source, --from, --archive, set names) are shown escaped in
// error and progress messages, as file names are (`NameEscape`): a path holding a newline or
// an escape sequence must not forge a line or drive the terminal in cron mail.
import Foundation
import Support
import Testing
import TestSupport

@Suite struct TypedPathMessageTests {
    /// What a message may hold: text, a newline only at the end of each line it means to print.
    private func forged(_ text: String) -> Bool {
        text.contains("\u{1B}") || text.contains("\nFORGED")
    }

    @Test("a destination, source, target, archive and set name holding a newline and ESC are escaped in the messages about them")
    func typedPathsAreEscaped() throws {
        let tmp = try TempDir("hs-typed-path")
        let evil = tmp.sub("ev\nFORGED \u{1B}[31mil")
        let shown = NameEscape.escape(evil)
        #expect(shown.hasSuffix("/ev\\nFORGED \\x1b[31mil"))
        let src = tmp.sub("src")
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        try #require(FileManager.default.createFile(atPath: src + "/f", contents: Data("f\n".utf8)))
        try #require(FileManager.default.createFile(atPath: evil, contents: Data("a file, not a directory\n".utf8)))

        var cases: [(String, [String], ProcessResult, String)] = []
        func check(_ what: String, _ tool: String, _ args: [String], expect: String) throws {
            cases.append((what, args, try Tools.run(tool, args), expect))
        }
        // The destination is a file.
        try check("run --to FILE", "hs-backup", ["run", "--source", src, "--to", evil, "--name", "t"], expect: shown + "/t")
        for cmd in ["list", "ls", "verify"] {
            try check("\(cmd) --to FILE", "hs-backup", [cmd, "--to", evil, "--name", "t"], expect: "the destination \(shown) does not exist")
        }
        // The source is not a directory.
        try check("run --source FILE", "hs-backup", ["run", "--source", evil, "--to", tmp.sub("d"), "--name", "t"], expect: "source '\(shown)'")
        // A set that is there, in a destination with that name; a set name with ESC.
        let dest = evil + "-dest"
        try check("run -v", "hs-backup", ["run", "-v", "--source", src, "--to", dest, "--name", "t"], expect: "to \(shown)-dest/t")
        try check("ls --name", "hs-backup", ["ls", "--to", dest, "--name", "s\u{1B}[2J"], expect: "no backup set 's\\x1b[2J' in \(shown)-dest")
        try check("ls PATH", "hs-backup", ["ls", "--to", dest, "--name", "t", "nothere"], expect: "of \(shown)-dest/t;")
        // Restores: a target that is a file, the summary, an archive that is not there or not a tar.gz.
        try check("hs-restore --to FILE", "hs-restore", ["--from", dest, "--name", "t", "--to", evil], expect: "--to \(shown) is not a directory")
        try check("hs-restore summary", "hs-restore", ["--from", dest, "--name", "t", "--to", evil + "-r"], expect: "in \(shown)-dest/t into \(shown)-r")
        try check("hs-restore --archive missing", "hs-restore", ["--archive", evil + ".tar.gz", "--to", tmp.sub("r2")], expect: "--archive \(shown).tar.gz:")
        try check("hs-restore --archive FILE", "hs-restore", ["--archive", evil, "--to", tmp.sub("r3")], expect: "'\(shown)'")

        for (what, args, r, expect) in cases {
            let out = r.stdout + r.stderr
            #expect(!forged(out), "\(what): raw control bytes in \(out.debugDescription) (\(args.map(\.debugDescription)))")
            #expect(out.contains(expect), "\(what): no \(expect.debugDescription) in \(out.debugDescription)")
        }
    }
}
