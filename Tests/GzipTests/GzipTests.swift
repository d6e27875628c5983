import Foundation
import Gzip
import Support
import Testing
import TestSupport

@Suite struct GzipTests {
    func pseudoRandom(_ n: Int, seed: UInt64) -> [UInt8] {
        var x = seed | 1
        return (0..<n).map { _ in x ^= x << 13; x ^= x >> 7; x ^= x << 17; return UInt8(truncatingIfNeeded: x) }
    }

    /// `payload` compressed by a real tool (`command` reads the file named after it, writes
    /// to standard output).
    func compressed(_ payload: [UInt8], by command: String) throws -> [UInt8] {
        let dir = try TempDir()
        let plain = dir.sub("data")
        try Data(payload).write(to: URL(fileURLWithPath: plain))
        try Subprocess.checked(["sh", "-c", "\(command) '\(plain)' > '\(plain).out'"])
        return Array(try Data(contentsOf: URL(fileURLWithPath: plain + ".out")))
    }

    func text(_ n: Int) -> [UInt8] {
        let line = Array("2026-11-27 03:00:01|INFO|Radarr import movie /storage/library/movies done\n".utf8)
        return (0..<n).map { line[$0 % line.count] }
    }

    @Test(arguments: [GzipLevel.store, .deflate(1), .deflate(6), .deflate(9)])
    func roundTripOneMember(level: GzipLevel) throws {
        let enc = GzipMemberEncoder()
        for payload in [[], text(100_000), pseudoRandom(70_000, seed: 7)] {
            let member = enc.member(payload, level: level)
            #expect(try GzipDecoder.decompress(member) == payload)
        }
    }

    @Test func storeIsNotBiggerThanItNeedsToBe() {
        let enc = GzipMemberEncoder()
        let payload = pseudoRandom(1 << 20, seed: 3)
        let stored = enc.member(payload, level: .store)
        // 5 bytes of stored-block overhead per 64 KiB block, plus 18 bytes of framing.
        #expect(stored.count < payload.count + 16 * 5 + 64)
        let deflated = enc.member(text(1 << 20), level: .deflate(6))
        #expect(deflated.count < (1 << 20) / 20)
    }

    @Test func multiMemberStreamReadByGzipAndBoundariesReported() throws {
        let dir = try TempDir()
        let enc = GzipMemberEncoder()
        let parts = [text(50_000), pseudoRandom(30_000, seed: 1), [], text(1)]
        var stream: [UInt8] = []
        var expectedBoundaries: [Int] = []
        for (i, p) in parts.enumerated() {
            stream += enc.member(p, level: i == 1 ? .store : .deflate(6))
            expectedBoundaries.append(stream.count)
        }
        let file = dir.sub("multi.gz")
        try Data(stream).write(to: URL(fileURLWithPath: file))
        let viaGzip = try Subprocess.checked(["sh", "-c", "gzip -dc '\(file)' | sha256sum"]).stdout.prefix(64)
        let expected = hexString(SHA256Hasher.hash(parts.flatMap { $0 }))
        #expect(String(viaGzip) == expected)

        let dec = GzipDecoder()
        var ends: [Int] = []
        var out: [UInt8] = []
        dec.onMemberEnd = { ends.append(Int($0.compressedOffset + $0.compressedLength)) }
        // Feed in awkward chunk sizes to cross member boundaries mid-chunk.
        var i = 0
        while i < stream.count {
            let n = min(777, stream.count - i)
            try dec.feed(Array(stream[i..<(i + n)])) { out.append(contentsOf: $0) }
            i += n
        }
        try dec.finish()
        #expect(out == parts.flatMap { $0 })
        #expect(ends == expectedBoundaries)
    }

    /// Stored runs (incompressible content) between deflated ones: every layout of ranges
    /// (at the start, at the end, adjacent, empty, everything) decodes to the payload with our
    /// decoder and with gzip, and stored runs cost only framing.
    @Test func segmentedMembersWithStoredRuns() throws {
        let dir = try TempDir()
        let noise = pseudoRandom(200_000, seed: 5)
        let payload = text(100_000) + noise + text(50_000) + Array(noise[0..<70_000]) + text(10)
        let a = 100_000, b = 300_000, c = 350_000, d = 420_000
        let layouts: [[Range<Int>]] = [
            [], [a..<b], [a..<b, c..<d], [0..<a], [c..<payload.count], [a..<(a + 1000), (a + 1000)..<b],
            [a..<a, a..<b], [0..<payload.count], [a..<b, b..<c, c..<d],
        ]
        let enc = GzipSegmentedEncoder()
        for (i, ranges) in layouts.enumerated() {
            var out: [UInt8] = []
            payload.withUnsafeBytes { enc.encodeMember($0, storeRanges: ranges, level: 1, into: &out) }
            #expect(try GzipDecoder.decompress(out) == payload, "layout \(i): \(ranges)")
            let file = dir.sub("seg\(i).gz")
            try Data(out).write(to: URL(fileURLWithPath: file))
            let viaGzip = try Subprocess.checked(["sh", "-c", "gzip -dc '\(file)' | sha256sum"]).stdout.prefix(64)
            #expect(String(viaGzip) == hexString(SHA256Hasher.hash(payload)), "layout \(i) through gzip")
            // Never more than stored blocks and framing would take.
            #expect(out.count < payload.count + payload.count / 65_535 * 5 + 64 * 8, "layout \(i): \(out.count) bytes")
        }
        // With exactly the noise stored, the size is the noise plus the compressed text
        // (which compresses > 20x) plus framing (5 bytes per 64 KiB block, 18 per member).
        var out: [UInt8] = []
        payload.withUnsafeBytes { enc.encodeMember($0, storeRanges: [a..<b, c..<d], level: 1, into: &out) }
        let noiseBytes = (b - a) + (d - c)
        #expect(out.count < noiseBytes + (payload.count - noiseBytes) / 20 + 64 * 8, "\(out.count) bytes")
        var empty: [UInt8] = []
        [UInt8]().withUnsafeBytes { enc.encodeMember($0, storeRanges: [], level: 1, into: &empty) }
        #expect(try GzipDecoder.decompress(empty) == [])
    }

    /// The ISA-L engine for header-heavy payloads (a tar of tiny files: mostly zero padding)
    /// writes members that our decoder, libdeflate's member decoder (restore's) and gzip
    /// read back exactly, with stored runs anywhere, at its levels (1-3) and above them
    /// (libdeflate then), and compresses such a payload as well as a deflater should.
    @Test(arguments: [Int32(1), 3, 6])
    func headerHeavyEngineRoundTrips(level: Int32) throws {
        let dir = try TempDir()
        var payload: [UInt8] = []
        for i in 0..<2_000 {  // per "file": a header-like block and a 30-byte content block
            var block = Array("d0000/d000\(i / 100)/f\(i).txt\u{0}0000644\u{0}0000000\u{0}ustar\u{0}00".utf8)
            block += [UInt8](repeating: 0, count: 512 - block.count)
            payload += block + Array("tiny file number \(i) here\n".utf8)
            payload += [UInt8](repeating: 0, count: (512 - payload.count % 512) % 512)
        }
        payload += pseudoRandom(70_000, seed: 9)
        let n = payload.count
        let enc = GzipSegmentedEncoder()
        for (i, ranges) in [[], [(n - 70_000)..<n], [0..<512, (n - 70_000)..<n], [0..<n]].enumerated() {
            var out: [UInt8] = []
            payload.withUnsafeBytes { enc.encodeMember($0, storeRanges: ranges, level: level, engine: .headerHeavy, into: &out) }
            #expect(try GzipDecoder.decompress(out) == payload, "layout \(i)")
            let file = dir.sub("hh\(i).gz")
            try Data(out).write(to: URL(fileURLWithPath: file))
            let viaGzip = try Subprocess.checked(["sh", "-c", "gzip -dc '\(file)' | sha256sum"]).stdout.prefix(64)
            #expect(String(viaGzip) == hexString(SHA256Hasher.hash(payload)), "layout \(i) through gzip")
            var pos = 0, back: [UInt8] = []
            let d = GzipMemberDecoder(maxOutput: 4 << 20)
            while pos < out.count {
                let m = try #require(out.withUnsafeBytes { d.decode(UnsafeRawBufferPointer(rebasing: $0[pos...])) }, "layout \(i) at \(pos)")
                pos += m.consumed
                back += m.output
            }
            #expect(back == payload, "layout \(i) through libdeflate")
        }
        var out: [UInt8] = [], viaContent: [UInt8] = []
        payload.withUnsafeBytes { enc.encodeMember($0, storeRanges: [(n - 70_000)..<n], level: level, engine: .headerHeavy, into: &out) }
        payload.withUnsafeBytes { enc.encodeMember($0, storeRanges: [(n - 70_000)..<n], level: level, engine: .content, into: &viaContent) }
        #expect(out.count < 70_000 + (n - 70_000) / 20, "\(out.count) bytes")
        // Level 1: ISA-L for both engines; 2-3: ISA-L for header-heavy runs only; above: libdeflate's, byte for byte.
        #expect((out == viaContent) == (level == 1 || level > 3), "level \(level): ISA-L wrote the deflated runs")
        var empty: [UInt8] = []
        [UInt8]().withUnsafeBytes { enc.encodeMember($0, storeRanges: [], level: level, engine: .headerHeavy, into: &empty) }
        #expect(try GzipDecoder.decompress(empty) == [])
    }

    /// libdeflate's whole-member decoding: one member at a time out of a stream of several,
    /// with its compressed length; nil (never a wrong answer) for a member larger than the
    /// room, one cut short, damaged bytes or padding.
    @Test func memberDecoderTakesOneMemberOrDeclines() throws {
        let payload = text(300_000) + pseudoRandom(100_000, seed: 3)
        let gz = try compressed(payload, by: "gzip -6 -c")
        var ours: [UInt8] = []
        payload.withUnsafeBytes { GzipSegmentedEncoder().encodeMember($0, storeRanges: [300_000..<400_000], level: 1, into: &ours) }
        let stream = gz + ours + gz
        let d = GzipMemberDecoder(maxOutput: 1 << 20)
        var pos = 0, out: [UInt8] = []
        while pos < stream.count {
            let m = try #require(stream.withUnsafeBytes { d.decode(UnsafeRawBufferPointer(rebasing: $0[pos...])) }, "at \(pos)")
            pos += m.consumed
            out += m.output
        }
        #expect(pos == stream.count)
        #expect(out == payload + payload + payload)
        #expect(gz.withUnsafeBytes { d.decode(UnsafeRawBufferPointer(rebasing: $0[..<(gz.count - 1)])) } == nil, "cut short")
        var bad = gz
        bad[bad.count / 2] ^= 0x10
        #expect(bad.withUnsafeBytes { d.decode($0) } == nil, "damaged")
        var badCRC = gz
        badCRC[badCRC.count - 6] ^= 0x01
        #expect(badCRC.withUnsafeBytes { d.decode($0) } == nil, "wrong CRC")
        let small = GzipMemberDecoder(maxOutput: payload.count - 1)
        #expect(gz.withUnsafeBytes { small.decode($0) } == nil, "too big")
        #expect([UInt8](repeating: 0, count: 512).withUnsafeBytes { d.decode($0) } == nil, "padding")
    }

    @Test func readsFilesMadeByGzipAndPigz() throws {
        let payload = text(300_000) + pseudoRandom(100_000, seed: 9)
        let one = try compressed(payload, by: "gzip -9 -c")
        #expect(try GzipDecoder.decompress(one) == payload)
        let two = one + one   // what `cat a.gz a.gz` makes
        #expect(try GzipDecoder.decompress(two) == payload + payload)
        let pz = try compressed(payload, by: "pigz -p 2 -c")
        #expect(try GzipDecoder.decompress(pz) == payload)
    }

    @Test func truncatedAndCorruptInputAreErrors() throws {
        let enc = GzipMemberEncoder()
        let member = enc.member(text(100_000), level: .deflate(6))
        #expect(throws: GzipError.self) { try GzipDecoder.decompress(Array(member.dropLast(10))) }
        var flipped = member
        flipped[flipped.count / 2] ^= 0x40
        #expect(throws: GzipError.self) { try GzipDecoder.decompress(flipped) }
        var badCRC = member
        badCRC[badCRC.count - 6] ^= 1
        #expect(throws: GzipError.self) { try GzipDecoder.decompress(badCRC) }
        #expect(throws: GzipError.self) { try GzipDecoder.decompress([]) }
        #expect(throws: GzipError.self) { try GzipDecoder.decompress(Array("not gzip at all".utf8)) }
    }

    /// The streaming decoder parses member headers itself (ISA-L inflates the deflate data):
    /// FEXTRA, FNAME, FCOMMENT and FHCRC, split anywhere across feeds, as GNU gzip reads them;
    /// a wrong header CRC or a reserved flag bit is an error, as in zlib.
    @Test func headerFieldsSplitAnywhere() throws {
        func crc32(_ bytes: [UInt8]) -> UInt32 {
            var c: UInt32 = 0xffff_ffff
            for b in bytes { c ^= UInt32(b); for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0xedb8_8320 : c >> 1 } }
            return ~c
        }
        let payload = text(50_000)
        let member = GzipMemberEncoder().member(payload, level: .deflate(6))
        var header: [UInt8] = [0x1f, 0x8b, 8, 0x1e, 1, 2, 3, 4, 0, 3, 5, 0, 9, 8, 7, 6, 5]
        header += Array("a.tar\0a comment\0".utf8)
        let hcrc = crc32(header)
        header += [UInt8(hcrc & 0xff), UInt8(hcrc >> 8 & 0xff)]
        let stream = header + Array(member.dropFirst(10)) + member
        let dir = try TempDir()
        try Data(stream).write(to: URL(fileURLWithPath: dir.sub("h.gz")))
        let viaGzip = try Subprocess.checked(["sh", "-c", "gzip -dc '\(dir.sub("h.gz"))' | sha256sum"]).stdout.prefix(64)
        #expect(String(viaGzip) == hexString(SHA256Hasher.hash(payload + payload)), "GNU gzip reads the test member")
        for split in 1 ..< header.count + 4 {
            let dec = GzipDecoder()
            var out: [UInt8] = []
            try dec.feed(Array(stream[..<split])) { out.append(contentsOf: $0) }
            try dec.feed(Array(stream[split...])) { out.append(contentsOf: $0) }
            try dec.finish()
            #expect(out == payload + payload, "split at \(split)")
        }
        var badCRC = stream
        badCRC[header.count - 1] ^= 1
        #expect(throws: GzipError.self) { try GzipDecoder.decompress(badCRC) }
        var reserved = member
        reserved[3] = 0x20
        #expect(throws: GzipError.self) { try GzipDecoder.decompress(reserved) }
    }

    /// Output that fills the decoder's buffer exactly as the input runs out is still all
    /// handed out, and the member ends (ISA-L keeps such output until it is called again).
    @Test func outputFillingTheBufferExactly() throws {
        let payload = pseudoRandom(64 << 10, seed: 3) + text(64 << 10)
        let member = GzipMemberEncoder().member(payload, level: .deflate(6))
        for chunk in [payload.count, payload.count / 2, 4096, 1] {
            let dec = GzipDecoder(outputChunk: chunk)
            var out: [UInt8] = [], ends = 0
            dec.onMemberEnd = { _ in ends += 1 }
            try dec.feed(member) { out.append(contentsOf: $0) }
            try dec.finish()
            #expect(out == payload && ends == 1, "output chunk \(chunk)")
        }
    }

    /// Real gzip and pigz output (several members), fed in pieces of every awkward size into
    /// output buffers smaller than a deflate block: the same bytes and member ends.
    @Test func anyInputAndOutputChunking() throws {
        let payload = text(150_000) + pseudoRandom(70_000, seed: 5) + text(30_000)
        let stream = try compressed(payload, by: "gzip -9 -c") + compressed(payload, by: "pigz -p 2 -c")
        for (inChunk, outChunk) in [(1, 97), (3, 4096), (17, 1), (4096, 65_536), (1 << 20, 1 << 20)] {
            let dec = GzipDecoder(outputChunk: outChunk)
            var out: [UInt8] = [], ends: [Int] = []
            dec.onMemberEnd = { ends.append(Int($0.uncompressedOffset + $0.uncompressedLength)) }
            var i = 0
            while i < stream.count {
                let n = min(inChunk, stream.count - i)
                try dec.feed(Array(stream[i ..< (i + n)])) { out.append(contentsOf: $0) }
                i += n
            }
            try dec.finish()
            #expect(out == payload + payload, "in \(inChunk), out \(outChunk)")
            #expect(ends.last == 2 * payload.count && ends.contains(payload.count), "in \(inChunk), out \(outChunk): \(ends)")
        }
    }
}
