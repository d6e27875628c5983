// Paths a person typed (--to, --source, --from, --archive, set names, --identity,
// --recipients-file, --exclude-file, --state-dir, --config/HS_CONFIG, nfs:// URLs) and values
// read from files (the configuration file, a lock file, a key file) are shown escaped in error
// and progress messages, as file names are (`NameEscape`): a path or value holding a newline or
// an escape sequence must not forge a line or drive the terminal in cron mail.
import Foundation
import Support
import Testing
import TestSupport

/// Runs of the tools, each with the text its output must hold; `verify` checks every one.
private struct MessageChecks {
    var cases: [(what: String, args: [String], result: ProcessResult, expect: [String])] = []

    /// What a message may hold: text, a newline only at the end of each line it means to print.
    static func forged(_ text: String) -> Bool {
        text.contains("\u{1B}") || text.contains("\nFORGED")
    }

    mutating func run(_ what: String, _ tool: String, _ args: [String], environment: [String: String] = [:], expect: String...) throws {
        cases.append((what, args, try Tools.run(tool, args, environment: environment), expect))
    }

    func verify(sourceLocation: SourceLocation = #_sourceLocation) {
        for (what, args, r, expect) in cases {
            let out = r.stdout + r.stderr
            #expect(!Self.forged(out), "\(what): raw control bytes in \(out.debugDescription) (\(args.map(\.debugDescription)))",
                    sourceLocation: sourceLocation)
            for e in expect {
                #expect(out.contains(e), "\(what): no \(e.debugDescription) in \(out.debugDescription)", sourceLocation: sourceLocation)
            }
        }
    }
}

/// A name holding a newline (that starts a forged line) and an escape sequence, and its escaped form.
private let evilName = "ev\nFORGED \u{1B}[31mil"
private let evilShown = "ev\\nFORGED \\x1b[31mil"

@Suite struct TypedPathMessageTests {
    @Test("a destination, source, target, archive and set name holding a newline and ESC are escaped in the messages about them")
    func typedPathsAreEscaped() throws {
        let tmp = try TempDir("hs-typed-path")
        let evil = tmp.sub(evilName)
        let shown = NameEscape.escape(evil)
        #expect(shown.hasSuffix("/" + evilShown))
        let src = tmp.sub("src")
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        try #require(FileManager.default.createFile(atPath: src + "/f", contents: Data("f\n".utf8)))
        try #require(FileManager.default.createFile(atPath: evil, contents: Data("a file, not a directory\n".utf8)))

        var c = MessageChecks()
        // The destination is a file.
        try c.run("run --to FILE", "hs-backup", ["run", "--source", src, "--to", evil, "--name", "t"], expect: shown + "/t")
        for cmd in ["list", "ls", "verify"] {
            try c.run("\(cmd) --to FILE", "hs-backup", [cmd, "--to", evil, "--name", "t"], expect: "the destination \(shown) does not exist")
        }
        // The source is not a directory.
        try c.run("run --source FILE", "hs-backup", ["run", "--source", evil, "--to", tmp.sub("d"), "--name", "t"], expect: "source '\(shown)'")
        // A set that is there, in a destination with that name; a set name with ESC.
        let dest = evil + "-dest"
        try c.run("run -v", "hs-backup", ["run", "-v", "--source", src, "--to", dest, "--name", "t"], expect: "to \(shown)-dest/t")
        try c.run("ls --name", "hs-backup", ["ls", "--to", dest, "--name", "s\u{1B}[2J"], expect: "no backup set 's\\x1b[2J' in \(shown)-dest")
        try c.run("ls PATH", "hs-backup", ["ls", "--to", dest, "--name", "t", "nothere"], expect: "of \(shown)-dest/t;")
        // Restores: a target that is a file, the summary, an archive that is not there or not a tar.gz.
        try c.run("hs-restore --to FILE", "hs-restore", ["--from", dest, "--name", "t", "--to", evil], expect: "--to \(shown) is not a directory")
        try c.run("hs-restore summary", "hs-restore", ["--from", dest, "--name", "t", "--to", evil + "-r"], expect: "in \(shown)-dest/t into \(shown)-r")
        try c.run("hs-restore --archive missing", "hs-restore", ["--archive", evil + ".tar.gz", "--to", tmp.sub("r2")], expect: "--archive \(shown).tar.gz:")
        try c.run("hs-restore --archive FILE", "hs-restore", ["--archive", evil, "--to", tmp.sub("r3")], expect: "'\(shown)'")
        c.verify()
    }

    @Test("an nfs:// URL and a path inside the export holding a newline and ESC are escaped in NFS errors")
    func nfsURLsAreEscaped() throws {
        let g = try GaneshaServer.shared()
        let tmp = try TempDir("hs-typed-nfs")
        try Tree.write(tmp.sub("src/f"), "f\n")
        let ports = "version=3&nfsport=\(g.nfsPort)&mountport=\(g.mountPort)"
        var c = MessageChecks()
        // An export the server does not have: the server refuses the mount.
        let noExport = "nfs://127.0.0.1/no/\(evilName)?\(ports)"
        let noExportShown = "nfs://127.0.0.1/no/\(evilShown)"
        try c.run("list --to nfs://BAD-EXPORT", "hs-backup", ["list", "--to", noExport, "--name", "t"], expect: noExportShown)
        try c.run("run --to nfs://BAD-EXPORT", "hs-backup", ["run", "--source", tmp.sub("src"), "--to", noExport, "--name", "t"], expect: noExportShown)
        try c.run("hs-restore --from nfs://BAD-EXPORT", "hs-restore", ["--from", noExport, "--name", "t", "--to", tmp.sub("r")], expect: noExportShown)
        // A path inside the export below a file of that name: mkdir -p fails on the server.
        let sub = try g.makeUniqueDirectory("esc")
        try Tree.write(g.exportPath + "/" + sub + "/" + evilName, "a file, not a directory\n")
        try c.run("run --to nfs://EXPORT/FILE/deeper", "hs-backup",
                  ["run", "--source", tmp.sub("src"), "--to", g.url(path: sub + "/" + evilName + "/deeper"), "--name", "t"],
                  expect: "\(sub)/\(evilShown)")
        // A URL argument that is not valid: refused before any server is asked.
        try c.run("run --to nfs://...?timeout=BAD", "hs-backup",
                  ["run", "--source", tmp.sub("src"), "--to", "nfs://127.0.0.1/x?timeout=\(evilName)", "--name", "t"],
                  expect: "argument timeout=\(evilShown) must be")
        c.verify()
    }
}
