// The byte-level helpers of TarHeader that were rewritten without intermediate Strings
// (per-entry cost at Plex scale) must produce exactly the text of the String versions.

@testable import Archive
import Testing

@Suite struct TarHeaderTextTests {
    @Test func paxTimeBytesEqualsThePaxTimeText() {
        let seconds: [Int64] = [0, 1, -1, 5, -86_401, 1_700_000_000, 0o77777777777 + 5, 13_569_465_600, .max, .min, .min + 1]
        let nanos: [UInt32] = [0, 1, 10, 500_000_000, 999_999_999, 123_456_789, 100_000_000, 20]
        for s in seconds {
            for n in nanos {
                #expect(TarHeader.paxTimeBytes(s, n) == Array(TarHeader.paxTime(s, n).utf8), "\(s) \(n)")
            }
        }
    }

    /// The word-at-a-time header checksum is the plain byte sum (all-0xFF: the largest lanes).
    @Test func checksumIsTheByteSum() {
        var rng = SystemRandomNumberGenerator()
        var blocks: [[UInt8]] = [Array(repeating: 0, count: 512), Array(repeating: 0xFF, count: 512)]
        for _ in 0 ..< 200 { blocks.append((0 ..< 512).map { _ in UInt8.random(in: 0 ... 255, using: &rng) }) }
        for b in blocks {
            let expected = b.reduce(UInt64(0)) { $0 + UInt64($1) }
            #expect(b.withUnsafeBufferPointer { TarHeader.checksum($0.baseAddress!) } == expected)
        }
    }

    /// The fast path for common entries writes exactly what the general one writes, and
    /// declines (writing nothing) every entry it does not cover.
    @Test func commonHeadersEqualTheGeneralOnes() throws {
        var covered = 0
        let names: [String] = ["a", "f0000001.txt", "d0000/d000000/f0000000.txt", "dir/", "a//b", ".", "x/y/",
                               String(repeating: "n", count: 99), String(repeating: "n", count: 100),
                               String(repeating: "d/", count: 30) + "file", String(repeating: "q", count: 95) + "/abcd",
                               // Longer than 100: split into prefix and name, or not splittable (a pax path record).
                               "Library/Application Support/Plex Media Server/Metadata/Movies/a/0123456789abcdef0123456789abcdef01234567.bundle/Contents/_combined/posters/com.plexapp.agents.imdb_0123456789abcdef",
                               String(repeating: "p", count: 155) + "/" + String(repeating: "n", count: 100),
                               String(repeating: "p", count: 155) + "/" + String(repeating: "n", count: 99),
                               String(repeating: "p", count: 156) + "/" + String(repeating: "n", count: 10),
                               String(repeating: "p", count: 10) + "/" + String(repeating: "n", count: 101),
                               String(repeating: "n", count: 101), String(repeating: "a/", count: 60) + "end",
                               "x/" + String(repeating: "n", count: 99), "x/" + String(repeating: "n", count: 100)]
        let times: [(Int64, UInt32)] = [(0, 0), (1_733_482_750, 0), (1_733_482_750, 123_456_789), (1_733_482_750, 100_000_000),
                                        (5, 1), (0o77777777777, 999_999_999), (1, 20)]
        for name in names {
            for type in [EntryType.file, .directory] {
                for (sec, nsec) in times {
                    for (uid, size, mode) in [(UInt32(0), UInt64(0), UInt32(0o644)), (1000, 30, 0o100755), (0o7777777, 0o77777777777, 0o7777)] {
                        let e = EntryMetadata(pathBytes: Array(name.utf8), type: type, mode: mode, uid: uid, gid: uid / 2, size: size,
                                              mtimeSeconds: sec, mtimeNanoseconds: nsec)
                        var fast: [UInt8] = [7], general: [UInt8] = [7]
                        let took = TarHeader.appendCommon(e, to: &fast)
                        try TarHeader.appendGeneral(e, to: &general)
                        let count = name.utf8.count + (type == .directory ? 1 : 0)
                        let fits = count <= 100 || Array(name.utf8).withUnsafeBufferPointer { TarHeader.ustarSplit($0, nameCount: count) } != nil
                        #expect(took == fits, "\(name) \(type)")
                        if took { covered += 1; #expect(fast == general, "\(name) \(type) \(sec).\(nsec) uid \(uid) size \(size)") }
                        else { #expect(fast == [7], "\(name): nothing written when declined") }
                    }
                }
            }
        }
        #expect(covered > 300)
        // The split rule on names whose outcome is known (ustar: prefix <= 155, name 1...100).
        let plex = "Library/Application Support/Plex Media Server/Metadata/Movies/a/0123456789abcdef0123456789abcdef01234567.bundle/Contents/_combined/posters/com.plexapp.agents.imdb_0123456789abcdef"
        let known: [(String, EntryType, Bool)] = [
            (plex, .file, true), (String(repeating: "p", count: 155) + "/" + String(repeating: "n", count: 100), .file, true),
            (String(repeating: "p", count: 155) + "/" + String(repeating: "n", count: 100), .directory, false),
            (String(repeating: "p", count: 156) + "/" + String(repeating: "n", count: 10), .file, false),
            (String(repeating: "p", count: 10) + "/" + String(repeating: "n", count: 101), .file, false),
            (String(repeating: "n", count: 101), .file, false), ("x/" + String(repeating: "n", count: 100), .directory, false),
        ]
        for (name, type, fast) in known {
            var out: [UInt8] = []
            let e = EntryMetadata(pathBytes: Array(name.utf8), type: type, size: 1, mtimeSeconds: 1, mtimeNanoseconds: 5)
            #expect(TarHeader.appendCommon(e, to: &out) == fast, "\(name) \(type)")
        }
        var split: [UInt8] = []
        #expect(TarHeader.appendCommon(EntryMetadata(pathBytes: Array(plex.utf8), type: .file, size: 1, mtimeSeconds: 1, mtimeNanoseconds: 5), to: &split))
        let cut = plex.utf8.count - 1 - Array(plex.utf8.reversed()).firstIndex(of: UInt8(ascii: "/"))!
        #expect(Array(split[1024 ..< 1024 + 100].prefix { $0 != 0 }) == Array(plex.utf8[plex.utf8.index(plex.utf8.startIndex, offsetBy: cut + 1)...]))
        #expect(Array(split[1024 + 345 ..< 1024 + 500].prefix { $0 != 0 }) == Array(plex.utf8.prefix(cut)))
        // Entries it leaves to the general path.
        let base = EntryMetadata(pathBytes: Array("a/b".utf8), type: .file, size: 1, mtimeSeconds: 1, mtimeNanoseconds: 5)
        var others: [EntryMetadata] = []
        var e = base; e.pathBytes = [0x72, 0xE9]; others.append(e)
        e = base; e.type = .symlink; e.linkBytes = Array("t".utf8); others.append(e)
        e = base; e.xattrs = ["user.a": [1]]; others.append(e)
        e = base; e.uname = "root"; others.append(e)
        e = base; e.uid = 0o7777777 + 1; others.append(e)
        e = base; e.size = 0o77777777777 + 1; others.append(e)
        e = base; e.mtimeSeconds = -1; others.append(e)
        e = base; e.mtimeNanoseconds = 1_000_000_000; others.append(e)
        e = base; e.pathBytes = Array("/abs".utf8); others.append(e)
        e = base; e.pathBytes = []; others.append(e)
        e = base; e.linkBytes = [0]; others.append(e)
        for (i, o) in others.enumerated() {
            var out: [UInt8] = []
            #expect(!TarHeader.appendCommon(o, to: &out) && out.isEmpty, "case \(i)")
        }
    }

    @Test func paxRecordLengthCountsItsOwnDigits() {
        // Lengths around the points where the length field gains a digit.
        for valueLength in [0, 1, 2, 3, 4, 5, 6, 7, 8, 80, 85, 86, 87, 88, 89, 90, 95, 985, 986, 987, 988, 9_985, 9_986, 99_990] {
            var out: [UInt8] = []
            TarHeader.appendPaxRecord(key: "path", value: [UInt8](repeating: 0x61, count: valueLength), to: &out)
            let space = out.firstIndex(of: 0x20)!
            let len = Int(String(decoding: out[..<space], as: UTF8.self))!
            #expect(len == out.count, "value of \(valueLength) bytes")
            #expect(out.last == 0x0A)
        }
    }

    @Test func paxHeaderNameIsTheLastComponentAsBefore() throws {
        // The pax `x` header's own name: "PaxHeaders/" + the last non-empty component of the
        // entry's name (non-ASCII as "_"), cut at 100 bytes. Reference: the split-based rule.
        func reference(_ name: [UInt8]) -> [UInt8] {
            let base = name.split(separator: UInt8(ascii: "/")).last.map(Array.init) ?? [UInt8(ascii: "x")]
            return Array((Array("PaxHeaders/".utf8) + TarHeader.asciiFallback(base)).prefix(100))
        }
        let names: [[UInt8]] = [
            Array("a".utf8), Array("dir/sub/file.txt".utf8), Array("a//b".utf8), [0x72, 0xE9, 0x2F, 0x73, 0xE9],
            Array((String(repeating: "d/", count: 3) + String(repeating: "n", count: 150)).utf8),
            Array((String(repeating: "x", count: 120) + "/").utf8),
        ]
        for (k, name) in names.enumerated() {
            for type in [EntryType.file, .directory] {
                let e = EntryMetadata(pathBytes: name, type: type, mode: 0o644, uid: 0, gid: 0, size: 0,
                                      mtimeSeconds: 1, mtimeNanoseconds: 5)
                var bytes: [UInt8] = []
                try TarHeader.append(e, to: &bytes)
                #expect(bytes[156] == UInt8(ascii: "x"), "name \(k) has a pax header")
                let field = Array(bytes[0 ..< 100].prefix { $0 != 0 })
                var full = name
                if type == .directory { full.append(UInt8(ascii: "/")) }
                #expect(field == reference(full), "name \(k) \(type)")
            }
        }
    }
}
