// Header-level and engine tests: pax records (8 GiB+ sizes, big ids, sub-second and negative
// times, long/non-ASCII names), base-256 numbers, size changes while reading, the index
// (random access, independent members), incompressible data, determinism, sink errors.
import Archive
import Foundation
import Synchronization
import Restore
import Glibc
import Gzip
import Support
import Testing
import TestSupport

/// Reads a plain tar byte array with the restore engine's reader: the entries (as the
/// writer's `EntryMetadata`, to compare with what was written), their header offsets, and
/// their content. `requireEnd`: the end-of-archive marker must be there.
func readTar(_ bytes: [UInt8], requireEnd: Bool = false) throws -> (entries: [(EntryMetadata, UInt64)], content: [String: [UInt8]]) {
    let source = ArchiveSource(size: UInt64(bytes.count), displayName: "test.tar") { off, n in
        Array(bytes[Int(off)..<min(bytes.count, Int(off) + n)])
    }
    let reader = try TarReader(source: source)
    defer { reader.close() }
    var entries: [(EntryMetadata, UInt64)] = []
    var content: [String: [UInt8]] = [:]
    while true {
        let next: TarEntry?
        do { next = try reader.next() } catch let e as ArchiveError where e.kind == .truncated && !requireEnd && !entries.isEmpty {
            break
        }
        guard let t = next else { break }
        var m = EntryMetadata(path: t.displayPath, type: t.type, mode: t.mode, uid: t.uid, gid: t.gid,
                              uname: t.uname.map { String(decoding: $0, as: UTF8.self) }, gname: t.gname.map { String(decoding: $0, as: UTF8.self) },
                              size: t.type == .file ? t.size : 0, mtimeSeconds: t.mtime.seconds, mtimeNanoseconds: t.mtime.nanoseconds,
                              devMajor: t.devMajor, devMinor: t.devMinor)
        if t.type == .symlink || t.type == .hardlink { m.linkTarget = t.displayLink }
        for (k, v) in t.xattrs { m.xattrs[String(decoding: k, as: UTF8.self)] = v }
        entries.append((m, t.headerOffset))
        var data: [UInt8] = []
        if t.type == .file && t.size < 1 << 24 {
            try reader.readContent { off, b in
                if Int(off) > data.count { data += [UInt8](repeating: 0, count: Int(off) - data.count) }
                data.append(contentsOf: b)
            }
            if data.count < Int(t.size) { data += [UInt8](repeating: 0, count: Int(t.size) - data.count) }
        }
        content[m.path] = data
    }
    return (entries, content)
}

@Suite struct EngineTests {
    @Test func headerRoundTripOfEverythingPaxCanCarry() throws {
        let entries: [EntryMetadata] = [
            EntryMetadata(path: "huge.img", type: .file, mode: 0o600, uid: 3_000_000, gid: 4_000_000, uname: "a-very-long-user-name-over-32-bytes", gname: "grp",
                          size: (8 << 30) + 12345, mtimeSeconds: 1_700_000_000, mtimeNanoseconds: 1),
            EntryMetadata(path: String(repeating: "dir/", count: 80) + "f", type: .file, size: 0, mtimeSeconds: -86_401, mtimeNanoseconds: 500_000_000),
            EntryMetadata(path: "ü/ß", type: .directory, mode: 0o2775, mtimeSeconds: 0o77777777777 + 5),
            EntryMetadata(path: "l", type: .symlink, mode: 0o777, linkTarget: String(repeating: "x", count: 300) + "/é"),
            EntryMetadata(path: "h", type: .hardlink, linkTarget: "huge.img"),
            EntryMetadata(path: "x", type: .file, xattrs: ["user.a": [0, 10, 61, 255], "user.empty-ish": [32]]),
            EntryMetadata(path: "dev", type: .charDevice, mode: 0o600, devMajor: 1, devMinor: 3),
            EntryMetadata(path: "p", type: .fifo, mode: 0o644, mtimeSeconds: 5, mtimeNanoseconds: 999_999_999),
        ]
        for e in entries {
            var bytes: [UInt8] = []
            try TarHeader.append(e, to: &bytes)
            #expect(bytes.count % 512 == 0)
            let c = try readTar(bytes)
            #expect(c.entries.count == 1)
            #expect(c.entries.first?.0 == e, "\(e.path)")
            #expect(c.entries.first?.1 == 0)
        }
    }

    @Test func sizeOver8GiBIsReadByPythonTarfile() throws {
        let e = EntryMetadata(path: "huge.img", type: .file, size: 9 << 30, mtimeSeconds: 1_700_000_000, mtimeNanoseconds: 250_000_000)
        var bytes: [UInt8] = []
        try TarHeader.append(e, to: &bytes)
        let tmp = try TempDir("archive-hdr")
        try Data(bytes).write(to: tmp.url.appendingPathComponent("h.tar"))
        let r = try run(["python3", "-c", """
            import tarfile, sys
            t = tarfile.open(sys.argv[1], 'r|')
            m = t.next()
            print(m.name, m.size, repr(m.pax_headers.get('mtime')))
            """, tmp.sub("h.tar")])
        #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "huge.img \(9 << 30) '1700000000.25'", "\(r.stderr)")
        // The reader wants exactly that much content: stopping after the header is truncation.
        #expect(throws: ArchiveError.self) { _ = try readTar(bytes, requireEnd: true) }
    }

    @Test func gnuBase256AndOldV7HeadersParse() throws {
        // GNU: base-256 size (0x80 prefix) and uid; v7: no magic, directory by trailing slash.
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ s: String, _ at: Int) { for (i, b) in s.utf8.enumerated() { h[at + i] = b } }
        put("big", 0); put("0000644\0", 100)
        h[108] = 0x80; h[113] = 0x2D; h[114] = 0xC6; h[115] = 0xC0  // uid 0x2DC6C0 = 3000000
        put("0000000\0", 116)
        h[124] = 0x80; h[131] = 0x02; h[132] = 0x40  // size = 0x0240_0000_00 = 9 GiB
        put("14567043000\0", 136)
        h[156] = UInt8(ascii: "0"); put("ustar  \0", 257)
        var sum = 0
        for i in 0..<512 { sum += (148..<156).contains(i) ? 32 : Int(h[i]) }
        put(String(format: "%06o\0 ", sum), 148)
        let c = try readTar(h)
        #expect(c.entries.first?.0.uid == 3_000_000)
        #expect(c.entries.first?.0.size == 9 << 30)

        var v = [UInt8](repeating: 0, count: 512)
        for (i, b) in "olddir/".utf8.enumerated() { v[i] = b }
        for (at, s) in [(100, "000755 \0"), (108, "000000 \0"), (116, "000000 \0"), (124, "00000000000 "), (136, "14567043000 ")] {
            for (i, b) in s.utf8.enumerated() { v[at + i] = b }
        }
        var s2 = 0
        for i in 0..<512 { s2 += (148..<156).contains(i) ? 32 : Int(v[i]) }
        for (i, b) in String(format: "%06o\0 ", s2).utf8.enumerated() { v[148 + i] = b }
        let c2 = try readTar(v + [UInt8](repeating: 0, count: 1024), requireEnd: true)
        #expect(c2.entries.first?.0.type == .directory)
        #expect(c2.entries.first?.0.path == "olddir")
    }

    @Test func fileThatChangesSizeWhileReadKeepsTheStreamValid() throws {
        let tmp = try TempDir("archive-grow")
        let path = tmp.sub("f")
        try Data(Fixture.text(10_000)).write(to: URL(fileURLWithPath: path))
        var out: [UInt8] = []
        let w = ArchiveWriter(sink: { out.append(contentsOf: $0) }, options: ArchiveWriterOptions(threads: 0))
        // Header says 20000 (the file "shrank" to 10000): padded with zeros.
        let shrank = try w.add(EntryMetadata(path: "shrank", type: .file, size: 20_000), contentPath: path)
        // Header says 4000 (the file "grew" to 10000): cut at 4000.
        let grew = try w.add(EntryMetadata(path: "grew", type: .file, size: 4_000), contentPath: path)
        let same = try w.add(EntryMetadata(path: "same", type: .file, size: 10_000), contentPath: path)
        _ = try w.finish()
        #expect(shrank.sizeChanged && shrank.bytesRead == 10_000)
        #expect(grew.sizeChanged && grew.bytesRead == 4_000)
        #expect(!same.sizeChanged && same.bytesRead == 10_000)
        let tar = try GzipDecoder.decompress(out)
        let c = try readTar(tar, requireEnd: true)
        #expect(c.content["shrank"] == Fixture.text(10_000) + [UInt8](repeating: 0, count: 10_000))
        #expect(c.content["grew"] == Array(Fixture.text(10_000).prefix(4_000)))
        #expect(shrank.sha256 == SHA256Hasher.hash(c.content["shrank"]!))
        try Data(out).write(to: tmp.url.appendingPathComponent("a.tgz"))
        let list = try run(["tar", "-tzf", tmp.sub("a.tgz")])
        #expect(list.succeeded && list.stdout == "shrank\ngrew\nsame\n", "\(list.stderr)")
    }

    @Test func indexGivesRandomAccessAndMembersAreIndependent() throws {
        let tmp = try TempDir("archive-index")
        let src = tmp.sub("src")
        var nodes: [TestNode] = [.dir("d")]
        for i in 0..<60 { nodes.append(.file("d/f\(i).txt", content: Fixture.text(20_000 + i))) }
        nodes.append(.file("d/big.bin", content: Fixture.pseudoRandom(600_000, seed: 5)))
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        try Fixture.create(nodes, under: src)
        let archive = tmp.sub("a.tgz")
        let index = try writeArchive(of: src, to: archive, options: ArchiveWriterOptions(memberTargetSize: 64 << 10, memberSizeCap: 128 << 10))
        #expect(index.entries.count == 62)
        #expect(index.members.count > 10)
        let data = Array(try Data(contentsOf: URL(fileURLWithPath: archive)))
        #expect(UInt64(data.count) == index.compressedSize)
        var expectedOffset: UInt64 = 0
        for m in index.members {
            #expect(m.uncompressedOffset == expectedOffset)
            expectedOffset += m.uncompressedLength
            let slice = Array(data[Int(m.compressedOffset)..<Int(m.compressedOffset + m.compressedLength)])
            #expect(try GzipDecoder.decompress(slice).count == Int(m.uncompressedLength))
        }
        // Extract only d/f37.txt, starting at its member, stopping right after it.
        let entry = try #require(index.entries.first { $0.path == "d/f37.txt" })
        let next = try #require(index.entries.first { $0.path == "d/f38.txt" })
        let start = index.start(forHeaderAt: entry.headerOffset)
        #expect(start?.compressedOffset == index.members[entry.member].compressedOffset)
        let reads = Mutex<[UInt64]>([])
        let file = try ArchiveSource.file(archive)
        let counting = ArchiveSource(size: file.size!, displayName: archive) { off, n in reads.withLock { $0.append(off) }; return try file.read(at: off, count: n) }
        var got: [String] = []
        try extract(counting, to: tmp.sub("one"), start: start, endOffset: next.headerOffset, onFile: { e in got.append(e.displayPath) })
        #expect(got == ["d/f37.txt"])
        #expect(reads.withLock { $0 }.allSatisfy { $0 >= index.members[entry.member].compressedOffset })
        #expect(try Data(contentsOf: URL(fileURLWithPath: tmp.sub("one/d/f37.txt"))) == Data(Fixture.text(20_037)))
    }

    @Test func incompressibleContentIsStoredAndOutputIsDeterministic() throws {
        let tmp = try TempDir("archive-store")
        try Data(Fixture.pseudoRandom(2 << 20, seed: 1)).write(to: tmp.url.appendingPathComponent("r"))
        try Data(Fixture.text(2 << 20)).write(to: tmp.url.appendingPathComponent("t"))
        func build(_ opts: ArchiveWriterOptions) throws -> [UInt8] {
            final class Box: @unchecked Sendable { var out: [UInt8] = [] }
            let box = Box()
            let w = ArchiveWriter(sink: { box.out.append(contentsOf: $0) }, options: opts)
            try w.add(EntryMetadata(path: "r", type: .file, size: 2 << 20), contentPath: tmp.sub("r"))
            try w.add(EntryMetadata(path: "t", type: .file, size: 2 << 20), contentPath: tmp.sub("t"))
            _ = try w.finish()
            return box.out
        }
        let threaded = try build(ArchiveWriterOptions(threads: 2))
        let serial = try build(ArchiveWriterOptions(threads: 0))
        #expect(threaded == serial)
        // Random stored: ~2 MiB + framing; text deflated to almost nothing.
        #expect(threaded.count > 2 << 20 && threaded.count < (2 << 20) + 60_000, "\(threaded.count)")
        let noDetect = try build(ArchiveWriterOptions(detectIncompressible: false))
        #expect(try GzipDecoder.decompress(noDetect) == GzipDecoder.decompress(threaded))
    }

    @Test func sinkErrorsSurfaceWithoutHanging() throws {
        struct Full: Error {}
        let tmp = try TempDir("archive-sinkerr")
        try Data(Fixture.pseudoRandom(1 << 20, seed: 2)).write(to: tmp.url.appendingPathComponent("r"))
        let w = ArchiveWriter(sink: { _ in throw Full() }, options: ArchiveWriterOptions(memberTargetSize: 64 << 10, memberSizeCap: 64 << 10, threads: 2))
        #expect(throws: Full.self) {
            for i in 0..<50 { try w.add(EntryMetadata(path: "r\(i)", type: .file, size: 1 << 20), contentPath: tmp.sub("r")) }
            _ = try w.finish()
        }
    }

    @Test func missingContentFileThrowsBeforeAnythingIsWritten() throws {
        var out: [UInt8] = []
        let w = ArchiveWriter(sink: { out.append(contentsOf: $0) }, options: ArchiveWriterOptions(threads: 0))
        #expect(throws: ArchiveError.self) { try w.add(EntryMetadata(path: "gone", type: .file, size: 10), contentPath: "/nonexistent/x") }
        #expect(w.uncompressedOffset == 0)
        _ = try w.finish()
        #expect(try GzipDecoder.decompress(out) == [UInt8](repeating: 0, count: 1024))
    }
}
