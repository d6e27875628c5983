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
