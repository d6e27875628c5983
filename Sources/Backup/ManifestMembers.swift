// Random access to a manifest's entries, one member at a time (what `ls`, `find`, `diff` and
// the mount read). A format-3 body is a run of gzip members that each hold whole entries and
// start their path compression afresh, so any member can be read alone, in any order. Its
// SHA-256 (listed in the checked header) names its content: backups of one set share most
// members (an incremental copies the unchanged ones), and a reader of many backups can decode
// a shared member once. Formats 1 and 2 (0.1.x, 0.2.0) are loaded whole and served in runs of
// `legacyRun` entries.
//
// What it checks: the header (its own SHA-256), the member places, and for every member read,
// its SHA-256, its length and its entries (well formed, in path order). What it cannot check
// without reading every member: the order across members and the header's entry count; a
// caller that reads them all compares each member's first path with the previous one's last
// (`ManifestTable.checkFollows`).
import FoundationEssentials
import Glibc
import Gzip
import Storage
import Support
import Synchronization

package final class ManifestMembers: Sendable {
    package let header: ManifestHeader
    /// The manifest's place, for messages (`DEST/SET/ID.manifest`).
    package let name: String
    private let places: [Place]
    private let legacy: ManifestTable?
    private let read: @Sendable (UInt64, Int) throws -> [UInt8]
    private let onClose: (@Sendable () -> Void)?

    /// Entries per member of a format 1/2 manifest (a virtual member).
    package static let legacyRun = 8192

    private struct Place: Sendable {
        var offset: UInt64
        var chunk: ManifestChunk
    }

    /// Opens a manifest file of `size` bytes read through `read` (called from any thread, one
    /// call at a time per caller; `read` must be safe for that).
    /// - Throws: `ManifestError` naming the manifest when it is not one, or damaged.
    package init(size: UInt64, name: String, read: @escaping @Sendable (UInt64, Int) throws -> [UInt8],
                 onClose: (@Sendable () -> Void)? = nil) throws {
        self.name = name
        self.read = read
        self.onClose = onClose
        switch try Manifest.open(size: size, name: name, read: read) {
        case .members(let h, let members):
            header = h
            places = members.map { Place(offset: $0.offset, chunk: $0.chunk) }
            legacy = nil
        case .whole(let m):
            header = m.header
            places = []
            legacy = m.table
        }
    }

    deinit { onClose?() }

    /// Number of members (virtual ones for formats 1 and 2).
    package var count: Int {
        if let legacy { return (legacy.count + Self.legacyRun - 1) / Self.legacyRun }
        return places.count
    }

    /// A name for member `i`'s content: members of two manifests with the same identity hold
    /// the same entries (format 3: the SHA-256 of the member; older formats: unique per file).
    package func identity(_ i: Int) -> String {
        legacy == nil ? places[i].chunk.sha256 : "\(name)#\(i)"
    }

    /// Uncompressed size of member `i` (what decoding it takes in memory, about).
    package func length(_ i: Int) -> Int {
        legacy == nil ? places[i].chunk.length : Self.legacyRun * (ManifestTable.recordSize + 64)
    }

    /// The entries of member `i` with their full paths, in path order, checked.
    /// - Throws: `ManifestError` naming the manifest and the member when it is damaged or cannot be read.
    package func table(_ i: Int) throws -> ManifestTable {
        if let legacy {
            var t = ManifestTable()
            for k in i * Self.legacyRun ..< min(legacy.count, (i + 1) * Self.legacyRun) {
                let e = legacy.entry(k)
                t.append(e, path: legacy.pathBytes(e), link: Array(legacy.linkBytes(e)))
            }
            return t
        }
        var t = ManifestTable()
        t.reserve(entries: places[i].chunk.length / 160 + 1, stringBytes: places[i].chunk.length)
        try forEachEntry(i) { e, path, link in
            var e = e
            (e.pathOffset, e.pathLength) = t.intern(path)
            (e.linkOffset, e.linkLength) = link.isEmpty ? (0, 0) : t.intern(link)
            t.append(e)
        }
        return t
    }

    /// Calls `body` with every entry of member `i` in path order, checked as `table(i)` checks
    /// them (it is built by this walk), without building a table: the entry (its string fields
    /// do not point anywhere), its full path and its link, both valid during the call only.
    /// - Parameter decoder: inflates into its reused buffer (no allocation per member); one
    ///   decoder per thread.
    /// - Returns: the member's last path (empty for an empty member).
    /// - Throws: `ManifestError` naming the manifest and the member when it is damaged or cannot
    ///   be read; what `body` throws.
    @discardableResult
    package func forEachEntry(_ i: Int, decoder: GzipMemberDecoder? = nil,
                              _ body: (ManifestEntry, UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Void) throws -> [UInt8] {
        if let legacy {
            var last: [UInt8] = []
            for k in i * Self.legacyRun ..< min(legacy.count, (i + 1) * Self.legacyRun) {
                let e = legacy.entry(k)
                let link = legacy.linkBytes(e)
                try legacy.withPath(e) { p in try link.withUnsafeBytes { try body(e, p, $0) } }
                last = legacy.pathBytes(e)
            }
            return last
        }
        let p = places[i]
        let compressed = try Manifest.readFully(read, at: p.offset, count: p.chunk.compressed)
        guard compressed.count == p.chunk.compressed else { throw Manifest.damaged(name, "truncated body") }
        if let decoder {
            let last: [UInt8]?
            do {
                last = try decoder.withMember(compressed, length: p.chunk.length) { raw -> [UInt8] in
                    try Manifest.checkMember(raw, p.chunk)
                    return try Manifest.walkMember(raw, header: header, name: name, index: i, body)
                }
            } catch let e as MemberProblem { throw Manifest.damaged(name, "member \(i): \(e)") }
            if let last { return last }
        }
        let bytes: [UInt8]
        do { bytes = try Manifest.inflateMember(compressed, p.chunk) } catch { throw Manifest.damaged(name, "member \(i): \(error)") }
        return try bytes.withUnsafeBytes { try Manifest.walkMember($0, header: header, name: name, index: i, body) }
    }
}

extension BackupSet {
    /// The manifest of backup `id` for reading member by member (the file stays open until
    /// the value goes away; an age file is decrypted by chunk with the set's identities).
    /// - Throws: `EncryptionError` (no identity, or none that opens it), `ManifestError`.
    package func manifestMembers(_ id: String) throws -> ManifestMembers {
        let r = try SharedDestinationReader(openManifestFile(id))
        do {
            let m = try ManifestMembers(size: r.size, name: manifestName(id), read: { try r.read(at: $0, count: $1) },
                                        onClose: { r.close() })
            try checkID(m.header, id)
            return m
        } catch {
            r.close()
            throw error
        }
    }
}

/// Serialises the calls of a `DestinationReader` (an NFS file handle is not thread-safe).
package final class SharedDestinationReader: Sendable {
    private let reader: Mutex<(any DestinationReader)?>
    package let size: UInt64

    package init(_ reader: sending any DestinationReader) {
        size = reader.size
        self.reader = Mutex(reader)
    }

    package func read(at offset: UInt64, count: Int) throws -> [UInt8] {
        try reader.withLock { r in
            guard let r else { throw ToolError("read after close (a bug: please report it)") }
            return try r.read(at: offset, count: count)
        }
    }

    package func close() {
        reader.withLock { r in
            try? r?.close()
            r = nil
        }
    }
}

extension Manifest {
    /// A manifest file as opening it finds it (`ManifestMembers` and `ManifestReader` read on
    /// from there).
    enum Opened {
        /// Format 3: its checked header and the place of every body member.
        case members(ManifestHeader, [(offset: UInt64, chunk: ManifestChunk)])
        /// Formats 1 and 2 (0.1.x, 0.2.0), loaded whole.
        case whole(Manifest)
    }

    /// Opens a manifest file of `size` bytes read through `read`: its header checked (its own
    /// SHA-256, the member places, the archives it lists).
    /// - Throws: `ManifestError` naming `name` when it is not a manifest, or damaged.
    static func open(size: UInt64, name: String, read: (UInt64, Int) throws -> [UInt8]) throws -> Opened {
        if try readFully(read, at: 0, count: magic3.count) == magic3 {
            let (h, bodyEnd) = try readHeader3(size: size, name: name, read: read)
            let members = try memberPlaces(h, bodyEnd: bodyEnd, name: name)
            try h.checkArchives(name)
            return .members(h, members)
        }
        guard size < 1 << 36 else { throw damaged(name, "not a manifest file") }
        return .whole(try decode(try readFully(read, at: 0, count: Int(size)), name: name))
    }

    /// The place of every body member (offset in the file, recorded sizes), checked against
    /// the body's extent.
    static func memberPlaces(_ h: ManifestHeader, bodyEnd: UInt64, name: String) throws -> [(offset: UInt64, chunk: ManifestChunk)] {
        var out: [(offset: UInt64, chunk: ManifestChunk)] = []
        var offset = UInt64(Manifest.magic3.count)
        for c in h.body ?? [] {
            guard c.compressed > 0, c.length > 0, c.length <= 64 << 20, offset + UInt64(c.compressed) <= bodyEnd else {
                throw Manifest.damaged(name, "body member sizes")
            }
            out.append((offset, c))
            offset += UInt64(c.compressed)
        }
        guard offset == bodyEnd else { throw Manifest.damaged(name, "body members do not add up") }
        return out
    }

    /// Inflates one body member and checks its length and SHA-256 against the header's record.
    /// - Throws: a short reason (the caller names the manifest and the member).
    static func inflateMember(_ compressed: [UInt8], _ chunk: ManifestChunk) throws -> [UInt8] {
        var out: [UInt8]
        if let d = compressed.withUnsafeBytes({ GzipMemberDecoder.decode($0, length: chunk.length) }),
           d.consumed == compressed.count {
            out = d.output
        } else {
            // Not one whole member libdeflate can decode: the streaming decoder gives the reason.
            out = []
            out.reserveCapacity(chunk.length)
            let d = GzipDecoder()
            try compressed.withUnsafeBytes { raw in
                try d.feed(raw) { c in
                    guard out.count + c.count <= chunk.length else { throw MemberProblem(why: "longer than recorded") }
                    out.append(contentsOf: c)
                }
            }
            try d.finish()
        }
        try out.withUnsafeBytes { try checkMember($0, chunk) }
        return out
    }

    /// Checks an inflated member's length and SHA-256 against the header's record.
    /// - Throws: `MemberProblem` (the caller names the manifest and the member).
    static func checkMember(_ bytes: UnsafeRawBufferPointer, _ chunk: ManifestChunk) throws {
        guard bytes.count == chunk.length else { throw MemberProblem(why: "\(bytes.count) bytes, recorded \(chunk.length)") }
        guard hexString(SHA256Hasher.hash(bytes)) == chunk.sha256 else { throw MemberProblem(why: "checksum mismatch") }
    }

    /// Walks the entries of one inflated format-3 member (member `index` of manifest `name`),
    /// checked: well formed, in path order, archive references the header lists. `body` gets
    /// each entry (string fields unset), its full path and its link.
    /// - Returns: the member's last path (empty for an empty member).
    @discardableResult
    static func walkMember(_ raw: UnsafeRawBufferPointer, header: ManifestHeader, name: String, index: Int,
                           _ body: (ManifestEntry, UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Void) throws -> [UInt8] {
        var cursor = ManifestMemberCursor()
        while true {
            let item: (entry: ManifestEntry, link: Range<Int>)?
            do { item = try cursor.next(raw) } catch { throw Manifest.damaged(name, "\(error) in member \(index)") }
            guard let item else { break }
            try cursor.path.withUnsafeBytes { path in
                guard cursor.followsPrevious else { throw Manifest.damaged(name, "entries out of order at \(displayPath(Array(path)))") }
                if let why = header.badArchiveReference(item.entry, path: path) { throw Manifest.damaged(name, why) }
                try body(item.entry, path, UnsafeRawBufferPointer(rebasing: raw[item.link]))
            }
        }
        return cursor.pathCopy
    }
}

/// Reads the entries of one inflated format-3 member in order: each is the 128-byte record,
/// the part of its path not shared with the previous entry of the member, and its link.
struct ManifestMemberCursor {
    /// The full path of the entry `next` returned last. Kept by the cursor alone, so the next
    /// entry edits it in place; a caller that keeps a path takes `pathCopy`.
    private(set) var path: [UInt8] = []

    /// `path` in a buffer of its own, exactly its size. Holding `path` itself would make the
    /// next entry copy the cursor's buffer, capacity and all (it only grows), and every entry a
    /// restore keeps in flight would carry that capacity.
    var pathCopy: [UInt8] {
        [UInt8](unsafeUninitializedCapacity: path.count) { buf, n in
            n = path.withUnsafeBufferPointer { buf.initialize(from: $0).1 }
        }
    }
    private(set) var position = 0
    private var started = false
    /// Whether the entry `next` returned last sorts after the one before it in component order
    /// (true for a member's first entry). Compared on the bytes after the shared prefix only.
    private(set) var followsPrevious = true
    /// Whether the entry `next` returned last is the member's first.
    private(set) var atMemberStart = true

    /// The next entry (its path in `path`, its link as a range of `bytes`); nil at the end.
    /// - Throws: a short reason when the member is malformed.
    mutating func next(_ bytes: UnsafeRawBufferPointer) throws -> (entry: ManifestEntry, link: Range<Int>)? {
        guard position < bytes.count else { return nil }
        let rs = ManifestTable.recordSize
        guard bytes.count - position >= rs else { throw MemberProblem(why: "entry cut at a member's end") }
        var e = ManifestTable.decode(bytes, at: position)
        position += rs
        let shared = Int(e.pathOffset), rest = Int(e.pathLength), linkLength = Int(e.linkLength)
        guard shared <= path.count, started || shared == 0, rest <= Manifest.maxNameLength,
              linkLength <= Manifest.maxNameLength, shared + rest > 0, bytes.count - position >= rest + linkLength else {
            throw MemberProblem(why: "malformed entry")
        }
        atMemberStart = !started
        if started {
            let added = UnsafeRawBufferPointer(rebasing: bytes[position ..< position + rest])
            followsPrevious = path.withUnsafeBytes { comparePaths(UnsafeRawBufferPointer(rebasing: $0[shared...]), added) } < 0
        }
        started = true
        path.removeSubrange(shared...)
        path.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[position ..< position + rest]))
        position += rest
        let link = position ..< position + linkLength
        position += linkLength
        e.pathOffset = 0; e.linkOffset = 0
        e.pathLength = UInt32(path.count)
        return (e, link)
    }
}

extension ManifestTable {
    /// Checks that this member's first entry sorts after `previous`'s last (members of one
    /// manifest read one by one).
    package func checkFollows(_ previous: ManifestTable, name: String) throws {
        guard count > 0, previous.count > 0 else { return }
        let c = previous.withPath(previous.entry(previous.count - 1)) { a in withPath(entry(0)) { comparePaths(a, $0) } }
        guard c < 0 else { throw Manifest.damaged(name, "entries out of order at \(displayPath(pathBytes(entry(0))))") }
    }
}

extension ManifestHeader {
    /// Why an entry's archive index is wrong (one the header does not list), or nil.
    func badArchiveReference(_ e: ManifestEntry, path: [UInt8]) -> String? {
        path.withUnsafeBytes { badArchiveReference(e, path: $0) }
    }

    func badArchiveReference(_ e: ManifestEntry, path: UnsafeRawBufferPointer) -> String? {
        guard e.archive != ManifestEntry.noArchive, archiveID(e.archive) == nil else { return nil }
        return "entry \(displayPath(Array(path))) names archive #\(e.archive), which the header does not list"
    }
}
