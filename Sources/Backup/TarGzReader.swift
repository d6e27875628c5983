import Foundation
import Gzip
import Storage
import Support

/// One tar header as read (pax/GNU long names applied).
struct TarHeaderInfo {
    var path: String
    var flag: UInt8
    var size: UInt64
    var link: String
    /// Where the entry's first header block (including a pax header before it) starts.
    var memberOffset: UInt64
    var memberSkip: UInt64
}

/// Reads a tar.gz from a Destination starting at any gzip member, treating the bytes as
/// hostile: header checksums are checked, pax records are bounded and must be well formed,
/// sizes must be in range; anything else is an error naming the archive and offset.
final class TarGzReader {
    let reader: any DestinationReader
    let name: String
    private var decoder = GzipDecoder()
    private var startOffset: UInt64 = 0
    private var compressedPos: UInt64 = 0
    private var buf: [UInt8] = []
    private var bufStart = 0
    /// Uncompressed bytes consumed since `startOffset` (relative position).
    private(set) var position: UInt64 = 0
    private var produced: UInt64 = 0
    /// (compressed start, uncompressed start relative) of members seen since `startOffset`.
    private var members: [(UInt64, UInt64)] = []
    private var inputDone = false
    private let chunk = 1 << 20

    init(reader: any DestinationReader, name: String) {
        self.reader = reader
        self.name = name
    }

    /// Restarts decompression at the member starting at compressed offset `offset`.
    func restart(at offset: UInt64) {
        decoder = GzipDecoder()
        startOffset = offset
        compressedPos = offset
        buf = []; bufStart = 0
        position = 0; produced = 0
        members = [(offset, 0)]
        inputDone = false
        decoder.onMemberEnd = { [unowned self] b in
            self.members.append((self.startOffset + b.compressedOffset + b.compressedLength, b.uncompressedOffset + b.uncompressedLength))
        }
    }

    /// Positions the reader at (member, skip): reuses the current stream when that point lies
    /// ahead within `maxSkip`, else restarts at the member.
    func seek(memberOffset: UInt64, skip: UInt64, maxSkip: UInt64 = 8 << 20) throws {
        if !members.isEmpty {
            // Decode forward while the member lies a little ahead of what was decoded; all
            // buffered data then belongs to earlier members and is dropped.
            while members.last(where: { $0.0 == memberOffset }) == nil, let last = members.last,
                  last.0 < memberOffset, memberOffset - last.0 <= maxSkip, !inputDone {
                position += UInt64(available); bufStart = buf.count
                try fill(atLeast: 1)
            }
            if let m = members.last(where: { $0.0 == memberOffset }) {
                let target = m.1 + skip
                if target >= position && target - position <= maxSkip {
                    try self.skip(target - position)
                    return
                }
            }
        }
        restart(at: memberOffset)
        try self.skip(skip)
    }

    var available: Int { buf.count - bufStart }

    /// Compressed offset of the member being decoded.
    var lastMemberStart: UInt64 { members.last?.0 ?? startOffset }

    /// Decompresses the rest of the data (checks CRCs and that it is not truncated).
    func drainToEnd() throws {
        while !inputDone {
            position += UInt64(available); bufStart = buf.count
            try fill(atLeast: 1)
        }
        position += UInt64(available); bufStart = buf.count
    }

    /// Ensures at least `n` bytes are buffered (fewer only at end of the data).
    private func fill(atLeast n: Int) throws {
        while available < n && !inputDone {
            if bufStart > 0 && bufStart >= buf.count / 2 {
                buf.removeFirst(bufStart); bufStart = 0
            }
            let data = try reader.read(at: compressedPos, count: chunk)
            if data.isEmpty {
                inputDone = true
                do { try decoder.finish() } catch {
                    throw ToolError("archive \(name) is damaged: \(error)")
                }
                break
            }
            compressedPos += UInt64(data.count)
            do {
                try decoder.feed(data) { out in
                    buf.append(contentsOf: out)
                    produced += UInt64(out.count)
                }
            } catch {
                throw ToolError("archive \(name) is damaged near compressed offset \(compressedPos - UInt64(data.count)): \(error)")
            }
        }
    }

    /// Reads exactly `n` bytes, calling `body` with runs of them.
    func read(_ n: UInt64, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        var left = n
        while left > 0 {
            if available == 0 { try fill(atLeast: 1) }
            if available == 0 { throw ToolError("archive \(name) ends early (truncated?) at uncompressed offset \(position) after member \(startOffset)") }
            let take = Int(min(UInt64(available), left))
            try buf.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[bufStart ..< bufStart + take])) }
            bufStart += take
            position += UInt64(take)
            left -= UInt64(take)
        }
    }

    func readBytes(_ n: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(n)
        try read(UInt64(n)) { out.append(contentsOf: $0) }
        return out
    }

    func skip(_ n: UInt64) throws { try read(n) { _ in } }

    /// The (member, skip) of the current position.
    private func location() throws -> (UInt64, UInt64) {
        try fill(atLeast: 1)
        let m = members.last(where: { $0.1 <= position }) ?? members[0]
        return (m.0, position - m.1)
    }

    /// Reads the next entry's header(s). Nil at the end-of-archive marker.
    func nextHeader() throws -> TarHeaderInfo? {
        let (mOff, mSkip) = try location()
        var paxPath: String?, paxLink: String?, paxSize: UInt64?
        var gnuName: String?, gnuLink: String?
        for _ in 0 ..< 8 {
            let h = try readBytes(512)
            if h.allSatisfy({ $0 == 0 }) { return nil }
            try checkChecksum(h)
            let flag = h[156]
            let size = try number(h, 124, 12)
            switch flag {
            case 0x78, 0x67:  // pax 'x' / global 'g'
                guard size <= 1 << 20 else { throw malformed("pax header of \(size) bytes") }
                let body = try readBytes(Int(size))
                try skip((512 - size % 512) % 512)
                if flag == 0x78 {
                    for (k, v) in try parsePax(body) {
                        switch k {
                        case "path": paxPath = v
                        case "linkpath": paxLink = v
                        case "size": guard let s = UInt64(v) else { throw malformed("pax size '\(v)'") }; paxSize = s
                        default: break
                        }
                    }
                }
                continue
            case 0x4C, 0x4B:  // GNU long name / long link
                guard size <= 1 << 16 else { throw malformed("GNU long name of \(size) bytes") }
                var body = try readBytes(Int(size))
                try skip((512 - size % 512) % 512)
                if let z = body.firstIndex(of: 0) { body.removeSubrange(z...) }
                if flag == 0x4C { gnuName = String(decoding: body, as: UTF8.self) } else { gnuLink = String(decoding: body, as: UTF8.self) }
                continue
            default:
                break
            }
            var path = paxPath ?? gnuName ?? {
                let name = cString(h, 0, 100)
                let prefix = h[257 ..< 262].elementsEqual("ustar".utf8) ? cString(h, 345, 155) : ""
                return prefix.isEmpty ? name : prefix + "/" + name
            }()
            while path.hasSuffix("/") && path.count > 1 { path.removeLast() }
            let link = paxLink ?? gnuLink ?? cString(h, 157, 100)
            let realSize = (flag == 0x30 || flag == 0 || flag == 0x37) ? (paxSize ?? size) : 0
            return TarHeaderInfo(path: path, flag: flag == 0 ? 0x30 : flag, size: realSize, link: link, memberOffset: mOff, memberSkip: mSkip)
        }
        throw malformed("too many extension headers in a row")
    }

    private func malformed(_ what: String) -> ToolError {
        ToolError("archive \(name) is malformed at uncompressed offset \(position) after member \(startOffset): \(what)")
    }

    private func checkChecksum(_ h: [UInt8]) throws {
        var unsigned = 0, signed = 0
        for i in 0 ..< 512 {
            let b = (148 ..< 156).contains(i) ? UInt8(0x20) : h[i]
            unsigned += Int(b); signed += Int(Int8(bitPattern: b))
        }
        let stored = try number(h, 148, 8)
        guard stored == UInt64(unsigned) || Int(stored) == signed else { throw malformed("header checksum mismatch") }
    }

    private func number(_ h: [UInt8], _ at: Int, _ width: Int) throws -> UInt64 {
        if h[at] & 0x80 != 0 {
            var v: UInt64 = UInt64(h[at] & 0x7F)
            for i in at + 1 ..< at + width {
                guard v >> 56 == 0 else { throw malformed("base-256 number too large") }
                v = v << 8 | UInt64(h[i])
            }
            return v
        }
        var v: UInt64 = 0
        var seen = false
        for i in at ..< at + width {
            let c = h[i]
            if c == 0 || c == 0x20 { if seen { break } else { continue } }
            guard c >= 0x30 && c <= 0x37 else { throw malformed("bad octal digit in header field at \(at)") }
            v = v * 8 + UInt64(c - 0x30); seen = true
        }
        return v
    }

    private func cString(_ h: [UInt8], _ at: Int, _ width: Int) -> String {
        let slice = h[at ..< at + width]
        let end = slice.firstIndex(of: 0) ?? slice.endIndex
        return String(decoding: h[at ..< end], as: UTF8.self)
    }

    private func parsePax(_ body: [UInt8]) throws -> [(String, String)] {
        var out: [(String, String)] = []
        var p = 0
        while p < body.count {
            guard let sp = body[p...].firstIndex(of: 0x20), sp - p <= 10,
                  let len = Int(String(decoding: body[p ..< sp], as: UTF8.self)), len > 0, p + len <= body.count,
                  body[p + len - 1] == 0x0A,
                  let eq = body[(sp + 1) ..< (p + len)].firstIndex(of: 0x3D) else {
                throw malformed("bad pax record at byte \(p)")
            }
            out.append((String(decoding: body[(sp + 1) ..< eq], as: UTF8.self), String(decoding: body[(eq + 1) ..< (p + len - 1)], as: UTF8.self)))
            p += len
        }
        return out
    }
}
