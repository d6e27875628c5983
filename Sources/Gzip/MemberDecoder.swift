internal import CLibdeflate

/// Whole-member gzip decompression with libdeflate (2-3x zlib's `inflate` on tar data).
///
/// libdeflate needs a member's compressed bytes and room for its output at once, so it only
/// fits members of bounded size, such as hs-backup's (at most 2 MiB of tar each). Anything
/// else (a member larger than the room, one that runs past the bytes given, damaged data,
/// padding) makes `decode` return nil and the caller goes on with the streaming
/// `GzipDecoder`, which also gives the exact error. The CRC-32 and size in each member's
/// trailer are checked by libdeflate.
package final class GzipMemberDecoder {
    private let decompressor: OpaquePointer
    private var scratch: [UInt8]

    /// - Parameter maxOutput: the largest member (decompressed) decoded here.
    package init(maxOutput: Int = 4 << 20) {
        guard let d = libdeflate_alloc_decompressor() else { fatalError("libdeflate_alloc_decompressor failed (out of memory)") }
        decompressor = d
        scratch = [UInt8](repeating: 0, count: maxOutput)
    }

    deinit { libdeflate_free_decompressor(decompressor) }

    /// Decodes the gzip member at the start of `input`.
    /// - Returns: the member's compressed length and its decompressed bytes, or nil when this
    ///   decoder cannot tell (see the type's description).
    package func decode(_ input: UnsafeRawBufferPointer) -> (consumed: Int, output: [UInt8])? {
        guard let base = input.baseAddress, input.count >= 18 else { return nil }
        var consumed = 0, produced = 0
        let rc = scratch.withUnsafeMutableBytes { out in
            libdeflate_gzip_decompress_ex(decompressor, base, input.count, out.baseAddress, out.count, &consumed, &produced)
        }
        guard rc == LIBDEFLATE_SUCCESS, consumed > 0, consumed <= input.count else { return nil }
        return (consumed, Array(scratch[0 ..< produced]))
    }

    /// Decodes the gzip member that is the whole of `input`, whose decompressed length is known
    /// to be `length`, into this decoder's buffer and calls `body` with exactly those bytes (valid
    /// during the call only): no allocation per member.
    /// - Returns: what `body` returns; nil, without calling it, unless the member fits the buffer
    ///   and decodes to exactly `length` bytes using all of `input` (see the type's description).
    package func withMember<R>(_ input: [UInt8], length: Int, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R? {
        guard input.count >= 18, length >= 0, length <= scratch.count else { return nil }
        var consumed = 0, produced = 0
        let rc = input.withUnsafeBytes { in_ in
            scratch.withUnsafeMutableBytes { out in
                libdeflate_gzip_decompress_ex(decompressor, in_.baseAddress, in_.count, out.baseAddress, length, &consumed, &produced)
            }
        }
        guard rc == LIBDEFLATE_SUCCESS, produced == length, consumed == input.count else { return nil }
        return try scratch.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[0 ..< length])) }
    }

    /// Decodes the gzip member at the start of `input`, whose decompressed length is known to be
    /// `length`, straight into an array of that size (no scratch buffer, no copy).
    /// - Returns: nil unless it decodes to exactly `length` bytes (see the type's description).
    package static func decode(_ input: UnsafeRawBufferPointer, length: Int) -> (consumed: Int, output: [UInt8])? {
        guard let base = input.baseAddress, input.count >= 18, length >= 0,
              let d = libdeflate_alloc_decompressor() else { return nil }
        defer { libdeflate_free_decompressor(d) }
        var consumed = 0, produced = 0
        var ok = false
        let out = [UInt8](unsafeUninitializedCapacity: length) { buf, count in
            let rc = libdeflate_gzip_decompress_ex(d, base, input.count, buf.baseAddress, length, &consumed, &produced)
            ok = rc == LIBDEFLATE_SUCCESS && produced == length && consumed > 0 && consumed <= input.count
            count = ok ? length : 0
        }
        return ok ? (consumed, out) : nil
    }
}
