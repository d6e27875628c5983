// Manifest: the commit record of one backup and the complete list of what existed then.
//
// Reading, for any size of tree (what the backup and the restore use):
// - `BackupSet.openManifest(id)` gives a `ManifestReader` (ManifestStream.swift): `header`,
//   then `next()` / `nextItem()` one entry at a time IN PATH ORDER (component order: bytewise,
//   `/` lowest, i.e. a depth-first walk with sorted directories). Format 3 is streamed member
//   by member; formats 1 and 2 are loaded whole (once, on the first run after an upgrade).
// - A `ManifestItem` has `path` and `link` as `[UInt8]` (exact bytes, any name a Linux file
//   system allows), `type`, `mode`, `uid`, `gid`, `size`, `mtime`/`ctime` as `FileTime`
//   (seconds `Int64`, full signed range, and `nanoseconds` `UInt32` in 0..<1_000_000_000),
//   `archive` (the archive id holding the content, or nil), `memberOffset`/`memberSkip`
//   (where its tar header is), `hash` (SHA-256 of the content) and `xattrHash` (0: no
//   xattrs/ACLs; the values themselves are in the tar headers as pax `SCHILY.xattr.*`).
// Writing: `ManifestWriter` (ManifestStream.swift), entries in path order, header last.
//
// In memory, for small manifests and tests: `Manifest.decode(bytes, name:)` /
// `BackupSet.loadManifest(id)` load any format into a `ManifestTable` (one record buffer,
// one string buffer; `table.entry(i)`, `table.pathBytes(e)`, `table.find(bytes:)`), and
// `manifest.encoded()` writes format 3.
//
// Formats: 3 (since 0.3.0) is the stream described in ManifestStream.swift. 2 (0.2.0):
// 128-byte records (`ManifestTable` documents the layout) then a string area. 1 (0.1.x):
// 112-byte records, times as Int64 nanoseconds; entries loaded from them have `xattrHash` 0
// and the next backup does not treat that as an xattr change (`ManifestHeader.hasXattrHashes`).
#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import Dispatch
import Archive
import Gzip
import Support
import Synchronization

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

    /// The tar entry type a restore makes of it.
    package var entryType: EntryType {
        switch self {
        case .file: .file
        case .directory: .directory
        case .symlink: .symlink
        case .hardlink: .hardlink
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
    package var mtime = FileTime()
    package var ctime = FileTime()
    /// Index into the manifest's `archives` list; `ManifestEntry.noArchive` when the entry's
    /// content is not in any archive (directories, symlinks, hardlinks, empty incrementals).
    package var archive: UInt32 = ManifestEntry.noArchive
    /// Compressed offset of the gzip member in which the entry's tar header starts.
    package var memberOffset: UInt64 = 0
    /// Uncompressed bytes from that member's start to the entry's tar header.
    package var memberSkip: UInt64 = 0
    /// SHA-256 of the content (regular files and hardlinks; zero otherwise).
    package var hash = Digest()
    /// A hash of the entry's extended attributes and ACLs (names and values); 0 when it has
    /// none. A change of xattrs alone changes it, so the next incremental archives the entry.
    package var xattrHash: UInt64 = 0

    package static let noArchive = UInt32.max
    /// The file changed while it was read (the archived bytes are what was read).
    package static let flagChangedWhileRead: UInt8 = 1
    /// The content provider substituted this file's content, or asked to see it again next
    /// run (e.g. a SQLite database). Meaningful when the header's `scanFlags` is at least 1.
    package static let flagAskProvider: UInt8 = 2
    /// The content was archived as a sparse member and `hash` is its `SparseHash` (over the
    /// map and the data regions, see `SparseFile`), not the SHA-256 of the whole content.
    package static let flagSparse: UInt8 = 4
    /// In a scan only, never stored: the scan did not read the entry's xattrs.
    package static let flagXattrsUnread: UInt8 = 0x40

    package init() {}
}

/// The entries of one backup: ONE record buffer (fixed 128-byte little-endian records) and
/// ONE string buffer, sorted by path in "component order" (bytewise, with `/` sorting lowest,
/// which is the order of a depth-first walk with each directory's names sorted bytewise).
///
/// Record (format 2), offsets in bytes, little-endian:
/// 0 path offset u32, 4 path length u32, 8 link offset u32, 12 link length u32, 16 type u8,
/// 17 flags u8, 18 reserved u16, 20 mode u32, 24 uid u32, 28 gid u32, 32 size u64,
/// 40 mtime seconds i64, 48 mtime nanoseconds u32, 52 ctime nanoseconds u32,
/// 56 ctime seconds i64, 64 archive u32, 68 reserved u32, 72 member offset u64,
/// 80 member skip u64, 88 SHA-256 (32 bytes), 120 xattr hash u64.
package struct ManifestTable: Sendable {
    /// Records that cannot be a table (the manifest reading them says which file).
    package struct Malformed: Error, CustomStringConvertible {
        package var what: String
        package var description: String { what }
    }

    package static let recordSize = 128
    /// Format 1 records (0.1.0 and 0.1.x): times as Int64 nanoseconds, no xattr hash.
    static let legacyRecordSize = 112
    package private(set) var records: [UInt8] = []
    package private(set) var strings: [UInt8] = []
    package var count: Int { records.count / Self.recordSize }

    package init() {}

    package init(records: [UInt8], strings: [UInt8]) throws {
        guard records.count % Self.recordSize == 0 else {
            throw ManifestTable.Malformed(what: "the record area has \(records.count) bytes, not a multiple of \(Self.recordSize)")
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
        records.withUnsafeBytes { Self.decode($0, at: i * Self.recordSize) }
    }

    /// The first 40 bytes of a record, the same in every format: strings, type, flags, mode,
    /// owner, size.
    private static func firstFields(_ raw: UnsafeRawBufferPointer, at b: Int) -> ManifestEntry {
        func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: b + o, as: UInt32.self)) }
        var e = ManifestEntry()
        e.pathOffset = u32(0); e.pathLength = u32(4); e.linkOffset = u32(8); e.linkLength = u32(12)
        e.type = ManifestEntryType(rawValue: raw[b + 16]) ?? .file
        e.flags = raw[b + 17]
        e.mode = u32(20); e.uid = u32(24); e.gid = u32(28)
        e.size = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: b + 32, as: UInt64.self))
        return e
    }

    /// The record at byte `b` of `raw` (format-2/3 layout).
    static func decode(_ raw: UnsafeRawBufferPointer, at b: Int) -> ManifestEntry {
        func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: b + o, as: UInt32.self)) }
        func u64(_ o: Int) -> UInt64 { UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: b + o, as: UInt64.self)) }
        var e = firstFields(raw, at: b)
        e.mtime = FileTime(seconds: Int64(bitPattern: u64(40)), nanoseconds: min(u32(48), 999_999_999))
        e.ctime = FileTime(seconds: Int64(bitPattern: u64(56)), nanoseconds: min(u32(52), 999_999_999))
        e.archive = u32(64)
        e.memberOffset = u64(72); e.memberSkip = u64(80)
        e.hash.w0 = raw.loadUnaligned(fromByteOffset: b + 88, as: UInt64.self)
        e.hash.w1 = raw.loadUnaligned(fromByteOffset: b + 96, as: UInt64.self)
        e.hash.w2 = raw.loadUnaligned(fromByteOffset: b + 104, as: UInt64.self)
        e.hash.w3 = raw.loadUnaligned(fromByteOffset: b + 112, as: UInt64.self)
        e.xattrHash = u64(120)
        return e
    }

    /// A format-1 record (112 bytes) as an entry.
    static func legacyEntry(_ raw: UnsafeRawBufferPointer, at b: Int) -> ManifestEntry {
        func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: b + o, as: UInt32.self)) }
        func u64(_ o: Int) -> UInt64 { UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: b + o, as: UInt64.self)) }
        var e = firstFields(raw, at: b)
        e.mtime = FileTime(totalNanoseconds: Int64(bitPattern: u64(40)))
        e.ctime = FileTime(totalNanoseconds: Int64(bitPattern: u64(48)))
        e.archive = u32(56)
        e.memberOffset = u64(64); e.memberSkip = u64(72)
        e.hash.w0 = raw.loadUnaligned(fromByteOffset: b + 80, as: UInt64.self)
        e.hash.w1 = raw.loadUnaligned(fromByteOffset: b + 88, as: UInt64.self)
        e.hash.w2 = raw.loadUnaligned(fromByteOffset: b + 96, as: UInt64.self)
        e.hash.w3 = raw.loadUnaligned(fromByteOffset: b + 104, as: UInt64.self)
        return e
    }

    /// A table from format-1 records (converted to the current layout).
    static func fromLegacy(records old: [UInt8], strings: [UInt8]) throws -> ManifestTable {
        guard old.count % legacyRecordSize == 0 else {
            throw ManifestTable.Malformed(what: "the record area has \(old.count) bytes, not a multiple of \(legacyRecordSize)")
        }
        var t = ManifestTable()
        t.strings = strings
        let n = old.count / legacyRecordSize
        t.records.reserveCapacity(n * recordSize)
        old.withUnsafeBytes { raw in
            for i in 0 ..< n { t.append(legacyEntry(raw, at: i * legacyRecordSize)) }
        }
        return t
    }

    static func encode(_ e: ManifestEntry, into raw: UnsafeMutableRawBufferPointer, at b: Int) {
        func u32(_ o: Int, _ v: UInt32) { raw.storeBytes(of: v.littleEndian, toByteOffset: b + o, as: UInt32.self) }
        func u64(_ o: Int, _ v: UInt64) { raw.storeBytes(of: v.littleEndian, toByteOffset: b + o, as: UInt64.self) }
        u32(0, e.pathOffset); u32(4, e.pathLength); u32(8, e.linkOffset); u32(12, e.linkLength)
        raw[b + 16] = e.type.rawValue; raw[b + 17] = e.flags; raw[b + 18] = 0; raw[b + 19] = 0
        u32(20, e.mode); u32(24, e.uid); u32(28, e.gid)
        u64(32, e.size)
        u64(40, UInt64(bitPattern: e.mtime.seconds)); u32(48, e.mtime.nanoseconds); u32(52, e.ctime.nanoseconds)
        u64(56, UInt64(bitPattern: e.ctime.seconds))
        u32(64, e.archive); u32(68, 0)
        u64(72, e.memberOffset); u64(80, e.memberSkip)
        raw.storeBytes(of: e.hash.w0, toByteOffset: b + 88, as: UInt64.self)
        raw.storeBytes(of: e.hash.w1, toByteOffset: b + 96, as: UInt64.self)
        raw.storeBytes(of: e.hash.w2, toByteOffset: b + 104, as: UInt64.self)
        raw.storeBytes(of: e.hash.w3, toByteOffset: b + 112, as: UInt64.self)
        u64(120, e.xattrHash)
    }

    package mutating func append(_ e: ManifestEntry) {
        let b = records.count
        records.append(contentsOf: Self.zeroRecord)   // a copy (repeatElement went element by element)
        records.withUnsafeMutableBytes { Self.encode(e, into: $0, at: b) }
    }

    /// One record of zeros (what `append` extends the record buffer with before encoding).
    package static let zeroRecord = [UInt8](repeating: 0, count: recordSize)

    /// Appends an entry whose path and link are given as bytes (stored in this table's strings;
    /// an empty link takes no space).
    package mutating func append(_ e: ManifestEntry, path: [UInt8], link: [UInt8]) {
        var e = e
        (e.pathOffset, e.pathLength) = intern(path)
        (e.linkOffset, e.linkLength) = link.isEmpty ? (0, 0) : intern(link)
        append(e)
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

    /// Index of the entry with exactly these path bytes (binary search), or nil.
    package func find(bytes: some Collection<UInt8>) -> Int? {
        Array(bytes).withUnsafeBytes { find($0) }
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
    /// The record layout: 1 (0.1.x, 112-byte records) or 2 (128-byte records, `FileTime`
    /// times, xattr hashes). Manifests of a newer format are refused with a clear message.
    package var format = ManifestHeader.currentFormat
    package static let currentFormat = 3
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
    /// Format 3: the number of entries.
    package var entries: Int?
    /// Format 3: what entries' archive indexes name (kept stable along a chain so unchanged
    /// parts of the manifest stay byte-identical; "" for a slot no entry uses any more).
    /// `archives` lists the ids actually referenced.
    package var archiveSlots: [String]?
    /// Files that existed and are not in this backup (unreadable, or replaced while read):
    /// the run exited 3. Absent when none (and in manifests before 0.5).
    package var filesMissing: Int?

    /// Entries carry xattr hashes (format 2): comparing them with a new scan is meaningful.
    package var hasXattrHashes: Bool { format >= 2 }

    /// `format` is absent in nothing written so far, but decode it leniently (1 when absent).
    package init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        format = try c.decodeIfPresent(Int.self, forKey: .format) ?? 1
        id = try c.decode(String.self, forKey: .id)
        kind = try c.decode(String.self, forKey: .kind)
        parent = try c.decodeIfPresent(String.self, forKey: .parent)
        archives = try c.decode([String].self, forKey: .archives)
        archive = try c.decodeIfPresent(String.self, forKey: .archive)
        toolVersion = try c.decode(String.self, forKey: .toolVersion)
        source = try c.decode(String.self, forKey: .source)
        started = try c.decode(Double.self, forKey: .started)
        seconds = try c.decode(Double.self, forKey: .seconds)
        files = try c.decode(Int.self, forKey: .files)
        directories = try c.decode(Int.self, forKey: .directories)
        symlinks = try c.decode(Int.self, forKey: .symlinks)
        filesArchived = try c.decode(Int.self, forKey: .filesArchived)
        treeBytes = try c.decode(UInt64.self, forKey: .treeBytes)
        bytesIn = try c.decode(UInt64.self, forKey: .bytesIn)
        bytesOut = try c.decode(UInt64.self, forKey: .bytesOut)
        warnings = try c.decode([String].self, forKey: .warnings)
        sinceFull = try c.decodeIfPresent(Int.self, forKey: .sinceFull)
        fullID = try c.decodeIfPresent(String.self, forKey: .fullID)
        fullStarted = try c.decodeIfPresent(Double.self, forKey: .fullStarted)
        scanFlags = try c.decodeIfPresent(Int.self, forKey: .scanFlags)
        body = try c.decodeIfPresent([ManifestChunk].self, forKey: .body)
        entries = try c.decodeIfPresent(Int.self, forKey: .entries)
        archiveSlots = try c.decodeIfPresent([String].self, forKey: .archiveSlots)
        filesMissing = try c.decodeIfPresent(Int.self, forKey: .filesMissing)
    }

    package init(format: Int = ManifestHeader.currentFormat, id: String, kind: String, parent: String?, archives: [String],
                 archive: String?, toolVersion: String, source: String, started: Double, seconds: Double, files: Int,
                 directories: Int, symlinks: Int, filesArchived: Int, treeBytes: UInt64, bytesIn: UInt64, bytesOut: UInt64,
                 warnings: [String], sinceFull: Int? = nil, fullID: String? = nil, fullStarted: Double? = nil,
                 scanFlags: Int? = nil, body: [ManifestChunk]? = nil, archiveSlots: [String]? = nil) {
        self.format = format; self.id = id; self.kind = kind; self.parent = parent; self.archives = archives
        self.archive = archive; self.toolVersion = toolVersion; self.source = source; self.started = started
        self.seconds = seconds; self.files = files; self.directories = directories; self.symlinks = symlinks
        self.filesArchived = filesArchived; self.treeBytes = treeBytes; self.bytesIn = bytesIn; self.bytesOut = bytesOut
        self.warnings = warnings; self.sinceFull = sinceFull; self.fullID = fullID; self.fullStarted = fullStarted
        self.scanFlags = scanFlags; self.body = body; self.archiveSlots = archiveSlots
    }
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

    /// The manifest file (format 3). Members whose uncompressed content equals a member of
    /// `parent`'s file (same length and SHA-256) are copied from it instead of being
    /// compressed again: a no-change incremental compresses nothing.
    package func encoded(reusing parent: Manifest? = nil) throws -> [UInt8] {
        var out: [UInt8] = []
        let w = ManifestWriter(sink: { out += $0 }, parent: parent.flatMap { ManifestFileMembers(manifest: $0) })
        for i in 0 ..< table.count {
            let e = table.entry(i)
            try table.withPath(e) { p in
                try Array(table.linkBytes(e)).withUnsafeBytes { l in try w.append(e, path: p, link: l) }
            }
        }
        try w.finish(header: header)
        return out
    }

    /// Offset of the compressed body in a manifest file (whose layout was checked).
    private static func bodyOffset(_ file: [UInt8]) -> Int {
        magic.count + 4 + Int(readLE32(file, magic.count)) + 16
    }

    /// The error for a damaged manifest file (any format): its name and why.
    static func damaged(_ name: String, _ why: String) -> ManifestError {
        ManifestError(.damaged(why), name: name)
    }

    /// A backup's note when the previous manifest could not be used (`error`, from opening or
    /// reading it): the run is a full one instead.
    static func fullBackupInstead(_ error: any Error) -> String {
        (error as? ManifestError)?.fullBackupInstead ?? "\(error) This run is a full backup instead."
    }

    /// Checks a manifest file's checksum and parses its header (the table is not inflated):
    /// what listing a set needs. Returns the header and where the record/string sizes start.
    package static func decodeHeader(_ data: [UInt8], name: String) throws -> (ManifestHeader, Int) {
        if data.starts(with: magic3) {
            let (h, end) = try readHeader3(size: UInt64(data.count), name: name) { off, count in
                let s = Int(min(off, UInt64(data.count)))
                return Array(data[s ..< min(data.count, s + count)])
            }
            return (h, Int(end))
        }
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
        guard header.format <= 2 else { throw damaged(name, "format \(header.format) in a format-1/2 file") }
        return (header, p + hlen)
    }

    /// Parses and checks a manifest. `name` is used in error messages.
    package static func decode(_ data: [UInt8], name: String) throws -> Manifest {
        func bad(_ why: String) -> ManifestError { damaged(name, why) }
        if data.starts(with: magic3) {
            let reader = try ManifestReader(bytes: data, name: name)
            var table = ManifestTable()
            while let r = try reader.next() { table.append(r.entry, path: r.path, link: r.link) }
            var m = Manifest(header: reader.header, table: table)
            m.encodedFile = data
            return m
        }
        let body = data.count - 32
        var (header, p) = try decodeHeader(data, name: name)
        guard header.format <= ManifestHeader.currentFormat else {
            throw ManifestError(.newerFormat(format: header.format, toolVersion: header.toolVersion), name: name)
        }
        // Values read from the file: converted without a trap (a damaged size is an error).
        guard let rlen = Int(exactly: readLE64(data, p)), let slen = Int(exactly: readLE64(data, p + 8)) else { throw bad("sizes") }
        p += 16
        guard rlen >= 0, slen >= 0, rlen <= Int(UInt32.max) * ManifestTable.recordSize, slen <= Int(UInt32.max) else { throw bad("sizes") }
        var records = [UInt8](repeating: 0, count: rlen)
        var strings = [UInt8](repeating: 0, count: slen)
        if let chunks = header.body {
            // Members at known offsets: inflate them in parallel, each into its place.
            var jobs: [(range: Range<Int>, intoRecords: Bool, at: Int, length: Int)] = []
            var offset = p, r = 0, t = 0
            for c in chunks {
                guard c.compressed > 0, c.length >= 0, c.compressed <= body - offset else { throw bad("body member sizes") }
                if r < rlen {
                    guard c.length <= rlen - r else { throw bad("body members do not split records and strings") }
                    jobs.append((offset ..< offset + c.compressed, true, r, c.length)); r += c.length
                } else {
                    guard c.length <= slen - t else { throw bad("body members are longer than the strings") }
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
                                    guard produced + chunk.count <= job.length else { throw Manifest.damaged(name, "member \(i) is longer than recorded") }
                                    UnsafeMutableRawBufferPointer(rebasing: dest[job.at + produced ..< job.at + produced + chunk.count]).copyMemory(from: chunk)
                                    produced += chunk.count
                                }
                                try d.finish()
                                if produced != job.length { throw Manifest.damaged(name, "member \(i) is \(produced) bytes, recorded \(job.length)") }
                            } catch { failures.set(i, "\(error)") }
                        }
                    }
                }
            }
            if let f = failures.takeAll().compactMap({ $0 }).first { throw bad(f) }
        } else {
            var produced = 0
            do {
                let d = GzipDecoder()
                try data.withUnsafeBytes { all in
                    try d.feed(UnsafeRawBufferPointer(rebasing: all[p ..< body])) { chunk in
                        var c = chunk
                        guard produced + c.count <= rlen + slen else { throw bad("body is longer than recorded") }
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
        let table = header.format >= 2 ? try ManifestTable(records: records, strings: strings)
            : try ManifestTable.fromLegacy(records: records, strings: strings)
        records = []
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

    /// The entries in path order, each with its strings as bytes (see the file's overview).
    package func items() -> ManifestItems { ManifestItems(manifest: self) }
}

/// One manifest entry with its strings resolved: what the restore side consumes.
package struct ManifestItem: Sendable, Equatable {
    /// Relative path, exact bytes.
    package var path: [UInt8]
    /// Symlink target, or for a hardlink the path of the entry it links to (exact bytes;
    /// empty for other types).
    package var link: [UInt8]
    package var type: ManifestEntryType
    package var flags: UInt8
    package var mode: UInt32
    package var uid: UInt32
    package var gid: UInt32
    package var size: UInt64
    package var mtime: FileTime
    package var ctime: FileTime
    /// Id of the archive that holds the content (nil: no content in any archive).
    package var archive: String?
    package var memberOffset: UInt64
    package var memberSkip: UInt64
    package var hash: Digest
    package var xattrHash: UInt64
}

/// The entries of a manifest in path order (`Manifest.items()`).
package struct ManifestItems: Sequence, Sendable {
    let manifest: Manifest
    package var count: Int { manifest.table.count }

    package struct Iterator: IteratorProtocol {
        let manifest: Manifest
        var i = 0
        package mutating func next() -> ManifestItem? {
            let t = manifest.table
            guard i < t.count else { return nil }
            let e = t.entry(i)
            i += 1
            return ManifestItem(path: t.pathBytes(e), link: Array(t.linkBytes(e)), type: e.type, flags: e.flags, mode: e.mode,
                                uid: e.uid, gid: e.gid, size: e.size, mtime: e.mtime, ctime: e.ctime,
                                archive: manifest.header.archiveID(e.archive),
                                memberOffset: e.memberOffset, memberSkip: e.memberSkip, hash: e.hash, xattrHash: e.xattrHash)
        }
    }

    package func makeIterator() -> Iterator { Iterator(manifest: manifest) }
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
final class ResultSlots<T: Sendable>: Sendable {
    private let values: Mutex<[T?]>
    init(count: Int) { values = Mutex(Array(repeating: nil, count: count)) }
    func set(_ i: Int, _ v: T) { values.withLock { $0[i] = v } }
    /// Moves the values out (so the caller can free them one by one).
    func takeAll() -> [T?] { values.withLock { v in defer { v = [] }; return v } }
}
