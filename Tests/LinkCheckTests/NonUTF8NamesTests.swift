// Field input: a share written by an old SMB client holds Latin-1 names (`Am\xe9lie (2001)`),
// bytes that are not UTF-8. The audit walked and re-opened paths as Strings, which turn such a
// byte into U+FFFD: a directory so named was "unreadable" (ENOENT) with everything below it left
// out, a file so named never matched. Names are bytes until they are shown.
import Foundation
import Support
import TestSupport
import Testing

@Suite struct NonUTF8NamesTests {
    static let dir: [UInt8] = Array("Am".utf8) + [0xE9] + Array("lie (2001)".utf8)
    static let file: [UInt8] = Array("Am".utf8) + [0xE9] + Array("lie.mkv".utf8)
    static let cafe: [UInt8] = Array("caf".utf8) + [0xE9] + Array(".mkv".utf8)
    /// As the text output and the escaped --json paths show them.
    static let dirShown = "Am\\xe9lie (2001)", fileShown = "Am\\xe9lie.mkv", cafeShown = "caf\\xe9.mkv"

    /// `root/rel` as bytes, with `names` appended as components.
    static func path(_ root: String, _ rel: String, _ names: [UInt8]...) -> [UInt8] {
        names.reduce(Array((root + "/" + rel).utf8)) { $0 + [0x2F] + $1 }
    }

    @Test("directories and files whose names are not UTF-8 are audited, listed escaped and reclaimed")
    func latin1NamesAreAuditedAndReclaimed() throws {
        let t = try TempDir("lc-latin1")
        let movie = Fx.bytes(9000, seed: 31), episode = Fx.bytes(8000, seed: 32), unique = Fx.bytes(700, seed: 33)
        // A copy below a directory that is not UTF-8, named so itself.
        try Fx.mkdirs(t.sub("downloads/torrents/complete/movies"), t.sub("library/movies"), t.sub("library/tv/Show"))
        try Fx.mkdir(Self.path(t.path, "downloads/torrents/complete/movies", Self.dir))
        try Fx.mkdir(Self.path(t.path, "library/movies", Self.dir))
        let dlMovie = Self.path(t.path, "downloads/torrents/complete/movies", Self.dir, Self.file)
        let libMovie = Self.path(t.path, "library/movies", Self.dir, Self.file)
        try Fx.write(dlMovie, movie)
        try Fx.write(libMovie, movie)
        try Fx.write(Self.path(t.path, "library/movies", Self.dir, Array("poster.jpg".utf8)), unique)
        // A copy named so in a UTF-8 directory, of a downloads file named so.
        let dlEpisode = Self.path(t.path, "downloads/torrents/complete", Self.cafe)
        let libEpisode = Self.path(t.path, "library/tv/Show", Self.cafe)
        try Fx.write(dlEpisode, episode)
        try Fx.write(libEpisode, episode)
        // The last name of a file, left by an interrupted reclaim: renamed back, by its bytes.
        let extras: [UInt8] = Array("extras ".utf8) + Self.file, extrasShown = "extras " + Self.fileShown, extrasBytes = Fx.bytes(600, seed: 34)
        let leftover = Self.path(t.path, "library/movies", Self.dir, [0x2E] + extras + Array(".hs-reclaim-tmp".utf8))
        try Fx.write(leftover, extrasBytes)
        let leftoverShown = t.sub("library/movies/\(Self.dirShown)/.\(extrasShown).hs-reclaim-tmp")

        let (code, obj, r) = try Fx.runJSON([t.path, "--audit"])
        #expect(code == 1, "\(r.stdout)")
        #expect(!Fx.codes(obj).contains("unreadable"), "\(Fx.findings(obj))")
        let audit = try #require(obj["audit"] as? [String: Any])
        #expect(audit["library_files"] as? Int == 3, "\(audit)")
        #expect(audit["downloads_files"] as? Int == 2, "\(audit)")
        #expect(audit["copies"] as? Int == 2, "\(audit)")
        #expect(audit["wasted_bytes"] as? UInt64 == UInt64(movie.count + episode.count))
        #expect((audit["errors"] as? [String])?.isEmpty == true, "\(audit["errors"] ?? "")")
        #expect(audit["leftovers"] as? [String] == [leftoverShown], "\(audit)")
        let pairs = audit["pairs"] as? [[String: Any]] ?? []
        #expect(pairs.map { Fx.str($0["library"]) }.sorted() == [t.sub("library/movies/\(Self.dirShown)/\(Self.fileShown)"),
                                                                  t.sub("library/tv/Show/\(Self.cafeShown)")], "\(pairs)")
        #expect(pairs.map { Fx.str($0["downloads"]) }.sorted() == [t.sub("downloads/torrents/complete/\(Self.cafeShown)"),
                                                                    t.sub("downloads/torrents/complete/movies/\(Self.dirShown)/\(Self.fileShown)")], "\(pairs)")

        // Text: escaped names, no warning about them.
        let text = try Fx.run([t.path, "--audit"])
        #expect(text.stdout.contains("audit: 3 library files"), "\(text.stdout)")
        #expect(text.stdout.contains("audit: 2 copies"), "\(text.stdout)")
        #expect(text.stdout.contains("library/movies/\(Self.dirShown)/\(Self.fileShown)  (copy of "), "\(text.stdout)")
        #expect(!(text.stdout + text.stderr).contains("unreadable") && !(text.stdout + text.stderr).contains("\u{FFFD}"), "\(text.stdout)\(text.stderr)")
        let plan = try Fx.run([t.path, "--reclaim"])
        #expect(plan.stdout.contains("would link \(t.path)/library/tv/Show/\(Self.cafeShown) -> \(t.path)/downloads/torrents/complete/\(Self.cafeShown)"), "\(plan.stdout)")

        let (yesCode, yes, yr) = try Fx.runJSON([t.path, "--reclaim", "--yes"])
        #expect(yesCode == 0, "\(yr.stdout)")
        let rec = try #require(yes["reclaim"] as? [String: Any])
        #expect(rec["reclaimed"] as? Int == 2, "\(rec)")
        #expect((rec["skipped"] as? [Any])?.isEmpty == true, "\(rec)")
        let restored = t.sub("library/movies/\(Self.dirShown)/\(extrasShown)")
        #expect(rec["leftovers_removed"] as? [String] == ["\(leftoverShown) (restored as \(restored))"], "\(rec)")
        #expect(try Fx.read(Self.path(t.path, "library/movies", Self.dir, extras)) == extrasBytes)
        for (lib, dl) in [(libMovie, dlMovie), (libEpisode, dlEpisode)] {
            let a = try Fx.inode(lib), b = try Fx.inode(dl)
            #expect(a.0 == b.0 && a.1 == b.1 && a.2 == 2, "\(NameEscape.escape(lib)) not linked to \(NameEscape.escape(dl))")
        }
        #expect(try Fx.read(libMovie) == movie && Fx.read(dlMovie) == movie)
        #expect(try Fx.read(libEpisode) == episode && Fx.read(dlEpisode) == episode)
        // No temporary link left (by bytes: FileManager's listing cannot be trusted with these names).
        for (dir, name) in [(Self.path(t.path, "library/movies", Self.dir), Self.file), (Self.path(t.path, "library/tv/Show"), Self.cafe),
                            (Self.path(t.path, "library/movies", Self.dir), extras)] {
            #expect(try Sys.fstatat(AT_FDCWD, dir + [0x2F, 0x2E] + name + Array(".hs-reclaim-tmp".utf8)) == nil)
        }
        let (again, after, _) = try Fx.runJSON([t.path, "--audit"])
        #expect(again == 0 && (after["audit"] as? [String: Any])?["copies"] as? Int == 0, "\(after)")
    }
}
