// Manifest format 3: written and read as a stream, so a backup or a restore of any number of
// files holds only a few members of the manifest in memory.
//
// File layout:
//   "HSMANIFEST3\n"
//   body: gzip members, each holding whole entries (about 1 MiB uncompressed each)
//   header JSON (`ManifestHeader`, with `body` listing every member: uncompressed length,
//     compressed length, SHA-256 of the uncompressed bytes)
//   u64 LE  offset of the header JSON
//   u32 LE  length of the header JSON
//   32 bytes SHA-256 of the header JSON
//   "HSMEND3\n"
// The header is at the end because what it says (counts, members) is known only then; a
// reader finds it from the file's size. Every member is checked against its SHA-256 as it is
// inflated, the header against its own.
//
// Entry (in path order, component order as `comparePaths`): the 128-byte record of format 2
// (`ManifestTable`'s layout) whose first four fields mean: bytes of the path shared with the
// previous entry's path in the same member (0 for a member's first entry), length of the rest
// of the path, 0, length of the link; then the rest of the path, then the link bytes (a
// symlink's target, or a hardlink's target path, in full). A member is cut after an entry
// once it holds 1 MiB and the entry's path hash says so (or at 2 MiB): the cut points depend
// on the entries, not on their position, so after a change the members of an incremental
// line up with the previous manifest's again and are copied from it instead of compressed.
#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import Dispatch
import Archive
import Gzip
import Support
import Synchronization

/// One manifest entry with its path and link bytes (the archive as an index).
package struct ManifestRecord: Sendable, Equatable {
    package var entry: ManifestEntry
    package var path: [UInt8]
    package var link: [UInt8]

    package init(entry: ManifestEntry, path: [UInt8], link: [UInt8] = []) {
        self.entry = entry; self.path = path; self.link = link
    }
}

extension Manifest {
    package static let magic3 = Array("HSMANIFEST3\n".utf8)
    static let endMagic3 = Array("HSMEND3\n".utf8)
    static let trailerSize = 8 + 4 + 32 + 8
    /// A member is cut at the next entry whose path hash allows it once it holds this much...
    static let memberTarget = 1 << 20
    /// ...and at the next entry once it holds this much.
    static let memberCap = 2 << 20
    /// Longest path or link an entry may have (Linux allows any length of relative path below
    /// the 4096-byte PATH_MAX limit per call; a longer one means a damaged manifest).
    static let maxNameLength = 1 << 20

    /// The header of a format-3 manifest from its trailer. `read(offset, count)` reads the file.
    static func readHeader3(size: UInt64, name: String, read: (UInt64, Int) throws -> [UInt8]) throws -> (ManifestHeader, bodyEnd: UInt64) {
        guard size >= UInt64(magic3.count + trailerSize) else { throw damaged(name, "too short") }
        let t = try readFully(read, at: size - UInt64(trailerSize), count: trailerSize)
        guard t.count == trailerSize, Array(t[44 ..< 52]) == endMagic3 else { throw damaged(name, "no end marker: the file is truncated") }
        let jsonOffset = readLE64(t, 0)
        let jsonLength = UInt64(readLE32(t, 8))
        guard jsonOffset >= UInt64(magic3.count), jsonLength > 0, jsonLength < 256 << 20,
              jsonOffset + jsonLength == size - UInt64(trailerSize) else { throw damaged(name, "header place") }
        let json = try readFully(read, at: jsonOffset, count: Int(jsonLength))
        guard json.count == Int(jsonLength), SHA256Hasher.hash(json).elementsEqual(t[12 ..< 44]) else {
            throw damaged(name, "header checksum mismatch")
        }
        let header: ManifestHeader
        do { header = try JSONDecoder().decode(ManifestHeader.self, from: Data(json)) } catch {
            throw damaged(name, "header JSON: \(error)")
        }
        guard header.format <= 3 else {
            throw ManifestError(.newerFormat(format: header.format, toolVersion: header.toolVersion), name: name)
        }
        guard header.format == 3 else { throw damaged(name, "format \(header.format) in a format-3 file") }
        return (header, jsonOffset)
    }

    static func readFully(_ read: (UInt64, Int) throws -> [UInt8], at offset: UInt64, count: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        while out.count < count {
            let chunk = try read(offset + UInt64(out.count), count - out.count)
            if chunk.isEmpty { break }
            out += chunk
        }
        return out
    }
}

/// Compressed members of an earlier manifest that a new one may copy (same uncompressed
/// length and SHA-256) instead of compressing its own bytes again.
package protocol ManifestMemberSource: AnyObject, Sendable {
    func compressedMember(sha256: String, length: Int) -> [UInt8]?
}

/// The members of a manifest file held in memory (`Manifest.encoded(reusing:)`).
final class ManifestFileMembers: ManifestMemberSource, @unchecked Sendable {
    private let file: [UInt8]
    private var bySHA: [String: (Range<Int>, Int)] = [:]
    init?(manifest: Manifest) {
        guard let file = manifest.encodedFile, manifest.header.format == 3, let body = manifest.header.body else { return nil }
        self.file = file
        var offset = Manifest.magic3.count
        for c in body { bySHA[c.sha256] = (offset ..< offset + c.compressed, c.length); offset += c.compressed }
    }
    func compressedMember(sha256: String, length: Int) -> [UInt8]? {
        guard let (r, l) = bySHA[sha256], l == length, r.upperBound <= file.count else { return nil }
        return Array(file[r])
    }
}

/// Writes a format-3 manifest as a stream: entries in path order, then `finish(header:)`.
/// Members are hashed and compressed (or copied from `parent`) on worker threads (an
/// `OrderedStage`) and passed to `sink` in order, from the calling thread. Memory: a few members.
package final class ManifestWriter {
    private typealias Member = (bytes: [UInt8], chunk: ManifestChunk, copied: Bool)
    private let sink: ([UInt8]) throws -> Void
    private let parent: (any ManifestMemberSource)?
    /// The threads that hash and compress members, started at the first member that is not
    /// also the last: a manifest of one member (a small tree) is done on the calling thread,
    /// and no thread is started for it (issue 23: start-up of a one-file backup).
    private var pipeline: (pool: WorkPool, stage: OrderedStage<Member>)?
    private let threads: Int
    private var buffer: [UInt8] = []
    private var chunks: [ManifestChunk] = []
    private var offset: UInt64 = 0
    private var hasher = SHA256Hasher()
    private var lastPath: [UInt8] = []
    private var haveLast = false
    /// Entries written so far.
    package private(set) var count = 0
    /// Members copied from the parent (not compressed again).
    package private(set) var copiedMembers = 0

    package init(sink: @escaping ([UInt8]) throws -> Void, parent: (any ManifestMemberSource)? = nil,
                 threads: Int = Sys.processorCount) {
        self.sink = sink
        self.parent = parent
        self.threads = max(1, threads)
        buffer.reserveCapacity(Manifest.memberCap + 4096)
    }

    deinit { pipeline?.pool.close() }

    private func startedStage() -> OrderedStage<Member> {
        if let pipeline { return pipeline.stage }
        let pool = WorkPool(threads: threads, name: "hs-manifest")
        let stage = OrderedStage<Member>(pool: pool, window: max(2, threads) * 2, maxBytes: 6 << 20)
        pipeline = (pool, stage)
        return stage
    }

    private var wroteMagic = false
    /// The file starts with the magic, written with the first bytes that follow it.
    private func writeMagicIfNeeded() throws {
        guard !wroteMagic else { return }
        wroteMagic = true
        try sink(Manifest.magic3)
        offset += UInt64(Manifest.magic3.count)
    }

    private func emit(_ bytes: [UInt8]) throws {
        try writeMagicIfNeeded()
        try sink(bytes)
        offset += UInt64(bytes.count)
    }

    /// Appends one entry (its `pathOffset`/`pathLength`/`linkOffset`/`linkLength` are ignored).
    /// Entries must come in strictly increasing path order.
    package func append(_ e: ManifestEntry, path: UnsafeRawBufferPointer, link: UnsafeRawBufferPointer) throws {
        precondition(path.count > 0)
        // One pass over the path and the one before: the bytes they share, and their order
        // (`comparePaths`: the first differing byte, `/` lowest; else the shorter first).
        var common = 0
        let follows = lastPath.withUnsafeBytes { p -> Bool in
            let limit = min(p.count, path.count)
            while common < limit && p[common] == path[common] { common += 1 }
            guard haveLast else { return true }
            if common < limit {
                let x = p[common] == 0x2F ? 0 : p[common], y = path[common] == 0x2F ? 0 : path[common]
                return x < y
            }
            return p.count < path.count
        }
        guard follows else { throw OutOfOrder(path: displayPath(path)) }
        haveLast = true
        // A member's first entry shares nothing (members are read on their own).
        let shared = buffer.isEmpty ? 0 : common
        lastPath.removeSubrange(common...)
        lastPath.append(contentsOf: UnsafeRawBufferPointer(rebasing: path[common...]))
        var r = e
        r.pathOffset = UInt32(shared); r.pathLength = UInt32(path.count - shared)
        r.linkOffset = 0; r.linkLength = UInt32(link.count)
        let at = buffer.count
        buffer.append(contentsOf: ManifestTable.zeroRecord)
        buffer.withUnsafeMutableBytes { ManifestTable.encode(r, into: $0, at: at) }
        buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: path[shared...]))
        buffer.append(contentsOf: link)
        count += 1
        if buffer.count >= Manifest.memberCap || (buffer.count >= Manifest.memberTarget && Self.cutHash(path) & 31 == 0) {
            try cut()
        }
    }

    package func append(_ r: ManifestRecord) throws {
        try r.path.withUnsafeBytes { p in try r.link.withUnsafeBytes { l in try append(r.entry, path: p, link: l) } }
    }

    static func cutHash(_ path: UnsafeRawBufferPointer) -> UInt32 {
        var h: UInt32 = 2166136261
        for b in path { h = (h ^ UInt32(b)) &* 16777619 }
        return h >> 7
    }

    /// One member: hashed, then copied from the parent or compressed.
    private static func member(_ bytes: [UInt8], parent: (any ManifestMemberSource)?) -> Member {
        let sha = bytes.withUnsafeBytes { hexString(SHA256Hasher.hash($0)) }
        var out: [UInt8]
        var copied = false
        if let p = parent?.compressedMember(sha256: sha, length: bytes.count) {
            out = p; copied = true
        } else {
            out = []
            bytes.withUnsafeBytes { GzipMemberEncoder().encodeMember($0, level: .deflate(1), into: &out) }
        }
        return (out, ManifestChunk(length: bytes.count, compressed: out.count, sha256: sha), copied)
    }

    /// Ends the current member. `last`: no entry follows (from `finish`); the manifest's only
    /// member is then made here, without threads.
    private func cut(last: Bool = false) throws {
        guard !buffer.isEmpty else { return }
        let bytes = buffer
        buffer.removeAll(keepingCapacity: true)
        let parent = self.parent
        if last && pipeline == nil {
            try write(Self.member(bytes, parent: parent))
            return
        }
        let stage = startedStage()
        while stage.isFull { if let m = try stage.next() { try write(m) } }
        try stage.submit(bytes: bytes.count) { Self.member(bytes, parent: parent) }
        while let m = try stage.nextIfReady() { try write(m) }
    }

    /// Writes one finished member (in order).
    private func write(_ m: Member) throws {
        try emit(m.bytes)
        chunks.append(m.chunk)
        if m.copied { copiedMembers += 1 }
    }

    /// Writes the remaining members and the header (with `body` and `format` filled in).
    /// Returns the header as written.
    @discardableResult
    package func finish(header: ManifestHeader) throws -> ManifestHeader {
        try cut(last: true)
        if let pipeline {
            while let m = try pipeline.stage.next() { try write(m) }
            pipeline.pool.close()
        }
        var h = header
        h.format = 3
        h.body = chunks
        h.entries = count
        let json = try h.sortedKeysJSON()  // JSONEncoder's bytes (.sortedKeys), without it
        try writeMagicIfNeeded()  // an empty manifest: the magic first, so `offset` counts it
        var trailer = json
        appendLE(&trailer, offset)
        appendLE(&trailer, UInt32(json.count))
        trailer += SHA256Hasher.hash(json)
        trailer += Manifest.endMagic3
        try emit(trailer)
        return h
    }
}

/// Reads the entries of a manifest of any format in path order, one at a time. Format 3 is
/// streamed (the next member is inflated on another thread while this one is read); formats
/// 1 and 2 (0.1.x, 0.2.0) are loaded whole.
package final class ManifestReader: ManifestMemberSource, @unchecked Sendable {
    package let header: ManifestHeader
    let name: String
    private let read: (UInt64, Int) throws -> [UInt8]
    // Format 3.
    private var members: [(offset: UInt64, chunk: ManifestChunk)] = []
    private var nextMember = 0
    private var current: [UInt8] = []
    private var cursor = ManifestMemberCursor()
    private var lastPath: [UInt8] = []
    private var started = false
    private var entriesRead = 0
    private var ahead: (index: Int, group: DispatchGroup, box: InflateBox)?
    /// Keep the compressed bytes of the last few members read, for `compressedMember` (a
    /// backup's previous manifest: the new one copies its unchanged members).
    package var keepsCompressedMembers = false
    /// Compressed bytes of the last few members read (for `compressedMember`).
    private let cache = Mutex([(sha: String, length: Int, bytes: [UInt8])]())
    // Formats 1-2.
    private var legacy: Manifest?
    private var legacyIndex = 0

    /// Opens a manifest through `read` (a file of `size` bytes). `name` is used in errors.
    package init(size: UInt64, name: String, read: @escaping (UInt64, Int) throws -> [UInt8],
                 onClose: (() -> Void)? = nil) throws {
        self.name = name
        self.read = read
        self.onClose = onClose
        switch try Manifest.open(size: size, name: name, read: read) {
        case .members(let h, let places):
            header = h
            members = places
        case .whole(let m):
            header = m.header
            legacy = m
        }
    }

    /// A manifest held in memory.
    package convenience init(bytes: [UInt8], name: String) throws {
        try self.init(size: UInt64(bytes.count), name: name) { off, count in
            let s = Int(min(off, UInt64(bytes.count)))
            return Array(bytes[s ..< min(bytes.count, s + count)])
        }
    }

    private var onClose: (() -> Void)?

    deinit { close() }

    /// Releases the file (also done when the reader goes away).
    package func close() {
        ahead?.group.wait()
        ahead = nil
        onClose?()
        onClose = nil
    }

    /// The archive id an entry's `archive` field names (nil: none).
    package func archiveID(_ e: ManifestEntry) -> String? {
        header.archiveID(e.archive)
    }

    /// The next entry in path order, or nil at the end. Throws when the manifest is damaged
    /// (a member does not inflate or match its SHA-256, an entry is malformed or out of order).
    package func next() throws -> ManifestRecord? {
        do { return try nextRecord() } catch {
            if failure == nil { failure = .unreadable(error) }
            throw error
        }
    }

    /// Why `next()` failed, once it has.
    package enum ReadFailure {
        /// The bytes were read and are wrong (a damaged or tampered manifest).
        case damaged
        /// Reading failed (the NAS went away, an I/O error): the manifest may well be fine.
        case unreadable(any Error)
    }
    package private(set) var failure: ReadFailure?

    private func damage(_ why: String) -> ManifestError {
        failure = .damaged
        return Manifest.damaged(name, why)
    }

    private func nextRecord() throws -> ManifestRecord? {
        guard try advanceChecked() else { return nil }
        return withCurrent { e, path, link in
            // `Array(path)`: the cursor's path in an array of its own size, through the specialized
            // copy (`pathCopy`'s `Array(unsafeUninitializedCapacity:)` took the generic path).
            ManifestRecord(entry: e, path: legacyRecord?.path ?? Array(path), link: link.isEmpty ? [] : Array(link))
        }
    }

    /// Moves to the next entry in path order without copying it (false at the end): read it
    /// with `withCurrent` until the next call. Checked as `next()` checks (and throws as it does).
    package func advance() throws -> Bool {
        do { return try advanceChecked() } catch {
            if failure == nil { failure = .unreadable(error) }
            throw error
        }
    }

    // The entry `advance()` moved to: format 3 in `cursor` and `current`, older formats here.
    private var currentEntry = ManifestEntry()
    private var currentLink = 0 ..< 0
    private var legacyRecord: ManifestRecord?

    /// Calls `body` with the current entry, its path and its link (valid only during the call).
    package func withCurrent<R>(_ body: (ManifestEntry, _ path: UnsafeRawBufferPointer, _ link: UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        if let r = legacyRecord {
            return try r.path.withUnsafeBytes { p in try r.link.withUnsafeBytes { try body(r.entry, p, $0) } }
        }
        let link = currentLink
        return try cursor.path.withUnsafeBytes { p in
            try current.withUnsafeBytes { try body(currentEntry, p, UnsafeRawBufferPointer(rebasing: $0[link])) }
        }
    }

    private func advanceChecked() throws -> Bool {
        if let m = legacy {
            guard legacyIndex < m.table.count else { return false }
            let e = m.table.entry(legacyIndex)
            legacyIndex += 1
            legacyRecord = ManifestRecord(entry: e, path: m.table.pathBytes(e), link: Array(m.table.linkBytes(e)))
            return true
        }
        while true {
            if cursor.position >= current.count {
                // The last path of the member before: the next member's first entry must follow it.
                if !cursor.path.isEmpty { lastPath.removeAll(keepingCapacity: true); lastPath.append(contentsOf: cursor.path) }
                guard try loadNextMember() else {
                    if let n = header.entries, n != entriesRead {
                        throw damage("\(entriesRead) entries, the header says \(n)")
                    }
                    return false
                }
            }
            let item: (entry: ManifestEntry, link: Range<Int>)?
            do { item = try current.withUnsafeBytes { try cursor.next($0) } } catch {
                throw damage("\(error) in member \(nextMember - 1)")
            }
            guard let (e, linkRange) = item else { continue }
            // Within a member the cursor compared the entry with the one before; a member's
            // first entry is compared with the last of the member before.
            let follows = cursor.atMemberStart
                ? !started || lastPath.withUnsafeBytes { a in cursor.path.withUnsafeBytes { comparePaths(a, $0) } } < 0
                : cursor.followsPrevious
            guard follows else { throw damage("entries out of order at \(displayPath(cursor.path))") }
            started = true
            entriesRead += 1
            if let why = cursor.path.withUnsafeBytes({ header.badArchiveReference(e, path: $0) }) { throw damage(why) }
            currentEntry = e
            currentLink = linkRange
            return true
        }
    }

    /// The next entry with its archive as an id (what the restore side reads).
    package func nextItem() throws -> ManifestItem? {
        guard let r = try next() else { return nil }
        let e = r.entry
        return ManifestItem(path: r.path, link: r.link, type: e.type, flags: e.flags, mode: e.mode, uid: e.uid, gid: e.gid,
                            size: e.size, mtime: e.mtime, ctime: e.ctime, archive: header.archiveID(e.archive),
                            memberOffset: e.memberOffset, memberSkip: e.memberSkip, hash: e.hash, xattrHash: e.xattrHash)
    }

    private func loadNextMember() throws -> Bool {
        guard nextMember < members.count else { return false }
        let i = nextMember
        let box: InflateBox
        if let a = ahead, a.index == i {
            a.group.wait()
            box = a.box
            ahead = nil
        } else {
            box = try startInflate(i).box
            box.group.wait()
        }
        nextMember += 1
        // Read the next member's compressed bytes now and inflate it on another thread.
        if nextMember < members.count {
            let b = try startInflate(nextMember)
            ahead = (nextMember, b.box.group, b.box)
        }
        if let err = box.error { throw damage("member \(i): \(err)") }
        current = box.output
        cursor = ManifestMemberCursor()
        return true
    }

    private func startInflate(_ i: Int) throws -> (box: InflateBox, Void) {
        let m = members[i]
        let compressed = try Manifest.readFully(read, at: m.offset, count: m.chunk.compressed)
        guard compressed.count == m.chunk.compressed else { throw damage("truncated body") }
        if keepsCompressedMembers {
            cache.withLock { c in
                c.append((m.chunk.sha256, m.chunk.length, compressed))
                if c.count > 8 { c.removeFirst() }
            }
        }
        let box = InflateBox()
        let chunk = m.chunk
        box.group.enter()
        DispatchQueue.global().async {
            defer { box.group.leave() }
            do { box.output = try Manifest.inflateMember(compressed, chunk) } catch { box.error = (error as? MemberProblem)?.why ?? "\(error)" }
        }
        return (box, ())
    }

    package func compressedMember(sha256: String, length: Int) -> [UInt8]? {
        cache.withLock { $0.last(where: { $0.sha == sha256 && $0.length == length })?.bytes }
    }
}

private final class InflateBox: @unchecked Sendable {
    let group = DispatchGroup()
    var output: [UInt8] = []
    var error: String?
}

extension ManifestHeader {
    /// The archive id that an entry's archive index names in this manifest (nil: none, or an
    /// index out of range). Format 3 indexes `archiveSlots`, older formats `archives`.
    package func archiveID(_ index: UInt32) -> String? {
        guard index != ManifestEntry.noArchive else { return nil }
        let list = archiveSlots ?? archives
        guard Int(index) < list.count, !list[Int(index)].isEmpty else { return nil }
        return list[Int(index)]
    }

    /// Archive ids name files in the set's directory: plain names only, and every slot an entry
    /// may use is one of the listed archives (an altered manifest cannot point a restore at
    /// another file of the destination).
    func checkArchives(_ name: String) throws {
        func plain(_ a: String) -> Bool {
            !a.isEmpty && a != "." && a != ".." && a.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != 0x2F && $0 != 0x5C }
        }
        // The names are read from the file: shown escaped.
        for a in archives where !plain(a) { throw Manifest.damaged(name, "archive id '\(NameEscape.escape(a))' is not a plain name") }
        if let slots = archiveSlots {
            for a in archives where !slots.contains(a) { throw Manifest.damaged(name, "archive \(a) is not in the archive slots") }
            for a in slots where !a.isEmpty && !archives.contains(a) { throw Manifest.damaged(name, "archive slot \(NameEscape.escape(a)) is not a listed archive") }
        }
    }
}

/// A body member that does not inflate to what the header records, or an entry in it that
/// does not decode (the reader says which manifest and member).
struct MemberProblem: Error, CustomStringConvertible {
    var why: String
    var description: String { why }
}

/// `ManifestWriter.append` was given entries out of path order (a bug of the caller).
package struct OutOfOrder: Error, CustomStringConvertible {
    package var path: String
    package var description: String { "manifest entries out of order at \(path) (a bug: please report it)" }
}
