import Foundation

// Push-based tar reader: pax, ustar, GNU (L/K long names, base-256 numbers) and v7 headers.

/// Receives the entries a `TarParser` finds.
package protocol TarEntryHandler: AnyObject {
    /// A new entry starts. `headerOffset` is the tar-stream offset of its first header block
    /// (the pax or GNU long-name header when there is one). Return true to receive content.
    func beginEntry(_ entry: EntryMetadata, headerOffset: UInt64) throws -> Bool
    /// Content bytes of the current regular file (only if `beginEntry` returned true).
    func entryContent(_ bytes: UnsafeRawBufferPointer) throws
    /// The current entry is complete.
    func endEntry() throws
}

/// Parses a decompressed tar stream fed in arbitrary pieces. Malformed headers and pax
/// records are errors (never skipped); pax and GNU long-name data are bounded.
package final class TarParser {
    private enum State {
        case header
        case extended(kind: UInt8, remaining: Int)   // pax 'x'/'g', GNU 'L'/'K' data
        case content(remaining: UInt64)
        case sparseMap(remaining: UInt64)    // GNU pax sparse 1.0: the map before the data
        case sparseData(remaining: UInt64)
        case skip(remaining: UInt64)
        case end
    }
    private let handler: any TarEntryHandler
    private var state: State = .header
    private var block: [UInt8] = []
    private var extBuf: [UInt8] = []
    private var extPadding = 0
    private var wantContent = false
    private var pendingPax: [String: [UInt8]] = [:]
    private var globalPax: [String: [UInt8]] = [:]
    private var longName: [UInt8]?
    private var longLink: [UInt8]?
    private var entryHeaderOffset: UInt64?
    private var currentPath = ""
    // GNU sparse 1.0 state
    private var sparseBuf: [UInt8] = []
    private var sparseRegions: [(offset: UInt64, size: UInt64)] = []
    private var sparseIndex = 0
    private var sparseEmitted: UInt64 = 0
    private var sparseRealSize: UInt64 = 0
    private var sparseDataSize: UInt64 = 0
    private static let zeros = [UInt8](repeating: 0, count: 64 * 1024)
    /// Largest pax/GNU extended header accepted.
    package let maxExtendedSize: Int
    /// Offset in the tar stream of the next byte to be consumed.
    package private(set) var position: UInt64
    /// True once the end-of-archive marker (a zero block) was read.
    package var finished: Bool { if case .end = state { return true } else { return false } }
    /// True when the parser sits between entries (a safe place to stop).
    package var atEntryBoundary: Bool {
        if case .header = state { return block.isEmpty && entryHeaderOffset == nil }
        return false
    }

    /// - Parameters:
    ///   - startOffset: tar-stream offset of the first byte fed (for reporting offsets).
    ///   - maxExtendedSize: bound on pax and GNU long-name data (default 1 MiB).
    package init(handler: any TarEntryHandler, startOffset: UInt64 = 0, maxExtendedSize: Int = 1 << 20) {
        self.handler = handler
        self.position = startOffset
        self.maxExtendedSize = maxExtendedSize
        block.reserveCapacity(512)
    }

    /// Consumes bytes. Bytes after the end-of-archive marker are ignored.
    package func feed(_ input: UnsafeRawBufferPointer) throws {
        guard let base = input.baseAddress else { return }
        var off = 0
        let n = input.count
        while off < n {
            switch state {
            case .end:
                position += UInt64(n - off)
                return
            case .header:
                let take = min(512 - block.count, n - off)
                block.append(contentsOf: UnsafeRawBufferPointer(start: base + off, count: take))
                off += take; position += UInt64(take)
                if block.count == 512 {
                    try parseHeaderBlock()
                    block.removeAll(keepingCapacity: true)
                }
            case .extended(let kind, let remaining):
                let take = min(remaining, n - off)
                if take > 0 {
                    extBuf.append(contentsOf: UnsafeRawBufferPointer(start: base + off, count: take))
                    off += take; position += UInt64(take)
                }
                if remaining - take == 0 {
                    try finishExtended(kind)
                    let pad = extPadding
                    state = pad > 0 ? .skip(remaining: UInt64(pad)) : .header
                } else {
                    state = .extended(kind: kind, remaining: remaining - take)
                }
            case .content(let remaining):
                let take = Int(min(remaining, UInt64(n - off)))
                if take > 0 {
                    if wantContent { try handler.entryContent(UnsafeRawBufferPointer(start: base + off, count: take)) }
                    off += take; position += UInt64(take)
                }
                let left = remaining - UInt64(take)
                if left == 0 {
                    try handler.endEntry()
                    entryHeaderOffset = nil
                    let pad = Int((512 - position % 512) % 512)
                    state = pad > 0 ? .skip(remaining: UInt64(pad)) : .header
                } else {
                    state = .content(remaining: left)
                }
            case .sparseMap(let remaining):
                let take = Int(min(UInt64(512 - sparseBuf.count % 512), min(remaining, UInt64(n - off))))
                sparseBuf.append(contentsOf: UnsafeRawBufferPointer(start: base + off, count: take))
                off += take; position += UInt64(take)
                let left = remaining - UInt64(take)
                if sparseBuf.count % 512 == 0 || left == 0 {
                    if try parseSparseMap() {
                        guard UInt64(sparseBuf.count) + sparseRegions.reduce(0, { $0 + $1.size }) == sparseDataSize else {
                            throw malformed("GNU sparse map of '\(currentPath)' does not match the entry's data size")
                        }
                        state = .sparseData(remaining: left)
                        try sparseAdvance(remaining: left)
                        continue
                    }
                    if sparseBuf.count > maxExtendedSize || left == 0 {
                        throw malformed("GNU sparse map of '\(currentPath)' is malformed or too large")
                    }
                }
                state = .sparseMap(remaining: left)
            case .sparseData(let remaining):
                guard sparseIndex < sparseRegions.count else { try sparseAdvance(remaining: remaining); continue }
                let r = sparseRegions[sparseIndex]
                let regionLeft = r.offset + r.size - sparseEmitted
                let take = Int(min(regionLeft, UInt64(n - off)))
                if take > 0 {
                    if wantContent { try handler.entryContent(UnsafeRawBufferPointer(start: base + off, count: take)) }
                    off += take; position += UInt64(take); sparseEmitted += UInt64(take)
                }
                state = .sparseData(remaining: remaining - UInt64(take))
                if sparseEmitted == r.offset + r.size { sparseIndex += 1 }
                try sparseAdvance(remaining: remaining - UInt64(take))
            case .skip(let remaining):
                let take = Int(min(remaining, UInt64(n - off)))
                off += take; position += UInt64(take)
                let left = remaining - UInt64(take)
                state = left == 0 ? .header : .skip(remaining: left)
            }
        }
    }

    package func feed(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try feed($0) } }

    /// Declares the end of the tar stream.
    /// - Throws: `ArchiveError.truncated` when the stream stops inside an entry or before the
    ///   end-of-archive marker (unless `requireEndMarker` is false and the stream stopped
    ///   cleanly between entries).
    package func finish(requireEndMarker: Bool = true) throws {
        if finished { return }
        if !requireEndMarker && atEntryBoundary { return }
        let what: String
        switch state {
        case .content, .sparseMap, .sparseData: what = "inside the content of '\(currentPath)'"
        case .extended: what = "inside an extended header"
        default: what = block.isEmpty && entryHeaderOffset == nil ? "before the end-of-archive marker" : "inside a header"
        }
        throw ArchiveError(.truncated, "the tar stream ends \(what) at offset \(position); the archive is incomplete")
    }

    private func malformed(_ msg: String) -> ArchiveError {
        ArchiveError(.malformed, "\(msg) (header at tar offset \(position - 512))")
    }

    private func parseHeaderBlock() throws {
        let hdrOffset = position - 512
        if block.allSatisfy({ $0 == 0 }) {
            if entryHeaderOffset != nil { throw malformed("end-of-archive marker right after an extended header") }
            state = .end
            return
        }
        // Checksum: unsigned sum with the field as spaces; the signed sum is accepted too.
        var usum = 0, ssum = 0
        for i in 0..<512 {
            let b = (148..<156).contains(i) ? UInt8(ascii: " ") : block[i]
            usum += Int(b); ssum += Int(Int8(bitPattern: b))
        }
        guard let stored = try? parseNumber(148, 8), stored == Int64(usum) || stored == Int64(ssum) else {
            throw malformed("header checksum mismatch (not a tar archive, or corrupted)")
        }
        if entryHeaderOffset == nil { entryHeaderOffset = hdrOffset }
        let magic = Array(block[257..<263])
        let isPosix = magic == Array("ustar\0".utf8)
        let isGNU = magic == Array("ustar ".utf8)
        let flag = block[156]
        let size = try parseNumber(124, 12)
        guard size >= 0 else { throw malformed("negative size") }

        switch flag {
        case UInt8(ascii: "x"), UInt8(ascii: "g"), UInt8(ascii: "L"), UInt8(ascii: "K"):
            guard size <= Int64(maxExtendedSize) else {
                throw malformed("extended header of \(size) bytes exceeds the \(maxExtendedSize)-byte limit")
            }
            extBuf.removeAll(keepingCapacity: true)
            extPadding = Int((512 - size % 512) % 512)
            if size == 0 { try finishExtended(flag); state = .header } else { state = .extended(kind: flag, remaining: Int(size)) }
            return
        case UInt8(ascii: "V"):
            // GNU volume label: not an entry.
            entryHeaderOffset = nil
            state = size > 0 ? .skip(remaining: UInt64(size + (512 - size % 512) % 512)) : .header
            return
        default: break
        }

        // Build the entry.
        var name: [UInt8]
        if let ln = longName { name = ln } else {
            name = cString(0, 100)
            if isPosix {
                let prefix = cString(345, 155)
                if !prefix.isEmpty { name = prefix + [UInt8(ascii: "/")] + name }
            }
        }
        var link: [UInt8] = longLink ?? cString(157, 100)
        var type: EntryType
        switch flag {
        case UInt8(ascii: "0"), 0, UInt8(ascii: "7"): type = .file
        case UInt8(ascii: "1"): type = .hardlink
        case UInt8(ascii: "2"): type = .symlink
        case UInt8(ascii: "3"): type = .charDevice
        case UInt8(ascii: "4"): type = .blockDevice
        case UInt8(ascii: "5"), UInt8(ascii: "D"): type = .directory
        case UInt8(ascii: "6"): type = .fifo
        case UInt8(ascii: "S"): throw malformed("GNU sparse entries (type 'S') are not supported")
        case UInt8(ascii: "M"): throw malformed("multi-volume entries (type 'M') are not supported")
        default:
            throw malformed("unknown entry type '\(flag >= 32 && flag < 127 ? String(UnicodeScalar(flag)) : "\\(\(flag))")'")
        }
        var pax = globalPax
        for (k, v) in pendingPax { if v.isEmpty { pax[k] = nil } else { pax[k] = v } }
        if let p = pax["path"] { name = p }
        if let l = pax["linkpath"] { link = l }
        if type == .file && (flag == 0 || flag == UInt8(ascii: "0")) && !isPosix && !isGNU && name.last == UInt8(ascii: "/") {
            type = .directory  // v7: directories are files whose name ends in "/"
        }
        while name.count > 1 && name.last == UInt8(ascii: "/") { name.removeLast() }
        if name.isEmpty { throw malformed("entry with an empty name") }

        var e = EntryMetadata(path: String(decoding: name, as: UTF8.self), type: type)
        currentPath = e.path
        e.mode = UInt32(truncatingIfNeeded: try parseNumber(100, 8)) & 0o7777
        e.uid = UInt32(truncatingIfNeeded: try parseNumber(108, 8))
        e.gid = UInt32(truncatingIfNeeded: try parseNumber(116, 8))
        var fullSize = UInt64(size)
        e.mtimeSeconds = try parseNumber(136, 12)
        if isPosix || isGNU {
            let un = cString(265, 32), gn = cString(297, 32)
            if !un.isEmpty { e.uname = String(decoding: un, as: UTF8.self) }
            if !gn.isEmpty { e.gname = String(decoding: gn, as: UTF8.self) }
            if type == .charDevice || type == .blockDevice {
                e.devMajor = UInt32(truncatingIfNeeded: try parseNumber(329, 8))
                e.devMinor = UInt32(truncatingIfNeeded: try parseNumber(337, 8))
            }
        }
        if type == .symlink || type == .hardlink {
            guard !link.isEmpty else { throw malformed("link '\(e.path)' without a target") }
            e.linkTarget = String(decoding: link, as: UTF8.self)
        }
        // pax overrides
        for (k, v) in pax {
            switch k {
            case "path", "linkpath": break
            case "size": fullSize = try paxUInt(k, v)
            case "uid": e.uid = UInt32(truncatingIfNeeded: try paxUInt(k, v))
            case "gid": e.gid = UInt32(truncatingIfNeeded: try paxUInt(k, v))
            case "uname": e.uname = String(decoding: v, as: UTF8.self)
            case "gname": e.gname = String(decoding: v, as: UTF8.self)
            case "mtime": (e.mtimeSeconds, e.mtimeNanoseconds) = try paxTime(v)
            default:
                if k.hasPrefix("SCHILY.xattr.") {
                    e.xattrs[String(k.dropFirst("SCHILY.xattr.".count))] = v
                } else if k.hasPrefix("GNU.sparse.") && !(pax["GNU.sparse.major"] == Array("1".utf8) && pax["GNU.sparse.minor"] == Array("0".utf8)) {
                    throw malformed("GNU sparse entries in format 0.x (pax \(k)) are not supported; only pax sparse 1.0")
                }
                // atime, ctime, comment, charset, SCHILY.dev/ino/nlink, ...: not needed.
            }
        }
        pendingPax.removeAll(); longName = nil; longLink = nil
        // Data follows only for regular files (and hardlinks/dirs that carry a size: skipped).
        let dataSize: UInt64 = fullSize
        if type == .file { e.size = fullSize }
        let headerOffset = entryHeaderOffset ?? hdrOffset
        if type == .file, pax["GNU.sparse.major"] == Array("1".utf8), pax["GNU.sparse.minor"] == Array("0".utf8) {
            // GNU/libarchive pax sparse 1.0: real name and size in pax, a decimal map at the
            // start of the data, then the data regions. Holes are handed on as zeros.
            guard let rn = pax["GNU.sparse.name"], !rn.isEmpty, let rs = pax["GNU.sparse.realsize"] else {
                throw malformed("GNU sparse 1.0 entry without GNU.sparse.name/realsize")
            }
            e.path = String(decoding: rn, as: UTF8.self)
            while e.path.count > 1 && e.path.hasSuffix("/") { e.path.removeLast() }
            currentPath = e.path
            sparseRealSize = try paxUInt("GNU.sparse.realsize", rs)
            e.size = sparseRealSize
            sparseBuf.removeAll(keepingCapacity: true)
            sparseRegions = []; sparseIndex = 0; sparseEmitted = 0; sparseDataSize = dataSize
            wantContent = try handler.beginEntry(e, headerOffset: headerOffset)
            if dataSize == 0 { throw malformed("GNU sparse entry '\(e.path)' without a map") }
            state = .sparseMap(remaining: dataSize)
            return
        }
        wantContent = try handler.beginEntry(e, headerOffset: headerOffset)
        if type == .file || dataSize == 0 {
            if dataSize == 0 {
                try handler.endEntry()
                entryHeaderOffset = nil
                state = .header
            } else {
                state = .content(remaining: dataSize)
            }
        } else {
            // Non-file entry with data (GNU dumpdir, pax hardlink data): skip it.
            try handler.endEntry()
            entryHeaderOffset = nil
            state = .skip(remaining: dataSize + (512 - dataSize % 512) % 512)
        }
    }

    /// Parses the sparse map in `sparseBuf` if complete: count, then offset/size pairs, each a
    /// decimal number ending in "\n". Returns false if more blocks are needed.
    private func parseSparseMap() throws -> Bool {
        var nums: [UInt64] = []
        var cur: UInt64 = 0
        var digits = 0
        for b in sparseBuf {
            if b == UInt8(ascii: "\n") {
                guard digits > 0 else { throw malformed("empty number in the GNU sparse map of '\(currentPath)'") }
                nums.append(cur); cur = 0; digits = 0
                if let count = nums.first {
                    guard count <= UInt64(maxExtendedSize / 4) else { throw malformed("GNU sparse map of '\(currentPath)' has too many regions") }
                    if UInt64(nums.count) == 1 + 2 * count { break }
                }
            } else if b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") && digits < 20 {
                let (m, o1) = cur.multipliedReportingOverflow(by: 10)
                let (a, o2) = m.addingReportingOverflow(UInt64(b - UInt8(ascii: "0")))
                guard !o1 && !o2 else { throw malformed("number too large in the GNU sparse map of '\(currentPath)'") }
                cur = a; digits += 1
            } else {
                throw malformed("invalid byte in the GNU sparse map of '\(currentPath)'")
            }
        }
        guard let count = nums.first, UInt64(nums.count) == 1 + 2 * count else { return false }
        var regions: [(offset: UInt64, size: UInt64)] = []
        var end: UInt64 = 0
        for i in 0..<Int(count) {
            let o = nums[1 + 2 * i], z = nums[2 + 2 * i]
            guard o >= end, o <= sparseRealSize, z <= sparseRealSize - o else {
                throw malformed("GNU sparse map of '\(currentPath)' has overlapping or out-of-range regions")
            }
            regions.append((o, z)); end = o + z
        }
        // The map occupies whole blocks.
        let used = sparseBuf.count
        guard used % 512 == 0 else { return false }
        sparseRegions = regions
        return true
    }

    /// Emits zeros up to the next region (or to the real size after the last), ends the
    /// entry when everything is out.
    private func sparseAdvance(remaining: UInt64) throws {
        while true {
            while sparseIndex < sparseRegions.count && sparseRegions[sparseIndex].size == 0 && sparseEmitted >= sparseRegions[sparseIndex].offset {
                sparseIndex += 1
            }
            let target = sparseIndex < sparseRegions.count ? sparseRegions[sparseIndex].offset : sparseRealSize
            while sparseEmitted < target {
                let n = Int(min(UInt64(Self.zeros.count), target - sparseEmitted))
                if wantContent { try Self.zeros.withUnsafeBytes { try handler.entryContent(UnsafeRawBufferPointer(rebasing: $0[0..<n])) } }
                sparseEmitted += UInt64(n)
            }
            if sparseIndex < sparseRegions.count && sparseRegions[sparseIndex].size == 0 { continue }
            break
        }
        if sparseIndex >= sparseRegions.count {
            guard remaining == 0 else { throw malformed("GNU sparse entry '\(currentPath)' has data after its last region") }
            try handler.endEntry()
            entryHeaderOffset = nil
            let pad = Int((512 - position % 512) % 512)
            state = pad > 0 ? .skip(remaining: UInt64(pad)) : .header
        }
    }

    private func finishExtended(_ kind: UInt8) throws {
        switch kind {
        case UInt8(ascii: "L"), UInt8(ascii: "K"):
            var v = extBuf
            while let last = v.last, last == 0 { v.removeLast() }
            if kind == UInt8(ascii: "L") { longName = v } else { longLink = v }
        default:
            let recs = try parsePaxRecords(extBuf)
            if kind == UInt8(ascii: "g") {
                for (k, v) in recs { if v.isEmpty { globalPax[k] = nil } else { globalPax[k] = v } }
                entryHeaderOffset = nil
            } else {
                for (k, v) in recs { pendingPax[k] = v }
            }
        }
    }

    private func parsePaxRecords(_ buf: [UInt8]) throws -> [(String, [UInt8])] {
        var out: [(String, [UInt8])] = []
        var i = 0
        while i < buf.count {
            // GNU tar pads pax data with NULs only after the records; tolerate trailing NULs.
            if buf[i] == 0 && buf[i...].allSatisfy({ $0 == 0 }) { break }
            var j = i
            var len = 0
            while j < buf.count, buf[j] >= UInt8(ascii: "0"), buf[j] <= UInt8(ascii: "9"), j - i < 10 {
                len = len * 10 + Int(buf[j] - UInt8(ascii: "0")); j += 1
            }
            guard j > i, j < buf.count, buf[j] == UInt8(ascii: " "), len > j - i + 1, i + len <= buf.count,
                  buf[i + len - 1] == UInt8(ascii: "\n") else {
                throw malformed("malformed pax record at byte \(i) of the extended header")
            }
            let body = buf[(j + 1)..<(i + len - 1)]
            guard let eq = body.firstIndex(of: UInt8(ascii: "=")), eq > body.startIndex else {
                throw malformed("pax record without 'key=' at byte \(i) of the extended header")
            }
            let key = String(decoding: body[body.startIndex..<eq], as: UTF8.self)
            out.append((key, Array(body[(eq + 1)...])))
            i += len
        }
        return out
    }

    private func paxUInt(_ k: String, _ v: [UInt8]) throws -> UInt64 {
        guard !v.isEmpty, v.count <= 20, v.allSatisfy({ $0 >= 48 && $0 <= 57 }),
              let n = UInt64(String(decoding: v, as: UTF8.self)) else {
            throw malformed("pax \(k) value '\(String(decoding: v.prefix(40), as: UTF8.self))' is not a number")
        }
        return n
    }

    private func paxTime(_ v: [UInt8]) throws -> (Int64, UInt32) {
        let s = String(decoding: v, as: UTF8.self)
        var body = Substring(s)
        let neg = body.hasPrefix("-")
        if neg { body = body.dropFirst() }
        let parts = body.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard let wholeStr = parts.first, !wholeStr.isEmpty, wholeStr.count <= 18,
              wholeStr.allSatisfy({ $0.isASCII && $0.isNumber }), let whole = Int64(wholeStr) else {
            throw malformed("pax mtime '\(s.prefix(40))' is not a time")
        }
        var ns: Int64 = 0
        if parts.count == 2 {
            let f = parts[1]
            guard f.allSatisfy({ $0.isASCII && $0.isNumber }) else { throw malformed("pax mtime '\(s.prefix(40))' is not a time") }
            let digits = String(f.prefix(9)).padding(toLength: 9, withPad: "0", startingAt: 0)
            ns = Int64(digits) ?? 0
        }
        if !neg { return (whole, UInt32(ns)) }
        // -1.5 = -2 s + 0.5e9 ns
        if ns == 0 { return (-whole, 0) }
        return (-whole - 1, UInt32(1_000_000_000 - ns))
    }

    private func cString(_ at: Int, _ len: Int) -> [UInt8] {
        var end = at
        while end < at + len && block[end] != 0 { end += 1 }
        return Array(block[at..<end])
    }

    /// Octal (space/NUL padded) or GNU base-256 (first byte 0x80 positive, 0xff negative).
    private func parseNumber(_ at: Int, _ len: Int) throws -> Int64 {
        let first = block[at]
        if first & 0x80 != 0 {
            let neg = first == 0xff
            guard first == 0x80 || neg else { throw malformed("bad base-256 number at byte \(at)") }
            var v: Int64 = neg ? -1 : 0
            var significant = 0
            for i in 1..<len {
                if significant > 0 || block[at + i] != (neg ? 0xff : 0) { significant += 1 }
                guard significant <= 7 else { throw malformed("base-256 number at byte \(at) is too large") }
                v = (v << 8) | Int64(block[at + i])
            }
            return v
        }
        var i = at
        let end = at + len
        while i < end && block[i] == UInt8(ascii: " ") { i += 1 }
        var v: Int64 = 0
        var any = false
        while i < end {
            let c = block[i]
            if c == 0 || c == UInt8(ascii: " ") { break }
            guard c >= UInt8(ascii: "0") && c <= UInt8(ascii: "7") else {
                throw malformed("invalid octal digit in numeric field at byte \(at)")
            }
            guard v < (Int64(1) << 60) else { throw malformed("numeric field at byte \(at) is too large") }
            v = v * 8 + Int64(c - UInt8(ascii: "0")); any = true
            i += 1
        }
        // The rest must be terminators only.
        while i < end {
            guard block[i] == 0 || block[i] == UInt8(ascii: " ") else { throw malformed("garbage after numeric field at byte \(at)") }
            i += 1
        }
        _ = any  // an all-blank field reads as 0 (old tars leave some fields empty)
        return v
    }
}
