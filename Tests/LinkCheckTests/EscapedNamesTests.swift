// Names shown to a person are escaped (NameEscape), as in the backup tools: media names come from
// torrents and indexers, and a newline or an escape sequence in one forged lines in cron mail or
// drove the terminal. --json keeps the names as they are (JSON escapes them itself).
import Foundation
import Support
import TestSupport
import Testing

@Suite struct EscapedNamesTests {
    static let hostile = "Evil\n[ok] all fine \u{1B}[2J\u{202E}name"
    static let shown = NameEscape.escape(hostile)

    /// No raw control, DEL or bidi override character in `s` (newlines between lines aside).
    static func raw(_ s: String) -> [String] {
        s.split(separator: "\n", omittingEmptySubsequences: false).filter { line in
            line.unicodeScalars.contains { $0.value < 0x20 && $0 != "\t" || $0.value == 0x7F || (0x202A...0x202E).contains($0.value) }
        }.map(String.init)
    }

    @Test("audit, reclaim plan and reclaim print hostile media names escaped; --json keeps them")
    func auditAndReclaimEscapeNames() throws {
        let t = try TempDir("lc-escape")
        try Fx.mkdirs(t.sub("downloads/torrents/complete/movies"), t.sub("library/movies/" + Self.hostile))
        let bytes = Fx.bytes(70_000, seed: 7)
        try Fx.write(t.sub("downloads/torrents/complete/movies/" + Self.hostile + ".mkv"), bytes)
        try Fx.write(t.sub("library/movies/" + Self.hostile + "/" + Self.hostile + ".mkv"), bytes)

        for args in [[t.path, "--audit"], [t.path, "--reclaim"], [t.path, "--reclaim", "--yes"]] {
            let r = try Fx.run(args)
            #expect(Self.raw(r.stdout + r.stderr).isEmpty, "\(args.dropFirst()): raw lines \(Self.raw(r.stdout + r.stderr))")
            #expect(r.stdout.contains(Self.shown), "\(args.dropFirst()): \(r.stdout)")
        }
        // Reclaimed: the library file is now the downloads file's inode.
        let lib = try Fx.inode(t.sub("library/movies/" + Self.hostile + "/" + Self.hostile + ".mkv"))
        let dl = try Fx.inode(t.sub("downloads/torrents/complete/movies/" + Self.hostile + ".mkv"))
        #expect(lib.0 == dl.0 && lib.1 == dl.1)

        try Fx.write(t.sub("library/movies/second.mkv"), Fx.bytes(70_000, seed: 8))
        try Fx.write(t.sub("downloads/" + Self.hostile + "2.mkv"), Fx.bytes(70_000, seed: 8))
        let (_, obj, _) = try Fx.runJSON([t.path, "--audit"])
        let pairs = (obj["audit"] as? [String: Any])?["pairs"] as? [[String: Any]] ?? []
        #expect(pairs.contains { Fx.str($0["downloads"]).hasSuffix("/" + Self.hostile + "2.mkv") }, "\(pairs)")
    }

    @Test("a root, --downloads or --library with control characters is shown escaped in findings and the summary")
    func typedPathsEscaped() throws {
        let t = try TempDir("lc-escape")
        let root = t.sub("media " + Self.hostile)
        try Fx.mkdirs(root + "/downloads", root + "/library")
        let r = try Fx.run([root])
        #expect(Self.raw(r.stdout + r.stderr).isEmpty, "raw lines \(Self.raw(r.stdout + r.stderr))")
        #expect((r.stdout + r.stderr).contains(NameEscape.escape(root)), "\(r.stdout) \(r.stderr)")
        let missing = try Fx.run([t.sub("gone " + Self.hostile)])
        #expect(Self.raw(missing.stdout + missing.stderr).isEmpty, "raw lines \(Self.raw(missing.stdout + missing.stderr))")
    }
}
