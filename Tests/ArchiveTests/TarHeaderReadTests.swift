// The reader's per-header shortcuts read what the general code reads: the header checksum
// summed a word at a time (unsigned and, for old tars, signed), the lone pax `mtime` record
// of hs-backup's headers kept out of the record dictionary (with other records, several
// extended headers and global records around it), names cut at their NUL by memchr, and
// `RestorePath.split`.
import Archive
import Foundation
import Restore
import Testing

@Suite struct TarHeaderReadTests {
    /// A ustar header block: `name` (and `prefix`), octal fields, the checksum over it
    /// (`signed`: as old tars summed, bytes as signed values).
    static func header(_ name: [UInt8], prefix: [UInt8] = [], type: UInt8 = UInt8(ascii: "0"), size: Int = 0,
                       mtime: Int = 0o14567043000, uname: [UInt8] = Array("me".utf8), signed: Bool = false) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ b: [UInt8], _ at: Int) { for (i, c) in b.enumerated() { h[at + i] = c } }
        func octal(_ v: Int, _ at: Int, _ width: Int) { put(Array(String(format: "%0\(width - 1)o", v).utf8) + [0], at) }
        put(name, 0)
        octal(0o644, 100, 8); octal(1000, 108, 8); octal(1000, 116, 8)
        octal(size, 124, 12); octal(mtime, 136, 12)
        h[156] = type
        put(Array("ustar".utf8) + [0] + Array("00".utf8), 257)
        put(uname, 265); put(Array("group".utf8), 297)
        put(prefix, 345)
        var sum = 8 * 32
        for i in 0 ..< 512 where !(148 ..< 156).contains(i) { sum += signed ? Int(Int8(bitPattern: h[i])) : Int(h[i]) }
        put(Array(String(format: "%06o", sum & 0o777777).utf8) + [0, UInt8(ascii: " ")], 148)
        return h
    }

    /// An extended header (`type` "x" or "g") holding `data`, padded to whole blocks.
    static func extended(_ data: [UInt8], type: UInt8 = UInt8(ascii: "x")) -> [UInt8] {
        header(Array("PaxHeaders/x".utf8), type: type, size: data.count) + padded(data)
    }

    static func record(_ key: String, _ value: String) -> [UInt8] {
        let body = " \(key)=\(value)\n"
        var len = body.utf8.count + 1
        while String(len).utf8.count + body.utf8.count != len { len += 1 }
        return Array("\(len)\(body)".utf8)
    }

    static func padded(_ d: [UInt8]) -> [UInt8] { d + [UInt8](repeating: 0, count: (512 - d.count % 512) % 512) }

    static let end = [UInt8](repeating: 0, count: 1024)

    /// The entries of a plain tar in memory, with the reader's warnings.
    static func entries(_ bytes: [UInt8]) throws -> (entries: [TarEntry], warnings: [String]) {
        let source = ArchiveSource(size: UInt64(bytes.count), displayName: "t.tar") { off, n in
            Array(bytes[Int(off) ..< min(bytes.count, Int(off) + n)])
        }
        let reader = try TarReader(source: source)
        defer { reader.close() }
        var out: [TarEntry] = []
        while let e = try reader.next() { out.append(e) }
        return (out, reader.warnings)
    }

    @Test func checksumsUnsignedSignedAndWrong() throws {
        // Bytes >= 0x80 in every field make the signed and unsigned sums differ; a full 100
        // bytes of 0xff in the name and 155 in the prefix is the most a word's lanes take.
        let high = [UInt8](repeating: 0xff, count: 100), highPrefix = [UInt8](repeating: 0xfe, count: 155)
        for signed in [false, true] {
            let r = try Self.entries(Self.header(high, prefix: highPrefix, signed: signed) + Self.end)
            #expect(r.entries.count == 1)
            #expect(r.entries.first?.path == highPrefix + [UInt8(ascii: "/")] + high)
            #expect(r.entries.first?.uname == Array("me".utf8))
        }
        var bad = Self.header(Array("a".utf8))
        bad[0] = UInt8(ascii: "b")   // one byte more than the checksum says
        #expect(throws: ArchiveError.self) { try Self.entries(bad + Self.end) }
        do { _ = try Self.entries(bad + Self.end) } catch let e as ArchiveError {
            #expect(e.kind == .malformed)
            #expect(e.description.contains("checksum"))
        }
        // A name of exactly 100 bytes (no NUL) and an empty user name.
        let full = [UInt8](repeating: UInt8(ascii: "n"), count: 100)
        let r = try Self.entries(Self.header(full, uname: []) + Self.end)
        #expect(r.entries.first?.path == full)
        #expect(r.entries.first?.uname == nil)
    }

    @Test func loneMtimeRecordReadsAsTheGeneralRecords() throws {
        let file = Self.header(Array("f".utf8))
        func mtime(_ bytes: [UInt8]) throws -> FileTime? { try Self.entries(bytes + Self.end).entries.first?.mtime }
        // hs-backup's header: one record, nanoseconds.
        #expect(try mtime(Self.extended(Self.record("mtime", "1600000000.123456789")) + file)
                == FileTime(seconds: 1_600_000_000, nanoseconds: 123_456_789))
        // Two extended headers: the last mtime wins, whichever way each is read.
        #expect(try mtime(Self.extended(Self.record("mtime", "5.5")) + Self.extended(Self.record("mtime", "7.25")) + file)
                == FileTime(seconds: 7, nanoseconds: 250_000_000))
        #expect(try mtime(Self.extended(Self.record("mtime", "5.5")) + Self.extended(Self.record("uid", "7") + Self.record("mtime", "8")) + file)
                == FileTime(seconds: 8))
        // A lone mtime, then other records: both apply.
        let both = try Self.entries(Self.extended(Self.record("mtime", "9.5")) + Self.extended(Self.record("path", "long/name")) + file + Self.end)
        #expect(both.entries.first?.path == Array("long/name".utf8))
        #expect(both.entries.first?.mtime == FileTime(seconds: 9, nanoseconds: 500_000_000))
        // Other records, then a lone mtime: both apply.
        let after = try Self.entries(Self.extended(Self.record("uid", "4242")) + Self.extended(Self.record("mtime", "3")) + file + Self.end)
        #expect(after.entries.first?.uid == 4242)
        #expect(after.entries.first?.mtime == FileTime(seconds: 3))
        // A global mtime, overridden by the entry's own; the next entry gets the global one.
        let global = Self.extended(Self.record("mtime", "11"), type: UInt8(ascii: "g"))
        let g = try Self.entries(global + Self.extended(Self.record("mtime", "12.5")) + file + Self.header(Array("g".utf8)) + Self.end)
        #expect(g.entries.map(\.mtime) == [FileTime(seconds: 12, nanoseconds: 500_000_000), FileTime(seconds: 11)])
        // An empty value removes the record: the header's own mtime stands.
        #expect(try mtime(Self.extended(Self.record("mtime", "")) + file) == FileTime(seconds: 0o14567043000))
        // Trailing bytes after the number: GNU tar's reading, with a warning.
        let odd = try Self.entries(Self.extended(Self.record("mtime", "21.5xyz")) + file + Self.end)
        #expect(odd.entries.first?.mtime == FileTime(seconds: 21, nanoseconds: 500_000_000))
        #expect(odd.warnings.contains { $0.contains("trailing bytes") })
        // Not a time: refused as before.
        #expect(throws: ArchiveError.self) { try Self.entries(Self.extended(Self.record("mtime", "x1")) + file + Self.end) }
        // A record followed by NUL padding inside the header's size, and a wrong length: the
        // general reading (accepted / refused).
        #expect(try mtime(Self.extended(Self.record("mtime", "13") + [0, 0, 0]) + file) == FileTime(seconds: 13))
        var wrongLength = Self.record("mtime", "14")
        wrongLength[0] += 1
        #expect(throws: ArchiveError.self) { try Self.entries(Self.extended(wrongLength) + file + Self.end) }
    }

    @Test func splitGivesTheNonEmptyComponents() {
        func split(_ s: String) -> [String] { RestorePath.split(Array(s.utf8)).map { String(decoding: $0, as: UTF8.self) } }
        #expect(split("") == [])
        #expect(split("/") == [])
        #expect(split("a") == ["a"])
        #expect(split("a/b/c") == ["a", "b", "c"])
        #expect(split("//a//b/") == ["a", "b"])
        #expect(split("Library/Application Support/x.bundle/Contents") == ["Library", "Application Support", "x.bundle", "Contents"])
    }
}
