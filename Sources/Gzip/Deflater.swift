// Gzip: the only importer of CZlib.
//
// Streaming deflate and inflate over a z_stream kept at a stable heap address for its whole
// life, with gzip member framing (RFC 1952: header, CRC32, ISIZE trailer) done here so that
// callers can produce independent members (compressed in parallel, written in order) and read
// concatenated multi-member streams. What it does not do: threading (callers own that) and
// file I/O (callers hand bytes in and take bytes out).
internal import CZlib

/// A failure reported by zlib, with the call that failed and zlib's message.
package struct GzipError: Error, CustomStringConvertible, Equatable {
    package enum Kind: Sendable, Equatable { case corrupt, truncated, internalError }
    package var kind: Kind
    package var detail: String
    package var description: String {
        switch kind {
        case .corrupt: return "gzip data is corrupt: \(detail)"
        case .truncated: return "gzip data ends early (truncated file?): \(detail)"
        case .internalError: return "zlib failed: \(detail)"
        }
    }
}

/// How one member's payload is encoded.
package enum GzipLevel: Sendable, Equatable {
    /// Deflate "stored" blocks: no compression work, used for incompressible data.
    case store
    /// Deflate at zlib level 1...9.
    case deflate(Int32)
}

/// CRC-32 as gzip uses it.
/// The corresponding zlib call is `crc32`.
package func gzipCRC32(_ bytes: UnsafeRawBufferPointer, initial: UInt32 = 0) -> UInt32 {
    guard let base = bytes.baseAddress, bytes.count > 0 else { return initial }
    var crc = UInt(initial)
    var p = base.assumingMemoryBound(to: UInt8.self)
    var left = bytes.count
    while left > 0 {
        let n = min(left, Int(UInt32.max >> 1))
        crc = crc32(crc, p, UInt32(n))
        p += n
        left -= n
    }
    return UInt32(truncatingIfNeeded: crc)
}

/// Compresses whole gzip members. One instance per thread; reusable across members.
///
/// The z_stream lives at a fixed heap address (zlib keeps internal back-pointers to it).
package final class GzipMemberEncoder {
    private let stream: UnsafeMutablePointer<z_stream>
    private var currentLevel: Int32

    package init() {
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        currentLevel = 6
        // Raw deflate (negative window bits): the gzip header and trailer are written here.
        let rc = czlib_deflateInit2(stream, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY)
        precondition(rc == Z_OK, "deflateInit2 failed: \(rc)")
    }

    deinit {
        deflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
    }

    /// Appends one complete gzip member holding `payload` to `out`.
    /// - Parameters:
    ///   - payload: the uncompressed bytes of the member.
    ///   - level: `.store` for incompressible data, `.deflate(n)` otherwise.
    ///   - out: receives header, deflate data and trailer.
    /// The corresponding zlib calls are `deflateParams`, `deflate` and `deflateReset`.
    package func encodeMember(_ payload: UnsafeRawBufferPointer, level: GzipLevel, into out: inout [UInt8]) {
        let zlevel: Int32
        switch level {
        case .store: zlevel = 0
        case .deflate(let n): zlevel = max(1, min(9, n))
        }
        deflateReset(stream)
        if zlevel != currentLevel {
            deflateParams(stream, zlevel, Z_DEFAULT_STRATEGY)
            currentLevel = zlevel
        }
        // Header: ID1 ID2 CM FLG MTIME(4) XFL OS. MTIME 0 keeps output reproducible.
        let xfl: UInt8 = zlevel == 9 ? 2 : (zlevel == 1 ? 4 : 0)
        out.append(contentsOf: [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 3])
        let bound = Int(deflateBound(stream, UInt(payload.count))) + 16
        let start = out.count
        out.reserveCapacity(start + bound + 8)
        out.append(contentsOf: repeatElement(0, count: bound))
        var produced = 0
        out.withUnsafeMutableBufferPointer { obuf in
            stream.pointee.next_in = UnsafeMutablePointer(mutating: payload.baseAddress?.assumingMemoryBound(to: UInt8.self))
            stream.pointee.avail_in = UInt32(payload.count)
            stream.pointee.next_out = obuf.baseAddress! + start
            stream.pointee.avail_out = UInt32(bound)
            let rc = deflate(stream, Z_FINISH)
            precondition(rc == Z_STREAM_END, "deflate with deflateBound output space must finish (rc \(rc))")
            produced = bound - Int(stream.pointee.avail_out)
        }
        out.removeLast(bound - produced)
        let crc = gzipCRC32(payload)
        let isize = UInt32(truncatingIfNeeded: payload.count)
        for v in [crc, isize] {
            out.append(UInt8(v & 0xff)); out.append(UInt8((v >> 8) & 0xff))
            out.append(UInt8((v >> 16) & 0xff)); out.append(UInt8(v >> 24))
        }
    }

    /// Convenience: one member as a new array.
    package func member(_ payload: [UInt8], level: GzipLevel) -> [UInt8] {
        var out: [UInt8] = []
        payload.withUnsafeBytes { encodeMember($0, level: level, into: &out) }
        return out
    }
}
