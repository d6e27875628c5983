import Foundation
import Gzip
import Support

/// What one manifest entry is.
package enum ManifestEntryType: UInt8, Sendable, Equatable {
    case file = 0, directory = 1, symlink = 2, hardlink = 3

    package var name: String {
        switch self {
        case .file: "file"
        case .directory: "directory"
        case .symlink: "symlink"
        case .hardlink: "hardlink"
        }
    }
}

/// A SHA-256 digest as four words (no heap allocation per entry).
package struct Digest: Sendable, Equatable, Hashable {
    package var w0: UInt64 = 0, w1: UInt64 = 0, w2: UInt64 = 0, w3: UInt64 = 0
    package init() {}
    package init(_ bytes: [UInt8]) {
        precondition(bytes.count == 32)
        bytes.withUnsafeBytes { raw in
            w0 = raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self)
            w1 = raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
            w2 = raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self)
            w3 = raw.loadUnaligned(fromByteOffset: 24, as: UInt64.self)
        }
    }
    package var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        out.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: w0, toByteOffset: 0, as: UInt64.self)
            raw.storeBytes(of: w1, toByteOffset: 8, as: UInt64.self)
            raw.storeBytes(of: w2, toByteOffset: 16, as: UInt64.self)
            raw.storeBytes(of: w3, toByteOffset: 24, as: UInt64.self)
        }
        return out
    }
    package var hex: String { hexString(bytes) }
    package var isZero: Bool { w0 == 0 && w1 == 0 && w2 == 0 && w3 == 0 }
}

/// One entry of a manifest, as a plain value. Strings are (offset, length) into the owning
/// table's string buffer: reading a manifest allocates no object per entry.
package struct ManifestEntry: Sendable, Equatable {
    package var pathOffset: UInt32 = 0
    package var pathLength: UInt32 = 0
    package var linkOffset: UInt32 = 0
    package var linkLength: UInt32 = 0
    package var type: ManifestEntryType = .file
    package var flags: UInt8 = 0
    /// Permission bits including setuid/setgid/sticky (07777).
    package var mode: UInt32 = 0
    package var uid: UInt32 = 0
    package var gid: UInt32 = 0
    /// Content size as archived (regular files; 0 otherwise).
    package var size: UInt64 = 0
    package var mtimeNs: Int64 = 0
    package var ctimeNs: Int64 = 0
    /// Index into the manifest's `archives` list; `ManifestEntry.noArchive` when the entry's
    /// content is not in any archive (directories, symlinks, hardlinks, empty incrementals).
    package var archive: UInt32 = ManifestEntry.noArchive
    /// Compressed offset of the gzip member in which the entry's tar header starts.
    package var memberOffset: UInt64 = 0
    /// Uncompressed bytes from that member's start to the entry's tar header.
    package var memberSkip: UInt64 = 0
    /// SHA-256 of the content (regular files and hardlinks; zero otherwise).
    package var hash = Digest()

    package static let noArchive = UInt32.max
    /// The file changed while it was read (the archived bytes are what was read).
    package static let flagChangedWhileRead: UInt8 = 1
    /// The content provider substituted this file's content, or asked to see it again next
    /// run (e.g. a SQLite database). Meaningful when the header's `scanFlags` is at least 1.
    package static let flagAskProvider: UInt8 = 2

    package init() {}
}

/// The entries of one backup: ONE record buffer (fixed 112-byte little-endian records) and
/// ONE string buffer, sorted by path in "component order" (bytewise, with `/` sorting lowest,
/// which is the order of a depth-first walk with each directory's names sorted bytewise).
package struct ManifestTable: Sendable {
    package static let recordSize = 112
    package private(set) var records: [UInt8] = []
    package private(set) var strings: [UInt8] = []
    package var count: Int { records.count / Self.recordSize }

    package init() {}

    package init(records: [UInt8], strings: [UInt8]) throws {
        guard records.count % Self.recordSize == 0 else {
            throw ToolError("manifest record area has \(records.count) bytes, not a multiple of \(Self.recordSize)")
        }
        self.records = records
        self.strings = strings
    }

    /// Drops spare capacity (copies when there is any).
    package mutating func shrinkToFit() {
        if records.capacity > records.count { records = records.withUnsafeBufferPointer { Array($0) } }
        if strings.capacity > strings.count { strings = strings.withUnsafeBufferPointer { Array($0) } }
    }

    package mutating func reserve(entries: Int, stringBytes: Int) {
        records.reserveCapacity(entries * Self.recordSize)
        strings.reserveCapacity(stringBytes)
    }

    /// Appends a string to the string buffer; returns (offset, length).
    package mutating func intern(_ bytes: UnsafeRawBufferPointer) -> (UInt32, UInt32) {
        let off = UInt32(strings.count)
        strings.append(contentsOf: bytes)
        return (off, UInt32(bytes.count))
    }

    package mutating func intern(_ s: String) -> (UInt32, UInt32) {
        var s = s
        return s.withUTF8 { intern(UnsafeRawBufferPointer($0)) }
    }

    package mutating func intern(_ bytes: [UInt8]) -> (UInt32, UInt32) {
        bytes.withUnsafeBytes { intern($0) }
    }

    package func entry(_ i: Int) -> ManifestEntry {
        records.withUnsafeBytes { raw in
            let b = i * Self.recordSize
            func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: b + o, as: UInt32.self)) }
            func u64(_ o: Int) -> UInt64 { UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: b + o, as: UInt64.self)) }
            var e = ManifestEntry()
            e.pathOffset = u32(0); e.pathLength = u32(4); e.linkOffset = u32(8); e.linkLength = u32(12)
            e.type = ManifestEntryType(rawValue: raw[b + 16]) ?? .file
            e.flags = raw[b + 17]
            e.mode = u32(20); e.uid = u32(24); e.gid = u32(28)
            e.size = u64(32); e.mtimeNs = Int64(bitPattern: u64(40)); e.ctimeNs = Int64(bitPattern: u64(48))
            e.archive = u32(56)
            e.memberOffset = u64(64); e.memberSkip = u64(72)
            e.hash.w0 = raw.loadUnaligned(fromByteOffset: b + 80, as: UInt64.self)
            e.hash.w1 = raw.loadUnaligned(fromByteOffset: b + 88, as: UInt64.self)
            e.hash.w2 = raw.loadUnaligned(fromByteOffset: b + 96, as: UInt64.self)
            e.hash.w3 = raw.loadUnaligned(fromByteOffset: b + 104, as: UInt64.self)
            return e
        }
    }

    private static func encode(_ e: ManifestEntry, into raw: UnsafeMutableRawBufferPointer, at b: Int) {
        func u32(_ o: Int, _ v: UInt32) { raw.storeBytes(of: v.littleEndian, toByteOffset: b + o, as: UInt32.self) }
        func u64(_ o: Int, _ v: UInt64) { raw.storeBytes(of: v.littleEndian, toByteOffset: b + o, as: UInt64.self) }
        u32(0, e.pathOffset); u32(4, e.pathLength); u32(8, e.linkOffset); u32(12, e.linkLength)
        raw[b + 16] = e.type.rawValue; raw[b + 17] = e.flags; raw[b + 18] = 0; raw[b + 19] = 0
        u32(20, e.mode); u32(24, e.uid); u32(28, e.gid)
        u64(32, e.size); u64(40, UInt64(bitPattern: e.mtimeNs)); u64(48, UInt64(bitPattern: e.ctimeNs))
        u32(56, e.archive); u32(60, 0)
        u64(64, e.memberOffset); u64(72, e.memberSkip)
        raw.storeBytes(of: e.hash.w0, toByteOffset: b + 80, as: UInt64.self)
        raw.storeBytes(of: e.hash.w1, toByteOffset: b + 88, as: UInt64.self)
        raw.storeBytes(of: e.hash.w2, toByteOffset: b + 96, as: UInt64.self)
        raw.storeBytes(of: e.hash.w3, toByteOffset: b + 104, as: UInt64.self)
    }

    package mutating func append(_ e: ManifestEntry) {
        let b = records.count
        records.append(contentsOf: repeatElement(0, count: Self.recordSize))
        records.withUnsafeMutableBytes { Self.encode(e, into: $0, at: b) }
    }

    package mutating func set(_ i: Int, _ e: ManifestEntry) {
        records.withUnsafeMutableBytes { Self.encode(e, into: $0, at: i * Self.recordSize) }
    }

    /// The path bytes of an entry.
    package func withPath<R>(_ e: ManifestEntry, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try strings.withUnsafeBytes { raw in
            try body(UnsafeRawBufferPointer(rebasing: raw[Int(e.pathOffset) ..< Int(e.pathOffset) + Int(e.pathLength)]))
        }
    }

    package func path(_ e: ManifestEntry) -> String {
        withPath(e) { String(decoding: $0, as: UTF8.self) }
    }

    package func pathBytes(_ e: ManifestEntry) -> [UInt8] {
        Array(strings[Int(e.pathOffset) ..< Int(e.pathOffset) + Int(e.pathLength)])
    }

    package func linkTarget(_ e: ManifestEntry) -> String {
        String(decoding: strings[Int(e.linkOffset) ..< Int(e.linkOffset) + Int(e.linkLength)], as: UTF8.self)
    }

    package func linkBytes(_ e: ManifestEntry) -> ArraySlice<UInt8> {
        strings[Int(e.linkOffset) ..< Int(e.linkOffset) + Int(e.linkLength)]
    }

    /// Index of the entry with exactly this path (binary search), or nil.
    package func find(_ path: String) -> Int? {
        var p = path
        return p.withUTF8 { find(UnsafeRawBufferPointer($0)) }
    }

    /// Index of the entry with exactly this path among entries `from...`, or nil. Reads only
    /// the path fields; gallops from `from` first, so lookups in path order are cheap.
    package func find(_ key: UnsafeRawBufferPointer, from: Int = 0) -> Int? {
        records.withUnsafeBytes { rec in
            strings.withUnsafeBytes { str in
                func compare(_ i: Int) -> Int {
                    let b = i * Self.recordSize
                    let off = Int(UInt32(littleEndian: rec.loadUnaligned(fromByteOffset: b, as: UInt32.self)))
                    let len = Int(UInt32(littleEndian: rec.loadUnaligned(fromByteOffset: b + 4, as: UInt32.self)))
                    return comparePaths(UnsafeRawBufferPointer(rebasing: str[off ..< off + len]), key)
                }
                let n = count
                var lo = min(max(from, 0), n)
                // Gallop: find hi with entry(hi) >= key.
                var step = 1
                var hi = lo
                while hi < n {
                    let c = compare(hi)
                    if c == 0 { return hi }
                    if c > 0 { break }
                    lo = hi + 1
                    hi = lo + step - 1
                    step *= 2
                }
                hi = min(hi, n)
                while lo < hi {
                    let mid = (lo + hi) / 2
                    let c = compare(mid)
                    if c == 0 { return mid }
                    if c < 0 { lo = mid + 1 } else { hi = mid }
                }
                return nil
            }
        }
    }
}

/// Compares two relative paths in component order: bytewise, except that `/` sorts before
/// every other byte (so a directory's children follow it directly).
@inline(__always)
package func comparePaths(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Int {
    let n = min(a.count, b.count)
    var i = 0
    while i < n {
        var x = a[i], y = b[i]
        if x != y {
            if x == 0x2F { x = 0 }
            if y == 0x2F { y = 0 }
            return x < y ? -1 : 1
        }
        i += 1
    }
    return a.count == b.count ? 0 : (a.count < b.count ? -1 : 1)
}

/// The small JSON part of a manifest: what the backup is and how it went.
package struct ManifestHeader: Codable, Sendable, Equatable {
    package var format = 1
    package var id: String
    /// "full" or "incremental".
    package var kind: String
    /// The backup this one was compared with (nil for a full backup).
    package var parent: String?
    /// Archive ids referenced by entries (`ManifestEntry.archive` indexes this list).
    package var archives: [String]
    /// The archive written by this backup (nil when nothing changed).
    package var archive: String?
    package var toolVersion: String
    package var source: String
    /// Start time, seconds since the epoch.
    package var started: Double
    package var seconds: Double
    package var files: Int
    package var directories: Int
    package var symlinks: Int
    /// Files whose content went into this backup's archive.
    package var filesArchived: Int
    /// Total size of all regular files in the tree.
    package var treeBytes: UInt64
    /// Content bytes read into this backup's archive.
    package var bytesIn: UInt64
    /// Size of this backup's archive.
    package var bytesOut: UInt64
    package var warnings: [String]
    /// Incrementals since the last full backup (0 for a full one).
    package var sinceFull: Int?
    /// Id of the full backup this chain starts with.
    package var fullID: String?
    /// Start time of that full backup.
    package var fullStarted: Double?
    /// 1: entries carry `ManifestEntry.flagAskProvider` (absent in manifests of 0.1.0, whose
    /// provider decisions are unknown: every file is shown to the provider again).
    package var scanFlags: Int?
    /// The compressed body's gzip members, in order (records, then strings), so a reader can
    /// inflate them in parallel and the next backup can reuse members whose content did not
    /// change. Absent in manifests of 0.1.0 (the body is then read as one stream).
    package var body: [ManifestChunk]?
}

/// One gzip member of a manifest body.
package struct ManifestChunk: Codable, Sendable, Equatable {
    /// Uncompressed bytes.
    package var length: Int
    /// Compressed bytes (the whole gzip member).
    package var compressed: Int
    /// SHA-256 (hex) of the uncompressed bytes.
    package var sha256: String
}

/// A whole manifest: header + table. On disk:
/// `"HSMANIFEST1\n"`, u32 LE header length, header JSON, u64 LE record bytes, u64 LE string
/// bytes, the records then the strings as gzip members of up to 4 MiB each (listed with their
/// sizes and SHA-256 in the header's `body`), then the SHA-256 of everything before it.
package struct Manifest: Sendable {
    package var header: ManifestHeader
    package var table: ManifestTable

    package init(header: ManifestHeader, table: ManifestTable) {
        self.header = header
        self.table = table
    }

    package static let magic = Array("HSMANIFEST1\n".utf8)
    /// Uncompressed bytes per body member.
    static let chunkSize = 4 << 20

    /// The file this manifest was decoded from (kept so the next backup can copy members of
    /// its body that did not change); nil for a manifest built in memory.
    package private(set) var encodedFile: [UInt8]?

    /// Drops the table, keeping what `encoded(reusing:)` needs from this manifest.
    package func reusable() -> Manifest {
        var m = Manifest(header: header, table: ManifestTable())
        m.encodedFile = encodedFile
        return m
    }

    /// The manifest file. Members of the body whose uncompressed content equals the same
    /// member of `parent`'s body (same length and SHA-256) are copied from `parent`'s file
    /// instead of being compressed again: a no-change incremental compresses nothing.
    package func encoded(reusing parent: Manifest? = nil) throws -> [UInt8] {
        // Cut records and strings into members.
        var parts: [ArraySlice<UInt8>] = []
        var pos = 0
        while pos < table.records.count { parts.append(table.records[pos ..< min(pos + Self.chunkSize, table.records.count)]); pos += Self.chunkSize }
        pos = 0
        while pos < table.strings.count { parts.append(table.strings[pos ..< min(pos + Self.chunkSize, table.strings.count)]); pos += Self.chunkSize }
        if parts.isEmpty { parts.append([]) }
        // Where each of the parent's members starts in its file.
        var parentMembers: [(ManifestChunk, Int)] = []
        if let parent, let file = parent.encodedFile, let chunks = parent.header.body {
            var offset = Self.bodyOffset(file)
            for c in chunks { parentMembers.append((c, offset)); offset += c.compressed }
        }
        let frozen = parts
        let frozenParent = parentMembers
        let parentFile = parent?.encodedFile ?? []
        // Per member: its bytes (nil: copy `range` of the parent's file) and its description.
        let results = ResultSlots<([UInt8]?, Range<Int>, ManifestChunk)>(count: frozen.count)
        DispatchQueue.concurrentPerform(iterations: frozen.count) { i in
            let sha = frozen[i].withUnsafeBytes { hexString(SHA256Hasher.hash($0)) }
            if i < frozenParent.count, frozenParent[i].0.length == frozen[i].count, frozenParent[i].0.sha256 == sha {
                let (c, offset) = frozenParent[i]
                results.set(i, (nil, offset ..< offset + c.compressed, c))
                return
            }
            var member: [UInt8] = []
            frozen[i].withUnsafeBytes { GzipMemberEncoder().encodeMember($0, level: .deflate(1), into: &member) }
            results.set(i, (member, 0 ..< 0, ManifestChunk(length: frozen[i].count, compressed: member.count, sha256: sha)))
        }
        var header = self.header
        let members = results.takeAll().map { $0! }
        header.body = members.map { $0.2 }
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let json = [UInt8](try enc.encode(header))
        var out = Self.magic
        out.reserveCapacity(out.count + 4 + json.count + 16 + members.reduce(0) { $0 + $1.2.compressed } + 32)
        appendLE(&out, UInt32(json.count))
        out += json
        appendLE(&out, UInt64(table.records.count))
        appendLE(&out, UInt64(table.strings.count))
        for (bytes, range, _) in members {
            if let bytes { out += bytes } else { out += parentFile[range] }
        }
        out += SHA256Hasher.hash(out)
        return out
    }

    /// Offset of the compressed body in a manifest file (whose layout was checked).
    private static func bodyOffset(_ file: [UInt8]) -> Int {
        magic.count + 4 + Int(readLE32(file, magic.count)) + 16
    }

    private static func damaged(_ name: String, _ why: String) -> ToolError {
        ToolError("manifest \(name) is damaged (\(why)); it cannot be used. Run `hs-backup verify` and take a new full backup with --full.")
    }

    /// Checks a manifest file's checksum and parses its header (the table is not inflated):
    /// what listing a set needs. Returns the header and where the record/string sizes start.
    package static func decodeHeader(_ data: [UInt8], name: String) throws -> (ManifestHeader, Int) {
        guard data.count >= magic.count + 4 + 16 + 32, Array(data[0 ..< magic.count]) == magic else { throw damaged(name, "not a manifest file") }
        let body = data.count - 32
        // No copies of the (possibly large) input: hash straight from it.
        let sum = data.withUnsafeBytes { SHA256Hasher.hash(UnsafeRawBufferPointer(rebasing: $0[0 ..< body])) }
        guard sum.elementsEqual(data[body...]) else { throw damaged(name, "checksum mismatch") }
        var p = magic.count
        let hlen = Int(readLE32(data, p)); p += 4
        guard hlen >= 0, p + hlen + 16 <= body else { throw damaged(name, "header length") }
        let header: ManifestHeader
        do { header = try JSONDecoder().decode(ManifestHeader.self, from: Data(data[p ..< p + hlen])) } catch {
            throw damaged(name, "header JSON: \(error)")
        }
        return (header, p + hlen)
    }

    /// Parses and checks a manifest. `name` is used in error messages.
    package static func decode(_ data: [UInt8], name: String) throws -> Manifest {
        func bad(_ why: String) -> ToolError { damaged(name, why) }
        let body = data.count - 32
        var (header, p) = try decodeHeader(data, name: name)
        let rlen = Int(readLE64(data, p)), slen = Int(readLE64(data, p + 8)); p += 16
        guard rlen >= 0, slen >= 0, rlen <= Int(UInt32.max) * ManifestTable.recordSize, slen <= Int(UInt32.max) else { throw bad("sizes") }
        var records = [UInt8](repeating: 0, count: rlen)
        var strings = [UInt8](repeating: 0, count: slen)
        if let chunks = header.body {
            // Members at known offsets: inflate them in parallel, each into its place.
            var jobs: [(range: Range<Int>, intoRecords: Bool, at: Int, length: Int)] = []
            var offset = p, r = 0, t = 0
            for c in chunks {
                guard c.compressed > 0, c.length >= 0, offset + c.compressed <= body else { throw bad("body member sizes") }
                if r < rlen {
                    guard r + c.length <= rlen else { throw bad("body members do not split records and strings") }
                    jobs.append((offset ..< offset + c.compressed, true, r, c.length)); r += c.length
                } else {
                    guard t + c.length <= slen else { throw bad("body members are longer than the strings") }
                    jobs.append((offset ..< offset + c.compressed, false, t, c.length)); t += c.length
                }
                offset += c.compressed
            }
            guard offset == body, r == rlen, t == slen else { throw bad("body members do not add up") }
            let failures = ResultSlots<String>(count: jobs.count)
            let frozen = jobs
            records.withUnsafeMutableBytes { rec in
                strings.withUnsafeMutableBytes { str in
                    let (recBase, strBase) = (UnsafeSendable(rec), UnsafeSendable(str))
                    data.withUnsafeBytes { all in
                        let input = UnsafeSendable(UnsafeMutableRawBufferPointer(mutating: all))
                        DispatchQueue.concurrentPerform(iterations: frozen.count) { i in
                            let job = frozen[i]
                            let dest = job.intoRecords ? recBase.value : strBase.value
                            var produced = 0
                            do {
                                let d = GzipDecoder()
                                try d.feed(UnsafeRawBufferPointer(rebasing: input.value[job.range])) { chunk in
                                    guard produced + chunk.count <= job.length else { throw ToolError("member \(i) is longer than recorded") }
                                    UnsafeMutableRawBufferPointer(rebasing: dest[job.at + produced ..< job.at + produced + chunk.count]).copyMemory(from: chunk)
                                    produced += chunk.count
                                }
                                try d.finish()
                                if produced != job.length { throw ToolError("member \(i) is \(produced) bytes, recorded \(job.length)") }
                            } catch { failures.set(i, "\(error)") }
                        }
                    }
                }
            }
            if let f = failures.values.compactMap({ $0 }).first { throw bad(f) }
        } else {
            var produced = 0
            do {
                let d = GzipDecoder()
                try data.withUnsafeBytes { all in
                    try d.feed(UnsafeRawBufferPointer(rebasing: all[p ..< body])) { chunk in
                        var c = chunk
                        guard produced + c.count <= rlen + slen else { throw ToolError("body is longer than recorded") }
                        if produced < rlen {
                            let n = min(c.count, rlen - produced)
                            records.withUnsafeMutableBytes { UnsafeMutableRawBufferPointer(rebasing: $0[produced ..< produced + n]).copyMemory(from: UnsafeRawBufferPointer(rebasing: c[0 ..< n])) }
                            produced += n
                            c = UnsafeRawBufferPointer(rebasing: c[n...])
                        }
                        if !c.isEmpty {
                            let at = produced - rlen
                            strings.withUnsafeMutableBytes { UnsafeMutableRawBufferPointer(rebasing: $0[at ..< at + c.count]).copyMemory(from: c) }
                            produced += c.count
                        }
                    }
                }
                try d.finish()
            } catch { throw bad("\(error)") }
            guard produced == rlen + slen else { throw bad("body is \(produced) bytes, expected \(rlen + slen)") }
        }
        let table = try ManifestTable(records: records, strings: strings)
        for i in 0 ..< table.count {
            let e = table.entry(i)
            if Int(e.pathOffset) + Int(e.pathLength) > slen || Int(e.linkOffset) + Int(e.linkLength) > slen {
                throw bad("entry \(i) points outside the string area")
            }
            if e.archive != ManifestEntry.noArchive && Int(e.archive) >= header.archives.count {
                throw bad("entry \(i) names archive #\(e.archive) of \(header.archives.count)")
            }
        }
        var m = Manifest(header: header, table: table)
        m.encodedFile = data
        return m
    }
}

/// Hands a pointer to concurrent work on disjoint ranges.
struct UnsafeSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

func appendLE(_ out: inout [UInt8], _ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
func appendLE(_ out: inout [UInt8], _ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
func readLE32(_ d: [UInt8], _ p: Int) -> UInt32 {
    d.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: p, as: UInt32.self)) }
}
func readLE64(_ d: [UInt8], _ p: Int) -> UInt64 {
    d.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: p, as: UInt64.self)) }
}

/// Fixed slots filled from concurrent work.
final class ResultSlots<T>: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var values: [T?]
    init(count: Int) { values = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ v: T) { lock.lock(); values[i] = v; lock.unlock() }
    /// Moves the values out (so the caller can free them one by one).
    func takeAll() -> [T?] { lock.lock(); defer { lock.unlock() }; let v = values; values = []; return v }
}
