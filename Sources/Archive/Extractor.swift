import Foundation
import Glibc
import Gzip
import Support

/// Random-access bytes of an archive: a local file, or anything with a pread-like call
/// (e.g. a Storage `DestinationReader` on an NFS export: `ArchiveSource(size: r.size,
/// displayName: url) { try r.read(at: $0, count: $1) }`).
package struct ArchiveSource: @unchecked Sendable {
    package var size: UInt64
    package var displayName: String
    /// Reads up to `count` bytes at `offset` (fewer only at end of file). Called from the
    /// extraction's reader thread (one call at a time), not from the caller's thread.
    package var read: (UInt64, Int) throws -> [UInt8]

    package init(size: UInt64, displayName: String, read: @escaping (UInt64, Int) throws -> [UInt8]) {
        self.size = size; self.displayName = displayName; self.read = read
    }

    /// A local file (opened now, closed when the last copy of the source goes away).
    package static func file(_ path: String) throws -> ArchiveSource {
        let h = try FileHandleBox(path: path)
        return ArchiveSource(size: h.size, displayName: path) { off, count in try h.pread(off, count) }
    }
}

final class FileHandleBox: @unchecked Sendable {
    let fd: Int32
    let size: UInt64
    let path: String
    init(path: String) throws {
        self.path = path
        fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw ArchiveError(.io, "cannot open archive '\(path)': \(String(cString: strerror(errno)))")
        }
        var st = stat()
        fstat(fd, &st)
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw ArchiveError(.invalidInput, "'\(path)' is not a regular file")
        }
        size = UInt64(st.st_size)
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
    }
    deinit { close(fd) }
    func pread(_ off: UInt64, _ count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var got = 0
        try out.withUnsafeMutableBytes { b in
            while got < count {
                let n = Glibc.pread(fd, b.baseAddress! + got, count - got, off_t(off) + off_t(got))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw ArchiveError(.io, "reading '\(path)' at offset \(off) failed: \(String(cString: strerror(errno)))")
                }
                if n == 0 { break }
                got += n
            }
        }
        if got < count { out.removeLast(count - got) }
        return out
    }
}

/// How `extractArchive` behaves.
package struct ExtractOptions: Sendable {
    /// Extract into a directory that already has content (later entries replace files,
    /// symlinks are replaced, never followed). Off: the target must be empty or absent.
    package var allowNonEmptyTarget = false
    /// chown entries to the archived uid/gid (numeric). Default: when running as root.
    package var restoreOwnership = geteuid() == 0
    /// Keep setuid/setgid bits. nil: only when restoring as root into a target that was empty.
    package var preserveSpecialBits: Bool? = nil
    /// Create symlinks whose target is absolute or resolves outside the target. They are
    /// still never followed during extraction. Off for untrusted archives (`hs-restore --archive`).
    package var allowSymlinksOutside = false
    /// Create FIFOs (harmless: nothing opens them). Device nodes are always refused.
    package var allowFIFOs = true
    /// Restore `user.*` extended attributes.
    package var restoreXattrs = true
    /// Bound on pax / GNU long-name headers.
    package var maxExtendedHeaderSize = 1 << 20
    /// Start in the middle of the archive (from an `ArchiveIndex`). nil: from the start.
    package var start: ExtractStart? = nil
    /// Stop at the first entry boundary at or after this tar-stream offset (nil: the end marker).
    package var endOffset: UInt64? = nil

    package init() {}
}

/// What an extraction did.
package struct ExtractSummary: Sendable, Equatable, Codable {
    package var files = 0
    package var directories = 0
    package var symlinks = 0
    package var hardlinks = 0
    package var fifos = 0
    /// Entries the filter left out.
    package var skipped = 0
    /// Content bytes written.
    package var bytes: UInt64 = 0
    /// Non-fatal problems (e.g. xattrs the filesystem does not support).
    package var warnings: [String] = []
    package init() {}
}

/// Extracts a (gzip-compressed or plain) tar archive into `target`, treating it as hostile:
/// - refuses absolute paths and `..` components (rules "absolute-path", "parent-traversal");
/// - never follows a symlink: parents are walked with `openat(O_NOFOLLOW|O_DIRECTORY)`, an
///   existing symlink at an entry's path is replaced, never written through, including one
///   left by an earlier archive extracted into the same target ("symlink-in-path");
/// - refuses symlinks resolving outside the target ("symlink-escape", checked per entry and
///   again for all symlinks at the end) and hardlinks to paths outside it ("hardlink-escape");
/// - refuses device nodes ("device-node"); strips setuid/setgid unless root into a fresh target;
/// - bounds pax header sizes; malformed or truncated input is an error.
/// The first refusal stops the extraction with `ArchiveError.refused` naming entry and rule;
/// nothing is ever written outside `target`.
/// - Parameters:
///   - filter: return false to skip an entry (its path is already normalised).
///   - onFile: called for each regular file written, with the SHA-256 of its content.
/// - Returns: counts and warnings.
package func extractArchive(_ source: ArchiveSource, to target: String, options: ExtractOptions = ExtractOptions(),
                            filter: ((EntryMetadata) -> Bool)? = nil,
                            onFile: ((EntryMetadata, [UInt8]) throws -> Void)? = nil) throws -> ExtractSummary {
    let wasEmpty = try prepareTarget(target, allowNonEmpty: options.allowNonEmptyTarget)
    let ex = try Extractor(target: target, options: options, freshTarget: wasEmpty, filter: filter, onFile: onFile)
    defer { ex.closeAll() }
    try streamTar(source, options: options, handler: ex)
    try ex.finishExtraction()
    return ex.summary
}

/// Lists the entries of a (gzip-compressed or plain) tar archive without extracting.
package func listArchive(_ source: ArchiveSource, options: ExtractOptions = ExtractOptions()) throws -> [EntryMetadata] {
    final class Collector: TarEntryHandler {
        var entries: [EntryMetadata] = []
        func beginEntry(_ entry: EntryMetadata, headerOffset: UInt64) throws -> Bool { entries.append(entry); return false }
        func entryContent(_ bytes: UnsafeRawBufferPointer) throws {}
        func endEntry() throws {}
    }
    let c = Collector()
    try streamTar(source, options: options, handler: c)
    return c.entries
}

/// Decompresses (if gzip) and parses `source`, driving `handler`.
func streamTar(_ source: ArchiveSource, options: ExtractOptions, handler: any TarEntryHandler) throws {
    let start = options.start
    let off = start?.compressedOffset ?? 0
    var tarPos = start?.uncompressedOffset ?? 0
    let firstHeader = start?.firstHeaderOffset ?? tarPos
    guard firstHeader >= tarPos else { throw ArchiveError(.invalidInput, "start header offset lies before the member start") }
    let parser = TarParser(handler: handler, startOffset: firstHeader, maxExtendedSize: options.maxExtendedHeaderSize)
    let partial = start != nil || options.endOffset != nil
    var stop = false
    let chunk = 1 << 20

    func toParser(_ bytes: UnsafeRawBufferPointer) throws {
        if stop || parser.finished { return }
        var b = bytes
        if tarPos < firstHeader {
            let skip = Int(min(UInt64(b.count), firstHeader - tarPos))
            b = UnsafeRawBufferPointer(rebasing: b[skip...])
            tarPos += UInt64(skip)
        }
        guard b.count > 0 else { return }
        if let end = options.endOffset {
            // Feed up to the end offset, then until the parser reaches an entry boundary.
            var p = 0
            while p < b.count && !stop {
                if parser.position >= end && parser.atEntryBoundary { stop = true; break }
                let limit = parser.position < end ? Int(min(UInt64(b.count - p), end - parser.position)) : min(512, b.count - p)
                try parser.feed(UnsafeRawBufferPointer(rebasing: b[p..<(p + limit)]))
                p += limit
            }
            if parser.position >= end && parser.atEntryBoundary { stop = true }
        } else {
            try parser.feed(b)
        }
        tarPos += UInt64(b.count)
    }

    // Sniff: gzip or plain tar.
    let head = off < source.size ? try source.read(off, Int(min(2, source.size - off))) : []
    let gzip = head.count == 2 && head[0] == 0x1f && head[1] == 0x8b
    if !gzip && head.count < 2 {
        throw ArchiveError(.truncated, "'\(source.displayName)' is empty; expected a tar.gz archive")
    }
    // Reading and decompressing run on their own thread, parsing and writing files on this
    // one, with a bounded queue of 1 MiB chunks between them (like `gzip -d | tar -x`).
    let queue = ChunkQueue(capacity: 3)
    let producerDone = DispatchSemaphore(value: 0)
    let thread = Thread {
        defer { producerDone.signal() }
        let decoder = gzip ? GzipDecoder(outputChunk: 1 << 20) : nil
        do {
            var off = off
            while off < source.size && !queue.isCancelled {
                let n = Int(min(UInt64(chunk), source.size - off))
                let buf = try source.read(off, n)
                guard buf.count == n else {
                    throw ArchiveError(.truncated, "'\(source.displayName)' ended at \(off + UInt64(buf.count)) bytes, expected \(source.size)")
                }
                off += UInt64(n)
                if let decoder {
                    try decoder.feed(buf) { out in
                        if !queue.put(Array(out)) { throw CancellationError() }
                    }
                } else {
                    if !queue.put(buf) { throw CancellationError() }
                }
            }
            if let decoder, !queue.isCancelled { try decoder.finish() }
            queue.close(error: nil)
        } catch is CancellationError {
            queue.close(error: nil)
        } catch let e as GzipError {
            queue.close(error: ArchiveError(e.kind == .truncated ? .truncated : .malformed,
                                            "'\(source.displayName)': \(e.description) (after \(decoder?.uncompressedProduced ?? 0) tar bytes)"))
        } catch {
            queue.close(error: error)
        }
    }
    thread.stackSize = 1 << 20
    thread.start()
    defer {
        queue.cancel()
        producerDone.wait()
    }
    while let piece = try queue.take() {
        try piece.withUnsafeBytes { try toParser($0) }
        if stop || (parser.finished && partial) { break }
    }
    if !stop { try parser.finish(requireEndMarker: !partial) }
}

/// Creates `target` if needed; returns whether it was empty (or absent).
/// - Throws: `.invalidInput` when it is not a directory, or not empty and `allowNonEmpty` is false.
func prepareTarget(_ target: String, allowNonEmpty: Bool) throws -> Bool {
    var st = stat()
    if lstat(target, &st) != 0 {
        guard errno == ENOENT else {
            throw ArchiveError(.io, "cannot stat target '\(target)': \(String(cString: strerror(errno)))")
        }
        do { try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true) } catch {
            throw ArchiveError(.io, "cannot create target '\(target)': \(error)")
        }
        return true
    }
    guard (st.st_mode & S_IFMT) == S_IFDIR else {
        throw ArchiveError(.invalidInput, "target '\(target)' is not a directory")
    }
    let contents = (try? FileManager.default.contentsOfDirectory(atPath: target)) ?? []
    if !contents.isEmpty && !allowNonEmpty {
        throw ArchiveError(.invalidInput, "target '\(target)' is not empty; pick an empty directory or pass --force to replace what is there")
    }
    return contents.isEmpty
}

/// A bounded queue of byte chunks between one producer and one consumer thread.
final class ChunkQueue: @unchecked Sendable {
    private let cond = NSCondition()
    private var items: [[UInt8]] = []
    private var head = 0
    private let capacity: Int
    private var closed = false
    private var cancelled = false
    private var error: (any Error)?

    init(capacity: Int) { self.capacity = capacity }

    var isCancelled: Bool { cond.lock(); defer { cond.unlock() }; return cancelled }

    /// Blocks while full; false when the consumer cancelled.
    func put(_ chunk: [UInt8]) -> Bool {
        cond.lock(); defer { cond.unlock() }
        while items.count - head >= capacity && !cancelled { cond.wait() }
        if cancelled { return false }
        items.append(chunk)
        cond.broadcast()
        return true
    }

    /// The next chunk; nil at the end; throws the producer's error after the chunks before it.
    func take() throws -> [UInt8]? {
        cond.lock(); defer { cond.unlock() }
        while items.count == head && !closed { cond.wait() }
        if items.count > head {
            let c = items[head]
            items[head] = []
            head += 1
            if head > 64 { items.removeFirst(head); head = 0 }
            cond.broadcast()
            return c
        }
        if let error { throw error }
        return nil
    }

    func close(error: (any Error)?) {
        cond.lock(); closed = true; self.error = error; cond.broadcast(); cond.unlock()
    }

    func cancel() {
        cond.lock(); cancelled = true; cond.broadcast(); cond.unlock()
    }
}
