import Archive
import Support

/// One step of a restore from a backup: an entry for the tree writer, and for a regular file
/// where its content is (archive id, gzip member, tar bytes into it, size and SHA-256).
struct RestoreStep {
    struct Content {
        var archive: String
        var member: UInt64
        var skip: UInt64
        /// The path the archive holds the content under (a hardlink target's, for a link
        /// restored as a file).
        var archivedPath: [UInt8]
        var sha256: [UInt8]
    }
    var entry: TarEntry
    var content: Content?
}

/// The ONE place that reads a manifest for a restore: turns its entries into `RestoreStep`s
/// (in manifest order: a directory before what is in it), applying `--only`. When the
/// manifest format changes, only this file changes.
///
/// Hardlinks come last (`links`): a link whose target is restored links to it; among links
/// whose target `--only` leaves out, the first becomes a file with the target's content and
/// the others link to it (one inode, as in the backup).
struct ManifestRestorePlan {
    let manifest: Manifest
    let id: String
    /// Normalised `--only` paths (empty: everything).
    let only: [[UInt8]]

    init(manifest: Manifest, id: String, only: [String]) throws {
        self.manifest = manifest
        self.id = id
        self.only = only.map { RestorePath.join(RestorePath.split(Array($0.utf8)).filter { $0 != [UInt8(ascii: ".")] }) }
        let table = manifest.table
        for o in self.only {
            if o.withUnsafeBytes({ table.find($0) }) == nil {
                throw ToolError("--only \(String(decoding: o, as: UTF8.self)): no such path in backup \(id). `hs-restore --dry-run` lists what the backup holds.", exitCode: 1)
            }
        }
    }

    private func selected(_ path: [UInt8], isDirectory: Bool) -> Bool {
        if only.isEmpty { return true }
        let slash = UInt8(ascii: "/")
        for o in only {
            if path == o || (path.count > o.count && path.starts(with: o) && path[o.count] == slash) { return true }
            // An ancestor directory of a requested path.
            if isDirectory && o.count > path.count && o.starts(with: path) && o[path.count] == slash { return true }
        }
        return false
    }

    private func entry(_ e: ManifestEntry, path: [UInt8]) -> TarEntry {
        let type: EntryType
        switch e.type {
        case .file: type = .file
        case .directory: type = .directory
        case .symlink: type = .symlink
        case .hardlink: type = .hardlink
        }
        var t = TarEntry(path: path, type: type)
        t.mode = e.mode; t.uid = e.uid; t.gid = e.gid
        t.size = e.type == .file ? e.size : 0
        t.mtime = FileTime(totalNanoseconds: e.mtimeNs)
        if e.type == .symlink || e.type == .hardlink { t.linkTarget = Array(manifest.table.linkBytes(e)) }
        return t
    }

    private func content(_ e: ManifestEntry, archivedPath: [UInt8]) throws -> RestoreStep.Content? {
        if e.archive == ManifestEntry.noArchive {
            guard e.size == 0 else { throw ToolError("backup \(id) has no archive for \(String(decoding: archivedPath, as: UTF8.self)); the manifest is damaged") }
            return nil
        }
        guard Int(e.archive) < manifest.header.archives.count else {
            throw ToolError("backup \(id) names archive #\(e.archive) for \(String(decoding: archivedPath, as: UTF8.self)), which it does not list; the manifest is damaged")
        }
        return RestoreStep.Content(archive: manifest.header.archives[Int(e.archive)], member: e.memberOffset, skip: e.memberSkip,
                                   archivedPath: archivedPath, sha256: e.hash.bytes)
    }

    /// Calls `body` with every selected entry but hardlinks, in manifest order.
    func forEachEntry(_ body: (RestoreStep) throws -> Void) throws {
        let table = manifest.table
        for i in 0 ..< table.count {
            let e = table.entry(i)
            guard e.type != .hardlink else { continue }
            let path = table.pathBytes(e)
            guard selected(path, isDirectory: e.type == .directory) else { continue }
            try body(RestoreStep(entry: entry(e, path: path), content: e.type == .file ? try content(e, archivedPath: path) : nil))
        }
    }

    /// Calls `body` with every selected hardlink (a link restored as a file carries content).
    func forEachLink(_ body: (RestoreStep) throws -> Void) throws {
        let table = manifest.table
        var firstLinkOf: [[UInt8]: [UInt8]] = [:]   // unselected target -> first link restored as a file
        for i in 0 ..< table.count {
            let e = table.entry(i)
            guard e.type == .hardlink else { continue }
            let path = table.pathBytes(e)
            guard selected(path, isDirectory: false) else { continue }
            let target = Array(table.linkBytes(e))
            guard let ti = target.withUnsafeBytes({ table.find($0) }), table.entry(ti).type == .file else {
                throw ToolError("backup \(id) is inconsistent: hardlink \(String(decoding: path, as: UTF8.self)) points to \(String(decoding: target, as: UTF8.self)), which is not a file in the manifest")
            }
            var link = entry(e, path: path)
            if selected(target, isDirectory: false) {
                try body(RestoreStep(entry: link, content: nil))
            } else if let first = firstLinkOf[target] {
                link.linkTarget = first
                try body(RestoreStep(entry: link, content: nil))
            } else {
                firstLinkOf[target] = path
                let src = table.entry(ti)
                var file = entry(src, path: path)
                file.mode = e.mode; file.uid = e.uid; file.gid = e.gid; file.mtime = FileTime(totalNanoseconds: e.mtimeNs)
                try body(RestoreStep(entry: file, content: try content(src, archivedPath: target)))
            }
        }
    }
}
