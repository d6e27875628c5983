import Foundation
import Gzip
import Support
import Synchronization

/// The decompressed bytes of a (gzip or plain) tar archive, from any gzip member on.
///
/// Reading and decompressing run as a job on a one-thread `WorkPool`, feeding a `BoundedQueue` of chunks (a whole
/// gzip member of up to 4 MiB, or 1 MiB from the streaming decoder), like `gzip -d | tar -x`. Gzip member ends (after their CRC was checked) are recorded, so
/// a reader can tell which part of the stream is verified and where each member starts.
final class TarByteStream {
    let source: ArchiveSource
    /// Tar offset of the next byte `next` hands out.
    private(set) var position: UInt64
    /// Compressed offset of the member reading started at.
    let startCompressed: UInt64
    let gzip: Bool
    private let queue = BoundedQueue<[UInt8]>(capacityBytes: 6 << 20, wakeBytes: 1 << 20)
    private let producer = WorkPool(threads: 1, name: "hs-inflate")
    private let boundaries: MemberLog
    private var chunk: [UInt8] = []
    private var chunkPos = 0

    /// Starts reading at compressed offset `compressedOffset`, whose first byte is tar offset
    /// `uncompressedOffset` (a gzip member start; 0, 0 for the whole archive).
    init(source: ArchiveSource, compressedOffset: UInt64 = 0, uncompressedOffset: UInt64 = 0) throws {
        self.source = source
        self.position = uncompressedOffset
        self.startCompressed = compressedOffset
        let head = compressedOffset < source.size ? try source.read(compressedOffset, Int(min(2, source.size - compressedOffset))) : []
        gzip = head.count == 2 && head[0] == 0x1f && head[1] == 0x8b
        if !gzip && head.count < 2 {
            throw ArchiveError(.truncated, "'\(source.displayName)' is empty; expected a tar.gz archive")
        }
        let log = MemberLog(start: (compressedOffset, uncompressedOffset))
        boundaries = log
        let queue = queue, gzip = gzip
        try producer.submit {
            var produced: UInt64 = 0
            var decoder: GzipDecoder?
            do {
                var off = compressedOffset
                if gzip {
                    off = try Self.decodeMembers(source, from: compressedOffset, tarOffset: uncompressedOffset, queue: queue, log: log, produced: &produced)
                }
                // The rest (or all of it, when it is not gzip), streaming.
                let zlibStart = off, tarStart = uncompressedOffset + produced
                if gzip && off < source.size {
                    decoder = GzipDecoder(outputChunk: 1 << 20, afterMembers: off > compressedOffset)
                    decoder?.messageOffsetBase = zlibStart
                    decoder?.onMemberEnd = { b in
                        log.add((zlibStart + b.compressedOffset + b.compressedLength, tarStart + b.uncompressedOffset + b.uncompressedLength))
                    }
                }
                while off < source.size && !queue.isCancelled {
                    let n = Int(min(UInt64(1 << 20), source.size - off))
                    let buf = try source.read(off, n)
                    guard buf.count == n else {
                        throw ArchiveError(.truncated, "'\(source.displayName)' ended at \(off + UInt64(buf.count)) bytes, expected \(source.size)")
                    }
                    off += UInt64(n)
                    if let decoder {
                        try decoder.feed(buf) { out in if !queue.put(Array(out), bytes: out.count) { throw CancellationError() } }
                    } else if !queue.put(buf, bytes: buf.count) {
                        throw CancellationError()
                    }
                }
                if let decoder, !queue.isCancelled { try decoder.finish() }
                if !gzip { log.add((off, uncompressedOffset + off - compressedOffset)) }
                queue.finish()
            } catch is CancellationError {
                queue.finish()
            } catch let e as GzipError {
                queue.finish(throwing: ArchiveError(e.kind == .truncated ? .truncated : .malformed,
                                                "'\(source.displayName)': \(e.description) (after \(uncompressedOffset + produced + (decoder?.uncompressedProduced ?? 0)) tar bytes)"))
            } catch {
                queue.finish(throwing: error)
            }
        }
    }

    deinit { close() }

    /// Decodes whole gzip members from compressed offset `start` (tar offset `tarOffset`) with
    /// libdeflate while they fit (see `GzipMemberDecoder`), queueing their bytes and logging
    /// their ends. Returns the compressed offset where it stopped: the end of the data, or the
    /// start of a member for the streaming decoder (a large or damaged one, padding).
    private static func decodeMembers(_ source: ArchiveSource, from start: UInt64, tarOffset: UInt64, queue: BoundedQueue<[UInt8]>,
                                      log: MemberLog, produced: inout UInt64) throws -> UInt64 {
        let members = GzipMemberDecoder(maxOutput: 4 << 20)
        // Compressed bytes from `windowStart`; the member being decoded starts at `pos`.
        var window: [UInt8] = []
        var windowStart = start, pos = 0
        let wanted = 4 << 20
        while !queue.isCancelled {
            let end = windowStart + UInt64(window.count)
            if window.count - pos < wanted && end < source.size {
                window.removeSubrange(0 ..< pos)
                windowStart += UInt64(pos); pos = 0
                while window.count < 2 * wanted && windowStart + UInt64(window.count) < source.size {
                    let at = windowStart + UInt64(window.count)
                    let n = Int(min(UInt64(1 << 20), source.size - at))
                    let buf = try source.read(at, n)
                    guard buf.count == n else {
                        throw ArchiveError(.truncated, "'\(source.displayName)' ended at \(at + UInt64(buf.count)) bytes, expected \(source.size)")
                    }
                    window += buf
                }
            }
            if pos == window.count { break }
            guard let m = window.withUnsafeBytes({ members.decode(UnsafeRawBufferPointer(rebasing: $0[pos...])) }) else { break }
            pos += m.consumed
            produced += UInt64(m.output.count)
            log.add((windowStart + UInt64(pos), tarOffset + produced))
            if !m.output.isEmpty && !queue.put(m.output, bytes: m.output.count) { throw CancellationError() }
        }
        return windowStart + UInt64(pos)
    }

    /// Stops the producer thread (idempotent).
    func close() {
        queue.cancel()
        producer.close()
    }

    /// Up to `max` next bytes (empty at the end of the data), valid until the next call.
    func next(max: Int, _ body: (UnsafeRawBufferPointer) throws -> Void) throws -> Int {
        if chunkPos == chunk.count {
            guard let c = try queue.take() else { return 0 }
            chunk = c; chunkPos = 0
        }
        let n = min(max, chunk.count - chunkPos)
        try chunk.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[chunkPos..<(chunkPos + n)])) }
        chunkPos += n
        position += UInt64(n)
        return n
    }

    /// Skips `n` bytes; false if the data ended first.
    func skip(_ n: UInt64) throws -> Bool {
        var left = n
        while left > 0 {
            let got = try next(max: Int(min(left, 1 << 30))) { _ in }
            if got == 0 { return false }
            left -= UInt64(got)
        }
        return true
    }

    /// Reads everything left (checking the CRC of every member).
    func drain() throws { while try next(max: 1 << 30, { _ in }) > 0 {} }

    /// Tar offset up to which every gzip member's CRC has been checked.
    var verifiedUpTo: UInt64 { boundaries.last.1 }

    /// Compressed offset of the last member start seen.
    var lastMemberStart: UInt64 { boundaries.last.0 }

    /// The member start (compressed offset, tar offset) at or before tar offset `offset` among
    /// those seen so far.
    func member(containing offset: UInt64) -> (compressed: UInt64, tar: UInt64)? { boundaries.member(containing: offset) }

    /// The tar offset at which the member starting at compressed offset `c` begins, if seen.
    func tarOffset(ofMemberAt c: UInt64) -> UInt64? { boundaries.tarOffset(ofMemberAt: c) }
}

/// Member starts seen by the producer (the last few thousand), shared with the reader.
private final class MemberLog: Sendable {
    private let starts: Mutex<[(UInt64, UInt64)]>
    init(start: (UInt64, UInt64)) { starts = Mutex([start]) }
    func add(_ s: (UInt64, UInt64)) {
        starts.withLock { starts in
            starts.append(s)
            if starts.count > 8192 { starts.removeFirst(4096) }
        }
    }
    var last: (UInt64, UInt64) { starts.withLock { $0.last! } }
    func member(containing offset: UInt64) -> (compressed: UInt64, tar: UInt64)? {
        starts.withLock { starts in
            guard let s = starts.last(where: { $0.1 <= offset }) else { return nil }
            return (s.0, s.1)
        }
    }
    func tarOffset(ofMemberAt c: UInt64) -> UInt64? {
        starts.withLock { starts in starts.last(where: { $0.0 == c })?.1 }
    }
}
