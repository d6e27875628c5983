internal import CIsal
import Glibc

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
/// sink as they are produced. Each member's header is parsed here (`GzipHeaderParser`, zlib's
/// rules); its deflate data is inflated, and its CRC-32 and size checked, by ISA-L's igzip
/// (about twice zlib's speed on tar data: issue 24). A member end is reported through
/// `onMemberEnd`. Call `finish()` at end of input: it throws if the data stops inside a member.
package final class GzipDecoder {
    private let state: OpaquePointer
    private var outBuffer: [UInt8]
    private var inMember = false
    /// In a member: its header is still being read (else its deflate data or trailer).
    private var header = GzipHeaderParser()
    private var inHeader = false
    /// The last inflate call filled the output buffer (ISA-L may hold more output).
    private var outputFull = false
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
        guard let s = cisal_inflate_new() else { fatalError("cannot allocate an inflate state (out of memory)") }
        state = OpaquePointer(s)
        outBuffer = [UInt8](repeating: 0, count: max(outputChunk, 1))
    }

    deinit { free(UnsafeMutableRawPointer(state)) }

    private var isal: UnsafeMutablePointer<inflate_state> { UnsafeMutablePointer(state) }

    /// Decompresses `input`, calling `sink` with each run of output.
    /// - Throws: `GzipError.corrupt` for bad headers, bad CRCs or sizes, or invalid deflate data.
    package func feed(_ input: UnsafeRawBufferPointer, sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        try run(input) { from, count, offset in try inflate(from, count, &offset, sink: sink) }
    }

    /// `feed`, each piece of output handed over as an array of its own: the array ISA-L wrote it
    /// into (no copy) when it fills a whole output chunk, else a copy of its size (every array is
    /// as large as its bytes, as before). For a consumer that keeps the output (a queue of
    /// chunks): copying every full chunk out of the decoder's buffer cost a memmove of each byte.
    package func feedArrays(_ input: [UInt8], sink: ([UInt8]) throws -> Void) throws {
        try input.withUnsafeBytes { raw in
            try run(raw) { from, count, offset in try inflateIntoArray(from, count, &offset, sink: sink) }
        }
    }

    /// The member/header loop of `feed`; `step` inflates from the pointer (`count` bytes left)
    /// and advances the offset.
    private func run(_ input: UnsafeRawBufferPointer, _ step: (UnsafeRawPointer, Int, inout Int) throws -> Void) throws {
        guard let base = input.baseAddress, input.count > 0 else { return }
        var offset = 0
        // A full output buffer may leave output inside ISA-L even when all input was taken.
        while offset < input.count || outputFull {
            if !inMember {
                // Trailing zero padding after the last member (as some tape-style writers add)
                // is tolerated; anything else must be a new member.
                if base.load(fromByteOffset: offset, as: UInt8.self) == 0 && sawAnyMember {
                    offset += 1; compressedConsumed += 1; continue
                }
                inMember = true
                inHeader = true
                header = GzipHeaderParser()
                sawAnyMember = true
                memberStartCompressed = compressedConsumed
                memberStartUncompressed = uncompressedProduced
            }
            if inHeader {
                let rest = UnsafeRawBufferPointer(rebasing: input[offset...])
                let used: Int
                do { used = try header.consume(rest) } catch let e as GzipError {
                    throw GzipError(kind: e.kind, detail: "\(e.detail) at compressed offset \(messageOffsetBase + compressedConsumed)")
                }
                offset += used; compressedConsumed += UInt64(used)
                guard header.done else { return }  // needs more input
                inHeader = false
                continue
            }
            try step(base + offset, input.count - offset, &offset)
        }
    }

    /// One ISA-L call on the deflate data at `from`: hands the output to `sink`, counts the
    /// bytes and ends the member when its trailer was checked.
    private func inflate(_ from: UnsafeRawPointer, _ count: Int, _ offset: inout Int,
                         sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        var consumed: UInt32 = 0, produced: UInt32 = 0, finished: Int32 = 0, rc: Int32 = 0
        try outBuffer.withUnsafeMutableBufferPointer { obuf in
            rc = cisal_inflate(isal, from.assumingMemoryBound(to: UInt8.self), UInt32(min(count, Int(UInt32.max))),
                               obuf.baseAddress, UInt32(obuf.count), &consumed, &produced, &finished)
            // Output made before an error is handed on too (as zlib did): the caller
            // reports what was written before the damage.
            if produced > 0 { try sink(UnsafeRawBufferPointer(start: obuf.baseAddress, count: Int(produced))) }
        }
        try settle(count: count, consumed: consumed, produced: produced, finished: finished, rc: rc, offset: &offset)
    }

    /// `inflate` into a new array of the output chunk's size (see `feedArrays`).
    private func inflateIntoArray(_ from: UnsafeRawPointer, _ count: Int, _ offset: inout Int,
                                  sink: ([UInt8]) throws -> Void) throws {
        var consumed: UInt32 = 0, produced: UInt32 = 0, finished: Int32 = 0, rc: Int32 = 0
        let n = outBuffer.count
        let out = [UInt8](unsafeUninitializedCapacity: n) { buf, made in
            rc = cisal_inflate(isal, from.assumingMemoryBound(to: UInt8.self), UInt32(min(count, Int(UInt32.max))),
                               buf.baseAddress, UInt32(n), &consumed, &produced, &finished)
            made = Int(produced)
        }
        // Output made before an error is handed on too, as `inflate` does.
        if produced > 0 { try sink(Int(produced) == n ? out : out.withUnsafeBytes { Array($0) }) }
        try settle(count: count, consumed: consumed, produced: produced, finished: finished, rc: rc, offset: &offset)
    }

    /// The bookkeeping after one ISA-L call: offsets, errors, member ends.
    private func settle(count: Int, consumed: UInt32, produced: UInt32, finished: Int32, rc: Int32, offset: inout Int) throws {
        offset += Int(consumed)
        compressedConsumed += UInt64(consumed)
        uncompressedProduced += UInt64(produced)
        if rc < 0 {
            throw GzipError(kind: .corrupt, detail: "\(Self.describe(rc)) at compressed offset \(messageOffsetBase + compressedConsumed)")
        }
        if finished != 0 {
            inMember = false
            onMemberEnd?(GzipMemberBoundary(
                compressedOffset: memberStartCompressed,
                compressedLength: compressedConsumed - memberStartCompressed,
                uncompressedOffset: memberStartUncompressed,
                uncompressedLength: uncompressedProduced - memberStartUncompressed))
            cisal_inflate_reset(isal)
        } else if consumed == 0 && produced == 0 && count > 0 {
            // ISA-L always takes input it is given (into its bit or header buffer).
            throw GzipError(kind: .internalError, detail: "ISA-L inflate took none of \(count) bytes at compressed offset \(messageOffsetBase + compressedConsumed)")
        }
        outputFull = finished == 0 && Int(produced) == outBuffer.count
    }

    private static func describe(_ rc: Int32) -> String {
        switch rc {
        case ISAL_INVALID_BLOCK: return "invalid deflate block"
        case ISAL_INVALID_SYMBOL: return "invalid deflate code"
        case ISAL_INVALID_LOOKBACK: return "invalid distance too far back"
        case ISAL_INCORRECT_CHECKSUM: return "incorrect CRC-32 or length in the gzip trailer"
        default: return "inflate returned \(rc)"
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
