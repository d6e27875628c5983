// File contents and xattrs for the mount, read lazily from the archives.
//
// An entry's tar header is parsed by the one tar reader (`TarReader`, started at the gzip
// member and offset the manifest names): path, type, size and sparse map are checked against
// the manifest, xattrs come from its pax records. The content is then a byte range of the
// decompressed tar stream, read by whole gzip members: a read decompresses only the members
// holding the bytes asked for (each checked by its CRC-32), members are kept in a cache bounded
// by bytes, and a sequential reader has the next members decompressed ahead of it. Member
// starts are learnt by walking from the entry's first member (the archive has no index), and
// kept per open file, so a jump back costs nothing and a jump ahead decompresses what lies
// between once.
//
// Integrity: a file up to `verifyWholeBelow` is read whole when opened and checked against the
// manifest's SHA-256 (a sparse file's: the `SparseHash` of its map and data) before any byte is
// handed out; a larger one is hashed as it is read from start to end, and the read that
// completes it fails (EIO) on a mismatch, as does every later open of it (the kernel keeps the
// pages already read, so a second reader would otherwise get them unchecked); random reads of
// a large file rely on the members' CRC-32.
import Archive
import Backup
import Restore
import FoundationEssentials
import Glibc
import Gzip
import Storage
import Support
import Synchronization

/// Where an entry's tar header is, and what the manifest says of it.
package struct ArchivePlace: Sendable, Hashable {
    package var set: String
    package var archive: String
    package var member: UInt64
    package var skip: UInt64
    package var path: [UInt8]
    package var type: ManifestEntryType
    package var size: UInt64
    package var sha256: Digest
    package var hasXattrs: Bool

    var label: String { "\(set)/\(archive).tar.gz" }
}

/// One open regular file of the mount.
package final class OpenFile: Sendable {
    package let place: ArchivePlace
    let archive: ArchiveHandle
    /// Tar offset (from the start of the entry's first member) of the content's first byte.
    let dataStart: UInt64
    /// Data regions in file order (one region for a file that is not sparse).
    let regions: [SparseRegion]
    /// A sparse member: the manifest holds its `SparseHash`, over its regions' data only.
    let sparse: Bool
    /// The whole content, when small enough to be read and checked at open.
    let whole: [UInt8]?
    private let walk: Mutex<MemberWalk>
    private let hashing: Mutex<HashProgress>

    init(place: ArchivePlace, archive: ArchiveHandle, dataStart: UInt64, sparse: [SparseRegion]?, whole: [UInt8]?) {
        self.place = place; self.archive = archive; self.dataStart = dataStart; self.whole = whole
        regions = sparse ?? [SparseRegion(offset: 0, length: place.size)]
        self.sparse = sparse != nil
        walk = Mutex(MemberWalk(known: [(0, place.member, nil)]))
        var progress = HashProgress()
        if whole == nil {
            if let sparse { progress.sparseHasher = SparseHash(map: sparse, realSize: place.size) } else { progress.hasher = SHA256Hasher() }
        }
        hashing = Mutex(progress)
    }

    /// The gzip members from the entry's first one, as far as they were decoded: tar offset
    /// (from the first one's start), compressed offset, and length once known.
    struct MemberWalk {
        var known: [(tar: UInt64, compressed: UInt64, length: UInt64?)]
        var lastRead: UInt64 = 0
    }

    /// The known member holding tar offset `t` (index, tar start, compressed offset), or the
    /// last known one (whose length may be unknown) when `t` lies beyond what is known.
    fileprivate func member(near t: UInt64) -> (index: Int, tar: UInt64, compressed: UInt64, holds: Bool) {
        walk.withLock { w in
            var lo = 0, hi = w.known.count
            while lo < hi { let mid = (lo + hi) / 2; if w.known[mid].tar <= t { lo = mid + 1 } else { hi = mid } }
            let m = w.known[max(lo - 1, 0)]
            return (max(lo - 1, 0), m.tar, m.compressed, m.length.map { t < m.tar + $0 } ?? false)
        }
    }

    /// Records member `index`'s length and where the next one starts.
    fileprivate func learnt(_ index: Int, length: UInt64, next: UInt64) {
        walk.withLock { w in
            guard w.known[index].length == nil else { return }
            w.known[index].length = length
            if index == w.known.count - 1 { w.known.append((w.known[index].tar + length, next, nil)) }
        }
    }

    /// Notes a read's end; true when it started where the previous one ended (sequential).
    fileprivate func noteRead(_ offset: UInt64, _ end: UInt64) -> Bool {
        walk.withLock { w in
            let sequential = offset == w.lastRead
            w.lastRead = end
            return sequential
        }
    }

    /// How far a large file was hashed, reading in order from its start.
    struct HashProgress: ~Copyable {
        var hasher: SHA256Hasher?
        /// Instead of `hasher` for a sparse file: fed its regions' bytes, not the holes.
        var sparseHasher: SparseHash?
        var upTo: UInt64 = 0
        var bad: String?
    }

    /// Hashes bytes read in order from the start; the error when the complete file mismatches.
    fileprivate func hashed(_ offset: UInt64, _ bytes: [UInt8]) -> String? {
        hashing.withLock { h in
            if let bad = h.bad { return bad }
            guard h.hasher != nil || h.sparseHasher != nil, offset == h.upTo else { return nil }
            let end = offset + UInt64(bytes.count)
            if h.hasher != nil {
                h.hasher?.update(bytes)
            } else {
                bytes.withUnsafeBytes { b in
                    for r in regions {
                        let lo = max(offset, r.offset), hi = min(end, r.offset + r.length)
                        if lo < hi { h.sparseHasher?.update(UnsafeRawBufferPointer(rebasing: b[Int(lo - offset) ..< Int(hi - offset)])) }
                    }
                }
            }
            h.upTo = end
            guard h.upTo == place.size else { return nil }
            let got: [UInt8]
            if let hasher = h.hasher.take() { got = hasher.finalize() } else if let sh = h.sparseHasher.take() { got = sh.finalize() } else { return nil }
            if Digest(got) != place.sha256 {
                h.bad = "\(NameEscape.escape(place.path)): the content read from \(place.label) does not have the manifest's SHA-256; the backup is damaged. Run `hs-backup verify`."
            }
            return h.bad
        }
    }
}

/// An archive file opened for reads from any thread.
final class ArchiveHandle: Sendable {
    let label: String
    let reader: SharedDestinationReader
    var size: UInt64 { reader.size }
    init(label: String, reader: SharedDestinationReader) { self.label = label; self.reader = reader }
    var source: ArchiveSource { ArchiveSource(size: reader.size, displayName: label) { [reader] in try reader.read(at: $0, count: $1) } }
}

package final class ArchiveContent: Sendable {
    package let destination: any Destination
    /// The identities an encrypted set's archives are decrypted with (`--identity`).
    package let keys: SetKeys
    private let handles = Mutex<[String: ArchiveHandle]>([:])
    private let members: ByteBoundedCache<MemberKey, DecodedMember>
    private let xattrCache: ByteBoundedCache<ArchivePlace, [(name: [UInt8], value: [UInt8])]>
    /// Members being decompressed (a second reader of one waits for it).
    private let inFlight = Monitor(Set<MemberKey>())
    private let readAhead = WorkPool(threads: 2, maxQueuedItems: 64, name: "hs-mount-read-ahead")
    private let readAheadQueued = Mutex(0)
    /// Files whose content was found not to match the manifest, and why: opened again, they
    /// fail at once rather than hand out unchecked what the kernel did not keep.
    private let knownBad = Mutex<[ArchivePlace: String]>([:])
    /// Files up to this size are read whole and checked when opened.
    package static let verifyWholeBelow: UInt64 = 1 << 20
    /// Members decompressed ahead of a sequential reader.
    package static let readAheadMembers = 2

    struct MemberKey: Hashable, Sendable {
        var archive: String
        var offset: UInt64
    }

    struct DecodedMember: Sendable {
        var bytes: [UInt8]
        /// Compressed offset of the member that follows.
        var next: UInt64
    }

    package init(destination: any Destination, keys: SetKeys = SetKeys(), cacheBytes: Int) {
        self.destination = destination
        self.keys = keys
        members = ByteBoundedCache(maxBytes: cacheBytes)
        xattrCache = ByteBoundedCache(maxBytes: 4 << 20)
    }

    func handle(set: String, archive: String) throws -> ArchiveHandle {
        let key = set + "/" + archive
        if let h = handles.withLock({ $0[key] }) { return h }
        let bs = BackupSet(destination: destination, name: set, keys: keys)
        let r = SharedDestinationReader(try bs.openArchive(archive))
        let h = ArchiveHandle(label: "\(bs.location)/\(archive).tar.gz", reader: r)
        return handles.withLock { hs in
            if let existing = hs[key] { r.close(); return existing }
            hs[key] = h
            return h
        }
    }

    /// Parses the entry's tar header at its place and checks it against the manifest.
    private func header(_ p: ArchivePlace) throws -> (entry: TarEntry, dataStart: UInt64, handle: ArchiveHandle, reader: TarReader) {
        let h = try handle(set: p.set, archive: p.archive)
        let reader = try TarReader(source: h.source, start: ExtractStart(compressedOffset: p.member, uncompressedOffset: 0, firstHeaderOffset: p.skip))
        do {
            guard let e = try reader.next() else { throw ToolError("\(h.label) ends where the manifest expects \(NameEscape.escape(p.path))") }
            let sameType = (e.type == .file) == (p.type == .file || p.type == .hardlink)
            guard e.path == p.path || RestorePath.join(RestorePath.split(e.path)) == p.path, sameType,
                  p.type != .file || e.size == p.size else {
                throw ToolError("\(h.label) does not hold \(NameEscape.escape(p.path)) where the manifest says (found \(NameEscape.escape(e.path))); "
                                + "the backup is damaged. Run `hs-backup verify`.")
            }
            return (e, reader.position, h, reader)
        } catch {
            reader.close()
            throw error
        }
    }

    /// An entry's xattrs and ACLs, from the pax records of its tar header.
    func xattrs(_ p: ArchivePlace) throws(MountFailure) -> [(name: [UInt8], value: [UInt8])] {
        if let x = xattrCache.get(p) { return x }
        do {
            let (e, _, _, reader) = try header(p)
            reader.close()
            xattrCache.put(p, e.xattrs, bytes: e.xattrs.reduce(64) { $0 + $1.name.count + $1.value.count })
            return e.xattrs
        } catch { throw .io(HumanError.describe(error)) }
    }

    /// Opens a regular file: its header is parsed and checked; a small file is read whole and
    /// checked against the manifest's SHA-256.
    package func open(_ p: ArchivePlace) throws(MountFailure) -> OpenFile {
        if let bad = knownBad.withLock({ $0[p] }) { throw .io(bad) }
        do {
            let (e, dataStart, h, reader) = try header(p)
            defer { reader.close() }
            var whole: [UInt8]?
            if p.size <= Self.verifyWholeBelow {
                var bytes = [UInt8](repeating: 0, count: Int(p.size))
                try reader.readContent { off, chunk in
                    guard off + UInt64(chunk.count) <= p.size else { throw ToolError("\(h.label): content of \(NameEscape.escape(p.path)) runs past its size") }
                    bytes.withUnsafeMutableBytes { UnsafeMutableRawBufferPointer(rebasing: $0[Int(off)...]).copyMemory(from: chunk) }
                }
                guard Digest(Self.contentHash(bytes, sparse: e.sparse)) == p.sha256 else {
                    throw ToolError("\(NameEscape.escape(p.path)): the content in \(h.label) does not have the manifest's SHA-256; the backup is damaged. Run `hs-backup verify`.")
                }
                whole = bytes
            }
            return OpenFile(place: p, archive: h, dataStart: dataStart, sparse: e.sparse, whole: whole)
        } catch { throw .io(Self.naming(p, error)) }
    }

    /// The hash the manifest holds for a file's whole content: its SHA-256, or for a sparse
    /// file the `SparseHash` of its map and the bytes of its regions.
    static func contentHash(_ content: [UInt8], sparse: [SparseRegion]?) -> [UInt8] {
        guard let sparse else { return SHA256Hasher.hash(content) }
        var h = SparseHash(map: sparse, realSize: UInt64(content.count))
        content.withUnsafeBytes { b in
            for r in sparse where r.length > 0 { h.update(UnsafeRawBufferPointer(rebasing: b[Int(r.offset) ..< Int(r.offset + r.length)])) }
        }
        return h.finalize()
    }

    /// A failure's message, naming the file (once) and its backup set.
    static func naming(_ p: ArchivePlace, _ error: any Error) -> String {
        let m = HumanError.describe(error)
        let name = NameEscape.escape(p.path)
        return m.contains(name) ? m : "\(p.set): \(name): \(m)"
    }

    /// Up to `count` bytes of the file at `offset` (fewer only at its end).
    package func read(_ f: OpenFile, offset: UInt64, count: Int) throws(MountFailure) -> [UInt8] {
        let size = f.place.size
        guard offset < size, count > 0 else { return [] }
        let end = min(size, offset + UInt64(count))
        if let w = f.whole { return Array(w[Int(offset) ..< Int(end)]) }
        var out = [UInt8](repeating: 0, count: Int(end - offset))   // holes stay zeros
        do {
            // The data runs of the regions that overlap [offset, end).
            var dataBefore: UInt64 = 0
            for r in f.regions {
                defer { dataBefore += r.length }
                let lo = max(offset, r.offset), hi = min(end, r.offset + r.length)
                guard lo < hi else { continue }
                try copyStream(f, from: f.dataStart + dataBefore + (lo - r.offset), count: Int(hi - lo), into: &out, at: Int(lo - offset))
            }
        } catch let e as MountFailure { throw e } catch { throw .io(Self.naming(f.place, error)) }
        if f.noteRead(offset, end) { scheduleReadAhead(f, after: f.dataStart + offset) }
        if let bad = f.hashed(offset, out) {
            knownBad.withLock { $0[f.place] = bad }
            throw .io(bad)
        }
        return out
    }

    /// Copies `count` bytes of the decompressed stream at tar offset `t` (from the entry's
    /// first member) into `out` at `at`.
    private func copyStream(_ f: OpenFile, from t: UInt64, count: Int, into out: inout [UInt8], at: Int) throws {
        var t = t, done = 0
        while done < count {
            let (mt, m) = try member(f, containing: t)
            let inside = Int(t - mt)
            guard inside < m.bytes.count else { throw ToolError("\(f.archive.label) ends inside \(NameEscape.escape(f.place.path))") }
            let n = min(count - done, m.bytes.count - inside)
            out.withUnsafeMutableBytes { o in
                m.bytes.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: o[(at + done) ..< (at + done + n)]).copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[inside ..< inside + n])) }
            }
            done += n
            t += UInt64(n)
        }
    }

    /// The decoded member holding tar offset `t` of `f`'s stream, walking on from the last
    /// known member when `t` lies beyond it.
    private func member(_ f: OpenFile, containing t: UInt64) throws -> (tar: UInt64, member: DecodedMember) {
        while true {
            let k = f.member(near: t)
            guard k.compressed < f.archive.size else { throw ToolError("\(f.archive.label) ends inside \(NameEscape.escape(f.place.path))") }
            let m = try decoded(f.archive, k.compressed)
            if k.holds { return (k.tar, m) }
            guard !m.bytes.isEmpty else { throw ToolError("\(f.archive.label): an empty gzip member inside \(NameEscape.escape(f.place.path))") }
            f.learnt(k.index, length: UInt64(m.bytes.count), next: m.next)
            if t < k.tar + UInt64(m.bytes.count) { return (k.tar, m) }
        }
    }

    /// The gzip member at compressed offset `offset` of an archive, decompressed (cached;
    /// concurrent callers for one member wait for one decompression).
    func decoded(_ h: ArchiveHandle, _ offset: UInt64) throws -> DecodedMember {
        let key = MemberKey(archive: h.label, offset: offset)
        if let m = members.get(key) { return m }
        // Wait while another thread decompresses it, then claim it.
        inFlight.withLock(until: { !$0.contains(key) }) { _ = $0.insert(key) }
        defer {
            inFlight.withLock { _ = $0.remove(key) }
            inFlight.wakeAll()
        }
        if let m = members.get(key) { return m }
        let m = try Self.decode(h, offset)
        members.put(key, m, bytes: m.bytes.count + 64)
        return m
    }

    /// Decompresses one gzip member (libdeflate whole, or zlib streaming for one it cannot take).
    private static func decode(_ h: ArchiveHandle, _ offset: UInt64) throws -> DecodedMember {
        let want = Int(min(UInt64(4 << 20) + 65536, h.size - offset))
        let input = try h.reader.read(at: offset, count: want)
        if let d = input.withUnsafeBytes({ GzipMemberDecoder(maxOutput: 8 << 20).decode($0) }) {
            return DecodedMember(bytes: d.output, next: offset + UInt64(d.consumed))
        }
        // A member larger than the room, or damage: the streaming decoder says which.
        var out: [UInt8] = []
        var consumed: UInt64?
        let d = GzipDecoder()
        d.onMemberEnd = { b in if consumed == nil { consumed = b.compressedLength } }
        var at = offset
        while consumed == nil && at < h.size {
            let chunk = try h.reader.read(at: at, count: 1 << 20)
            if chunk.isEmpty { break }
            try chunk.withUnsafeBytes { raw in try d.feed(raw) { if consumed == nil { out.append(contentsOf: $0) } } }
            at += UInt64(chunk.count)
            guard out.count <= 64 << 20 else { throw ToolError("\(h.label): a gzip member at \(offset) is larger than 64 MiB; this is not an hs-backup archive") }
        }
        guard let c = consumed else { throw ToolError("\(h.label) ends inside the gzip member at offset \(offset)") }
        return DecodedMember(bytes: out, next: offset + c)
    }

    /// Decompresses the members after `t` in the background (a sequential reader's next ones;
    /// skipped while enough read-ahead is queued, so a FUSE thread never waits for it).
    private func scheduleReadAhead(_ f: OpenFile, after t: UInt64) {
        let room = readAheadQueued.withLock { n -> Bool in
            guard n < 4 else { return false }
            n += 1
            return true
        }
        guard room else { return }
        _ = try? readAhead.submit { [self] in
            defer { readAheadQueued.withLock { $0 -= 1 } }
            var at = t
            for _ in 0 ..< Self.readAheadMembers {
                guard let (mt, m) = try? member(f, containing: at) else { return }
                at = mt + UInt64(m.bytes.count)
                guard at < f.dataStart + f.place.size else { return }
            }
        }
    }
}

/// Values by key, least recently used dropped past a byte bound.
final class ByteBoundedCache<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private struct State {
        var items: [Key: (value: Value, bytes: Int, used: UInt64)] = [:]
        var total = 0
        var clock: UInt64 = 0
    }
    private let state = Mutex(State())
    let maxBytes: Int

    init(maxBytes: Int) { self.maxBytes = maxBytes }

    func get(_ key: Key) -> Value? {
        state.withLock { s in
            guard var e = s.items[key] else { return nil }
            s.clock += 1
            e.used = s.clock
            s.items[key] = e
            return e.value
        }
    }

    func put(_ key: Key, _ value: Value, bytes: Int) {
        state.withLock { s in
            s.clock += 1
            if let old = s.items[key] { s.total -= old.bytes }
            s.items[key] = (value, bytes, s.clock)
            s.total += bytes
            guard s.total > maxBytes, s.items.count > 1 else { return }
            // Drop the least recently used quarter (at least enough to fit), in one sort.
            for (k, e) in s.items.sorted(by: { $0.value.used < $1.value.used }) {
                guard s.total > maxBytes * 3 / 4, s.items.count > 1 else { break }
                s.total -= e.bytes
                s.items.removeValue(forKey: k)
            }
        }
    }
}
