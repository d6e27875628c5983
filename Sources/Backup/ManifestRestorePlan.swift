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
    /// Opens the manifest for one pass over its entries (each pass reads it as a stream).
    let open: () throws -> ManifestReader
    let id: String
    /// Normalised `--only` paths (empty: everything).
    let only: [[UInt8]]

    /// Selected directories and symlinks whose xattrs/ACLs are only in the archives' pax
    /// headers (the manifest has no archive place for them).
    private(set) var directoriesWithXattrs = Set<[UInt8]>()
    /// The archives the backup reads, newest first.
    private(set) var archivesNewestFirst: [String] = []
    /// Selected hardlinks (memory grows with the number of hardlinks only).
    private var links: [ManifestItem] = []

    init(id: String, only: [String], open: @escaping () throws -> ManifestReader) throws {
        self.open = open
        self.id = id
        self.only = only.map { RestorePath.join(RestorePath.split(Array($0.utf8)).filter { $0 != [UInt8(ascii: ".")] }) }
        // A first pass reads the whole manifest before anything is written: a damaged or
        // altered one (member checksum, order, archive references) is refused up front. It
        // also notes what later steps need: directories with xattrs, and the hardlinks.
        var missing = Set(self.only)
        var dirs = Set<[UInt8]>()
        var links: [ManifestItem] = []
        let reader = try open()
        defer { reader.close() }
        archivesNewestFirst = reader.header.archives.reversed()
        while let e = try reader.nextItem() {
            if !missing.isEmpty { missing.remove(e.path) }
            if (e.type == .directory || e.type == .symlink) && e.xattrHash != 0 && selected(e.path, isDirectory: e.type == .directory) {
                dirs.insert(e.path)
            }
            if e.type == .hardlink && selected(e.path, isDirectory: false) { links.append(e) }
        }
        directoriesWithXattrs = dirs
        self.links = links
        if let o = self.only.first(where: { missing.contains($0) }) {
            throw ToolError("--only \(String(decoding: o, as: UTF8.self)): no such path in backup \(id). `hs-restore --dry-run` lists what the backup holds.", exitCode: 1)
        }
    }

    /// One pass over the manifest's entries in path order.
    private func forEachItem(_ body: (ManifestItem) throws -> Void) throws {
        let reader = try open()
        defer { reader.close() }
        while let e = try reader.nextItem() { try body(e) }
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

    private func entry(_ e: ManifestItem) -> TarEntry {
        let type: EntryType
        switch e.type {
        case .file: type = .file
        case .directory: type = .directory
        case .symlink: type = .symlink
        case .hardlink: type = .hardlink
        }
        var t = TarEntry(path: e.path, type: type)
        t.mode = e.mode; t.uid = e.uid; t.gid = e.gid
        t.size = e.type == .file ? e.size : 0
        t.mtime = e.mtime
        if e.type == .symlink || e.type == .hardlink { t.linkTarget = e.link }
        return t
    }

    private func content(_ e: ManifestItem) throws -> RestoreStep.Content? {
        guard let archive = e.archive else {
            guard e.size == 0 else { throw ToolError("backup \(id) has no archive for \(TarReader.display(e.path)); the manifest is damaged") }
            return nil
        }
        return RestoreStep.Content(archive: archive, member: e.memberOffset, skip: e.memberSkip,
                                   archivedPath: e.path, sha256: e.hash.bytes)
    }

    /// Calls `body` with every selected entry but hardlinks, in manifest order.
    func forEachEntry(_ body: (RestoreStep) throws -> Void) throws {
        try forEachItem { e in
            guard e.type != .hardlink && selected(e.path, isDirectory: e.type == .directory) else { return }
            try body(RestoreStep(entry: entry(e), content: e.type == .file ? try content(e) : nil))
        }
    }

    /// Calls `body` with every selected hardlink (a link restored as a file carries content).
    /// One more pass over the manifest, for the links' targets, when there are links.
    func forEachLink(_ body: (RestoreStep) throws -> Void) throws {
        let linksFound = links
        guard !linksFound.isEmpty else { return }
        var targets: [[UInt8]: ManifestItem] = [:]
        let wanted = Set(linksFound.map(\.link))
        try forEachItem { e in if wanted.contains(e.path) { targets[e.path] = e } }
        var firstLinkOf: [[UInt8]: [UInt8]] = [:]   // unselected target -> first link restored as a file
        for e in linksFound {
            guard let src = targets[e.link], src.type == .file else {
                throw ToolError("backup \(id) is inconsistent: hardlink \(TarReader.display(e.path)) points to \(TarReader.display(e.link)), which is not a file in the manifest")
            }
            var link = entry(e)
            if selected(e.link, isDirectory: false) {
                try body(RestoreStep(entry: link, content: nil))
            } else if let first = firstLinkOf[e.link] {
                link.linkTarget = first
                try body(RestoreStep(entry: link, content: nil))
            } else {
                firstLinkOf[e.link] = e.path
                var file = entry(src)
                file.path = e.path
                file.mode = e.mode; file.uid = e.uid; file.gid = e.gid; file.mtime = entry(e).mtime
                var c = try content(src)
                c?.archivedPath = src.path
                try body(RestoreStep(entry: file, content: c))
            }
        }
    }
}
