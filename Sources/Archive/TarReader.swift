import FoundationEssentials
import Glibc
import Support

/// Bounds on what a (hostile) archive may make the reader hold in memory.
package struct TarLimits: Sendable {
    /// Largest pax / GNU long-name / GNU sparse-map data accepted (pax headers carrying large
    /// xattrs are legal, so this is well above the 1 MiB of typical headers).
    package var maxExtendedHeader = 64 << 20
    /// Most data regions one sparse file may have.
    package var maxSparseRegions = 1 << 20
    package init() {}
}

/// The one tar reader: pax, ustar, GNU (long names, base-256 numbers, old 'S' sparse
/// entries), old GNU and v7 headers, and GNU pax sparse 0.0, 0.1 and 1.0, over the
/// decompressed bytes of any `ArchiveSource` (a local file or a Destination reader, e.g. on
/// NFS), starting at the beginning or at any gzip member.
///
/// Names and link targets stay bytes (ustar latin-1, pax `hdrcharset=BINARY`). Header quirks
/// GNU tar accepts are accepted (leading NUL or trailing garbage after a numeric field's
/// terminator, directory headers with a size, hardlinks with a size field, Solaris ACL 'A'
/// headers, unknown entry types read as files, empty names); checksums must match, pax records
/// must be well formed and every size is bounded (`TarLimits`). Sparse files are handed out as
/// data regions: holes are never materialised.
package final class TarReader {
    private var stream: TarByteStream
    package let limits: TarLimits
    package let source: any ByteSource
    private var globalPax: [[UInt8]: [UInt8]] = [:]
    // Content of the current entry.
    private var storedLeft: UInt64 = 0
    private var padLeft: UInt64 = 0
    private var regions: [SparseRegion] = []
    private var regionIndex = 0
    private var regionDone: UInt64 = 0
    private var dense = true
    private var denseOffset: UInt64 = 0
    /// Stored bytes after a sparse file's last region (a map a few bytes short), skipped.
    private var trailingSkip: UInt64 = 0
    /// The current entry's path (escaped for messages only when one is made).
    private var currentPath: [UInt8] = []
    private var currentName: String { Self.display(currentPath) }
    package private(set) var finished = false
    /// Entries read so far, and whether the last one stored data (for an archive that ends
    /// without its end-of-archive blocks).
    private var entriesRead = 0
    private var lastStoredData = false
    /// Non-fatal oddities met (unknown entry types read as files, skipped ACL headers, ...).
    package private(set) var warnings: [String] = []
    /// Storage reused for header blocks and small extended-header data: an array per block
    /// went through the standard library's unspecialized allocation path (~600 instructions,
    /// three per entry of an hs-backup archive, plus their frees). The entry's main block is
    /// handed back after `next()` is done with it (unique again by the next entry; when it is
    /// not, it is copied, as any array is).
    private var blockBuffer: [UInt8] = []
    private var extBuffer: [UInt8] = []
    /// The owner names of the last entry that had them (most entries share them): the same
    /// arrays are handed out again instead of two new ones per entry.
    private var lastUname: [UInt8] = []
    private var lastGname: [UInt8] = []

    /// - Parameters:
    ///   - start: where to start (a gzip member and the tar offset of an entry's first header
    ///     in it); nil: the start of the archive.
    package init(source: any ByteSource, start: ExtractStart? = nil, limits: TarLimits = TarLimits()) throws {
        self.source = source
        self.limits = limits
        stream = try TarByteStream(source: source, compressedOffset: start?.compressedOffset ?? 0,
                                   uncompressedOffset: start?.uncompressedOffset ?? 0)
        if let start {
            guard start.firstHeaderOffset >= start.uncompressedOffset else {
                throw ArchiveError(.invalidInput, "start header offset lies before the member start")
            }
            guard try stream.skip(start.firstHeaderOffset - start.uncompressedOffset) else {
                throw ArchiveError(.truncated, "'\(source.displayName)' ends before tar offset \(start.firstHeaderOffset)")
            }
        }
    }

    /// Stops the decompression thread.
    package func close() { stream.close() }

    /// Tar offset of the next byte to be read.
    package var position: UInt64 { stream.position }
    /// Tar offset up to which every gzip member's CRC has been checked.
    package var verifiedUpTo: UInt64 { stream.verifiedUpTo }

    /// Moves to the entry whose header is `skip` tar bytes into the gzip member at compressed
    /// offset `member` (a manifest's location): reads on when that lies a little ahead in the
    /// current stream, else restarts decompression at the member.
    package func seek(member: UInt64, skip: UInt64) throws {
        try skipContent()
        var readOn: UInt64 = 0
        while true {
            if let t = stream.tarOffset(ofMemberAt: member) {
                if t + skip >= stream.position && t + skip - stream.position <= 8 << 20 {
                    guard try stream.skip(t + skip - stream.position) else { throw truncated("before a manifest's entry") }
                    return
                }
                break
            }
            // Not decoded yet: read on while the member lies a little ahead.
            let last = stream.lastMemberStart
            guard member > last, member - last <= 8 << 20, readOn <= 16 << 20 else { break }
            let n = try stream.next(max: 64 << 10) { _ in }
            if n == 0 { break }
            readOn += UInt64(n)
        }
        stream.close()
        stream = try TarByteStream(source: source, compressedOffset: member, uncompressedOffset: 0)
        guard try stream.skip(skip) else { throw truncated("before a manifest's entry") }
        finished = false
    }

    /// The tar offset at which the gzip member starting at compressed offset `c` begins, if
    /// it was read (recently).
    package func tarOffset(ofMemberAt c: UInt64) -> UInt64? { stream.tarOffset(ofMemberAt: c) }

    /// The (gzip member compressed offset, tar bytes into it) of tar offset `offset`, among
    /// the members read so far.
    package func location(of offset: UInt64) -> (member: UInt64, skip: UInt64)? {
        guard let m = stream.member(containing: offset) else { return nil }
        return (m.compressed, offset - m.tar)
    }

    // MARK: reading

    /// The headers of one entry as read: its main header block and what the extended headers
    /// before it said.
    private struct HeaderGroup {
        var block: [UInt8]
        var at: UInt64
        var pax: [[UInt8]: [UInt8]] = [:]
        /// A pax `mtime` that was the only record of the extended headers so far (hs-backup's
        /// header of each entry whose mtime has nanoseconds), kept out of `pax`: no dictionary
        /// per entry. Never set together with records in `pax` (`foldMtime` moves it there).
        var paxMtime: [UInt8]?
        var longName: [UInt8]?
        var longLink: [UInt8]?
        var sparseOffsets: [UInt64] = []
        var sparseSizes: [UInt64] = []
        var flag: UInt8 { block[156] }
        var isPosix: Bool { isUstar(then: 0) }                // "ustar\0"
        var isGNU: Bool { isUstar(then: UInt8(ascii: " ")) }  // "ustar "
        /// Bytes 257-262 are "ustar" and `then` (byte compares: asked several times per entry).
        private func isUstar(then last: UInt8) -> Bool {
            block.withUnsafeBufferPointer { p in
                p.count >= 263 && p[257] == UInt8(ascii: "u") && p[258] == UInt8(ascii: "s") && p[259] == UInt8(ascii: "t")
                    && p[260] == UInt8(ascii: "a") && p[261] == UInt8(ascii: "r") && p[262] == last
            }
        }
        /// A pax record (most headers have none: no key is made then).
        func pax(_ key: String) -> [UInt8]? { pax.isEmpty ? nil : pax[Array(key.utf8)] }
        /// The same for a key made once (`PaxKey`): what every entry asks, no array per call.
        func pax(_ key: [UInt8]) -> [UInt8]? { pax.isEmpty ? nil : pax[key] }
        /// Some pax record is about GNU sparse files (else none of those keys is looked up).
        var hasGNUSparseRecords: Bool { !pax.isEmpty && pax.keys.contains { $0.starts(with: PaxKey.gnuSparse) } }
        /// Puts a lone `mtime` kept apart into `pax` (before other records join it).
        mutating func foldMtime() {
            if let m = paxMtime { pax[PaxKey.mtime] = m; paxMtime = nil }
        }
    }

    /// pax keys asked for every entry (hs-backup writes a pax header per entry: issue 24).
    private enum PaxKey {
        static let size = Array("size".utf8), path = Array("path".utf8), linkpath = Array("linkpath".utf8)
        static let mtime = Array("mtime".utf8)
        static let gnuSparse = Array("GNU.sparse.".utf8), xattr = Array("SCHILY.xattr.".utf8)
    }

    /// The next entry (the rest of the previous one is skipped); nil at the end-of-archive
    /// marker, or where the data ends at a header boundary without one (GNU tar accepts that;
    /// a warning says so).
    package func next() throws -> TarEntry? {
        if finished { return nil }
        try skipContent()
        guard let h = try readHeaderGroup() else { finished = true; return nil }
        var e = try baseEntry(h)
        var stored = UInt64(try number(h.block, 124, 12, h.at))
        try applyPax(h, to: &e, stored: &stored)
        stored = dataSize(of: e.type, flag: h.flag, stored: stored, paxSize: h.pax(PaxKey.size) != nil)
        storedLeft = stored
        entriesRead += 1
        lastStoredData = stored > 0
        padLeft = (512 - stored % 512) % 512
        dense = true; denseOffset = 0; trailingSkip = 0
        regions = []; regionIndex = 0; regionDone = 0
        e.size = e.type == .file ? stored : 0
        if e.type == .file { try readSparseLayout(h, into: &e) }
        blockBuffer = h.block
        return e
    }

    /// Reads header blocks up to and including an entry's main header (extended headers,
    /// GNU long names, global pax records are collected on the way). nil at the end marker.
    private func readHeaderGroup() throws -> HeaderGroup? {
        var g = HeaderGroup(block: [], at: 0)
        var started = false
        var block: [UInt8] = []
        swap(&block, &blockBuffer)
        while true {
            let at = stream.position
            // The data ends at a header boundary, without the end-of-archive blocks: GNU tar
            // takes that as the end. After an entry that stores data, that is also what a cut
            // archive looks like: refused as truncated there.
            if !started, entriesRead > 0, !lastStoredData, try atEndOfData() {
                warn("the archive ends without its end-of-archive blocks (after its last entry, '\(currentName)'); extracted as GNU tar does")
                return nil
            }
            try readExact(into: &block, 512, what: started ? "inside a header" : "before the end-of-archive marker")
            if block.allSatisfy({ $0 == 0 }) {
                if started { throw malformed("end-of-archive marker right after an extended header", at) }
                return nil
            }
            try checkChecksum(block, at)
            if !started { g.at = at; started = true }
            let flag = block[156]
            let size = try number(block, 124, 12, at)
            guard size >= 0 else { throw malformed("negative size", at) }
            switch flag {
            case UInt8(ascii: "x"), UInt8(ascii: "X"), UInt8(ascii: "g"), UInt8(ascii: "L"), UInt8(ascii: "K"):
                guard size <= Int64(limits.maxExtendedHeader) else {
                    throw ArchiveError(.malformed, rule: .extendedHeaderSize,
                                       "extended header of \(size) bytes exceeds the \(limits.maxExtendedHeader)-byte limit (header at tar offset \(at))")
                }
                var data: [UInt8] = []
                swap(&data, &extBuffer)
                try readExact(into: &data, Int(size), what: "inside an extended header")
                guard try stream.skip(UInt64((512 - size % 512) % 512)) else { throw truncated("inside an extended header") }
                if flag == UInt8(ascii: "g") { started = false }
                try collectExtended(flag, data, at, into: &g)
                if data.capacity <= Self.reusedExtendedSize { swap(&data, &extBuffer) }
            case UInt8(ascii: "V"), UInt8(ascii: "A"), UInt8(ascii: "N"):
                // Volume label, Solaris ACL, old GNU long-name list: not entries; GNU tar skips
                // them (and reads an 'A' header as a file that the next header replaces).
                if flag == UInt8(ascii: "A") { warn("'\(Self.display(cString(block, 0, 100)))': Solaris ACL header skipped (ACLs in that format are not restored)") }
                guard try stream.skip(UInt64(size) + UInt64((512 - size % 512) % 512)) else { throw truncated("inside a skipped header") }
                if flag == UInt8(ascii: "V") { started = false }
            case UInt8(ascii: "M"):
                throw ArchiveError(.malformed, rule: .multiVolume, "multi-volume continuation entries (type 'M') are not supported (header at tar offset \(at))")
            default:
                g.block = block
                if !globalPax.isEmpty { g.foldMtime() }
                // An empty value removes a global record (kept only for xattrs): with no global
                // records and no empty value (hs-backup's headers), the records stand as read.
                if !globalPax.isEmpty || g.pax.contains(where: { $0.value.isEmpty && !Self.keepsEmptyValue($0.key) }) {
                    var merged = globalPax
                    for (k, v) in g.pax { merged[k] = v.isEmpty && !Self.keepsEmptyValue(k) ? nil : v }
                    g.pax = merged
                }
                return g
            }
        }
    }

    /// True when the data ends exactly here (no more bytes at all).
    private func atEndOfData() throws -> Bool { try stream.peekEnd() }

    /// Takes one extended header's records into the group.
    private func collectExtended(_ flag: UInt8, _ data: [UInt8], _ at: UInt64, into g: inout HeaderGroup) throws {
        switch flag {
        case UInt8(ascii: "L"): g.longName = Self.trimNULs(data)
        case UInt8(ascii: "K"): g.longLink = Self.trimNULs(data)
        case UInt8(ascii: "g"):
            for (k, v) in try parsePaxRecords(data, at) { globalPax[k] = v.isEmpty && !Self.keepsEmptyValue(k) ? nil : v }
        default:
            if g.pax.isEmpty, let m = Self.loneMtimeRecord(data) {
                g.paxMtime = m
                return
            }
            g.foldMtime()
            for (k, v) in try parsePaxRecords(data, at) {
                if k.elementsEqual("GNU.sparse.offset".utf8) { g.sparseOffsets.append(try paxUInt(k, v, at)) }
                else if k.elementsEqual("GNU.sparse.numbytes".utf8) { g.sparseSizes.append(try paxUInt(k, v, at)) }
                else { g.pax[k] = v }
            }
        }
    }

    /// The value of `data` when it is one pax record "LEN mtime=VALUE\n" with a non-empty value
    /// and nothing after it (what hs-backup writes); nil for anything else, which
    /// `parsePaxRecords` then reads (and checks) as usual. The same value that reads it gives.
    static func loneMtimeRecord(_ data: [UInt8]) -> [UInt8]? {
        data.withUnsafeBufferPointer { p -> [UInt8]? in
            let n = p.count
            var j = 0, len = 0
            while j < n && j < 10, p[j] >= UInt8(ascii: "0"), p[j] <= UInt8(ascii: "9") {
                len = len * 10 + Int(p[j] - UInt8(ascii: "0")); j += 1
            }
            // "LEN" " mtime=" VALUE "\n", the record being all of `data`.
            let key: StaticString = " mtime="
            let valueStart = j + key.utf8CodeUnitCount
            guard j > 0, len == n, valueStart < n - 1, p[n - 1] == UInt8(ascii: "\n"),
                  memcmp(p.baseAddress! + j, key.utf8Start, key.utf8CodeUnitCount) == 0 else { return nil }
            return Array(p[valueStart ..< n - 1])
        }
    }

    /// pax records whose empty value is a value (an extended attribute set to ""), not the
    /// removal of a global record.
    private static func keepsEmptyValue(_ key: [UInt8]) -> Bool { key.starts(with: PaxKey.xattr) }

    /// The entry as the main header block says: name, type, mode, owner, mtime, link.
    private func baseEntry(_ h: HeaderGroup) throws -> TarEntry {
        let block = h.block, at = h.at, flag = h.flag
        // A pax path replaces the others (looked at first: no name is made to be dropped).
        let name = h.pax(PaxKey.path) ?? h.longName ?? Self.headerName(block, posix: h.isPosix)
        var type = entryType(flag, name: name)
        if type == .file && (flag == 0 || flag == UInt8(ascii: "0")) && !h.isPosix && name.last == UInt8(ascii: "/") {
            type = .directory  // v7 / old GNU: a directory is a file whose name ends in "/"
        }
        var e = TarEntry(path: Self.trimTrailingSlashes(name), type: type)
        e.headerOffset = at
        currentPath = e.path
        e.mode = UInt32(truncatingIfNeeded: try number(block, 100, 8, at)) & 0o7777
        e.uid = UInt32(truncatingIfNeeded: try number(block, 108, 8, at))
        e.gid = UInt32(truncatingIfNeeded: try number(block, 116, 8, at))
        e.mtime = FileTime(seconds: try number(block, 136, 12, at))
        if h.isPosix || h.isGNU {
            let un = cString(block, 265, 32, reusing: &lastUname), gn = cString(block, 297, 32, reusing: &lastGname)
            if !un.isEmpty { e.uname = un }
            if !gn.isEmpty { e.gname = gn }
            if type == .charDevice || type == .blockDevice {
                e.devMajor = UInt32(truncatingIfNeeded: try number(block, 329, 8, at))
                e.devMinor = UInt32(truncatingIfNeeded: try number(block, 337, 8, at))
            }
        }
        if type == .symlink || type == .hardlink {
            let link = h.pax(PaxKey.linkpath) ?? h.longLink ?? cString(block, 157, 100)
            guard !link.isEmpty else { throw malformed("link '\(currentName)' without a target", at) }
            e.linkTarget = link
        }
        return e
    }

    /// The type of a header's type flag (unknown ones are read as files, as GNU tar does).
    private func entryType(_ flag: UInt8, name: [UInt8]) -> EntryType {
        switch flag {
        case UInt8(ascii: "0"), 0, UInt8(ascii: "7"), UInt8(ascii: "S"): return .file
        case UInt8(ascii: "1"): return .hardlink
        case UInt8(ascii: "2"): return .symlink
        case UInt8(ascii: "3"): return .charDevice
        case UInt8(ascii: "4"): return .blockDevice
        case UInt8(ascii: "5"), UInt8(ascii: "D"): return .directory
        case UInt8(ascii: "6"): return .fifo
        default:
            warn("'\(Self.display(name))': unknown entry type '\(flag >= 32 && flag < 127 ? String(UnicodeScalar(flag)) : "\\(\(flag))")', extracted as a regular file (as GNU tar does)")
            return .file
        }
    }

    /// pax records over the header's fields: size, owner, mtime, owner names, xattrs.
    private func applyPax(_ h: HeaderGroup, to e: inout TarEntry, stored: inout UInt64) throws {
        if let m = h.paxMtime { e.mtime = try paxTime(m, h.at); return }
        // In key order (xattrs keep one order whatever the hashing); one record as it is.
        if h.pax.count == 1, let (k, v) = h.pax.first { return try applyPaxRecord(k, v, h.at, to: &e, stored: &stored) }
        for (k, v) in h.pax.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
            try applyPaxRecord(k, v, h.at, to: &e, stored: &stored)
        }
    }

    private func applyPaxRecord(_ k: [UInt8], _ v: [UInt8], _ at: UInt64, to e: inout TarEntry, stored: inout UInt64) throws {
        switch String(decoding: k, as: UTF8.self) {
        case "size": stored = try paxUInt(k, v, at)
        case "uid": e.uid = UInt32(truncatingIfNeeded: try paxUInt(k, v, at))
        case "gid": e.gid = UInt32(truncatingIfNeeded: try paxUInt(k, v, at))
        case "mtime": e.mtime = try paxTime(v, at)
        case "uname": e.uname = v
        case "gname": e.gname = v
        default:
            if k.starts(with: PaxKey.xattr) && k.count > PaxKey.xattr.count {
                e.xattrs.append((Array(k[PaxKey.xattr.count...]), v))
            }
        }
    }

    /// Which entries carry data: files always; GNU dumpdirs ('D'); a hardlink only when a
    /// pax size says so; a directory's size field is not data (as GNU tar, bsdtar and Python
    /// read old-style headers); the others never.
    private func dataSize(of type: EntryType, flag: UInt8, stored: UInt64, paxSize: Bool) -> UInt64 {
        switch type {
        case .file: return stored
        case .directory: return flag == UInt8(ascii: "D") ? stored : 0
        case .hardlink: return paxSize ? stored : 0
        default: return 0
        }
    }

    /// GNU sparse files: old 'S' headers, pax 1.0 (map at the start of the data), 0.1 and 0.0.
    private func readSparseLayout(_ h: HeaderGroup, into e: inout TarEntry) throws {
        let at = h.at
        func num(_ key: String) throws -> UInt64? {
            guard let v = h.pax(key) else { return nil }
            return try paxUInt(Array(key.utf8), v, at)
        }
        if h.flag != UInt8(ascii: "S") && !h.hasGNUSparseRecords { return }
        if h.flag == UInt8(ascii: "S") {
            guard h.isGNU || !h.isPosix else { throw malformed("type 'S' sparse entry '\(currentName)' in a POSIX header", at) }
            try setSparse(&e, real: UInt64(try number(h.block, 483, 12, at)), map: try readOldGNUSparseMap(h), at)
        } else if h.pax("GNU.sparse.major") == Array("1".utf8), h.pax("GNU.sparse.minor") == Array("0".utf8) {
            // GNU tar stands in the 0.x size key or the header's own size, and keeps the
            // header's name, when GNU.sparse.name/realsize are missing.
            if let rn = h.pax("GNU.sparse.name"), !rn.isEmpty { e.path = Self.trimTrailingSlashes(rn); currentPath = e.path }
            let stored = storedLeft
            let map = try readSparseMap1(at)
            let real = try num("GNU.sparse.realsize") ?? num("GNU.sparse.size") ?? max(stored, map.last.map { $0.0 + $0.1 } ?? 0)
            if h.pax("GNU.sparse.realsize") == nil {
                warn("'\(currentName)': GNU sparse 1.0 entry without GNU.sparse.realsize; its size is taken as \(real) bytes, as GNU tar does")
            }
            try setSparse(&e, real: real, map: map, at)
        } else if let real = try num("GNU.sparse.size") ?? num("GNU.sparse.realsize") {
            if let rn = h.pax("GNU.sparse.name"), !rn.isEmpty { e.path = Self.trimTrailingSlashes(rn); currentPath = e.path }
            var map: [(UInt64, UInt64)] = []
            if let m = h.pax("GNU.sparse.map") {          // 0.1
                let nums = try m.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false).map { try paxUInt(Array("GNU.sparse.map".utf8), Array($0), at) }
                guard nums.count % 2 == 0 else { throw malformed("GNU.sparse.map of '\(currentName)' has an odd count", at) }
                for i in stride(from: 0, to: nums.count, by: 2) { map.append((nums[i], nums[i + 1])) }
            } else {                                       // 0.0
                guard h.sparseOffsets.count == h.sparseSizes.count else { throw malformed("GNU sparse 0.0 map of '\(currentName)' is incomplete", at) }
                map = Array(zip(h.sparseOffsets, h.sparseSizes))
            }
            try setSparse(&e, real: real, map: map, at)
        }
    }

    /// The map of an old GNU 'S' header: four entries in the header, 21 per extension block.
    private func readOldGNUSparseMap(_ h: HeaderGroup) throws -> [(UInt64, UInt64)] {
        var map: [(UInt64, UInt64)] = []
        func entries(_ b: [UInt8], from: Int, count: Int) throws {
            for i in 0..<count {
                let o = from + i * 24
                if b[o] == 0 { return }
                map.append((UInt64(try number(b, o, 12, h.at)), UInt64(try number(b, o + 12, 12, h.at))))
            }
        }
        try entries(h.block, from: 386, count: 4)
        var extended = h.block[482] != 0
        while extended {
            let ext = try readExact(512, what: "inside a GNU sparse header")
            try entries(ext, from: 0, count: 21)
            guard map.count <= limits.maxSparseRegions else {
                throw ArchiveError(.malformed, rule: .sparseRegions, "GNU sparse map of '\(currentName)' has too many regions (header at tar offset \(h.at))")
            }
            extended = ext[504] != 0
        }
        return map
    }

    /// Hands the current entry's content to `body` as (offset in the file, bytes) runs, in
    /// file order; sparse holes are not handed out.
    package func readContent(_ body: (UInt64, UnsafeRawBufferPointer) throws -> Void) throws {
        if dense {
            while storedLeft > 0 {
                let off = denseOffset
                let n = try stream.next(max: Int(min(storedLeft, 1 << 20))) { try body(off, $0) }
                if n == 0 { throw truncated("inside the content of '\(currentName)'") }
                storedLeft -= UInt64(n); denseOffset += UInt64(n)
            }
        } else {
            while regionIndex < regions.count {
                let r = regions[regionIndex]
                if regionDone == r.length { regionIndex += 1; regionDone = 0; continue }
                let off = r.offset + regionDone
                let n = try stream.next(max: Int(min(r.length - regionDone, 1 << 20))) { try body(off, $0) }
                if n == 0 { throw truncated("inside the content of '\(currentName)'") }
                regionDone += UInt64(n); storedLeft -= UInt64(n)
            }
            if trailingSkip > 0 {
                guard try stream.skip(trailingSkip) else { throw truncated("inside the content of '\(currentName)'") }
                storedLeft -= trailingSkip; trailingSkip = 0
            }
        }
        try skipPadding()
    }

    /// Skips whatever is left of the current entry's content.
    package func skipContent() throws {
        if storedLeft > 0 {
            guard try stream.skip(storedLeft) else { throw truncated("inside the content of '\(currentName)'") }
            storedLeft = 0
            regionIndex = regions.count
        }
        try skipPadding()
    }

    /// After `next()` returned nil: reads the rest of the data, so damage after the
    /// end-of-archive marker (a gzip CRC) is reported too.
    package func drain() throws { try stream.drain() }

    private func skipPadding() throws {
        if padLeft > 0 {
            guard try stream.skip(padLeft) else { throw truncated("inside the content of '\(currentName)'") }
            padLeft = 0
        }
    }

    // MARK: sparse

    private func setSparse(_ e: inout TarEntry, real: UInt64, map: [(UInt64, UInt64)], _ at: UInt64) throws {
        guard map.count <= limits.maxSparseRegions else {
            throw ArchiveError(.malformed, rule: .sparseRegions, "sparse map of '\(currentName)' has too many regions (header at tar offset \(at))")
        }
        var out: [SparseRegion] = []
        out.reserveCapacity(map.count)
        var end: UInt64 = 0, total: UInt64 = 0
        for (o, n) in map {
            let (last, overflow) = o.addingReportingOverflow(n)
            guard o >= end, !overflow else {
                throw malformed("sparse map of '\(currentName)' has overlapping or out-of-range regions", at)
            }
            end = last; total += n
            if n > 0 { out.append(SparseRegion(offset: o, length: n)) }
        }
        // The file ends where the map ends (its last region, often an empty one at the real
        // size), as GNU tar extracts it; a real size that says otherwise is odd.
        if end != real {
            warn("'\(currentName)': the sparse map ends at \(end) bytes but the recorded size is \(real); extracted with \(end) bytes, as GNU tar does")
        }
        if total > storedLeft {
            // The data is a few bytes short of the map: what is stored is restored, the rest
            // of the map stays a hole (GNU tar extracts such members).
            warn("'\(currentName)': the sparse map holds \(total) bytes but the entry stores \(storedLeft); the missing \(total - storedLeft) bytes are left as a hole, as GNU tar does")
            var left = storedLeft
            out = out.compactMap { r in
                defer { left -= min(left, r.length) }
                return left == 0 ? nil : SparseRegion(offset: r.offset, length: min(left, r.length))
            }
        } else if total < storedLeft {
            warn("'\(currentName)': the sparse map holds \(total) bytes but the entry stores \(storedLeft); the \(storedLeft - total) bytes more are skipped, as GNU tar does")
            trailingSkip = storedLeft - total
        }
        e.size = end
        e.sparse = out
        regions = out
        dense = false
    }

    /// GNU sparse 1.0: decimal count, then offset/size pairs, one per line, in whole blocks
    /// at the start of the entry's data.
    private func readSparseMap1(_ at: UInt64) throws -> [(UInt64, UInt64)] {
        var nums: [UInt64] = []
        var cur: UInt64 = 0, digits = 0
        var count: UInt64?
        var used: UInt64 = 0
        while count == nil || UInt64(nums.count) < 1 + 2 * count! {
            guard storedLeft >= 512, used < UInt64(limits.maxExtendedHeader) else {
                throw malformed("GNU sparse map of '\(currentName)' is malformed or too large", at)
            }
            let b = try readExact(512, what: "inside the GNU sparse map of '\(currentName)'")
            storedLeft -= 512; used += 512
            for c in b {
                if let n = count, UInt64(nums.count) == 1 + 2 * n { break }
                if c == UInt8(ascii: "\n") {
                    guard digits > 0 else { throw malformed("empty number in the GNU sparse map of '\(currentName)'", at) }
                    nums.append(cur); cur = 0; digits = 0
                    if nums.count == 1 {
                        guard nums[0] <= UInt64(limits.maxSparseRegions) else {
                            throw ArchiveError(.malformed, rule: .sparseRegions, "GNU sparse map of '\(currentName)' has too many regions (header at tar offset \(at))")
                        }
                        count = nums[0]
                    }
                } else if c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") && digits < 20 {
                    let (m, o1) = cur.multipliedReportingOverflow(by: 10)
                    let (a, o2) = m.addingReportingOverflow(UInt64(c - UInt8(ascii: "0")))
                    guard !o1 && !o2 else { throw malformed("number too large in the GNU sparse map of '\(currentName)'", at) }
                    cur = a; digits += 1
                } else {
                    throw malformed("invalid byte in the GNU sparse map of '\(currentName)'", at)
                }
            }
        }
        padLeft = (512 - storedLeft % 512) % 512
        return (0..<Int(count!)).map { (nums[1 + 2 * $0], nums[2 + 2 * $0]) }
    }

    // MARK: bytes

    /// `n` bytes (header blocks, extended header data: up to three per entry), copied into
    /// the array's own storage as they come.
    private func readExact(_ n: Int, what: String) throws -> [UInt8] {
        try [UInt8](unsafeUninitializedCapacity: n) { buf, count in
            count = 0
            while count < n {
                let at = count
                let got = try stream.next(max: n - at) { b in
                    if !b.isEmpty { UnsafeMutableRawPointer(buf.baseAddress! + at).copyMemory(from: b.baseAddress!, byteCount: b.count) }
                }
                if got == 0 { throw truncated(what) }
                count += got
            }
        }
    }

    /// Extended-header data up to this size is read into storage kept for the next one.
    private static let reusedExtendedSize = 64 << 10

    /// `n` bytes into `buf` (its storage reused when it has `n` bytes and is not shared).
    private func readExact(into buf: inout [UInt8], _ n: Int, what: String) throws {
        if buf.count != n {
            buf.removeAll(keepingCapacity: true)
            buf.append(contentsOf: repeatElement(0, count: n))
        }
        try buf.withUnsafeMutableBytes { out in
            var at = 0
            while at < n {
                let got = try stream.next(max: n - at) { b in
                    if !b.isEmpty { (out.baseAddress! + at).copyMemory(from: b.baseAddress!, byteCount: b.count) }
                }
                if got == 0 { throw truncated(what) }
                at += got
            }
        }
    }

    private func warn(_ s: String) { if warnings.count < 1000 { warnings.append(s) } }

    private func truncated(_ what: String) -> ArchiveError {
        ArchiveError(.truncated, "the tar stream of '\(source.displayName)' ends \(what) at offset \(stream.position); the archive is incomplete")
    }

    private func malformed(_ msg: String, _ at: UInt64) -> ArchiveError {
        ArchiveError(.malformed, "\(msg) (header at tar offset \(at))")
    }

    private func checkChecksum(_ b: [UInt8], _ at: UInt64) throws {
        // The checksum field itself counts as eight blanks. The unsigned sum 8 bytes at a time
        // (the bytes of a word added in 16-bit lanes: 64 words put at most 128 x 255 in a lane,
        // so no lane carries; byte by byte this was ~1,600 instructions per header block, one
        // or two blocks per entry); the signed sum (old tars) only when that does not match.
        let unsigned: Int64 = b.withUnsafeBytes { p in
            precondition(p.count >= 512)
            let mask: UInt64 = 0x00ff_00ff_00ff_00ff
            var lanes: UInt64 = 0
            for i in 0 ..< 64 {
                let w = p.loadUnaligned(fromByteOffset: i &* 8, as: UInt64.self)
                lanes &+= (w & mask) &+ ((w >> 8) & mask)
            }
            var s = Int64(lanes & 0xffff) + Int64((lanes >> 16) & 0xffff) + Int64((lanes >> 32) & 0xffff) + Int64(lanes >> 48)
            for i in 148 ..< 156 { s -= Int64(p[i]) }
            return s + 8 * 32
        }
        func signedSum() -> Int64 {
            b.withUnsafeBufferPointer { p in
                var s: Int64 = 8 * 32
                for i in 0 ..< 148 { s &+= Int64(Int8(truncatingIfNeeded: p[i])) }
                for i in 156 ..< 512 { s &+= Int64(Int8(truncatingIfNeeded: p[i])) }
                return s
            }
        }
        guard let stored = try? number(b, 148, 8, at), stored == unsigned || stored == signedSum() else {
            throw malformed("header checksum mismatch (not a tar archive, or corrupted)", at)
        }
    }

    /// Octal (as GNU tar reads it: one leading NUL and leading blanks skipped; after the
    /// digits a NUL or blank, then anything) or GNU base-256 (0x80 positive, 0xff negative).
    /// Through the block's buffer (up to seven fields per entry; Array's checked subscript
    /// cost ~300 instructions per field).
    private func number(_ b: [UInt8], _ at: Int, _ len: Int, _ hdr: UInt64) throws -> Int64 {
        try b.withUnsafeBufferPointer { p throws -> Int64 in
            precondition(at >= 0 && len > 0 && at + len <= p.count)
            if let v = Self.plainOctal(p, at, len) { return v }
            let first = p[at]
            if first & 0x80 != 0 {
                let neg = first == 0xff
                guard first == 0x80 || neg else { throw malformed("bad base-256 number at byte \(at)", hdr) }
                var v: Int64 = neg ? -1 : 0
                var significant = 0
                for i in 1..<len {
                    if significant > 0 || p[at + i] != (neg ? 0xff : 0) { significant += 1 }
                    guard significant <= 7 else { throw malformed("base-256 number at byte \(at) is too large", hdr) }
                    v = (v << 8) | Int64(p[at + i])
                }
                return v
            }
            var i = at
            let end = at + len
            if p[i] == 0 { i += 1 }
            while i < end && (p[i] == UInt8(ascii: " ") || p[i] == UInt8(ascii: "\t")) { i += 1 }
            var v: Int64 = 0
            while i < end {
                let d = p[i] &- UInt8(ascii: "0")
                if d > 7 { break }
                guard v < (Int64(1) << 60) else { throw malformed("numeric field at byte \(at) is too large", hdr) }
                v = v * 8 + Int64(d)
                i += 1
            }
            if i < end && p[i] != 0 && p[i] != UInt8(ascii: " ") && p[i] != UInt8(ascii: "\t") {
                throw malformed("invalid octal digit in numeric field at byte \(at)", hdr)
            }
            return v
        }
    }

    /// The value of a field of 8 or 12 bytes that is octal digits up to its last byte, which is
    /// a NUL or a blank (every numeric field tar and hs-backup write but the checksum), eight
    /// digits at a time; nil for any other field (`number` reads it byte by byte, with the same
    /// result for these). ~150 instructions less per field, six or seven fields per entry.
    private static func plainOctal(_ p: UnsafeBufferPointer<UInt8>, _ at: Int, _ len: Int) -> Int64? {
        guard len == 8 || len == 12 else { return nil }
        let last = p[at + len - 1]
        guard last == 0 || last == UInt8(ascii: " ") else { return nil }
        let raw = UnsafeRawPointer(p.baseAddress! + at)
        // Eight digits (the first is the most significant, in the lowest byte) to their value;
        // nil unless every byte is '0'...'7'.
        func eight(_ w: UInt64) -> UInt64? {
            let d = w ^ 0x3030_3030_3030_3030
            guard d & 0xf8f8_f8f8_f8f8_f8f8 == 0 else { return nil }
            let pairs = ((d & 0x00ff_00ff_00ff_00ff) << 3) | ((d >> 8) & 0x00ff_00ff_00ff_00ff)
            let quads = ((pairs & 0x0000_ffff_0000_ffff) << 6) | ((pairs >> 16) & 0x0000_ffff_0000_ffff)
            return ((quads & 0xffff_ffff) << 12) | (quads >> 32)
        }
        let w = UInt64(littleEndian: raw.loadUnaligned(as: UInt64.self))
        if len == 8 {
            // Seven digits and the terminator: a leading '0' digit in place of the terminator.
            return eight((w << 8) | 0x30).map { Int64($0) }
        }
        guard let high = eight(w) else { return nil }
        var v = high
        for i in 8 ..< 11 {
            let d = p[at + i] &- UInt8(ascii: "0")
            if d > 7 { return nil }
            v = v << 3 | UInt64(d)
        }
        return Int64(v)
    }

    /// The name in the header block: ustar's prefix, "/" and name (pax headers), else the name.
    /// Made in one buffer of its final size (hs-backup's headers carry a prefix for most files).
    private static func headerName(_ b: [UInt8], posix: Bool) -> [UInt8] {
        b.withUnsafeBufferPointer { p -> [UInt8] in
            func length(_ at: Int, _ max: Int) -> Int { Self.lengthBeforeNUL(p, at, max) }
            let nameLength = length(0, 100)
            let prefixLength = posix ? length(345, 155) : 0
            if prefixLength == 0 { return Array(p[0 ..< nameLength]) }
            return [UInt8](unsafeUninitializedCapacity: prefixLength + 1 + nameLength) { out, count in
                let base = out.baseAddress!
                base.initialize(from: p.baseAddress! + 345, count: prefixLength)
                base[prefixLength] = UInt8(ascii: "/")
                (base + prefixLength + 1).initialize(from: p.baseAddress!, count: nameLength)
                count = prefixLength + 1 + nameLength
            }
        }
    }

    private func cString(_ b: [UInt8], _ at: Int, _ len: Int) -> [UInt8] {
        b.withUnsafeBufferPointer { p in Array(p[at ..< at + Self.lengthBeforeNUL(p, at, len)]) }
    }

    /// `cString`, handing out `last` itself when it holds the same bytes (else the new string,
    /// kept in `last`).
    private func cString(_ b: [UInt8], _ at: Int, _ len: Int, reusing last: inout [UInt8]) -> [UInt8] {
        b.withUnsafeBufferPointer { p in
            let n = Self.lengthBeforeNUL(p, at, len)
            let same = n == last.count && (n == 0 || last.withUnsafeBufferPointer { memcmp($0.baseAddress!, p.baseAddress! + at, n) == 0 })
            if !same { last = Array(p[at ..< at + n]) }
            return last
        }
    }

    /// The bytes from `at` before the first NUL, at most `max` (memchr: a byte loop cost
    /// several instructions per byte of every name, one to three per entry).
    private static func lengthBeforeNUL(_ p: UnsafeBufferPointer<UInt8>, _ at: Int, _ max: Int) -> Int {
        precondition(at >= 0 && max >= 0 && at + max <= p.count)
        guard max > 0, let z = memchr(p.baseAddress! + at, 0, max) else { return max }
        return (p.baseAddress! + at).distance(to: z.assumingMemoryBound(to: UInt8.self))
    }

    private func parsePaxRecords(_ buf: [UInt8], _ at: UInt64) throws -> [([UInt8], [UInt8])] {
        var out: [([UInt8], [UInt8])] = []
        var i = 0
        while i < buf.count {
            if buf[i] == 0 && buf[i...].allSatisfy({ $0 == 0 }) { break }
            var j = i, len = 0
            while j < buf.count, buf[j] >= UInt8(ascii: "0"), buf[j] <= UInt8(ascii: "9"), j - i < 10 {
                len = len * 10 + Int(buf[j] - UInt8(ascii: "0")); j += 1
            }
            guard j > i, j < buf.count, buf[j] == UInt8(ascii: " "), len > j - i + 1, i + len <= buf.count,
                  buf[i + len - 1] == UInt8(ascii: "\n") else {
                throw malformed("malformed pax record at byte \(i) of the extended header", at)
            }
            let body = buf[(j + 1)..<(i + len - 1)]
            guard let eq = body.firstIndex(of: UInt8(ascii: "=")), eq > body.startIndex else {
                throw malformed("pax record without 'key=' at byte \(i) of the extended header", at)
            }
            out.append((Array(body[body.startIndex..<eq]), Array(body[(eq + 1)...])))
            i += len
        }
        return out
    }

    private func paxUInt(_ k: [UInt8], _ v: [UInt8], _ at: UInt64) throws -> UInt64 {
        guard !v.isEmpty, v.count <= 20, v.allSatisfy({ $0 >= 48 && $0 <= 57 }),
              let n = UInt64(String(decoding: v, as: UTF8.self)) else {
            throw malformed("pax \(String(decoding: k, as: UTF8.self)) value '\(String(decoding: v.prefix(40), as: UTF8.self))' is not a number", at)
        }
        return n
    }

    /// A pax time, "[-]seconds[.fraction]" as a signed decimal ("-1.5" is 1.5 s before the
    /// epoch), at most 18 digits of seconds; digits past the ninth of the fraction are ignored.
    /// Parsed as bytes: this runs for every entry.
    private func paxTime(_ v: [UInt8], _ at: UInt64) throws -> FileTime {
        func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }
        let bad = { self.malformed("pax mtime '\(String(decoding: v.prefix(40), as: UTF8.self))' is not a time", at) }
        let neg = v.first == UInt8(ascii: "-")
        var i = neg ? 1 : 0
        var whole: Int64 = 0
        let wholeStart = i
        while i < v.count && isDigit(v[i]) {
            guard i - wholeStart < 18 else { throw bad() }
            whole = whole * 10 + Int64(v[i] - UInt8(ascii: "0"))
            i += 1
        }
        guard i > wholeStart else { throw bad() }
        var ns: UInt32 = 0
        if i < v.count && v[i] == UInt8(ascii: ".") {
            i += 1
            var digits = 0
            while i < v.count && isDigit(v[i]) {
                if digits < 9 { ns = ns * 10 + UInt32(v[i] - UInt8(ascii: "0")); digits += 1 }
                i += 1
            }
            while digits < 9 { ns *= 10; digits += 1 }
        }
        if i < v.count {
            // GNU tar takes the number and ignores what follows it.
            warn("'\(currentName)': pax mtime '\(NameEscape.escape(v.prefix(40)))' has trailing bytes after the number; they are ignored, as GNU tar does")
        }
        if !neg { return FileTime(seconds: whole, nanoseconds: ns) }
        if ns == 0 { return FileTime(seconds: -whole) }
        return FileTime(seconds: -whole - 1, nanoseconds: 1_000_000_000 - ns)
    }

    static func trimNULs(_ b: [UInt8]) -> [UInt8] {
        let n = b.withUnsafeBufferPointer { lengthBeforeNUL($0, 0, $0.count) }
        return n == b.count ? b : Array(b[..<n])
    }

    static func trimTrailingSlashes(_ b: [UInt8]) -> [UInt8] {
        var v = b
        while v.count > 1 && v.last == UInt8(ascii: "/") { v.removeLast() }
        return v
    }

    /// A name for messages, escaped (`NameEscape`).
    package static func display(_ b: [UInt8]) -> String { NameEscape.escape(b) }
}
