// `hs-backup dump`: one file of a backup as its bytes on stdout, or a directory as a tar
// stream (pax, what `tar -x` and `bsdtar -x` read), reading only the gzip members that hold
// what is dumped. Contents go through the one tar reader at the places the manifest names
// (one reader per archive, reading on when the next file lies just ahead, restarting at the
// member otherwise) and are checked against the manifest's SHA-256.
import Archive
import Backup
import Restore
import Storage
import Support

package struct Dump {
    package var set: BackupSet
    package var id: String
    /// Normalised path inside the backup; empty: the whole backup (as a tar stream).
    package var path: [UInt8]

    package init(set: BackupSet, id: String, path: [UInt8]) {
        self.set = set; self.id = id; self.path = path
    }

    /// What was written.
    package struct Summary: Sendable {
        package var entries = 0
        package var bytes: UInt64 = 0
        package var isTar = false
    }

    /// Writes the file's bytes, or the directory's tar stream, through `write`.
    /// - Parameter beforeTar: called before a tar stream starts (to refuse a terminal).
    /// - Throws: `ToolError` (exit 1) when the path is not in the backup or a content does
    ///   not match the manifest (the output is then incomplete: the message says so).
    package func run(beforeTar: () throws -> Void = {}, _ write: ([UInt8]) throws -> Void) throws -> Summary {
        let tree = try BackupTree(id: id, members: try set.manifestMembers(id), cache: MemberTableCache(maxBytes: 32 << 20))
        let readers = ArchiveReaders(set: set, tree: tree)
        defer { readers.close() }
        var summary = Summary()
        if path.isEmpty {
            summary.isTar = true
            try beforeTar()
            try tar(tree, readers, from: nil, &summary, write)
            return summary
        }
        guard let ref = try tree.find(path) else {
            throw ToolError("no \(NameEscape.escape(path)) in backup \(id) of \(set.location); `hs-backup ls --backup \(id)` lists what it holds.")
        }
        let (e, _, link) = try tree.entry(ref)
        switch e.type {
        case .directory:
            summary.isTar = true
            try beforeTar()
            try tar(tree, readers, from: ref, &summary, write)
        case .symlink:
            throw ToolError.usage("\(NameEscape.escape(path)) is a symlink to \(NameEscape.escape(link)) in backup \(id); dump its target, or its directory as a tar stream.")
        case .file, .hardlink:
            let (file, filePath) = try content(tree, ref)
            summary.entries = 1
            try readers.copy(try readers.open(file, path: filePath), file, path: filePath) { try write($0); summary.bytes += UInt64($0.count) }
        }
        return summary
    }

    /// The file entry holding a file's or hardlink's content, and its path.
    private func content(_ tree: BackupTree, _ ref: EntryRef) throws -> (ManifestEntry, [UInt8]) {
        let (e, path, link) = try tree.entry(ref)
        guard e.type == .hardlink else { return (e, path) }
        guard let t = try tree.find(link), case let (te, tp, _) = try tree.entry(t), te.type == .file else {
            throw ToolError("backup \(id): the hardlink \(NameEscape.escape(path)) names \(NameEscape.escape(link)), which the backup does not hold as a file; the manifest is damaged. Run `hs-backup verify`.")
        }
        return (te, tp)
    }

    /// The tar stream of a directory (nil: the whole backup), names relative to its parent.
    private func tar(_ tree: BackupTree, _ readers: ArchiveReaders, from dir: EntryRef?, _ summary: inout Summary,
                     _ write: ([UInt8]) throws -> Void) throws {
        let strip = path.lastIndex(of: UInt8(ascii: "/")).map { $0 + 1 } ?? 0
        var linkedAs: [[UInt8]: [UInt8]] = [:]    // hardlink target outside the dump -> the name it was written as
        var at: EntryRef? = dir ?? (tree.members.count > 0 ? EntryRef(member: 0, index: 0) : nil)
        /// Writes the header (with the xattrs of `source`, when the manifest says it has any) and
        /// the content of a file.
        func emit(_ meta: EntryMetadata, source: (entry: ManifestEntry, path: [UInt8])?, content: Bool) throws {
            var meta = meta
            var opened: ArchiveReaders.Opened?
            if let src = source, content || src.entry.xattrHash != 0 {
                opened = try readers.open(src.entry, path: src.path)
                if src.entry.xattrHash != 0 { meta.xattrs = opened!.xattrs }
            }
            var header: [UInt8] = []
            try TarHeader.append(meta, to: &header)
            try write(header)
            summary.entries += 1
            guard content, let opened, let src = source else { return }
            var written: UInt64 = 0
            try readers.copy(opened, src.entry, path: src.path) { try write($0); written += UInt64($0.count) }
            summary.bytes += written
            if written % 512 != 0 { try write([UInt8](repeating: 0, count: Int(512 - written % 512))) }
        }
        while let r = at {
            let (e, p, link) = try tree.entry(r)
            guard path.isEmpty || p == path || BackupPath.isBelow(p, path) else { break }
            at = try tree.next(r)
            let name = Array(p[strip...])
            var meta = EntryMetadata(pathBytes: name, type: .file, mode: e.mode & 0o7777, uid: e.uid, gid: e.gid,
                                     mtimeSeconds: e.mtime.seconds, mtimeNanoseconds: e.mtime.nanoseconds)
            let hasPlace = tree.members.header.archiveID(e.archive) != nil
            switch e.type {
            case .directory:
                meta.type = .directory
                try emit(meta, source: hasPlace ? (e, p) : nil, content: false)
            case .symlink:
                meta.type = .symlink
                meta.linkBytes = link
                try emit(meta, source: hasPlace ? (e, p) : nil, content: false)
            case .file:
                meta.size = e.size
                try emit(meta, source: (e, p), content: true)
            case .hardlink:
                if path.isEmpty || BackupPath.isBelow(link, path) {
                    meta.type = .hardlink
                    meta.linkBytes = Array(link[strip...])
                    try emit(meta, source: nil, content: false)
                } else if let first = linkedAs[link] {
                    meta.type = .hardlink
                    meta.linkBytes = first
                    try emit(meta, source: nil, content: false)
                } else {
                    // Its file lies outside what is dumped: this name carries the content.
                    let (file, filePath) = try content(tree, r)
                    meta.size = file.size
                    meta.mode = file.mode & 0o7777
                    linkedAs[link] = name
                    try emit(meta, source: (file, filePath), content: true)
                }
            }
        }
        try write([UInt8](repeating: 0, count: 1024))
    }
}

/// One tar reader per archive of a backup, reading on or seeking to the places asked for.
final class ArchiveReaders {
    let set: BackupSet
    let tree: BackupTree
    private var readers: [String: (reader: TarReader, label: String)] = [:]

    init(set: BackupSet, tree: BackupTree) { self.set = set; self.tree = tree }

    func close() { for r in readers.values { r.reader.close() } }

    /// An entry's tar header, with its archive's reader positioned at its content.
    struct Opened {
        var header: TarEntry
        var reader: TarReader
        var label: String
        /// Its xattrs and ACLs, from its tar header.
        var xattrs: [String: [UInt8]] {
            var out: [String: [UInt8]] = [:]
            for x in header.xattrs { out[String(decoding: x.name, as: UTF8.self)] = x.value }
            return out
        }
    }

    /// Reads the entry's tar header at the place the manifest names and checks its path.
    func open(_ e: ManifestEntry, path: [UInt8]) throws -> Opened {
        guard let archive = tree.members.header.archiveID(e.archive) else {
            throw ToolError("backup \(tree.id): \(NameEscape.escape(path)) has no place in any archive; the manifest is damaged. Run `hs-backup verify`.")
        }
        var fresh = false
        let (reader, label) = try readers[archive] ?? {
            fresh = true
            let rd = SharedDestinationReader(try set.openArchive(archive))
            let label = "\(set.location)/\(archive).tar.gz"
            // Started at the first place asked for: nothing before it is read.
            let start = ExtractStart(compressedOffset: e.memberOffset, uncompressedOffset: 0, firstHeaderOffset: e.memberSkip)
            let r = (try TarReader(source: ArchiveSource(size: rd.size, displayName: label) { try rd.read(at: $0, count: $1) }, start: start), label)
            readers[archive] = r
            return r
        }()
        let h: TarEntry
        do {
            if !fresh { try reader.seek(member: e.memberOffset, skip: e.memberSkip) }
            guard let next = try reader.next() else { throw ToolError("\(label) ends where backup \(tree.id) expects \(NameEscape.escape(path))") }
            h = next
        } catch { throw Self.naming(path, label, error) }
        guard h.path == path || RestorePath.join(RestorePath.split(h.path)) == path else {
            throw ToolError("\(label) does not hold \(NameEscape.escape(path)) where the manifest says (found \(NameEscape.escape(h.path))); "
                            + "the backup is damaged. Run `hs-backup verify`.")
        }
        return Opened(header: h, reader: reader, label: label)
    }

    /// Hands a file's content to `write` in order (a sparse file's holes as zeros), then checks
    /// its size and SHA-256 against the manifest (for a sparse member the `SparseHash` of its
    /// map and data, which is what the manifest holds for it).
    func copy(_ opened: Opened, _ e: ManifestEntry, path: [UInt8], _ output: ([UInt8]) throws -> Void) throws {
        let (h, reader, label) = (opened.header, opened.reader, opened.label)
        guard h.type == .file, h.size == e.size else {
            throw ToolError("\(label): \(NameEscape.escape(path)) is not the file of \(e.size) bytes the manifest names; the backup is damaged. Run `hs-backup verify`.")
        }
        var hasher: SHA256Hasher? = h.sparse == nil ? SHA256Hasher() : nil
        var sparseHasher: SparseHash? = h.sparse.map { SparseHash(map: $0, realSize: h.size) }
        var at: UInt64 = 0
        let zeros = [UInt8](repeating: 0, count: 1 << 16)
        // What `write` throws (the output failed) passes through as it is; what the archive
        // throws names the file it cut short.
        func write(_ bytes: [UInt8]) throws {
            do { try output(bytes) } catch { throw OutputFailure(error: error) }
        }
        func hole(upTo end: UInt64) throws {
            while at < end {
                let n = Int(min(end - at, UInt64(zeros.count)))
                let z = n == zeros.count ? zeros : Array(zeros[0 ..< n])
                hasher?.update(z)
                try write(z)
                at += UInt64(n)
            }
        }
        do {
            try reader.readContent { off, chunk in
                try hole(upTo: off)
                let bytes = Array(chunk)
                hasher?.update(bytes)
                sparseHasher?.update(chunk)
                try write(bytes)
                at = off + UInt64(chunk.count)
            }
        } catch let e as OutputFailure { throw e.error } catch { throw Self.naming(path, label, error) }
        try hole(upTo: e.size)
        let got = hasher.take()?.finalize() ?? sparseHasher.take()!.finalize()
        guard Digest(got) == e.hash else {
            throw ToolError("\(NameEscape.escape(path)): the content in \(label) does not have the manifest's SHA-256; what was written is damaged. Run `hs-backup verify`.")
        }
    }

    /// A failure of the output, carried past the archive's errors unchanged.
    private struct OutputFailure: Error { var error: any Error }

    /// A failure reading `path`'s entry from the archive `label`, naming both (a tar stream of
    /// thousands of files otherwise ends with only "header checksum mismatch at tar offset N").
    static func naming(_ path: [UInt8], _ label: String, _ error: any Error) -> any Error {
        let m = HumanError.describe(error), name = NameEscape.escape(path)
        if m.contains(name) { return error }
        return ToolError(m.contains(label) ? "\(name): \(m)" : "\(name) in \(label): \(m)", exitCode: (error as? ToolError)?.exitCode ?? 1)
    }
}
