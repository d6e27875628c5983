// Tar header encoding: ustar blocks plus pax `x` records where ustar cannot express a value.

/// Builds the header blocks (pax extended header if needed, then the ustar header) for entries.
package enum TarHeader {
    static let blockSize = 512
    static let maxOctalSize: UInt64 = 0o77777777777        // 8 GiB - 1
    static let maxOctalId: UInt32 = 0o7777777               // 2^21 - 1
    static let maxOctalTime: Int64 = 0o77777777777

    /// The ustar typeflag for an entry type.
    static func typeflag(_ t: EntryType) -> UInt8 {
        switch t {
        case .file: return UInt8(ascii: "0")
        case .hardlink: return UInt8(ascii: "1")
        case .symlink: return UInt8(ascii: "2")
        case .charDevice: return UInt8(ascii: "3")
        case .blockDevice: return UInt8(ascii: "4")
        case .directory: return UInt8(ascii: "5")
        case .fifo: return UInt8(ascii: "6")
        }
    }

    /// Appends the header blocks for `e` to `out` (pax header first when needed).
    /// - Throws: `ArchiveError.invalidInput` for an empty or absolute path, or a device number
    ///   that no tar format can hold.
    package static func append(_ e: EntryMetadata, to out: inout [UInt8]) throws {
        if appendCommon(e, to: &out) { return }
        try appendGeneral(e, to: &out)
    }

    /// The common entry, written straight into `out` without intermediate arrays (the per-entry
    /// cost on a tree of a million tiny files): a file or directory with an ASCII name of at
    /// most 100 bytes or split into ustar's prefix and name (`ustarSplit`: Plex's bundle paths), owner, size and
    /// mtime that fit the ustar fields, no link, xattrs, names
    /// or sparse map; a pax `mtime` record when the mtime has nanoseconds. The same bytes as
    /// `appendGeneral` (`TarHeaderTextTests.commonHeadersEqualTheGeneralOnes`). Returns false,
    /// with nothing written, for any other entry.
    static func appendCommon(_ e: EntryMetadata, to out: inout [UInt8]) -> Bool {
        guard let n = commonSize(e) else { return false }
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: n))
        out.withUnsafeMutableBufferPointer { writeCommon(e, to: $0.baseAddress! + start) }
        return true
    }

    /// The bytes `appendCommon` writes for `e` (512, or 1536 with the pax `mtime` record),
    /// or nil when `e` is not a common entry.
    package static func commonSize(_ e: EntryMetadata) -> Int? {
        guard e.type == .file || e.type == .directory, e.linkBytes == nil, e.sparse == nil, e.xattrs.isEmpty,
              e.uname == nil, e.gname == nil, e.uid <= maxOctalId, e.gid <= maxOctalId,
              e.devMajor <= maxOctalId, e.devMinor <= maxOctalId,
              e.mtimeSeconds >= 0, e.mtimeSeconds <= maxOctalTime, e.mtimeNanoseconds < 1_000_000_000 else { return nil }
        let size: UInt64 = e.type == .file ? e.size : 0
        let slash = e.type == .directory ? 1 : 0
        let path = e.pathBytes
        guard size <= maxOctalSize, !path.isEmpty, path[0] != UInt8(ascii: "/"),
              path.allSatisfy({ $0 != 0 && $0 < 0x80 }) else { return nil }
        if path.count + slash > 100 {
            guard path.withUnsafeBufferPointer({ ustarSplit($0, nameCount: path.count + slash) }) != nil else { return nil }
        }
        return e.mtimeNanoseconds != 0 ? 3 * blockSize : blockSize
    }

    /// Where a name longer than 100 bytes (`nameCount`, a directory's trailing "/" included;
    /// `path` is the name without that "/") splits into ustar's prefix (at most 155 bytes) and
    /// name (1 to 100 bytes): the index of the "/" between them, the last one that fits, or nil
    /// (the name then goes in a pax `path` record). The one rule of `appendGeneral` and
    /// `writeCommon`.
    static func ustarSplit(_ path: UnsafeBufferPointer<UInt8>, nameCount: Int) -> Int? {
        guard nameCount <= 256 else { return nil }
        var i = min(nameCount - 2, 155)
        while i > 0 {
            if path[i] == UInt8(ascii: "/") && nameCount - i - 1 <= 100 && nameCount - i - 1 > 0 { return i }
            i -= 1
        }
        return nil
    }

    /// Writes the header of a common entry (`commonSize(e)` is not nil) into `commonSize(e)`
    /// zeroed bytes at `start`.
    package static func writeCommon(_ e: EntryMetadata, to start: UnsafeMutablePointer<UInt8>) {
        let size: UInt64 = e.type == .file ? e.size : 0
        var h = start
        e.pathBytes.withUnsafeBufferPointer { name in
            if e.mtimeNanoseconds != 0 {
                // "PaxHeaders/" + the last non-empty component (at most 89 bytes).
                var end = name.count
                while end > 0 && name[end - 1] == UInt8(ascii: "/") { end -= 1 }
                var first = end
                while first > 0 && name[first - 1] != UInt8(ascii: "/") { first -= 1 }
                var i = put("PaxHeaders/", at: h)
                if first == end {
                    h[i] = UInt8(ascii: "x")
                } else {
                    for k in first ..< min(end, first + 100 - 11) { h[i] = name[k]; i += 1 }
                }
                // The record "LEN mtime=SECONDS[.FRACTION]\n" in the next block.
                let r = h + blockSize
                withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 40) { t in
                    let value = writePaxTime(UInt64(e.mtimeSeconds), e.mtimeNanoseconds, to: t.baseAddress!)
                    let base = 5 + value + 3
                    var len = base + 1
                    while decimalDigits(len) + base != len { len = base + decimalDigits(len) }
                    var at = writeDecimal(UInt64(len), to: r)
                    at += put(" mtime=", at: r + at)
                    (r + at).update(from: t.baseAddress!, count: value)
                    r[at + value] = UInt8(ascii: "\n")
                    fillUstar(h, mode: 0o644, uid: 0, gid: 0, size: UInt64(len), mtime: e.mtimeSeconds, typeflag: UInt8(ascii: "x"))
                }
                h += 2 * blockSize
            }
            let slash = e.type == .directory ? 1 : 0
            if name.count + slash > 100, let split = ustarSplit(name, nameCount: name.count + slash) {
                // ustar's name field gets what follows the split, its prefix field (at 345) what precedes it.
                h.update(from: name.baseAddress! + split + 1, count: name.count - split - 1)
                if slash == 1 { h[name.count - split - 1] = UInt8(ascii: "/") }
                (h + 345).update(from: name.baseAddress!, count: split)
            } else {
                h.update(from: name.baseAddress!, count: name.count)
                if slash == 1 { h[name.count] = UInt8(ascii: "/") }
            }
        }
        fillUstar(h, mode: e.mode & 0o7777, uid: e.uid, gid: e.gid, size: size, mtime: e.mtimeSeconds, typeflag: typeflag(e.type))
    }

    /// Copies the text at `p`; returns its length.
    private static func put(_ text: StaticString, at p: UnsafeMutablePointer<UInt8>) -> Int {
        text.withUTF8Buffer { p.update(from: $0.baseAddress!, count: $0.count) }
        return text.utf8CodeUnitCount
    }

    /// The numeric fields, magic and checksum of a zeroed ustar block whose name is written.
    private static func fillUstar(_ h: UnsafeMutablePointer<UInt8>, mode: UInt32, uid: UInt32, gid: UInt32, size: UInt64,
                                  mtime: Int64, typeflag: UInt8) {
        func octal(_ v: UInt64, _ at: Int, _ len: Int) { writeOctal(v, h, at, len) }
        octal(UInt64(mode), 100, 8)
        octal(UInt64(uid), 108, 8)
        octal(UInt64(gid), 116, 8)
        octal(size, 124, 12)
        octal(UInt64(mtime), 136, 12)
        h[156] = typeflag
        h[257] = 0x75; h[258] = 0x73; h[259] = 0x74; h[260] = 0x61; h[261] = 0x72; h[262] = 0
        h[263] = 0x30; h[264] = 0x30
        for i in 148..<156 { h[i] = UInt8(ascii: " ") }
        octal(checksum(h), 148, 7)
        h[154] = 0
        h[155] = UInt8(ascii: " ")
    }

    /// The sum of the 512 bytes of the block at `h`, eight at a time: each word's bytes are
    /// added in four 16-bit lanes (at most 64 * 2 * 255 = 32,640 each, no carry between them),
    /// then the lanes (a byte at a time it was most of the cost of a header).
    static func checksum(_ h: UnsafePointer<UInt8>) -> UInt64 {
        let raw = UnsafeRawPointer(h)
        let even: UInt64 = 0x00FF_00FF_00FF_00FF
        var lanes: UInt64 = 0
        for k in 0 ..< blockSize / 8 {
            let w = raw.loadUnaligned(fromByteOffset: 8 * k, as: UInt64.self)
            lanes &+= (w & even) &+ ((w >> 8) & even)
        }
        return (lanes & 0xFFFF) + ((lanes >> 16) & 0xFFFF) + ((lanes >> 32) & 0xFFFF) + (lanes >> 48)
    }

    /// `len - 1` octal digits of `v`, zero padded, at `h[at]` (the NUL after them is already there).
    private static func writeOctal(_ v: UInt64, _ h: UnsafeMutablePointer<UInt8>, _ at: Int, _ len: Int) {
        var x = v
        var i = at + len - 2
        while i >= at { h[i] = UInt8(ascii: "0") + UInt8(x & 7); x >>= 3; i -= 1 }
    }

    /// Decimal digits of `v` at `p`; returns how many.
    private static func writeDecimal(_ v: UInt64, to p: UnsafeMutablePointer<UInt8>) -> Int {
        var n = 0, x = v
        repeat { x /= 10; n += 1 } while x > 0
        x = v
        for i in stride(from: n - 1, through: 0, by: -1) { p[i] = UInt8(ascii: "0") + UInt8(x % 10); x /= 10 }
        return n
    }

    /// `paxTimeBytes` of a non-negative time at `p` (room for 30 bytes); returns the length.
    private static func writePaxTime(_ sec: UInt64, _ nsec: UInt32, to p: UnsafeMutablePointer<UInt8>) -> Int {
        var n = writeDecimal(sec, to: p)
        var frac = UInt64(nsec)
        if frac == 0 { return n }
        var digits = 9
        while frac % 10 == 0 { frac /= 10; digits -= 1 }
        p[n] = UInt8(ascii: "."); n += 1
        var fracDigits = 0, x = frac
        while x > 0 { x /= 10; fracDigits += 1 }
        while digits > fracDigits { p[n] = UInt8(ascii: "0"); n += 1; digits -= 1 }
        return n + writeDecimal(frac, to: p + n)
    }

    /// `append` for every entry (pax records for whatever ustar cannot hold).
    static func appendGeneral(_ e: EntryMetadata, to out: inout [UInt8]) throws {
        guard !e.pathBytes.isEmpty, e.pathBytes[0] != UInt8(ascii: "/") else {
            throw ArchiveError(.invalidInput, entry: e.path, "entry paths must be relative and non-empty")
        }
        guard !e.pathBytes.contains(0) && !(e.linkBytes?.contains(0) ?? false) else {
            throw ArchiveError(.invalidInput, entry: e.path, "a name or link target contains a NUL byte")
        }
        var pax: [(String, [UInt8])] = []
        pax.reserveCapacity(4)
        let size: UInt64 = e.type == .file ? e.size : 0
        var name = e.pathBytes
        if e.type == .directory { name.append(UInt8(ascii: "/")) }
        let isASCII = { (b: [UInt8]) in b.allSatisfy { $0 < 0x80 && $0 != 0 } }
        // pax values are UTF-8 unless the header says `hdrcharset=BINARY` (POSIX; GNU tar writes
        // it for names that are not UTF-8, and GNU tar and bsdtar then take the bytes as they are).
        var binary = false

        // name / prefix
        var nameField: [UInt8] = name
        var prefixField: [UInt8] = []
        let nameIsASCII = isASCII(name)
        if !nameIsASCII || name.count > 100 {
            var split = false
            if nameIsASCII, let i = name.withUnsafeBufferPointer({ ustarSplit($0, nameCount: name.count) }) {
                prefixField = Array(name[..<i]); nameField = Array(name[(i + 1)...]); split = true
            }
            if !split {
                pax.append(("path", name))
                if !isUTF8(name) { binary = true }
                nameField = Array(asciiFallback(name).prefix(100))
                prefixField = []
            }
        }
        var linkField: [UInt8] = []
        if let l = e.linkBytes, e.type == .symlink || e.type == .hardlink {
            if l.isEmpty { throw ArchiveError(.invalidInput, entry: e.path, "a link needs a non-empty target") }
            if !isASCII(l) || l.count > 100 {
                pax.append(("linkpath", l)); linkField = Array(asciiFallback(l).prefix(100))
                if !isUTF8(l) { binary = true }
            } else { linkField = l }
        } else if e.type == .symlink || e.type == .hardlink {
            throw ArchiveError(.invalidInput, entry: e.path, "a link needs a target")
        }
        if let sp = e.sparse {
            pax += [("GNU.sparse.major", [UInt8(ascii: "1")]), ("GNU.sparse.minor", [UInt8(ascii: "0")]),
                    ("GNU.sparse.name", sp.realPath), ("GNU.sparse.realsize", Array(String(sp.realSize).utf8))]
            if !isUTF8(sp.realPath) { binary = true }
        }
        if binary { pax.insert(("hdrcharset", Array("BINARY".utf8)), at: 0) }
        if size > maxOctalSize { pax.append(("size", Array(String(size).utf8))) }
        if e.uid > maxOctalId { pax.append(("uid", Array(String(e.uid).utf8))) }
        if e.gid > maxOctalId { pax.append(("gid", Array(String(e.gid).utf8))) }
        let mtimeFits = e.mtimeSeconds >= 0 && e.mtimeSeconds <= maxOctalTime
        if !mtimeFits || e.mtimeNanoseconds != 0 {
            pax.append(("mtime", paxTimeBytes(e.mtimeSeconds, e.mtimeNanoseconds)))
        }
        if e.uname != nil || e.gname != nil {
            for (field, value) in [("uname", e.uname), ("gname", e.gname)] {
                if let v = value, !v.isEmpty {
                    let b = Array(v.utf8)
                    if !isASCII(b) || b.count > 31 { pax.append((field, b)) }
                }
            }
        }
        for key in e.xattrs.isEmpty ? [] : e.xattrs.keys.sorted() {
            let value = e.xattrs[key]!
            pax.append(("SCHILY.xattr." + key, value))
            // GNU tar `--acls` and bsdtar restore ACLs from these text records (bsdtar ignores
            // the binary xattrs): write both, from the same kernel value.
            if key == "system.posix_acl_access", let text = PosixACL.text(value) { pax.append(("SCHILY.acl.access", Array(text.utf8))) }
            if key == "system.posix_acl_default", let text = PosixACL.text(value) { pax.append(("SCHILY.acl.default", Array(text.utf8))) }
        }
        if e.devMajor > maxOctalId || e.devMinor > maxOctalId {
            throw ArchiveError(.invalidInput, entry: e.path, "device numbers \(e.devMajor),\(e.devMinor) do not fit a tar header")
        }

        if !pax.isEmpty {
            var records: [UInt8] = []
            records.reserveCapacity(64)
            for (k, v) in pax { appendPaxRecord(key: k, value: v, to: &records) }
            // The last non-empty "/"-separated component of the name ("x" if none).
            var end = name.count
            while end > 0 && name[end - 1] == UInt8(ascii: "/") { end -= 1 }
            var start = end
            while start > 0 && name[start - 1] != UInt8(ascii: "/") { start -= 1 }
            var xname: [UInt8] = []
            xname.reserveCapacity(100)
            xname.append(contentsOf: "PaxHeaders/".utf8)
            if start == end {
                xname.append(UInt8(ascii: "x"))
            } else {
                for b in name[start ..< min(end, start + 100 - 11)] { xname.append(b < 0x80 && b != 0 ? b : UInt8(ascii: "_")) }
            }
            appendUstar(name: xname, prefix: [], mode: 0o644, uid: 0, gid: 0, size: UInt64(records.count),
                        mtime: mtimeFits ? e.mtimeSeconds : 0, typeflag: UInt8(ascii: "x"), link: [],
                        uname: [], gname: [], devMajor: 0, devMinor: 0, to: &out)
            out.append(contentsOf: records)
            pad(&out, records.count)
        }
        let uname = e.uname.map { Array($0.utf8) }.flatMap { isASCII($0) && $0.count <= 31 ? $0 : nil } ?? []
        let gname = e.gname.map { Array($0.utf8) }.flatMap { isASCII($0) && $0.count <= 31 ? $0 : nil } ?? []
        appendUstar(name: nameField, prefix: prefixField, mode: e.mode & 0o7777,
                    uid: e.uid > maxOctalId ? 0 : e.uid, gid: e.gid > maxOctalId ? 0 : e.gid,
                    size: size > maxOctalSize ? 0 : size,
                    mtime: mtimeFits ? e.mtimeSeconds : 0, typeflag: typeflag(e.type), link: linkField,
                    uname: uname, gname: gname, devMajor: e.devMajor, devMinor: e.devMinor, to: &out)
    }

    /// Zero padding to the next 512-byte boundary after `count` content bytes.
    static func pad(_ out: inout [UInt8], _ count: Int) {
        let r = count % blockSize
        if r != 0 { out.append(contentsOf: repeatElement(0, count: blockSize - r)) }
    }

    /// True when `b` is valid UTF-8.
    static func isUTF8(_ b: [UInt8]) -> Bool {
        b.withUnsafeBufferPointer { String(validating: $0, as: UTF8.self) != nil }
    }

    /// Non-ASCII and NUL bytes replaced by "_", for the informational ustar fields a pax
    /// record overrides.
    static func asciiFallback(_ b: [UInt8]) -> [UInt8] { b.map { $0 < 0x80 && $0 != 0 ? $0 : UInt8(ascii: "_") } }

    /// pax decimal time: "-1.5", "1700000000.123456789" (trailing zeros trimmed).
    static func paxTime(_ sec: Int64, _ nsec: UInt32) -> String {
        let total = Int128(sec) * 1_000_000_000 + Int128(nsec)
        let neg = total < 0
        let mag = neg ? -total : total
        let whole = mag / 1_000_000_000
        var frac = Int(mag % 1_000_000_000)
        var s = (neg ? "-" : "") + String(whole)
        if frac != 0 {
            var digits = 9
            while frac % 10 == 0 { frac /= 10; digits -= 1 }
            let f = String(frac)
            s += "." + String(repeating: "0", count: digits - f.count) + f
        }
        return s
    }

    /// `paxTime` as bytes, built without intermediate Strings (the same text).
    static func paxTimeBytes(_ sec: Int64, _ nsec: UInt32) -> [UInt8] {
        let total = Int128(sec) * 1_000_000_000 + Int128(nsec)
        let neg = total < 0
        let mag = neg ? -total : total
        var out: [UInt8] = []
        out.reserveCapacity(32)
        if neg { out.append(UInt8(ascii: "-")) }
        appendDecimal(UInt64(mag / 1_000_000_000), to: &out)
        var frac = UInt64(mag % 1_000_000_000)
        if frac != 0 {
            var digits = 9
            while frac % 10 == 0 { frac /= 10; digits -= 1 }
            out.append(UInt8(ascii: "."))
            var d = digits
            var tmp: (UInt64, Int) = (frac, 0)
            while tmp.0 > 0 { tmp.0 /= 10; tmp.1 += 1 }
            while d > tmp.1 { out.append(UInt8(ascii: "0")); d -= 1 }
            appendDecimal(frac, to: &out)
        }
        return out
    }

    /// Decimal digits of `v` (no sign, no padding).
    static func appendDecimal(_ v: UInt64, to out: inout [UInt8]) {
        var digits: (UInt64, Int) = (v, 0)
        repeat { digits.0 /= 10; digits.1 += 1 } while digits.0 > 0
        let start = out.count
        out.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: digits.1))
        var x = v
        var i = start + digits.1 - 1
        while i >= start { out[i] = UInt8(ascii: "0") + UInt8(x % 10); x /= 10; i -= 1 }
    }

    /// Number of decimal digits of `v` (>= 1).
    static func decimalDigits(_ v: Int) -> Int {
        var n = 1, x = v
        while x >= 10 { x /= 10; n += 1 }
        return n
    }

    /// "LEN key=value\n" where LEN counts the whole record including its own digits.
    static func appendPaxRecord(key: String, value: [UInt8], to out: inout [UInt8]) {
        let base = key.utf8.count + value.count + 3
        var len = base + 1
        while decimalDigits(len) + base != len { len = base + decimalDigits(len) }
        appendDecimal(UInt64(len), to: &out)
        out.append(UInt8(ascii: " "))
        out.append(contentsOf: key.utf8)
        out.append(UInt8(ascii: "="))
        out.append(contentsOf: value)
        out.append(UInt8(ascii: "\n"))
    }

    static func appendUstar(name: [UInt8], prefix: [UInt8], mode: UInt32, uid: UInt32, gid: UInt32, size: UInt64,
                            mtime: Int64, typeflag: UInt8, link: [UInt8], uname: [UInt8], gname: [UInt8],
                            devMajor: UInt32, devMinor: UInt32, to out: inout [UInt8]) {
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: blockSize))
        out.withUnsafeMutableBufferPointer { buf in
            let h = buf.baseAddress! + start
            func put(_ bytes: [UInt8], _ at: Int, _ len: Int) {
                let n = min(bytes.count, len)
                for i in 0..<n { h[at + i] = bytes[i] }
            }
            put(name, 0, 100)
            put(link, 157, 100)
            put(uname, 265, 32)
            put(gname, 297, 32)
            if typeflag == UInt8(ascii: "3") || typeflag == UInt8(ascii: "4") {
                writeOctal(UInt64(devMajor), h, 329, 8)
                writeOctal(UInt64(devMinor), h, 337, 8)
            }
            put(prefix, 345, 155)
            // The numeric fields, magic and checksum: the same code as the common headers' path.
            fillUstar(h, mode: mode, uid: uid, gid: gid, size: size, mtime: mtime, typeflag: typeflag)
        }
    }
}

/// The Linux kernel's POSIX ACL xattr value (`system.posix_acl_access` / `_default`) as the
/// short text form `tar --acls` and libarchive read: `user::rw-,user:1000:r--,group::r--,mask::r--,other::r--`.
/// Numeric ids, as the backup records numeric owners.
enum PosixACL {
    /// nil when the value is not a version-2 ACL.
    static func text(_ v: [UInt8]) -> String? {
        guard v.count >= 4, (v.count - 4) % 8 == 0 else { return nil }
        func u16(_ o: Int) -> UInt16 { UInt16(v[o]) | UInt16(v[o + 1]) << 8 }
        func u32(_ o: Int) -> UInt32 { UInt32(v[o]) | UInt32(v[o + 1]) << 8 | UInt32(v[o + 2]) << 16 | UInt32(v[o + 3]) << 24 }
        guard u32(0) == 2 else { return nil }
        var parts: [String] = []
        var o = 4
        while o < v.count {
            let tag = u16(o), perm = u16(o + 2), id = u32(o + 4)
            let p = (perm & 4 != 0 ? "r" : "-") + (perm & 2 != 0 ? "w" : "-") + (perm & 1 != 0 ? "x" : "-")
            switch tag {
            case 0x01: parts.append("user::" + p)
            case 0x02: parts.append("user:\(id):" + p)
            case 0x04: parts.append("group::" + p)
            case 0x08: parts.append("group:\(id):" + p)
            case 0x10: parts.append("mask::" + p)
            case 0x20: parts.append("other::" + p)
            default: return nil
            }
            o += 8
        }
        return parts.joined(separator: ",")
    }
}
