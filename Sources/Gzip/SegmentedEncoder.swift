internal import CZlib

/// Compresses one gzip member whose payload mixes compressible and incompressible runs:
/// runs marked "store" go out as deflate stored blocks (no compression work), everything else
/// is deflated at the given level, all in ONE deflate stream (switching with `deflateParams`,
/// which ends the current block). A member made of a few config files and a few JPEGs thus
/// costs zlib time only for the config files.
///
/// One instance per thread; reusable across members. The z_stream lives at a fixed heap
/// address for the encoder's whole life.
package final class GzipSegmentedEncoder {
    private let stream: UnsafeMutablePointer<z_stream>
    private var currentLevel: Int32

    package init() {
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        currentLevel = 6
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
    ///   - storeRanges: sorted, non-overlapping byte ranges of `payload` to store, not deflate.
    ///   - level: zlib level 1...9 for the rest.
    ///   - out: receives header, deflate data and trailer.
    /// The corresponding zlib calls are `deflateReset`, `deflateParams` and `deflate`.
    package func encodeMember(_ payload: UnsafeRawBufferPointer, storeRanges: [Range<Int>], level: Int32,
                              into out: inout [UInt8]) {
        let deflateLevel = max(1, min(9, level))
        deflateReset(stream)
        // Build the run list: (range, zlib level).
        var runs: [(Range<Int>, Int32)] = []
        var pos = 0
        for r in storeRanges where !r.isEmpty {
            precondition(r.lowerBound >= pos && r.upperBound <= payload.count, "store ranges must be sorted and inside the payload")
            if r.lowerBound > pos { runs.append((pos..<r.lowerBound, deflateLevel)) }
            runs.append((r, 0))
            pos = r.upperBound
        }
        if pos < payload.count || runs.isEmpty { runs.append((pos..<payload.count, deflateLevel)) }
        if runs[0].1 != currentLevel {
            deflateParams(stream, runs[0].1, Z_DEFAULT_STRATEGY)  // nothing pending right after reset
            currentLevel = runs[0].1
        }
        let allStored = storeRanges.count == 1 && storeRanges[0] == 0..<payload.count
        let xfl: UInt8 = allStored ? 0 : (deflateLevel == 9 ? 2 : (deflateLevel == 1 ? 4 : 0))
        out.append(contentsOf: [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 3])
        var produced = out.count
        // Generous first guess; grown on demand.
        out.append(contentsOf: repeatElement(0, count: Int(deflateBound(stream, UInt(payload.count))) + 64 * runs.count + 1024))
        let base = payload.baseAddress.map { UnsafeMutablePointer(mutating: $0.assumingMemoryBound(to: UInt8.self)) }

        func pump(_ flush: Int32) -> Int32 {
            while true {
                if out.count - produced < 64 * 1024 { out.append(contentsOf: repeatElement(0, count: max(out.count / 2, 256 * 1024))) }
                var rc: Int32 = Z_OK
                out.withUnsafeMutableBufferPointer { obuf in
                    stream.pointee.next_out = obuf.baseAddress! + produced
                    stream.pointee.avail_out = UInt32(obuf.count - produced)
                    rc = deflate(stream, flush)
                    produced = obuf.count - Int(stream.pointee.avail_out)
                }
                if rc == Z_STREAM_END { return rc }
                precondition(rc == Z_OK || rc == Z_BUF_ERROR, "deflate failed (rc \(rc))")
                if stream.pointee.avail_in == 0 && stream.pointee.avail_out > 0 { return rc }
            }
        }

        for (i, (range, lvl)) in runs.enumerated() {
            if lvl != currentLevel {
                // Finish the current block (all input consumed), then switch.
                stream.pointee.avail_in = 0
                _ = pump(Z_BLOCK)
                if out.count - produced < 64 * 1024 { out.append(contentsOf: repeatElement(0, count: 256 * 1024)) }
                out.withUnsafeMutableBufferPointer { obuf in
                    stream.pointee.next_out = obuf.baseAddress! + produced
                    stream.pointee.avail_out = UInt32(obuf.count - produced)
                    let rc = deflateParams(stream, lvl, Z_DEFAULT_STRATEGY)
                    precondition(rc == Z_OK, "deflateParams failed (rc \(rc))")
                    produced = obuf.count - Int(stream.pointee.avail_out)
                }
                currentLevel = lvl
            }
            stream.pointee.next_in = base.map { $0 + range.lowerBound }
            stream.pointee.avail_in = UInt32(range.count)
            if i == runs.count - 1 {
                while pump(Z_FINISH) != Z_STREAM_END {}
            } else {
                _ = pump(Z_NO_FLUSH)
            }
        }
        out.removeLast(out.count - produced)
        let crc = gzipCRC32(payload)
        let isize = UInt32(truncatingIfNeeded: payload.count)
        for v in [crc, isize] {
            out.append(UInt8(v & 0xff)); out.append(UInt8((v >> 8) & 0xff))
            out.append(UInt8((v >> 16) & 0xff)); out.append(UInt8(v >> 24))
        }
    }
}
