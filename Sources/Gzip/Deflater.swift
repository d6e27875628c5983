// Gzip: the only importer of CZlib and CLibdeflate.
//
// Compression is libdeflate's (whole buffers: an archive member is compressed at once);
// decompression is zlib's streaming inflate over a z_stream kept at a stable heap address, since
// archives from elsewhere come as one long member. Gzip member framing (RFC 1952: header, CRC32,
// ISIZE trailer) is done here so that callers can produce independent members (compressed in
// parallel, written in order) and read concatenated multi-member streams. What it does not do:
// threading (callers own that) and file I/O (callers hand bytes in and take bytes out).
internal import CLibdeflate

/// A failure reported by zlib, with the call that failed and zlib's message.
package struct GzipError: Error, CustomStringConvertible, Equatable {
    package enum Kind: Sendable, Equatable { case corrupt, truncated, internalError }
    package var kind: Kind
    package var detail: String
    package var description: String {
        switch kind {
        case .corrupt: return "gzip data is corrupt: \(detail)"
        case .truncated: return "gzip data ends early (truncated file?): \(detail)"
        case .internalError: return "zlib or ISA-L failed: \(detail)"
        }
    }
}

/// How one member's payload is encoded.
package enum GzipLevel: Sendable, Equatable {
    /// Deflate "stored" blocks: no compression work, used for incompressible data.
    case store
    /// Deflate at level 1...9 (libdeflate's levels, which track zlib's in size at less CPU).
    case deflate(Int32)
}

/// CRC-32 as gzip uses it.
/// The corresponding libdeflate call is `libdeflate_crc32` (several times zlib's `crc32`).
package func gzipCRC32(_ bytes: UnsafeRawBufferPointer, initial: UInt32 = 0) -> UInt32 {
    guard let base = bytes.baseAddress, bytes.count > 0 else { return initial }
    return libdeflate_crc32(initial, base, bytes.count)
}

/// Compresses whole gzip members, each either all deflated or all stored. One instance per
/// thread; reusable across members. (A special case of `GzipSegmentedEncoder`, which it uses.)
package final class GzipMemberEncoder {
    private let encoder = GzipSegmentedEncoder()

    package init() {}

    /// Appends one complete gzip member holding `payload` to `out`.
    /// - Parameters:
    ///   - payload: the uncompressed bytes of the member.
    ///   - level: `.store` for incompressible data, `.deflate(n)` otherwise.
    ///   - out: receives header, deflate data and trailer.
    /// The corresponding libdeflate call is `libdeflate_deflate_compress`.
    package func encodeMember(_ payload: UnsafeRawBufferPointer, level: GzipLevel, into out: inout [UInt8]) {
        switch level {
        case .store:
            encoder.encodeMember(payload, storeRanges: [0..<payload.count], level: 6, into: &out)
        case .deflate(let n):
            encoder.encodeMember(payload, storeRanges: [], level: n, into: &out)
        }
    }

    /// Convenience: one member as a new array.
    package func member(_ payload: [UInt8], level: GzipLevel) -> [UInt8] {
        var out: [UInt8] = []
        payload.withUnsafeBytes { encodeMember($0, level: level, into: &out) }
        return out
    }
}
