internal import CLibdeflate
internal import CZlib

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
/// A payload that is mostly tar headers and zero padding (a tree of tiny files: ~2 KiB of tar
/// per 30-byte file) goes to zlib's `deflate_fast` instead (`Engine.headerHeavy`, levels 1-3):
/// it does not insert every byte of a long match into its hash table, so it compresses that
/// kind of data about twice as fast as libdeflate level 1 (on a tar of 100k stress-tree files:
/// 0.24 s vs 0.49 s of CPU, 5.1 MB vs 4.1 MB), while it is about twice as slow on file content.
///
/// One instance per thread; reusable across members.
package final class GzipSegmentedEncoder {
    /// Which deflate implementation compresses the non-stored runs of a payload.
    package enum Engine: Sendable, Equatable {
        /// libdeflate (whole buffers): the right one for file content.
        case content
        /// Mostly tar headers and zero padding: zlib's `deflate_fast` at levels 1-3
        /// (libdeflate above that).
        case headerHeavy
    }

    private var compressor: OpaquePointer?
    private var compressorLevel: Int32 = 0
    /// zlib's raw deflate stream (stable heap address), made on first use.
    private var zstream: UnsafeMutablePointer<z_stream>?
    private var zstreamLevel: Int32 = 0
    /// zlib's output room, kept: only the compressed bytes go into the caller's array, which is
    /// never zero-filled to a bound (a mostly-padding member compresses ~400:1).
    private var room: UnsafeMutableRawPointer?
    private static let roomSize = 64 * 1024

    package init() {}

    deinit {
        room?.deallocate()
        if let compressor { libdeflate_free_compressor(compressor) }
        if let zstream {
            deflateEnd(zstream)
            zstream.deinitialize(count: 1)
            zstream.deallocate()
        }
    }

    /// Appends the gzip data holding `payload` to `out` (one or more complete members).
    /// - Parameters:
    ///   - payload: the uncompressed bytes.
    ///   - storeRanges: sorted, non-overlapping byte ranges of `payload` to store, not deflate.
    ///   - level: deflate level 1...9 for the rest.
    ///   - engine: what compresses the rest (see `Engine`).
    ///   - out: receives the members.
    /// The corresponding libdeflate calls are `libdeflate_deflate_compress` and `libdeflate_crc32`
    /// (zlib's `deflate` for `.headerHeavy`).
    package func encodeMember(_ payload: UnsafeRawBufferPointer, storeRanges: [Range<Int>], level: Int32,
                              engine: Engine = .content, into out: inout [UInt8]) {
        let deflateLevel = max(1, min(9, level))
        let useZlib = engine == .headerHeavy && deflateLevel <= 3 && payload.count <= Int(UInt32.max)
        let ranges = storeRanges.filter { !$0.isEmpty }
        var pos = 0
        var emitted = false
        var i = 0
        while i < ranges.count {
            let r = ranges[i]
            precondition(r.lowerBound >= pos && r.upperBound <= payload.count, "store ranges must be sorted and inside the payload")
            if r.lowerBound > pos {
                deflated(UnsafeRawBufferPointer(rebasing: payload[pos..<r.lowerBound]), level: deflateLevel, zlib: useZlib, into: &out)
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
            deflated(UnsafeRawBufferPointer(rebasing: payload[pos..<payload.count]), level: deflateLevel, zlib: useZlib, into: &out)
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

    private func deflated(_ bytes: UnsafeRawBufferPointer, level: Int32, zlib: Bool, into out: inout [UInt8]) {
        if zlib { return zlibDeflated(bytes, level: level, into: &out) }
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

    private func scratch() -> UnsafeMutableRawPointer {
        if let room { return room }
        let r = UnsafeMutableRawPointer.allocate(byteCount: Self.roomSize, alignment: 64)
        room = r
        return r
    }

    /// As `deflated`, with zlib (raw deflate, window 32 KiB, memLevel 8, default strategy):
    /// `deflate(Z_FINISH)` into a 64 KiB room, appended piece by piece.
    private func zlibDeflated(_ bytes: UnsafeRawBufferPointer, level: Int32, into out: inout [UInt8]) {
        let z: UnsafeMutablePointer<z_stream>
        if let zstream {
            z = zstream
            if zstreamLevel != level {
                let rc = deflateParams(z, level, Z_DEFAULT_STRATEGY)
                precondition(rc == Z_OK, "deflateParams(\(level)) failed: \(rc)")
                zstreamLevel = level
            }
            deflateReset(z)
        } else {
            z = .allocate(capacity: 1)
            z.initialize(to: z_stream())
            let rc = czlib_deflateInit2(z, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY)
            precondition(rc == Z_OK, "deflateInit2 failed: \(rc) (out of memory)")
            zstream = z
            zstreamLevel = level
        }
        Self.header(xfl: level == 1 ? 4 : 0, into: &out)
        let room = scratch()
        z.pointee.next_in = UnsafeMutablePointer(mutating: bytes.baseAddress?.assumingMemoryBound(to: UInt8.self))
        z.pointee.avail_in = UInt32(bytes.count)
        var rc: Int32 = Z_OK
        repeat {
            z.pointee.next_out = room.assumingMemoryBound(to: UInt8.self)
            z.pointee.avail_out = UInt32(Self.roomSize)
            rc = deflate(z, Z_FINISH)
            precondition(rc == Z_STREAM_END || rc == Z_OK, "zlib deflate failed (\(rc))")
            out.append(contentsOf: UnsafeRawBufferPointer(start: room, count: Self.roomSize - Int(z.pointee.avail_out)))
        } while rc != Z_STREAM_END
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
