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
            throw ArchiveError(.io, "cannot open archive '\(path)': \(Sys.strerror(errno))")
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
                let n = Sys.retry { Glibc.pread(fd, b.baseAddress! + got, count - got, off_t(off) + off_t(got)) }
                if n < 0 {
                    throw ArchiveError(.io, "reading '\(path)' at offset \(off) failed: \(Sys.strerror(errno))")
                }
                if n == 0 { break }
                got += n
            }
        }
        if got < count { out.removeLast(count - got) }
        return out
    }
}

/// The restore policy (one value for both `--archive` and `--from`) and where to read.
package struct ExtractOptions: Sendable {
    /// Restore into a directory that already has content (later entries replace files,
    /// symlinks are replaced, never followed). Off: the target must be empty or absent.
    package var allowNonEmptyTarget = false
    /// chown entries to the archived uid/gid (numeric). Default: when running as root.
    package var restoreOwnership = geteuid() == 0
    /// Keep setuid/setgid bits. nil: only when restoring as root into a target that was empty.
    package var preserveSpecialBits: Bool? = nil
    /// Create FIFOs (harmless: nothing opens them). Device nodes are always skipped.
    package var allowFIFOs = true
    /// Restore extended attributes (`user.*`; as root also ACLs and other namespaces).
    package var restoreXattrs = true
    /// Bounds on headers and sparse maps.
    package var limits = TarLimits()
    /// Start in the middle of the archive (from an `ArchiveIndex`). nil: from the start.
    package var start: ExtractStart? = nil
    /// Stop at the first entry starting at or after this tar-stream offset (nil: the end marker).
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
    /// Content bytes restored (holes included).
    package var bytes: UInt64 = 0
    /// Non-fatal problems (device nodes skipped, symlinks pointing outside, xattrs the
    /// filesystem does not support, ...).
    package var warnings: [String] = []
    package init() {}
}

/// Extracts a (gzip-compressed or plain) tar archive into `target`, treating it as hostile
/// (the rules are `TreeWriter`'s: nothing is written outside `target`, nothing is followed).
/// Memory stays bounded: entries are written as they are read; only directories (for their
/// final metadata) and, with a filter, hardlinks whose target was left out are remembered.
/// - Parameters:
///   - filter: return false to skip an entry (its path is already normalised).
///   - onFile: called for each regular file restored.
/// - Throws: `ArchiveError`; for damage found after files were written, the error names the
///   files written from the damaged part of the archive.
/// - Returns: counts and warnings.
package func extractArchive(_ source: ArchiveSource, to target: String, options: ExtractOptions = ExtractOptions(),
                            filter: ((TarEntry) -> Bool)? = nil,
                            onFile: ((TarEntry) -> Void)? = nil) throws -> ExtractSummary {
    let wasEmpty = try prepareTarget(target, allowNonEmpty: options.allowNonEmptyTarget)
    let writer = try TreeWriter(target: target, options: options, fresh: wasEmpty)
    defer { writer.close() }
    writer.deferMissingLinkTargets = filter != nil
    let reader = try TarReader(source: source, start: options.start, limits: options.limits)
    defer { reader.close() }
    var written = RecentFiles()
    writer.onFile = { e in written.position = max(written.position, reader.position); written.add(e); onFile?(e) }
    do {
        while let raw = try nextEntry(reader, options) {
            var e = raw
            if let filter {
                e.path = RestorePath.join(RestorePath.split(e.path).filter { $0 != [UInt8(ascii: ".")] })
                if !filter(e) { writer.skip(); continue }
            }
            try writer.write(e, content: e.type == .file ? { try reader.readContent($0) } : nil)
            written.position = reader.position
            written.forget(upTo: reader.verifiedUpTo)
        }
        if options.endOffset == nil && options.start == nil { try reader.drain() }
        try writer.finish()
        if !writer.pendingLinks.isEmpty { try restorePendingLinks(writer, source, options) }
    } catch var err as ArchiveError where err.kind == .malformed || err.kind == .truncated {
        writer.settle()
        written.forget(upTo: reader.verifiedUpTo)
        if !written.names.isEmpty {
            err.detail += "; restored from the damaged part of the archive, so possibly wrong: " + written.names.joined(separator: ", ")
                + (written.more > 0 ? " and \(written.more) more" : "")
        }
        throw err
    }
    var summary = writer.summary
    summary.warnings = reader.warnings + summary.warnings
    return summary
}

/// The next entry, or nil at the end (or past `options.endOffset`).
private func nextEntry(_ reader: TarReader, _ options: ExtractOptions) throws -> TarEntry? {
    if let end = options.endOffset, reader.position >= end {
        try reader.skipContent()
        if reader.position >= end { return nil }
    }
    guard let e = try reader.next() else { return nil }
    if let end = options.endOffset, e.headerOffset >= end { return nil }
    return e
}

/// Hardlinks whose target a filter left out: a second pass over the archive restores each
/// target's content at the first link's path and links the others to it.
private func restorePendingLinks(_ writer: TreeWriter, _ source: ArchiveSource, _ options: ExtractOptions) throws {
    var byTarget: [[UInt8]: [TarEntry]] = [:]
    for p in writer.pendingLinks { var l = p.entry; l.path = p.link; byTarget[p.target, default: []].append(l) }
    let reader = try TarReader(source: source, start: options.start, limits: options.limits)
    defer { reader.close() }
    while !byTarget.isEmpty, let raw = try nextEntry(reader, options) {
        let path = RestorePath.join(RestorePath.split(raw.path).filter { $0 != [UInt8(ascii: ".")] })
        guard raw.type == .file, let links = byTarget.removeValue(forKey: path) else { continue }
        var first = raw
        first.path = links[0].path
        try writer.write(first, content: { try reader.readContent($0) })
        for var l in links.dropFirst() { l.linkTarget = links[0].path; try writer.write(l) }
    }
    try writer.finish()
    if let (t, links) = byTarget.first {
        throw ArchiveError(.malformed, entry: links[0].displayPath, "hardlink target '\(TarReader.display(t))' is not in the archive")
    }
}

/// Names of files written since the last verified point of the stream (bounded).
private struct RecentFiles {
    var names: [String] = []
    var ends: [UInt64] = []
    var more = 0
    /// Reader position when the last entry was handed to the writer.
    var position: UInt64 = 0
    mutating func add(_ e: TarEntry) {
        if names.count < 20 { names.append(e.displayPath); ends.append(position) } else { more += 1 }
    }
    /// Drops files whose content lies before `verified` (their gzip CRC was checked).
    mutating func forget(upTo verified: UInt64) {
        var k = 0
        while k < ends.count && ends[k] <= verified { k += 1 }
        if k > 0 { names.removeFirst(k); ends.removeFirst(k) }
        if names.isEmpty { more = 0 }
    }
}

/// Lists the entries of a (gzip-compressed or plain) tar archive without extracting (sparse
/// holes are not read: an entry costs what it stores).
package func listArchive(_ source: ArchiveSource, options: ExtractOptions = ExtractOptions(), _ body: (TarEntry) throws -> Void) throws -> [String] {
    let reader = try TarReader(source: source, start: options.start, limits: options.limits)
    defer { reader.close() }
    while let e = try nextEntry(reader, options) { try body(e) }
    if options.endOffset == nil && options.start == nil { try reader.drain() }
    return reader.warnings
}

/// Creates `target` if needed; returns whether it was empty (or absent).
/// - Throws: `.invalidInput` when it is not a directory, or not empty and `allowNonEmpty` is false.
package func prepareTarget(_ target: String, allowNonEmpty: Bool) throws -> Bool {
    var st = stat()
    if lstat(target, &st) != 0 {
        guard errno == ENOENT else {
            throw ArchiveError(.io, "cannot stat target '\(target)': \(Sys.strerror(errno))")
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
