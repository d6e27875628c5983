internal import CZlib

/// Where one gzip member sits in a stream, reported as members end.
package struct GzipMemberBoundary: Sendable, Equatable {
    /// Offset of the member's first byte in the compressed stream.
    package var compressedOffset: UInt64
    /// Compressed length including header and trailer.
    package var compressedLength: UInt64
    /// Offset of the member's first decompressed byte in the decompressed stream.
    package var uncompressedOffset: UInt64
    package var uncompressedLength: UInt64
}

/// Streaming decompressor for (multi-member) gzip data.
///
/// Feed compressed bytes in any chunking with `feed`; decompressed bytes are handed to the
/// sink as they are produced. Each member's CRC32 and size are checked by zlib; a member end
/// is reported through `onMemberEnd`. Call `finish()` at end of input: it throws if the data
/// stops inside a member.
package final class GzipDecoder {
    private let stream: UnsafeMutablePointer<z_stream>
    private var outBuffer: [UInt8]
    private var inMember = false
    private var sawAnyMember = false
    private var memberStartCompressed: UInt64 = 0
    private var memberStartUncompressed: UInt64 = 0
    /// Compressed bytes consumed so far.
    package private(set) var compressedConsumed: UInt64 = 0
    /// Decompressed bytes produced so far.
    package private(set) var uncompressedProduced: UInt64 = 0
    package var onMemberEnd: ((GzipMemberBoundary) -> Void)?
    /// Added to offsets in error messages (where this decoder's input starts in the file).
    package var messageOffsetBase: UInt64 = 0

    /// - Parameter afterMembers: the input continues a stream whose earlier members were
    ///   decoded elsewhere (trailing zero padding is then allowed from the first byte).
    package init(outputChunk: Int = 256 * 1024, afterMembers: Bool = false) {
        sawAnyMember = afterMembers
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        outBuffer = [UInt8](repeating: 0, count: outputChunk)
        // 15 + 16: zlib parses and checks the gzip header and trailer itself.
        let rc = czlib_inflateInit2(stream, 15 + 16)
        precondition(rc == Z_OK, "inflateInit2 failed: \(rc)")
    }

    deinit {
        inflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
    }

    /// Decompresses `input`, calling `sink` with each run of output.
    /// - Throws: `GzipError.corrupt` for bad headers, bad CRCs or invalid deflate data.
    /// The corresponding zlib calls are `inflate` and `inflateReset`.
    package func feed(_ input: UnsafeRawBufferPointer, sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard let base = input.baseAddress, input.count > 0 else { return }
        var offset = 0
        while offset < input.count {
            if !inMember {
                // Trailing zero padding after the last member (as some tape-style writers add)
                // is tolerated; anything else must be a new member.
                if base.load(fromByteOffset: offset, as: UInt8.self) == 0 && sawAnyMember {
                    offset += 1; compressedConsumed += 1; continue
                }
                inMember = true
                sawAnyMember = true
                memberStartCompressed = compressedConsumed
                memberStartUncompressed = uncompressedProduced
            }
            let before = offset
            var rc: Int32 = Z_OK
            var produced = 0
            try outBuffer.withUnsafeMutableBufferPointer { obuf in
                stream.pointee.next_in = UnsafeMutablePointer(mutating: (base + offset).assumingMemoryBound(to: UInt8.self))
                stream.pointee.avail_in = UInt32(min(input.count - offset, Int(UInt32.max)))
                stream.pointee.next_out = obuf.baseAddress
                stream.pointee.avail_out = UInt32(obuf.count)
                rc = inflate(stream, Z_NO_FLUSH)
                produced = obuf.count - Int(stream.pointee.avail_out)
                let consumed = Int(stream.pointee.next_in - UnsafeMutablePointer(mutating: (base + offset).assumingMemoryBound(to: UInt8.self)))
                offset += consumed
                if produced > 0 { try sink(UnsafeRawBufferPointer(start: obuf.baseAddress, count: produced)) }
            }
            compressedConsumed += UInt64(offset - before)
            uncompressedProduced += UInt64(produced)
            switch rc {
            case Z_OK, Z_BUF_ERROR:
                if offset == before && produced == 0 { return }  // needs more input
            case Z_STREAM_END:
                inMember = false
                onMemberEnd?(GzipMemberBoundary(
                    compressedOffset: memberStartCompressed,
                    compressedLength: compressedConsumed - memberStartCompressed,
                    uncompressedOffset: memberStartUncompressed,
                    uncompressedLength: uncompressedProduced - memberStartUncompressed))
                inflateReset(stream)
            default:
                let msg = stream.pointee.msg.map { String(cString: $0) } ?? "inflate returned \(rc)"
                throw GzipError(kind: .corrupt, detail: "\(msg) at compressed offset \(messageOffsetBase + compressedConsumed)")
            }
        }
    }

    /// Convenience for arrays.
    package func feed(_ input: [UInt8], sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        try input.withUnsafeBytes { try feed($0, sink: sink) }
    }

    /// Declares the end of input.
    /// - Throws: `GzipError.truncated` if the input ended inside a member, `.corrupt` if
    ///   there was no gzip data at all.
    package func finish() throws {
        if inMember {
            throw GzipError(kind: .truncated, detail: "input ended inside a gzip member after \(compressedConsumed) bytes")
        }
        if !sawAnyMember {
            throw GzipError(kind: .corrupt, detail: "no gzip data (empty input)")
        }
    }

    /// Decompresses a whole buffer (all members) at once.
    package static func decompress(_ data: [UInt8]) throws -> [UInt8] {
        let d = GzipDecoder()
        var out: [UInt8] = []
        try d.feed(data) { out.append(contentsOf: $0) }
        try d.finish()
        return out
    }
}
