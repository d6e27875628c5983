import FoundationEssentials
import Dispatch
import Glibc
internal import CShims
import Gzip
import Support

/// How an `ArchiveWriter` cuts and compresses.
package struct ArchiveWriterOptions: Sendable {
    /// zlib level for compressible data (1...9). Incompressible data is always stored.
    /// Default 3: on the appdata benchmark corpus it costs ~1% size against level 6
    /// (1.009x gzip -6) for ~40% less compression CPU (see BENCHMARKS.md).
    package var level: Int32 = 3
    /// A member is cut at the next entry boundary once it holds this many tar bytes.
    package var memberTargetSize: Int = 1 << 20
    /// A member never holds more than this many tar bytes (+ one header): big files are cut.
    package var memberSizeCap: Int = 2 << 20
    /// Compressor threads; 0 compresses and writes on the calling thread.
    package var threads: Int = Sys.processorCount
    /// Store (not deflate) file content that looks incompressible (magic numbers, entropy).
    package var detectIncompressible = true
    /// Keep one `ArchiveIndexEntry` per entry in the returned index.
    package var recordEntries = true

    package init(level: Int32 = 3, memberTargetSize: Int = 1 << 20, memberSizeCap: Int = 2 << 20,
                 threads: Int = Sys.processorCount, detectIncompressible: Bool = true,
                 recordEntries: Bool = true) {
        self.level = level; self.memberTargetSize = memberTargetSize
        self.memberSizeCap = max(memberSizeCap, 64 * 1024); self.threads = threads
        self.detectIncompressible = detectIncompressible; self.recordEntries = recordEntries
    }
}

/// A small file's content read ahead by `ArchiveWriter.prefetch`.
package struct PrefetchedContent: Sendable {
    /// Exactly the size the entry was given (zero-padded when the file shrank).
    package var bytes: [UInt8]
    package var sha256: [UInt8]
    package var bytesRead: UInt64
    /// The file grew or shrank while read (see `AddResult.sizeChanged`).
    package var sizeChanged: Bool
    /// Stored, not deflated.
    package var incompressible: Bool
    /// `fstat` after the read (-1 / (0, -1) when it failed): the caller compares them with
    /// what its scan saw to tell a file that changed while read.
    package var sizeAfter: Int64
    package var mtimeAfter: (seconds: Int64, nanoseconds: Int64)
    /// The file's extended attributes, read by the caller from the descriptor the content was
    /// read through (nil: not read).
    package var xattrs: [(name: String, value: [UInt8])]? = nil
}

/// `ArchiveWriter.prefetch` could not open or read the file.
package struct PrefetchError: Error, Sendable {
    package var errno: Int32
}

/// What `ArchiveWriter.add` did with one entry.
package struct AddResult: Sendable, Equatable {
    /// SHA-256 of the content bytes archived (regular files only; exactly `entry.size` bytes).
    package var sha256: [UInt8]?
    /// Bytes actually read from the content file (less than `entry.size` if it shrank).
    package var bytesRead: UInt64
    /// The file grew or shrank while read: the archived content was padded with zeros or cut
    /// at `entry.size`, the header's size. The archive is still valid; the content is not the
    /// file's current content.
    package var sizeChanged: Bool
    /// The member that holds the entry's first header byte.
    package var headerMember: Int
    /// Tar-stream offset of the entry's first header block.
    package var headerOffset: UInt64
    /// Tar-stream offset of the first content byte.
    package var contentOffset: UInt64
    /// `add(_:contentFD:)`: reading failed with this errno after the header was written; the
    /// rest of the entry is zeros (the stream stays valid) and its hash means nothing.
    package var readErrno: Int32? = nil
    /// A sparse member was written (`sha256` is then the `SparseHash`).
    package var sparse = false
}

/// Writes one pax tar stream as multi-member gzip through `sink`.
///
/// Entries are added in order with `add`; file content is read from `contentPath` with large
/// reads, hashed (SHA-256), packed into member-sized chunks (cut at entry boundaries once
/// `memberTargetSize` is reached, and at `memberSizeCap` inside big files), compressed on
/// `threads` threads and passed to `sink` in order. Memory is bounded by
/// `(threads + 2) * memberSizeCap` of chunks plus their compressed output, whatever the file
/// sizes. `sink` is called from a compressor thread (one call at a time, in order): do not
/// create it in a main-actor-isolated context (Swift would trap on the isolation check).
///
/// Not thread-safe: call `add`/`finish` from one thread.
package final class ArchiveWriter {
    package typealias Sink = ([UInt8]) throws -> Void

    private let options: ArchiveWriterOptions
    private let pipeline: MemberPipeline
    private var chunk: ChunkBuffer
    private var chunkStart: UInt64 = 0      // tar offset of chunk's first byte
    private var seq = 0                      // index of the member being built
    private var entries: [ArchiveIndexEntry] = []
    private var finished = false
    private var readBuffer: UnsafeMutableRawPointer?
    /// The header being built (kept: one allocation per writer, not per entry).
    private var headerScratch: [UInt8] = []

    /// - Parameters:
    ///   - sink: receives compressed bytes in order (a whole gzip member per call).
    ///   - options: cutting, compression and threading.
    package init(sink: @escaping Sink, options: ArchiveWriterOptions = ArchiveWriterOptions()) {
        self.options = options
        self.pipeline = MemberPipeline(sink: sink, options: options)
        self.chunk = pipeline.takeBuffer()
    }

    deinit {
        if !finished { pipeline.shutdown() }
    }

    /// Tar-stream bytes written so far (the offset the next entry's header will get).
    package var uncompressedOffset: UInt64 { chunkStart + UInt64(chunk.count) }

    /// Adds one entry. For regular files the content is read from `contentPath` (which may
    /// differ from `entry.path`, e.g. a temporary SQLite snapshot); exactly `entry.size` bytes
    /// are archived whatever happens to the file meanwhile (see `AddResult.sizeChanged`).
    /// - Throws: `ArchiveError.io` if `contentPath` cannot be opened or read (nothing of the
    ///   entry is written when it cannot be opened; a read error after the header was written
    ///   leaves the stream unusable: discard the archive), `.invalidInput` for a bad entry, or
    ///   the sink's error.
    @discardableResult
    package func add(_ entry: EntryMetadata, contentPath: String? = nil) throws -> AddResult {
        try add(entry, contentPathBytes: contentPath.map { Array($0.utf8) })
    }

    /// As `add(_:contentPath:)`, with the content file's path as bytes (any file name).
    @discardableResult
    package func add(_ entry: EntryMetadata, contentPathBytes: [UInt8]?) throws -> AddResult {
        precondition(!finished, "ArchiveWriter.add after finish")
        try pipeline.checkError()
        guard entry.type == .file && entry.size > 0 else { return try add(entry, contentFD: -1) }
        // (A file that is empty in the header is not read: growth is not detected there.)
        guard let contentPathBytes else {
            throw ArchiveError(.invalidInput, entry: entry.path, "a regular file with content needs a contentPath")
        }
        let contentPath = String(decoding: contentPathBytes, as: UTF8.self)  // for messages
        let fd = Self.openForReading(contentPathBytes.map { CChar(bitPattern: $0) } + [0])
        if fd < 0 {
            throw ArchiveError(.io, entry: entry.path, "open('\(contentPath)') failed: \(Sys.strerror(errno))")
        }
        defer { close(fd) }
        let r = try add(entry, contentFD: fd)
        if let e = r.readErrno {
            throw ArchiveError(.io, entry: entry.path, "read('\(contentPath)') failed after \(r.bytesRead) bytes: \(Sys.strerror(e))")
        }
        return r
    }

    /// Adds one entry whose content (regular files) is read from `fd`, open for reading (the
    /// caller opened it, e.g. relative to a directory, and closes it). Exactly `entry.size`
    /// bytes are archived (see `AddResult.sizeChanged`). A read error after the header was
    /// written does not throw: the rest is zeros, `readErrno` says so, and the stream stays a
    /// valid tar (the caller leaves the entry out of its own records).
    /// - Throws: `.invalidInput` for a bad entry, or the sink's error.
    @discardableResult
    package func add(_ entry: EntryMetadata, contentFD fd: Int32) throws -> AddResult {
        precondition(!finished, "ArchiveWriter.add after finish")
        try pipeline.checkError()
        let (headerMember, headerOffset) = try appendHeader(entry)
        var result = AddResult(sha256: nil, bytesRead: 0, sizeChanged: false, headerMember: headerMember,
                               headerOffset: headerOffset, contentOffset: uncompressedOffset)
        guard entry.type == .file else { return result }
        var hasher = SHA256Hasher()
        try appendFileData(fd, from: 0, count: entry.size, probeGrowth: true, result: &result) { hasher.update($0) }
        let pad = Int((512 - entry.size % 512) % 512)
        if pad > 0 { chunk.appendZeros(pad) }
        result.sha256 = hasher.finalize()
        return result
    }

    /// Adds a sparse file as a GNU pax sparse 1.0 member (see `SparseFile`): only the data
    /// regions of `map` are read from `fd` (with `pread`), never the holes. `entry.size` is
    /// the real size; `sha256` of the result is the `SparseHash`.
    @discardableResult
    package func add(_ entry: EntryMetadata, sparseFD fd: Int32, map: [SparseRegion]) throws -> AddResult {
        precondition(!finished, "ArchiveWriter.add after finish")
        precondition(entry.type == .file)
        try pipeline.checkError()
        let regions = SparseFile.canonical(map)
        let block = SparseFile.mapBlock(regions, size: entry.size)
        let data = regions.reduce(UInt64(0)) { $0 + $1.length }
        var member = entry
        member.sparse = SparseInfo(realPath: entry.pathBytes, realSize: entry.size)
        member.pathBytes = SparseFile.placeholderPath(entry.pathBytes)
        member.size = UInt64(block.count) + data
        let (headerMember, headerOffset) = try appendHeader(member)
        var result = AddResult(sha256: nil, bytesRead: 0, sizeChanged: false, headerMember: headerMember,
                               headerOffset: headerOffset, contentOffset: uncompressedOffset, sparse: true)
        try appendContent(block, stored: false)
        var hasher = SparseHash(map: regions, realSize: entry.size)
        for r in regions {
            try appendFileData(fd, from: r.offset, count: r.length, probeGrowth: false, result: &result) { hasher.update($0) }
        }
        let pad = Int((512 - data % 512) % 512)
        if pad > 0 { chunk.appendZeros(pad) }
        result.sha256 = hasher.finalize()
        return result
    }

    /// Appends `count` bytes of `fd` from `offset` (sequential reads from offset 0, `pread`
    /// otherwise), cutting members at the size cap, marking incompressible pieces stored and
    /// passing every piece to `hash`. Short: zeros (`sizeChanged`); a read error: zeros from
    /// there (`readErrno`). With `probeGrowth`, the last read asks for one byte more: getting
    /// it means the file grew.
    private func appendFileData(_ fd: Int32, from offset: UInt64, count: UInt64, probeGrowth: Bool, result: inout AddResult,
                                hash: (UnsafeRawBufferPointer) -> Void) throws {
        var remaining = count
        var position = offset
        var eof = fd < 0
        var firstPiece = true
        while remaining > 0 {
            var space = options.memberSizeCap - chunk.count
            if space <= 0 { try submitChunk(); space = options.memberSizeCap - chunk.count }
            let want = Int(min(UInt64(space), remaining))
            let last = UInt64(want) == remaining
            let ask = want + (last && probeGrowth ? 1 : 0)
            let dst = chunk.tail(reserving: want + 1)
            var got = 0
            while !eof && got < want {
                let n = Sys.retry { offset == 0 && probeGrowth ? Glibc.read(fd, dst + got, ask - got) : pread(fd, dst + got, ask - got, off_t(position) + off_t(got)) }
                if n < 0 {
                    result.readErrno = errno
                    eof = true
                    break
                }
                if n == 0 { eof = true; break }
                got += n
            }
            if got > want { result.sizeChanged = true; got = want }
            else if last && got == want && probeGrowth { eof = true }  // a short read of a regular file is its end
            result.bytesRead += UInt64(got)
            if got < want {
                memset(dst + got, 0, want - got)
                result.sizeChanged = true
            }
            let piece = UnsafeRawBufferPointer(start: dst, count: want)
            hash(piece)
            if options.detectIncompressible && want >= 2048 && Incompressibility.looksIncompressible(piece, atFileStart: firstPiece && offset == 0) {
                chunk.markStored(chunk.count..<(chunk.count + want))
            }
            chunk.count += want
            chunk.contentBytes += want
            remaining -= UInt64(want)
            position += UInt64(want)
            firstPiece = false
        }
    }

    /// Reads a small file whole, for `add(_:prefetched:)`: meant to run on several threads
    /// ahead of the writer (reading, hashing and the incompressibility test of many small
    /// files then overlap across cores, while `add` only copies bytes). Exactly `size` bytes
    /// are kept (zero-padded when the file shrank; one byte more than the size, or a larger size
    /// from fstat afterwards, tells that it grew).
    /// - Parameter path: NUL-terminated bytes.
    /// - Returns: the content, or the errno of `open`/`read`.
    package static func prefetch(path: [UInt8], size: UInt64, detectIncompressible: Bool = true) -> Result<PrefetchedContent, PrefetchError> {
        let fd = path.withUnsafeBufferPointer { p in p.withMemoryRebound(to: CChar.self) { Self.openForReading($0.baseAddress!) } }
        return prefetch(fd: fd, size: size, detectIncompressible: detectIncompressible)
    }

    /// As `prefetch(path:size:detectIncompressible:)` for `name` (NUL-terminated, no "/") in
    /// the directory open as `directory` (an `O_PATH` descriptor is enough): files of one
    /// directory are opened without a walk of their absolute path each.
    package static func prefetch(directory: Int32, name: UnsafePointer<CChar>, size: UInt64,
                                 detectIncompressible: Bool = true) -> Result<PrefetchedContent, PrefetchError> {
        var fd = openat(directory, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | Sys.O_NOATIME)
        if fd < 0 && errno == EPERM { fd = openat(directory, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) }
        return prefetch(fd: fd, size: size, detectIncompressible: detectIncompressible)
    }

    /// `fd` is the result of the open (< 0: failed, errno set); closed here.
    private static func prefetch(fd: Int32, size: UInt64, detectIncompressible: Bool) -> Result<PrefetchedContent, PrefetchError> {
        if fd < 0 { return .failure(PrefetchError(errno: errno)) }
        defer { close(fd) }
        return read(openFile: fd, size: size, detectIncompressible: detectIncompressible)
    }

    /// As `prefetch(path:size:detectIncompressible:)` for a file the caller opened (and closes).
    /// With `cachedOnly` the bytes come from the page cache only (`RWF_NOWAIT`): a file not all
    /// cached fails (EAGAIN, or EOPNOTSUPP where the file system cannot tell) without waiting.
    package static func read(openFile fd: Int32, size: UInt64, detectIncompressible: Bool = true,
                             cachedOnly: Bool = false) -> Result<PrefetchedContent, PrefetchError> {
        guard size < Int.max / 2 else { return .failure(PrefetchError(errno: EFBIG)) }
        let want = Int(size)
        // Zeros, want + 1 of them. A small buffer through the specialized append path:
        // `Array(repeating:count:)` allocates through the standard library's unspecialized
        // generic path, ~600 instructions, once per small file of a full backup.
        var bytes: [UInt8]
        if want < 4096 {
            bytes = []
            bytes.reserveCapacity(want + 1)
            bytes.append(contentsOf: repeatElement(0, count: want + 1))
        } else {
            bytes = [UInt8](repeating: 0, count: want + 1)
        }
        var got = 0
        // Reads until `size` bytes came (or one more, or the end): no read of the end-of-file
        // when the size is right (a million small files, a million system calls); the fstat
        // below tells if the file grew after all.
        while got <= want {
            let n = Sys.retry {
                bytes.withUnsafeMutableBytes { b in
                    cachedOnly ? cshims_read_cached(fd, b.baseAddress! + got, UInt(want + 1 - got)) : Glibc.read(fd, b.baseAddress! + got, want + 1 - got)
                }
            }
            if n < 0 { return .failure(PrefetchError(errno: errno)) }
            if n == 0 { break }
            got += n
            if got == want { break }
        }
        var st = stat()
        let statOK = fstat(fd, &st) == 0
        let grew = got > want || (statOK && st.st_size > Int64(want))
        let readCount = min(got, want)
        bytes.removeLast()  // the probe byte; a short file keeps its zero padding
        var c = PrefetchedContent(bytes: bytes, sha256: SHA256Hasher.hash(bytes), bytesRead: UInt64(readCount),
                                  sizeChanged: grew || readCount < want, incompressible: false,
                                  sizeAfter: statOK ? Int64(st.st_size) : -1,
                                  mtimeAfter: statOK ? (Int64(st.st_mtim.tv_sec), Int64(st.st_mtim.tv_nsec)) : (0, -1))
        if detectIncompressible && want >= 2048 {
            c.incompressible = bytes.withUnsafeBytes { Incompressibility.looksIncompressible($0, atFileStart: true) }
        }
        return .success(c)
    }

    /// Adds a regular file whose content `prefetch` read (`entry.size` must be its size).
    @discardableResult
    package func add(_ entry: EntryMetadata, prefetched c: PrefetchedContent) throws -> AddResult {
        precondition(!finished, "ArchiveWriter.add after finish")
        precondition(entry.type == .file && UInt64(c.bytes.count) == entry.size, "prefetched content of another size")
        try pipeline.checkError()
        let (headerMember, headerOffset) = try appendHeader(entry)
        let contentOffset = uncompressedOffset
        try appendContent(c.bytes, stored: c.incompressible)
        return AddResult(sha256: c.sha256, bytesRead: c.bytesRead, sizeChanged: c.sizeChanged,
                         headerMember: headerMember, headerOffset: headerOffset, contentOffset: contentOffset)
    }

    /// Adds a regular file whose content is given in memory (`entry.size` is set from it).
    @discardableResult
    package func add(_ entry: EntryMetadata, contents: [UInt8]) throws -> AddResult {
        precondition(!finished, "ArchiveWriter.add after finish")
        try pipeline.checkError()
        var e = entry
        e.type = .file
        e.size = UInt64(contents.count)
        let (headerMember, headerOffset) = try appendHeader(e)
        let contentOffset = uncompressedOffset
        try appendContent(contents, stored: false)
        return AddResult(sha256: SHA256Hasher.hash(contents), bytesRead: UInt64(contents.count), sizeChanged: false,
                         headerMember: headerMember, headerOffset: headerOffset, contentOffset: contentOffset)
    }

    /// The member being filled (entries added now get this `headerMember`).
    package var currentMember: Int { seq }

    /// Where member `seq` landed, once it has been written through the sink (nil before).
    package func writtenMember(_ seq: Int) throws -> ArchiveMember? {
        try pipeline.checkError()
        return pipeline.member(seq)
    }

    /// Ends the member being filled now (if it holds anything) so it is compressed and
    /// written without waiting for more entries.
    package func endMember() throws {
        precondition(!finished)
        if chunk.count > 0 { try submitChunk() }
    }

    /// Waits until member `seq` has been written through the sink.
    package func waitForMember(_ seq: Int) throws {
        try pipeline.wait(for: seq)
    }

    /// Writes the end-of-archive marker, flushes all members through the sink, stops the
    /// compressor threads and returns the index.
    package func finish() throws -> ArchiveIndex {
        precondition(!finished, "ArchiveWriter.finish called twice")
        finished = true
        chunk.appendZeros(1024)
        do {
            try submitChunk(last: true)
            try pipeline.drain()
        } catch {
            pipeline.shutdown()
            throw error
        }
        let members = pipeline.members
        pipeline.shutdown()
        return ArchiveIndex(members: members, entries: entries,
                            compressedSize: members.last.map { $0.compressedOffset + $0.compressedLength } ?? 0,
                            uncompressedSize: members.last.map { $0.uncompressedOffset + $0.uncompressedLength } ?? 0)
    }

    /// Appends `entry`'s tar header, first starting a new member when this one is full;
    /// returns the member and the uncompressed offset at which the header starts.
    private func appendHeader(_ entry: EntryMetadata) throws -> (member: Int, offset: UInt64) {
        if let n = TarHeader.commonSize(entry) {
            // Written in place (nothing of a common entry can be refused).
            if chunk.count >= options.memberTargetSize { try submitChunk() }
            let at = (member: seq, offset: uncompressedOffset)
            let p = chunk.tail(reserving: n)
            memset(p, 0, n)
            TarHeader.writeCommon(entry, to: p.bindMemory(to: UInt8.self, capacity: n))
            chunk.count += n
            if options.recordEntries { entries.append(ArchiveIndexEntry(path: entry.path, member: at.member, headerOffset: at.offset)) }
            return at
        }
        headerScratch.removeAll(keepingCapacity: true)
        try TarHeader.append(entry, to: &headerScratch)
        if chunk.count >= options.memberTargetSize { try submitChunk() }
        let at = (member: seq, offset: uncompressedOffset)
        chunk.append(headerScratch)
        if options.recordEntries { entries.append(ArchiveIndexEntry(path: entry.path, member: at.member, headerOffset: at.offset)) }
        return at
    }

    /// Appends in-memory file content and its padding to 512 bytes, cutting members at the
    /// size cap; `stored` marks the bytes to be stored, not deflated (incompressible data).
    private func appendContent(_ bytes: [UInt8], stored: Bool) throws {
        var i = 0
        while i < bytes.count {
            var space = options.memberSizeCap - chunk.count
            if space <= 0 { try submitChunk(); space = options.memberSizeCap - chunk.count }
            let n = min(space, bytes.count - i)
            if stored { chunk.markStored(chunk.count ..< (chunk.count + n)) }
            chunk.append(bytes[i ..< (i + n)])
            chunk.contentBytes += n
            i += n
        }
        let pad = (512 - bytes.count % 512) % 512
        if pad > 0 { chunk.appendZeros(pad) }
    }

    private func submitChunk(last: Bool = false) throws {
        guard chunk.count > 0 else { return }
        let c = chunk
        let start = chunkStart
        chunkStart += UInt64(c.count)
        try pipeline.submit(seq: seq, chunk: c, uncompressedOffset: start, last: last)
        seq += 1
        if !last { chunk = pipeline.takeBuffer() }
    }

    private static func openForReading(_ path: UnsafePointer<CChar>) -> Int32 {
        var fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | Sys.O_NOATIME)
        if fd < 0 && errno == EPERM { fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) }
        return fd
    }
}

/// A member-sized byte buffer with the ranges to store (not deflate).
final class ChunkBuffer: @unchecked Sendable {
    private(set) var base: UnsafeMutableRawPointer
    private(set) var capacity: Int
    var count = 0
    /// Bytes of file content (the rest is tar headers and padding).
    var contentBytes = 0
    private(set) var storeRanges: [Range<Int>] = []

    init(capacity: Int) {
        self.capacity = capacity
        base = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 64)
    }

    deinit { base.deallocate() }

    func reset() { count = 0; contentBytes = 0; storeRanges.removeAll(keepingCapacity: true) }

    /// Less than 1/8 file content: mostly headers and zero padding (tiny files), which ISA-L's
    /// level 1 compresses faster (see `GzipSegmentedEncoder.Engine`). The threshold was measured
    /// for zlib's `deflate_fast` (used before, ahead of libdeflate while the content is below
    /// ~16% of the bytes of a 2 KiB-per-file tar); ISA-L is ahead by more.
    var engine: GzipSegmentedEncoder.Engine { contentBytes * 8 < count ? .headerHeavy : .content }

    func ensure(_ extra: Int) {
        if count + extra <= capacity { return }
        let newCap = max(capacity * 2, count + extra)
        let nb = UnsafeMutableRawPointer.allocate(byteCount: newCap, alignment: 64)
        nb.copyMemory(from: base, byteCount: count)
        base.deallocate()
        base = nb; capacity = newCap
    }

    /// Space for `n` more bytes at the end (the caller fills it and advances `count`).
    func tail(reserving n: Int) -> UnsafeMutableRawPointer { ensure(n); return base + count }

    func append(_ bytes: some Collection<UInt8>) {
        ensure(bytes.count)
        var p = base + count
        let done = bytes.withContiguousStorageIfAvailable { b -> Bool in
            if let a = b.baseAddress { (base + count).copyMemory(from: a, byteCount: b.count) }
            return true
        }
        if done == nil { for x in bytes { p.storeBytes(of: x, as: UInt8.self); p += 1 } }
        count += bytes.count
    }

    func appendZeros(_ n: Int) { ensure(n); memset(base + count, 0, n); count += n }

    func markStored(_ r: Range<Int>) {
        if let last = storeRanges.last, last.upperBound == r.lowerBound {
            storeRanges[storeRanges.count - 1] = last.lowerBound..<r.upperBound
        } else {
            storeRanges.append(r)
        }
    }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }
}

/// Compressor threads and the in-order writer between them and the sink.
final class MemberPipeline: @unchecked Sendable {
    private let sink: ArchiveWriter.Sink
    private let level: Int32
    private let cap: Int
    /// A member compressed, waiting for its turn to be written.
    private typealias Compressed = (seq: Int, bytes: [UInt8], offset: UInt64, length: Int)
    /// What the submitting thread, the compressor threads and the writer among them share.
    private struct Shared {
        var jobs: [(seq: Int, chunk: ChunkBuffer, offset: UInt64)] = []
        /// Members compressed, waiting for their turn to be written (at most `maxInFlight`: an
        /// array, not a dictionary, whose generic storage cost a run-time type lookup per process).
        var done: [Compressed] = []
        var freeBuffers: [ChunkBuffer] = []
        var inFlight = 0
        var nextToWrite = 0
        var submitted = 0
        var writing = false
        var closed = false
        var failure: (any Error)?
        var compressedTotal: UInt64 = 0
        var members: [ArchiveMember] = []
        /// Compressor threads started so far: one more at each submit until `threadCount` (an
        /// archive of one member, e.g. one file, starts none; see `submit`).
        var startedThreads = 0

        mutating func append(written length: Int, uncompressedOffset: UInt64, uncompressedLength: Int) {
            members.append(ArchiveMember(compressedOffset: compressedTotal, compressedLength: UInt64(length),
                                         uncompressedOffset: uncompressedOffset, uncompressedLength: UInt64(uncompressedLength)))
            compressedTotal += UInt64(length)
        }

        /// The next member in order, when it is compressed, no other thread is writing and
        /// nothing failed; the caller writes it (one writer at a time) and calls `wrote`.
        mutating func takeNextToWrite() -> Compressed? {
            guard !writing, failure == nil, let i = done.firstIndex(where: { $0.seq == nextToWrite }) else { return nil }
            writing = true
            return done.remove(at: i)
        }

        /// The sink took `m` (or failed with `error`); returns the next member to write.
        mutating func wrote(_ m: Compressed, error: (any Error)?) -> Compressed? {
            writing = false
            if let error { failure = error; return nil }
            append(written: m.bytes.count, uncompressedOffset: m.offset, uncompressedLength: m.length)
            nextToWrite += 1
            inFlight -= 1
            return takeNextToWrite()
        }
    }
    private let shared = Monitor(Shared())
    private let maxInFlight: Int
    private let threadCount: Int
    private let exited = DispatchSemaphore(value: 0)
    private let serialEncoder: GzipSegmentedEncoder?

    init(sink: @escaping ArchiveWriter.Sink, options: ArchiveWriterOptions) {
        self.sink = sink
        self.level = options.level
        self.cap = options.memberSizeCap
        self.threadCount = max(0, options.threads)
        self.maxInFlight = max(1, options.threads) + 2
        self.serialEncoder = options.threads <= 0 ? GzipSegmentedEncoder() : nil
    }

    /// The members written so far.
    var members: [ArchiveMember] { shared.withLock { $0.members } }

    func takeBuffer() -> ChunkBuffer {
        if let b = shared.withLock({ $0.freeBuffers.popLast() }) { b.reset(); return b }
        return ChunkBuffer(capacity: cap + 64 * 1024)
    }

    func checkError() throws {
        if let failure = shared.withLock({ $0.failure }) { throw failure }
    }

    /// Compresses and writes `chunk` as member `seq`, on the threads (the calling thread
    /// compresses only without threads, or the `last` chunk of an archive whose earlier members
    /// are all written: it waits for that member anyway, and a one-member archive then starts
    /// no thread at all, issue 23).
    func submit(seq: Int, chunk: ChunkBuffer, uncompressedOffset: UInt64, last: Bool = false) throws {
        if let enc = serialEncoder ?? (last ? inlineEncoder() : nil) {
            let out = encode(chunk, with: enc)
            try sink(out)
            shared.withLock { s in
                s.append(written: out.count, uncompressedOffset: uncompressedOffset, uncompressedLength: chunk.count)
                s.freeBuffers.append(chunk)
            }
            return
        }
        let startsThread = try shared.withLock(until: { $0.inFlight < maxInFlight || $0.failure != nil }) { s in
            if let failure = s.failure { throw failure }
            s.inFlight += 1
            s.submitted += 1
            s.jobs.append((seq, chunk, uncompressedOffset))
            guard s.startedThreads < threadCount else { return false }
            s.startedThreads += 1
            return true
        }
        if startsThread { startThread(stackSize: 1 << 20) { [self] in self.workerLoop() } }
        shared.wakeAll()
    }

    /// `chunk` as one gzip member.
    private func encode(_ chunk: ChunkBuffer, with encoder: GzipSegmentedEncoder) -> [UInt8] {
        var out: [UInt8] = []
        // Content compresses to about its size; headers and padding to ~1/400. (Reserved: grown
        // from empty, a MiB member was copied three times, into fresh memory each time.)
        out.reserveCapacity(chunk.engine == .headerHeavy ? 64 * 1024 : chunk.count + chunk.count / 64 + 1024)
        encoder.encodeMember(chunk.bytes, storeRanges: chunk.storeRanges, level: level, engine: chunk.engine, into: &out)
        return out
    }

    /// An encoder for the calling thread when every member submitted so far is written (no
    /// writer is running, nothing is queued): the next member then goes out in order.
    private func inlineEncoder() -> GzipSegmentedEncoder? {
        shared.withLock { $0.nextToWrite == $0.submitted && $0.failure == nil } ? GzipSegmentedEncoder() : nil
    }

    func member(_ seq: Int) -> ArchiveMember? {
        shared.withLock { seq < $0.members.count ? $0.members[seq] : nil }
    }

    /// Waits until member `seq` has been written (it must have been submitted).
    func wait(for seq: Int) throws {
        if serialEncoder != nil { return }
        if let failure = shared.withLock(until: { $0.members.count > seq || $0.failure != nil }, { $0.failure }) { throw failure }
    }

    /// Waits until every submitted member has been written.
    func drain() throws {
        if serialEncoder != nil { return }
        if let failure = shared.withLock(until: { $0.nextToWrite >= $0.submitted || $0.failure != nil }, { $0.failure }) { throw failure }
    }

    /// Stops the threads (pending work is dropped if a failure happened).
    func shutdown() {
        let started: Int? = shared.withLock { s in
            if s.closed { return nil }
            s.closed = true
            return s.startedThreads
        }
        guard let started else { return }
        shared.wakeAll()
        for _ in 0..<started { exited.wait() }
    }

    private func workerLoop() {
        let encoder = GzipSegmentedEncoder()
        defer { exited.signal() }
        while true {
            let job = shared.withLock(until: { $0.closed || (!$0.jobs.isEmpty && $0.failure == nil) }) { s in
                s.closed ? nil : s.jobs.removeFirst()
            }
            guard let job else { return }
            let out = encode(job.chunk, with: encoder)
            let length = job.chunk.count
            // Write in order; one writer at a time.
            var next = shared.withLock { s in
                s.freeBuffers.append(job.chunk)
                s.done.append((job.seq, out, job.offset, length))
                return s.takeNextToWrite()
            }
            while let m = next {
                var failed: (any Error)?
                do { try sink(m.bytes) } catch { failed = error }
                next = shared.withLock { $0.wrote(m, error: failed) }
                shared.wakeAll()
            }
        }
    }
}

/// Cheap test for data not worth deflating: known compressed-format magic numbers and the
/// order-0 entropy of a sample (random or compressed data is ~8 bits per byte).
enum Incompressibility {
    static func looksIncompressible(_ data: UnsafeRawBufferPointer, atFileStart: Bool) -> Bool {
        let n = data.count
        guard n >= 2048 else { return false }
        var threshold = 7.5
        if atFileStart && hasCompressedMagic(data) { threshold = 7.0 }
        var hist = [Int](repeating: 0, count: 256)
        var total = 0
        hist.withUnsafeMutableBufferPointer { h in
            func sample(_ from: Int, _ len: Int) {
                for i in from..<(from + len) { h[Int(data[i])] += 1 }
                total += len
            }
            if n <= 16384 {
                sample(0, n)
            } else {
                let s = 4096
                let step = (n - s) / 3
                for k in 0..<4 { sample(k * step, s) }
            }
        }
        var entropy = 0.0
        let t = Double(total)
        for c in hist where c > 0 {
            let p = Double(c) / t
            entropy -= p * log2(p)
        }
        // Small samples underestimate entropy; correct with the Miller-Madow term.
        let nonzero = hist.reduce(0) { $0 + ($1 > 0 ? 1 : 0) }
        entropy += Double(nonzero - 1) / (2 * t * M_LN2)
        return entropy >= threshold
    }

    static func hasCompressedMagic(_ d: UnsafeRawBufferPointer) -> Bool {
        func starts(_ m: [UInt8], at: Int = 0) -> Bool {
            guard d.count >= at + m.count else { return false }
            for (i, b) in m.enumerated() where d[at + i] != b { return false }
            return true
        }
        return starts([0xFF, 0xD8, 0xFF])                    // JPEG
            || starts([0x89, 0x50, 0x4E, 0x47])              // PNG
            || starts(Array("GIF8".utf8))                    // GIF
            || starts([0x1F, 0x8B])                          // gzip
            || starts([0x50, 0x4B, 0x03, 0x04])              // zip, docx, jar, apk
            || starts([0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C])  // 7z
            || starts([0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00])  // xz
            || starts([0x28, 0xB5, 0x2F, 0xFD])              // zstd
            || starts(Array("BZh".utf8))                     // bzip2
            || starts(Array("ftyp".utf8), at: 4)             // mp4, mov, heic
            || starts([0x1A, 0x45, 0xDF, 0xA3])              // mkv, webm
            || (starts(Array("RIFF".utf8)) && starts(Array("WEBP".utf8), at: 8))
            || starts(Array("OggS".utf8))
            || starts(Array("fLaC".utf8))
            || starts(Array("ID3".utf8))                     // mp3
    }
}
