internal import CIsal
internal import CLibdeflate

/// Compresses the gzip data for one archive member whose payload mixes compressible and
/// incompressible runs: runs marked "store" go out as deflate stored blocks (no compression
/// work), everything else is deflated at the given level with libdeflate (whole-buffer, about
/// a third less CPU than zlib at a smaller size on appdata; see BENCHMARKS.md).
///
/// libdeflate writes whole deflate streams only, so a payload with stored runs becomes a run of
/// concatenated gzip members (RFC 1952 allows any number; gzip, GNU tar, bsdtar, Python and our
/// `GzipDecoder` read them as one stream). Adjacent runs of one kind are merged. A payload with
/// no stored run is exactly one member.
///
/// At level 1 (hs-backup's default) everything is deflated by ISA-L's level 1 instead, and so is
/// a payload that is mostly tar headers and zero padding at levels 1-3 (`Engine.headerHeavy`, a
/// tree of tiny files: ~2 KiB of tar per 30-byte file). Measured in C on whole tar streams cut
/// into 1 MiB pieces: 200k stress-tree files (394 MiB): ISA-L 0.077 s of CPU for 7.7 MB, zlib's
/// `deflate_fast` (used for it before) 0.63 s for 10.2 MB, libdeflate level 1 about twice zlib's
/// time; 200k Plex-like files (metadata XML, ~900 B each): ISA-L 0.57 s for 130.7 MB, libdeflate
/// level 1 1.93 s for 128.3 MB (+1.9% size for a third of the CPU).
///
/// One instance per thread; reusable across members.
package final class GzipSegmentedEncoder {
    /// Which deflate implementation compresses the non-stored runs of a payload.
    package enum Engine: Sendable, Equatable {
        /// libdeflate (whole buffers) at levels 2-9, ISA-L at level 1.
        case content
        /// Mostly tar headers and zero padding: ISA-L's level 1 at levels 1-3 (libdeflate
        /// above that).
        case headerHeavy
    }

    private var compressor: OpaquePointer?
    private var compressorLevel: Int32 = 0
    /// ISA-L's level-1 state (stream and level buffer), made on first use.
    private var isal: UnsafeMutablePointer<cisal_deflater>?
    /// ISA-L's output room, kept (never zero-filled: only the compressed bytes, ~1/50 of a
    /// header-heavy member, are written and touched, then copied into the caller's array).
    private var room: UnsafeMutableRawPointer?
    private var roomSize = 0

    package init() {}

    deinit {
        room?.deallocate()
        if let compressor { libdeflate_free_compressor(compressor) }
        if let isal { cisal_deflate_free(isal) }
    }

    /// Appends the gzip data holding `payload` to `out` (one or more complete members).
    /// - Parameters:
    ///   - payload: the uncompressed bytes.
    ///   - storeRanges: sorted, non-overlapping byte ranges of `payload` to store, not deflate.
    ///   - level: deflate level 1...9 for the rest.
    ///   - engine: what compresses the rest (see `Engine`).
    ///   - out: receives the members.
    /// The corresponding libdeflate calls are `libdeflate_deflate_compress` and `libdeflate_crc32`
    /// (ISA-L's `isal_deflate_stateless` for `.headerHeavy`).
    package func encodeMember(_ payload: UnsafeRawBufferPointer, storeRanges: [Range<Int>], level: Int32,
                              engine: Engine = .content, into out: inout [UInt8]) {
        let deflateLevel = max(1, min(9, level))
        let useIsal = (deflateLevel == 1 || engine == .headerHeavy && deflateLevel <= 3) && payload.count <= Int(UInt32.max / 2)
        let ranges = storeRanges.filter { !$0.isEmpty }
        var pos = 0
        var emitted = false
        var i = 0
        while i < ranges.count {
            let r = ranges[i]
            precondition(r.lowerBound >= pos && r.upperBound <= payload.count, "store ranges must be sorted and inside the payload")
            if r.lowerBound > pos {
                deflated(UnsafeRawBufferPointer(rebasing: payload[pos..<r.lowerBound]), level: deflateLevel, isal: useIsal, into: &out)
            }
            // One stored member for this range and those that follow it directly.
            var end = r.upperBound
            i += 1
            while i < ranges.count && ranges[i].lowerBound == end {
                precondition(ranges[i].upperBound <= payload.count, "store ranges must be sorted and inside the payload")
                end = ranges[i].upperBound
                i += 1
            }
            stored(UnsafeRawBufferPointer(rebasing: payload[r.lowerBound..<end]), into: &out)
            emitted = true
            pos = end
        }
        if pos < payload.count || !emitted {
            deflated(UnsafeRawBufferPointer(rebasing: payload[pos..<payload.count]), level: deflateLevel, isal: useIsal, into: &out)
        }
    }

    /// gzip header: no name, no mtime, OS = Unix; XFL says "fastest" for level 1.
    private static func header(xfl: UInt8, into out: inout [UInt8]) {
        out.append(contentsOf: [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 3])
    }

    private static func trailer(_ bytes: UnsafeRawBufferPointer, into out: inout [UInt8]) {
        let crc = gzipCRC32(bytes)
        let isize = UInt32(truncatingIfNeeded: bytes.count)
        for v in [crc, isize] {
            out.append(UInt8(v & 0xff)); out.append(UInt8((v >> 8) & 0xff))
            out.append(UInt8((v >> 16) & 0xff)); out.append(UInt8(v >> 24))
        }
    }

    private func deflated(_ bytes: UnsafeRawBufferPointer, level: Int32, isal: Bool, into out: inout [UInt8]) {
        if isal { return isalDeflated(bytes, into: &out) }
        if compressor == nil || compressorLevel != level {
            if let compressor { libdeflate_free_compressor(compressor) }
            compressor = libdeflate_alloc_compressor(level)
            precondition(compressor != nil, "libdeflate_alloc_compressor(\(level)) failed (out of memory)")
            compressorLevel = level
        }
        Self.header(xfl: level == 1 ? 4 : (level == 9 ? 2 : 0), into: &out)
        let bound = libdeflate_deflate_compress_bound(compressor, bytes.count)
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: bound))
        let n = out.withUnsafeMutableBytes { o in
            libdeflate_deflate_compress(compressor, bytes.baseAddress, bytes.count, o.baseAddress! + start, bound)
        }
        precondition(n > 0, "libdeflate_deflate_compress: no room within its own bound")
        out.removeLast(bound - n)
        Self.trailer(bytes, into: &out)
    }

    /// As `deflated`, with ISA-L at its level 1 (whole buffer, one call) into the kept room.
    private func isalDeflated(_ bytes: UnsafeRawBufferPointer, into out: inout [UInt8]) {
        if isal == nil {
            isal = cisal_deflate_new()
            precondition(isal != nil, "cannot allocate an ISA-L deflate state (out of memory)")
        }
        // Stored blocks where compressing would expand: 5 bytes per 64 KiB block, and a header.
        let bound = bytes.count + 5 * (bytes.count / 65_535 + 1) + 1024
        if roomSize < bound {
            room?.deallocate()
            room = UnsafeMutableRawPointer.allocate(byteCount: bound, alignment: 64)
            roomSize = bound
        }
        let n = cisal_deflate_raw_l1(isal, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt32(bytes.count),
                                     room!.assumingMemoryBound(to: UInt8.self), UInt32(roomSize))
        precondition(n > 0, "ISA-L deflate: no room within its bound (\(bytes.count) bytes in, \(roomSize) of room)")
        Self.header(xfl: 4, into: &out)
        out.append(contentsOf: UnsafeRawBufferPointer(start: room, count: Int(n)))
        Self.trailer(bytes, into: &out)
    }

    /// Deflate stored blocks (at most 65,535 bytes each), written by hand: no compression work.
    private func stored(_ bytes: UnsafeRawBufferPointer, into out: inout [UInt8]) {
        Self.header(xfl: 0, into: &out)
        var p = 0
        repeat {
            let n = min(65_535, bytes.count - p)
            let final: UInt8 = p + n == bytes.count ? 1 : 0
            out.append(contentsOf: [final, UInt8(n & 0xff), UInt8(n >> 8), UInt8(~n & 0xff), UInt8((~n >> 8) & 0xff)])
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[p..<(p + n)]))
            p += n
        } while p < bytes.count
        Self.trailer(bytes, into: &out)
    }
}
