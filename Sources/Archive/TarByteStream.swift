import FoundationEssentials
import Glibc
import Gzip
import Support
import Synchronization

/// The decompressed bytes of a (gzip or plain) tar archive, from any gzip member on.
///
/// Reading and decompressing run as a job on a one-thread `WorkPool`, feeding a `BoundedQueue` of chunks (a whole
/// gzip member of up to 4 MiB, or 1 MiB from the streaming decoder), like `gzip -d | tar -x`. Gzip member ends (after their CRC was checked) are recorded, so
/// a reader can tell which part of the stream is verified and where each member starts.
final class TarByteStream {
    let source: any ByteSource
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
    init(source: any ByteSource, compressedOffset: UInt64 = 0, uncompressedOffset: UInt64 = 0) throws {
        self.source = source
        self.position = uncompressedOffset
        self.startCompressed = compressedOffset
        let input = CompressedInput(source, at: compressedOffset)
        let head = try input.peek(2)
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
                if gzip { try Self.decodeMembers(input, tarOffset: uncompressedOffset, queue: queue, log: log, produced: &produced) }
                // The rest (or all of it, when it is not gzip), streaming.
                let zlibStart = input.offset, tarStart = uncompressedOffset + produced
                if try gzip && !input.atEnd() {
                    decoder = GzipDecoder(outputChunk: 1 << 20, afterMembers: zlibStart > compressedOffset)
                    decoder?.messageOffsetBase = zlibStart
                    decoder?.onMemberEnd = { b in
                        log.add((zlibStart + b.compressedOffset + b.compressedLength, tarStart + b.uncompressedOffset + b.uncompressedLength))
                    }
                }
                while !queue.isCancelled, let buf = try input.take(1 << 20) {
                    if let decoder {
                        // The decoder's own arrays are queued (a copy of each 1 MiB of output cost a memmove).
                        try decoder.feedArrays(buf, sink: { out in if !queue.put(out, bytes: out.count) { throw CancellationError() } })
                    } else if !queue.put(buf, bytes: buf.count) {
                        throw CancellationError()
                    }
                }
                if let decoder, !queue.isCancelled { try decoder.finish() }
                if !gzip { log.add((input.offset, uncompressedOffset + input.offset - compressedOffset)) }
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

    /// Decodes whole gzip members (with libdeflate) while they fit (see `GzipMemberDecoder`),
    /// queueing their bytes and logging their ends. Stops at the end of the data, or at the
    /// start of a member for the streaming decoder (a large or damaged one, padding).
    private static func decodeMembers(_ input: CompressedInput, tarOffset: UInt64, queue: BoundedQueue<[UInt8]>,
                                      log: MemberLog, produced: inout UInt64) throws {
        let members = GzipMemberDecoder(maxOutput: 4 << 20)
        while !queue.isCancelled {
            let window = try input.peek(4 << 20)
            if window.isEmpty { return }
            guard let m = window.withUnsafeBytes({ members.decode($0) }) else { return }
            input.consume(m.consumed)
            produced += UInt64(m.output.count)
            log.add((input.offset, tarOffset + produced))
            if !m.output.isEmpty && !queue.put(m.output, bytes: m.output.count) { throw CancellationError() }
        }
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

    /// True when no byte is left (waits for the next chunk when needed).
    func peekEnd() throws -> Bool {
        if chunkPos < chunk.count { return false }
        guard let c = try queue.take() else { return true }
        chunk = c; chunkPos = 0
        return c.isEmpty ? try peekEnd() : false
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

/// The compressed bytes from an offset on, read ahead in 1 MiB pieces from a source of known
/// size (a short read is truncation) or a stream (a short read is its end). Used by one
/// thread at a time (the constructor's, then the decompression job's).
private final class CompressedInput: Sendable {
    private struct State {
        var buffer: [UInt8] = []
        var bufferPos = 0
        var readAt: UInt64
        var ended = false
        var offset: UInt64
    }
    private let source: any ByteSource
    private let state: Mutex<State>

    init(_ source: any ByteSource, at offset: UInt64) {
        self.source = source
        state = Mutex(State(readAt: offset, offset: offset))
    }

    /// Compressed offset of the next byte not consumed.
    var offset: UInt64 { state.withLock { $0.offset } }

    /// Reads on until `n` bytes are buffered or the data ends.
    private func fill(_ s: inout State, _ n: Int) throws {
        while s.buffer.count - s.bufferPos < n && !s.ended {
            if s.bufferPos > 0 { s.buffer.removeFirst(s.bufferPos); s.bufferPos = 0 }
            let at = s.readAt
            let want = source.size.map { Int(min(UInt64(1 << 20), $0 > at ? $0 - at : 0)) } ?? 1 << 20
            let got = want == 0 ? [] : try source.read(at: at, count: want)
            if let size = source.size, got.count < want {
                throw ArchiveError(.truncated, "'\(source.displayName)' ended at \(at + UInt64(got.count)) bytes, expected \(size)")
            }
            if got.count < want || want == 0 { s.ended = true }
            s.readAt += UInt64(got.count)
            s.buffer += got
        }
    }

    /// Up to `n` buffered bytes (fewer only at the end), not consumed.
    func peek(_ n: Int) throws -> ArraySlice<UInt8> {
        try state.withLock { (s: inout State) throws -> ArraySlice<UInt8> in
            try fill(&s, n)
            return s.buffer[s.bufferPos ..< min(s.buffer.count, s.bufferPos + n)]
        }
    }

    func consume(_ n: Int) { state.withLock { $0.bufferPos += n; $0.offset += UInt64(n) } }

    func atEnd() throws -> Bool {
        try state.withLock { (s: inout State) throws -> Bool in try fill(&s, 1); return s.bufferPos == s.buffer.count }
    }

    /// The next up to `n` bytes, consumed; nil at the end.
    func take(_ n: Int) throws -> [UInt8]? {
        try state.withLock { (s: inout State) throws -> [UInt8]? in
            try fill(&s, 1)
            if s.bufferPos == s.buffer.count { return nil }
            let end = min(s.buffer.count, s.bufferPos + n)
            let out = Array(s.buffer[s.bufferPos ..< end])
            s.offset += UInt64(end - s.bufferPos)
            s.bufferPos = end
            return out
        }
    }
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
    /// The starts are in increasing compressed order: a binary search (a backward scan passed
    /// every member decoded ahead of the reader, once per file of a restore --from).
    func tarOffset(ofMemberAt c: UInt64) -> UInt64? {
        starts.withLock { starts in
            var lo = 0, hi = starts.count  // the first start past `c` is in lo...hi
            while lo < hi {
                let mid = (lo + hi) / 2
                if starts[mid].0 <= c { lo = mid + 1 } else { hi = mid }
            }
            return lo > 0 && starts[lo - 1].0 == c ? starts[lo - 1].1 : nil
        }
    }
}
