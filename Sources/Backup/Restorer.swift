#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Storage
import Support

/// Options of a restore from a backup set.
package struct RestoreOptions {
    package var destination: any Destination
    package var set: String
    /// An id or "latest".
    package var backup: String = "latest"
    package var target: String
    /// Sub-paths to restore (relative to the backed-up source); empty = everything.
    package var only: [String] = []
    package var force = false
    package var dryRun = false

    package init(destination: any Destination, set: String, target: String) {
        self.destination = destination
        self.set = set
        self.target = target
    }
}

package struct RestoreSummary: Codable, Sendable {
    package var id: String
    package var target: String
    package var files: Int
    package var directories: Int
    package var symlinks: Int
    package var hardlinks: Int
    package var bytes: UInt64
    package var seconds: Double
    package var dryRun: Bool
    package var warnings: [String]

    enum CodingKeys: String, CodingKey {
        case id, target, files, directories, symlinks, hardlinks, bytes, seconds, warnings
        case dryRun = "dry_run"
    }

    package var line: String {
        (dryRun ? "would restore" : "restored") + " backup \(id) into \(target): \(files) files (\(Format.bytes(bytes))), "
            + "\(directories) directories, \(symlinks) symlinks, \(hardlinks) hardlinks in \(Format.seconds(seconds))"
            + (warnings.isEmpty ? "" : ", \(warnings.count) warnings")
    }
}

/// Restores the tree of one backup: reads the manifest, groups files by the archive that
/// holds them, reads only the members needed, writes each file and checks its SHA-256.
///
/// Safety (every archive is treated as hostile): paths come from the manifest and must be
/// relative without `.`/`..` components; directories are created first, then files with
/// O_EXCL|O_NOFOLLOW under directories this restore made (or checked to be real directories),
/// then hardlinks (to restored files only), and symlinks LAST, so nothing is ever written
/// through a symlink. Archive members must carry the path the manifest expects.
/// setuid/setgid bits are kept only when running as root; ownership is set only as root.
package final class Restorer {
    let options: RestoreOptions
    let reporter: Reporter
    var warnings: [String] = []
    let isRoot = geteuid() == 0

    package init(options: RestoreOptions, reporter: Reporter) {
        self.options = options
        self.reporter = reporter
    }

    package func run() throws -> RestoreSummary {
        let started = Date()
        let set = BackupSet(destination: options.destination, name: options.set)
        let id = try set.resolve(options.backup)
        let manifest = try set.loadManifest(id)
        let table = manifest.table

        // Select entries.
        let only = options.only.map { p -> String in
            var q = p
            while q.hasPrefix("./") { q.removeFirst(2) }
            while q.hasPrefix("/") { q.removeFirst() }
            while q.hasSuffix("/") && q.count > 1 { q.removeLast() }
            return q
        }
        var selected: [Int] = []
        var matchedOnly = Set<String>()
        for i in 0 ..< table.count {
            let e = table.entry(i)
            let path = table.path(e)
            try checkPath(path)
            if only.isEmpty { selected.append(i); continue }
            if let o = only.first(where: { path == $0 || path.hasPrefix($0 + "/") }) {
                matchedOnly.insert(o); selected.append(i)
            } else if only.contains(where: { $0.hasPrefix(path + "/") }) && e.type == .directory {
                selected.append(i)  // an ancestor of a requested path
            }
        }
        if let missing = only.first(where: { !matchedOnly.contains($0) }) {
            throw ToolError("--only \(missing): no such path in backup \(id). `hs-restore --dry-run` lists what the backup holds.", exitCode: 1)
        }
        let selectedSet = Set(selected)

        // Target.
        let target = options.target
        var st = stat()
        if lstat(target, &st) == 0 {
            guard st.st_mode & S_IFMT == S_IFDIR else { throw ToolError.usage("target \(target) exists and is not a directory") }
            if !options.force && !options.dryRun, let items = try? FileManager.default.contentsOfDirectory(atPath: target), !items.isEmpty {
                throw ToolError.usage("target \(target) is not empty (\(items.count) entries). Restore into an empty directory, or pass --force to overwrite.")
            }
        } else if !options.dryRun {
            do { try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true) } catch {
                throw ToolError("cannot create target \(target): \(error)")
            }
        }

        var summary = RestoreSummary(id: id, target: target, files: 0, directories: 0, symlinks: 0, hardlinks: 0, bytes: 0, seconds: 0, dryRun: options.dryRun, warnings: [])
        for i in selected {
            let e = table.entry(i)
            switch e.type {
            case .file: summary.files += 1; summary.bytes += e.size
            case .hardlink: summary.hardlinks += 1
            case .directory: summary.directories += 1
            case .symlink: summary.symlinks += 1
            }
        }
        if options.dryRun {
            if reporter.mode != .json {
                for i in selected { let e = table.entry(i); reporter.info("\(e.type.name)\t\(table.path(e))") }
            }
            summary.seconds = Date().timeIntervalSince(started)
            return summary
        }
        let root = open(target, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if root < 0 { throw ToolError("cannot open target \(target): \(String(cString: strerror(errno)))") }
        defer { close(root) }
        let writer = TreeWriter(root: root, rootPath: target, force: options.force)

        // 1. Directories (0700 while filling; final metadata at the end).
        for i in selected where table.entry(i).type == .directory {
            try writer.makeDirectory(table.path(table.entry(i)))
        }

        // 2. Files, grouped by archive, in archive order. Hardlinks whose target is not
        //    restored get the target's content.
        struct Job { var index: Int; var source: ManifestEntry; var path: String }
        var byArchive: [UInt32: [Job]] = [:]
        var links: [(String, String, ManifestEntry)] = []
        for i in selected {
            let e = table.entry(i)
            let path = table.path(e)
            switch e.type {
            case .file:
                byArchive[e.archive, default: []].append(Job(index: i, source: e, path: path))
            case .hardlink:
                let t = table.linkTarget(e)
                if let ti = table.find(t), selectedSet.contains(ti), table.entry(ti).type == .file {
                    links.append((path, t, e))
                } else if let ti = table.find(t) {
                    var src = table.entry(ti)
                    src.mode = e.mode; src.uid = e.uid; src.gid = e.gid; src.mtimeNs = e.mtimeNs
                    byArchive[src.archive, default: []].append(Job(index: i, source: src, path: path))
                } else {
                    throw ToolError("backup \(id) is inconsistent: hardlink \(path) points to \(t), which is not in the manifest")
                }
            default: break
            }
        }
        var restoredFiles = 0
        for (a, jobs) in byArchive.sorted(by: { $0.key < $1.key }) {
            guard a != ManifestEntry.noArchive, Int(a) < manifest.header.archives.count else {
                // Only empty files can lack an archive reference.
                for j in jobs where j.source.size == 0 { try writer.writeEmptyFile(j.path, entry: j.source, restoreOwner: isRoot) }
                if let bad = jobs.first(where: { $0.source.size > 0 }) { throw ToolError("backup \(id) has no archive for \(bad.path)") }
                continue
            }
            let archiveID = manifest.header.archives[Int(a)]
            let rd: any DestinationReader
            do { rd = try options.destination.open(set.archivePath(archiveID)) } catch {
                throw ToolError("archive \(set.location)/\(archiveID).tar.gz that backup \(id) needs cannot be opened: \(error)")
            }
            defer { try? rd.close() }
            let tar = TarGzReader(reader: rd, name: "\(set.location)/\(archiveID).tar.gz")
            tar.restart(at: 0)
            for job in jobs.sorted(by: { ($0.source.memberOffset, $0.source.memberSkip) < ($1.source.memberOffset, $1.source.memberSkip) }) {
                try tar.seek(memberOffset: job.source.memberOffset, skip: job.source.memberSkip)
                guard let h = try tar.nextHeader() else {
                    throw ToolError("archive \(archiveID).tar.gz ends where backup \(id) expects \(job.path)")
                }
                let expected = table.path(job.source)
                guard h.path == expected, h.flag == 0x30, h.size == job.source.size else {
                    throw ToolError("archive \(archiveID).tar.gz does not hold \(expected) where the manifest says (found \(h.path)); the backup is damaged. Run `hs-backup verify`.")
                }
                let digest = try writer.writeFile(job.path, entry: job.source, restoreOwner: isRoot) { body in
                    try tar.read(h.size, body)
                }
                if digest != job.source.hash {
                    throw ToolError("\(job.path): content from \(archiveID).tar.gz does not match its SHA-256 in the manifest (damaged archive). Run `hs-backup verify`.")
                }
                restoredFiles += 1
                reporter.progress("restoring: \(restoredFiles)/\(summary.files + summary.hardlinks) files")
            }
        }

        // 3. Hardlinks to restored files.
        for (path, t, _) in links { try writer.link(path, to: t) }

        // 4. Symlinks last: nothing is written after them, so nothing goes through them.
        for i in selected where table.entry(i).type == .symlink {
            let e = table.entry(i)
            let path = table.path(e)
            let t = table.linkTarget(e)
            if t.hasPrefix("/") || escapes(path: path, target: t) {
                warnings.append("symlink \(path) -> \(t) points outside the restored tree (restored as is, never followed)")
            }
            try writer.symlink(path, target: t, entry: e, restoreOwner: isRoot)
        }

        // 5. Directory metadata, deepest first.
        for i in selected.reversed() where table.entry(i).type == .directory {
            let e = table.entry(i)
            try writer.finishDirectory(table.path(e), entry: e, restoreOwner: isRoot)
        }
        reporter.endProgress()
        summary.warnings = warnings
        summary.seconds = Date().timeIntervalSince(started)
        return summary
    }

    /// Refuses absolute paths and `.`/`..`/empty components.
    private func checkPath(_ p: String) throws {
        if p.isEmpty || p.hasPrefix("/") || p.split(separator: "/", omittingEmptySubsequences: false).contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) {
            throw ToolError("refusing unsafe path '\(p)' in the manifest (absolute or with ./.. components); the backup set may be tampered with")
        }
    }

    private func escapes(path: String, target: String) -> Bool {
        var depth = path.split(separator: "/").count - 1
        for c in target.split(separator: "/") {
            if c == ".." { depth -= 1; if depth < 0 { return true } } else if c != "." { depth += 1 }
        }
        return false
    }
}

/// Writes entries under a root directory fd without following symlinks.
final class TreeWriter {
    let root: Int32
    let rootPath: String
    let force: Bool
    /// Directories this restore created or checked to be real directories (no symlink can
    /// appear in the tree before the symlink phase, so they stay safe to write under).
    private var knownDirs = Set<String>()
    /// The parent directory of the last file written, kept open (files come in path order).
    private var cachedParent: (String, Int32)?

    init(root: Int32, rootPath: String, force: Bool) {
        self.root = root
        self.rootPath = rootPath
        self.force = force
    }

    deinit { if let (_, fd) = cachedParent { close(fd) } }

    private static func split(_ path: String) -> (String, String) {
        guard let slash = path.lastIndex(of: "/") else { return ("", path) }
        return (String(path[..<slash]), String(path[path.index(after: slash)...]))
    }

    /// An fd for the parent directory of `path` (the root fd for top-level names).
    private func parentFD(_ parent: String) throws -> Int32 {
        if parent.isEmpty { return root }
        if let (p, fd) = cachedParent, p == parent { return fd }
        if let (_, fd) = cachedParent { close(fd); cachedParent = nil }
        let fd = openat(root, parent, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if fd < 0 { throw fail("open directory", parent) }
        cachedParent = (parent, fd)
        return fd
    }

    private func fail(_ what: String, _ path: String, _ err: Int32 = errno) -> ToolError {
        ToolError("\(what) \(rootPath)/\(path) failed: \(String(cString: strerror(err)))")
    }

    /// Removes whatever is at `path` (only with --force).
    private func clear(_ path: String) throws {
        var st = stat()
        guard fstatat(root, path, &st, AT_SYMLINK_NOFOLLOW) == 0 else { return }
        guard force else { throw ToolError("\(rootPath)/\(path) already exists; use --force to replace it") }
        if st.st_mode & S_IFMT == S_IFDIR {
            try FileManager.default.removeItem(atPath: rootPath + "/" + path)
        } else if unlinkat(root, path, 0) != 0 {
            throw fail("remove", path)
        }
    }

    /// Checks that every parent of `path` is a real directory (never a symlink).
    private func checkParents(_ path: String) throws {
        let (parent, _) = Self.split(path)
        if parent.isEmpty || knownDirs.contains(parent) { return }
        defer { knownDirs.insert(parent) }
        var comps = path.split(separator: "/")
        comps.removeLast()
        var cur = ""
        for c in comps {
            cur = cur.isEmpty ? String(c) : cur + "/" + c
            var st = stat()
            if fstatat(root, cur, &st, AT_SYMLINK_NOFOLLOW) != 0 {
                if mkdirat(root, cur, 0o700) != 0 && errno != EEXIST { throw fail("mkdir", cur) }
                continue
            }
            guard st.st_mode & S_IFMT == S_IFDIR else {
                throw ToolError("refusing to write \(rootPath)/\(path): \(cur) is not a directory (a symlink or file is in the way)")
            }
        }
    }

    func makeDirectory(_ path: String) throws {
        try checkParents(path)
        if mkdirat(root, path, 0o700) != 0 {
            guard errno == EEXIST else { throw fail("mkdir", path) }
            var st = stat()
            if fstatat(root, path, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_mode & S_IFMT == S_IFDIR {
                knownDirs.insert(path)
                return
            }
            try clear(path)
            if mkdirat(root, path, 0o700) != 0 { throw fail("mkdir", path) }
        }
        knownDirs.insert(path)
    }

    private func createFile(_ path: String) throws -> Int32 {
        try checkParents(path)
        let (parent, name) = Self.split(path)
        let pfd = try parentFD(parent)
        var fd = openat(pfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        if fd < 0 && errno == EEXIST {
            try clear(path)
            fd = openat(pfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        }
        if fd < 0 { throw fail("create", path) }
        return fd
    }

    private func finishFile(_ fd: Int32, _ path: String, entry e: ManifestEntry, restoreOwner: Bool) throws {
        var mode = e.mode
        if restoreOwner {
            if fchown(fd, e.uid, e.gid) != 0 { throw fail("chown", path) }
        } else {
            mode &= ~UInt32(0o6000)
        }
        if fchmod(fd, mode_t(mode)) != 0 { throw fail("chmod", path) }
        var times = [timespec(tv_sec: Int(e.mtimeNs / 1_000_000_000), tv_nsec: Int(e.mtimeNs % 1_000_000_000)),
                     timespec(tv_sec: Int(e.mtimeNs / 1_000_000_000), tv_nsec: Int(e.mtimeNs % 1_000_000_000))]
        if futimens(fd, &times) != 0 { throw fail("set times of", path) }
    }

    func writeEmptyFile(_ path: String, entry: ManifestEntry, restoreOwner: Bool) throws {
        let fd = try createFile(path)
        defer { close(fd) }
        try finishFile(fd, path, entry: entry, restoreOwner: restoreOwner)
    }

    /// Creates `path`, fills it from `produce`, sets metadata; returns the content's SHA-256.
    func writeFile(_ path: String, entry: ManifestEntry, restoreOwner: Bool,
                   produce: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws -> Digest {
        let fd = try createFile(path)
        defer { close(fd) }
        var hasher = SHA256Hasher()
        try produce { chunk in
            hasher.update(chunk)
            var off = 0
            while off < chunk.count {
                let n = write(fd, chunk.baseAddress! + off, chunk.count - off)
                if n < 0 { if errno == EINTR { continue }; throw fail("write", path) }
                off += n
            }
        }
        try finishFile(fd, path, entry: entry, restoreOwner: restoreOwner)
        return Digest(hasher.finalize())
    }

    func link(_ path: String, to target: String) throws {
        try checkParents(path)
        var st = stat()
        if fstatat(root, path, &st, AT_SYMLINK_NOFOLLOW) == 0 { try clear(path) }
        if linkat(root, target, root, path, 0) != 0 { throw fail("hardlink to \(target) at", path) }
    }

    func symlink(_ path: String, target: String, entry e: ManifestEntry, restoreOwner: Bool) throws {
        try checkParents(path)
        var st = stat()
        if fstatat(root, path, &st, AT_SYMLINK_NOFOLLOW) == 0 { try clear(path) }
        if symlinkat(target, root, path) != 0 { throw fail("symlink", path) }
        if restoreOwner && fchownat(root, path, e.uid, e.gid, AT_SYMLINK_NOFOLLOW) != 0 { throw fail("chown", path) }
        var times = [timespec(tv_sec: Int(e.mtimeNs / 1_000_000_000), tv_nsec: Int(e.mtimeNs % 1_000_000_000)),
                     timespec(tv_sec: Int(e.mtimeNs / 1_000_000_000), tv_nsec: Int(e.mtimeNs % 1_000_000_000))]
        if utimensat(root, path, &times, AT_SYMLINK_NOFOLLOW) != 0 { throw fail("set times of", path) }
    }

    func finishDirectory(_ path: String, entry e: ManifestEntry, restoreOwner: Bool) throws {
        let fd = openat(root, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if fd < 0 { throw fail("open directory", path) }
        defer { close(fd) }
        try finishFile(fd, path, entry: e, restoreOwner: restoreOwner)
    }
}
