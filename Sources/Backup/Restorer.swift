#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Archive
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
    /// Threads for the filesystem work (0: the default, see `Restorer.defaultThreads`).
    package var threads = 0

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
///
/// Speed: the target filesystem is latency-bound on metadata operations, so a pool of
/// threads keeps several in flight. Directories are created level by level (a level's
/// parents are all made before it), files are written by the pool while this thread decodes
/// the archives (small files are handed over as bytes, big ones are written here), and
/// directory metadata is applied level by level, deepest first. The first failure of any
/// thread stops the restore and is the error reported.
package final class Restorer {
    let options: RestoreOptions
    let reporter: Reporter
    var warnings: [String] = []
    let isRoot = geteuid() == 0
    /// Threads of the last run's pool still alive (0 once `run()` has returned or thrown).
    package private(set) var liveWorkerThreads: () -> Int = { 0 }
    /// Files up to this size are handed to the pool; bigger ones are written while read.
    static let pooledFileMax: UInt64 = 4 << 20

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
        var paths: [Int: String] = [:]
        var matchedOnly = Set<String>()
        for i in 0 ..< table.count {
            let e = table.entry(i)
            let path = table.path(e)
            try checkPath(path)
            if only.isEmpty { selected.append(i); paths[i] = path; continue }
            if let o = only.first(where: { path == $0 || path.hasPrefix($0 + "/") }) {
                matchedOnly.insert(o); selected.append(i); paths[i] = path
            } else if only.contains(where: { $0.hasPrefix(path + "/") }) && e.type == .directory {
                selected.append(i); paths[i] = path  // an ancestor of a requested path
            }
        }
        if let missing = only.first(where: { !matchedOnly.contains($0) }) {
            throw ToolError("--only \(missing): no such path in backup \(id). `hs-restore --dry-run` lists what the backup holds.", exitCode: 1)
        }
        let selectedSet = Set(selected)

        // Target.
        let target = options.target
        var fresh = true
        var st = stat()
        if lstat(target, &st) == 0 {
            guard st.st_mode & S_IFMT == S_IFDIR else { throw ToolError.usage("target \(target) exists and is not a directory") }
            if !options.dryRun, let items = try? FileManager.default.contentsOfDirectory(atPath: target), !items.isEmpty {
                fresh = false
                if !options.force {
                    throw ToolError.usage("target \(target) is not empty (\(items.count) entries). Restore into an empty directory, or pass --force to overwrite.")
                }
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
                for i in selected { let e = table.entry(i); reporter.info("\(e.type.name)\t\(paths[i]!)") }
            }
            summary.seconds = Date().timeIntervalSince(started)
            return summary
        }
        let root = open(target, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if root < 0 { throw ToolError("cannot open target \(target): \(String(cString: strerror(errno)))") }
        defer { close(root) }
        let writer = TreeWriter(root: root, rootPath: target, force: options.force, restoreOwner: isRoot, fresh: fresh)

        let threads = options.threads > 0 ? options.threads : Self.defaultThreads
        let pool = WorkerPool(threads: threads, maxPendingBytes: 32 << 20, maxPendingItems: 8192)
        liveWorkerThreads = { [pool] in pool.liveThreads }
        defer { pool.shutdown() }
        let errors = FirstError()

        // Directories, grouped by depth; parents a manifest does not list (it always does)
        // are made or checked here, one by one, before anything runs in parallel.
        var dirs: [(path: String, entry: ManifestEntry)] = []
        var levels: [[Int]] = []
        for i in selected where table.entry(i).type == .directory {
            let path = paths[i]!
            let depth = path.utf8.reduce(0) { $1 == UInt8(ascii: "/") ? $0 + 1 : $0 }
            while levels.count <= depth { levels.append([]) }
            levels[depth].append(dirs.count)
            dirs.append((path, table.entry(i)))
        }
        let dirSet = Set(dirs.map(\.path))
        var checkedParents = Set<String>()
        for i in selected {
            let parent = TreeWriter.split(paths[i]!).0
            if !parent.isEmpty && !dirSet.contains(parent) { try writer.makeParents(paths[i]!, known: &checkedParents) }
        }
        let dirsDone = dirs
        let exact = Flags(count: dirs.count)

        // Files by archive (written in archive order in step 2). Hardlinks whose target is
        // not restored get the target's content.
        struct Job: Sendable { var path: String; var source: ManifestEntry }
        var byArchive: [UInt32: [Job]] = [:]
        var links: [(String, String)] = []
        for i in selected {
            let e = table.entry(i)
            let path = paths[i]!
            switch e.type {
            case .file:
                byArchive[e.archive, default: []].append(Job(path: path, source: e))
            case .hardlink:
                let t = table.linkTarget(e)
                if let ti = table.find(t), selectedSet.contains(ti), table.entry(ti).type == .file {
                    links.append((path, t))
                } else if let ti = table.find(t) {
                    var src = table.entry(ti)
                    src.mode = e.mode; src.uid = e.uid; src.gid = e.gid; src.mtime = e.mtime
                    // Content and its hash come from the target; the path checked in the
                    // archive is the target's.
                    byArchive[src.archive, default: []].append(Job(path: path, source: src))
                } else {
                    throw ToolError("backup \(id) is inconsistent: hardlink \(path) points to \(t), which is not in the manifest")
                }
            default: break
            }
        }
        // 1. Directories, level by level, in parallel: a chunk of a level starts once the
        //    level above is complete (its chunks were all queued earlier, so they are running
        //    or done). Files are handed over as soon as their parent's level is complete.
        let chunk = 16
        let pending = LevelCounts(levels.map { ($0.count + chunk - 1) / chunk })   // under the pool's lock
        for (l, level) in levels.enumerated() {
            var start = 0
            while start < level.count {
                let range = start ..< min(level.count, start + chunk)
                start = range.upperBound
                pool.submit({
                    if l > 0 { pool.wait { pending[l - 1] == 0 } }
                    for k in range {
                        let d = level[k]
                        if errors.failed { return }
                        do { exact[d] = try writer.makeDirectory(dirsDone[d].path, entry: dirsDone[d].entry) } catch { errors.record(error, order: d) }
                    }
                }, whenDone: { pending[l] -= 1 })
            }
        }
        var levelsReady = 0
        /// Waits until the directory level that holds `path`'s parent is made.
        func waitForParent(of path: String) {
            let slashes = path.utf8.reduce(0) { $1 == UInt8(ascii: "/") ? $0 + 1 : $0 }
            let depth = min(slashes - 1, levels.count - 1)
            guard depth >= levelsReady else { return }
            pool.wait { (levelsReady ... depth).allSatisfy { pending[$0] == 0 } }
            levelsReady = depth + 1
        }

        paths = [:]
        // 2. Files, grouped by archive, in archive order.
        let total = summary.files + summary.hardlinks
        let done = Counter()
        var order = dirs.count   // after the directories' (a directory's failure comes first)
        /// Hands one file with its whole content to the pool.
        func submit(_ job: Job, _ data: [UInt8], archive label: String, check: Bool = true) {
            let o = order
            order += 1
            waitForParent(of: job.path)
            pool.submit(bytes: data.count, {
                if errors.failed { return }
                do {
                    try writer.writeFile(job.path, entry: job.source, data: data, archive: label, check: check)
                    done.add()
                } catch { errors.record(error, order: o) }
            })
            reporter.progress("restoring: \(done.value)/\(total) files")
        }
        do {
            archives: for (a, jobs) in byArchive.sorted(by: { $0.key < $1.key }) {
                guard a != ManifestEntry.noArchive, Int(a) < manifest.header.archives.count else {
                    // Only empty files can lack an archive reference.
                    if let bad = jobs.first(where: { $0.source.size > 0 }) { throw ToolError("backup \(id) has no archive for \(bad.path)") }
                    for j in jobs { submit(j, [], archive: "", check: false) }
                    continue
                }
                let archiveID = manifest.header.archives[Int(a)]
                let label = "\(archiveID).tar.gz"
                let rd: any DestinationReader
                do { rd = try options.destination.open(set.archivePath(archiveID)) } catch {
                    throw ToolError("archive \(set.location)/\(archiveID).tar.gz that backup \(id) needs cannot be opened: \(error)")
                }
                defer { try? rd.close() }
                let tar = TarGzReader(reader: rd, name: "\(set.location)/\(archiveID).tar.gz")
                tar.restart(at: 0)
                for job in jobs.sorted(by: { ($0.source.memberOffset, $0.source.memberSkip) < ($1.source.memberOffset, $1.source.memberSkip) }) {
                    if errors.failed { break archives }
                    let expected = table.path(job.source)
                    let h: TarHeaderInfo
                    do {
                        try tar.seek(memberOffset: job.source.memberOffset, skip: job.source.memberSkip)
                        guard let next = try tar.nextHeader() else {
                            throw ToolError("archive \(archiveID).tar.gz ends where backup \(id) expects \(job.path)")
                        }
                        h = next
                    } catch let e as ToolError where e.message.hasPrefix("archive \(set.location)/") {
                        throw ToolError("cannot restore \(job.path): \(e.message)")
                    }
                    guard h.path == expected, h.flag == 0x30, h.size == job.source.size else {
                        throw ToolError("archive \(archiveID).tar.gz does not hold \(expected) where the manifest says (found \(h.path)); the backup is damaged. Run `hs-backup verify`.")
                    }
                    if h.size <= Self.pooledFileMax {
                        var data = [UInt8]()
                        data.reserveCapacity(Int(h.size))
                        do { try tar.read(h.size) { data.append(contentsOf: $0) } } catch {
                            throw ToolError("cannot restore \(job.path): \(error)")
                        }
                        submit(job, data, archive: label)
                    } else {
                        // Written on this thread while it is decoded (the pool keeps going).
                        waitForParent(of: job.path)
                        try writer.writeFile(job.path, entry: job.source, archive: label) { body in
                            do { try tar.read(h.size, body) } catch let e as ToolError where e.message.hasPrefix("archive \(set.location)/") {
                                throw ToolError("cannot restore \(job.path): \(e.message)")
                            }
                        }
                        done.add()
                        reporter.progress("restoring: \(done.value)/\(total) files")
                    }
                }
            }
        } catch {
            // Files handed over before the failure come first in archive order: their own
            // failure, if any, is the one to report.
            pool.waitAll()
            try errors.check()
            throw error
        }
        pool.waitAll()
        try errors.check()

        // 3. Hardlinks to restored files.
        let linksDone = links
        pool.forEach(linksDone.count, chunk: 16) { k in
            if errors.failed { return }
            do { try writer.link(linksDone[k].0, to: linksDone[k].1) } catch { errors.record(error, order: k) }
        }
        try errors.check()

        // 4. Symlinks last (every file is written): nothing is written after them, so nothing
        //    goes through them.
        var symlinks: [(path: String, target: String, entry: ManifestEntry)] = []
        for i in selected where table.entry(i).type == .symlink {
            let e = table.entry(i)
            let path = table.path(e)
            let t = table.linkTarget(e)
            if t.hasPrefix("/") || escapes(path: path, target: t) {
                warnings.append("symlink \(path) -> \(t) points outside the restored tree (restored as is, never followed)")
            }
            symlinks.append((path, t, e))
        }
        let symlinksDone = symlinks
        pool.forEach(symlinksDone.count, chunk: 16) { k in
            if errors.failed { return }
            let s = symlinksDone[k]
            do { try writer.symlink(s.path, target: s.target, entry: s.entry) } catch { errors.record(error, order: k) }
        }
        try errors.check()

        // 5. Directory metadata, deepest level first (a directory's mode may shut out its
        //    children), each level in parallel. Setting a child's metadata does not change
        //    its parent's mtime.
        for level in levels.reversed() where !level.isEmpty {
            pool.forEach(level.count, chunk: 16) { k in
                let d = level[k]
                if errors.failed { return }
                do { try writer.finishDirectory(dirsDone[d].path, entry: dirsDone[d].entry, exact: exact[d]) } catch { errors.record(error, order: d) }
            }
            try errors.check()
        }
        reporter.endProgress()
        summary.warnings = warnings
        summary.seconds = Date().timeIntervalSince(started)
        return summary
    }

    /// Threads for the filesystem work: mostly waiting on metadata operations of the disk, so
    /// more than the cores (6 was measured on the 2-core VM of BENCHMARKS.md; not finely tuned:
    /// when ext4's inode allocation is CPU-bound, extra threads mostly contend).
    static let defaultThreads = 6

    /// Refuses absolute paths, `.`/`..`/empty components and NUL bytes.
    private func checkPath(_ p: String) throws {
        if p.isEmpty || p.hasPrefix("/") || p.utf8.contains(0)
            || p.split(separator: "/", omittingEmptySubsequences: false).contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) {
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

/// Per-index flags written by pool threads (each index by one thread, read after a barrier).
final class Flags: @unchecked Sendable {
    private let p: UnsafeMutableBufferPointer<Bool>
    init(count: Int) { p = .allocate(capacity: max(count, 1)); p.initialize(repeating: false) }
    deinit { p.deallocate() }
    subscript(i: Int) -> Bool {
        get { p[i] }
        set { p[i] = newValue }
    }
}

/// Work items left per directory level (read and written under the pool's lock).
final class LevelCounts: @unchecked Sendable {
    private var counts: [Int]
    init(_ counts: [Int]) { self.counts = counts }
    subscript(i: Int) -> Int {
        get { counts[i] }
        set { counts[i] = newValue }
    }
}

/// A counter shared with pool threads.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func add() { lock.lock(); n += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return n }
}

/// Writes entries under a root directory fd without following symlinks. Immutable, so pool
/// threads share it; every path it is given has parents that this restore made, or checked
/// to be real directories, before (no symlink exists in the tree before the symlink phase).
final class TreeWriter: @unchecked Sendable {
    let root: Int32
    let rootPath: String
    let force: Bool
    let restoreOwner: Bool
    /// New entries come out exactly as created: the target was empty and `CreationProbe`
    /// found new entries there get the creator's uid/gid and the umask'd mode.
    let predictable: Bool
    let euid = geteuid(), egid = getegid()
    let umaskBits: UInt32

    init(root: Int32, rootPath: String, force: Bool, restoreOwner: Bool, fresh: Bool) {
        self.root = root
        self.rootPath = rootPath
        self.force = force
        self.restoreOwner = restoreOwner
        let mask = CreationProbe.currentUmask()
        umaskBits = mask ?? 0o777
        predictable = fresh && CreationProbe.isPredictable(root, umask: mask)
    }

    static func split(_ path: String) -> (String, String) {
        guard let slash = path.lastIndex(of: "/") else { return ("", path) }
        return (String(path[..<slash]), String(path[path.index(after: slash)...]))
    }

    private func fail(_ what: String, _ path: String, _ err: Int32 = errno) -> ToolError {
        ToolError("\(what) \(rootPath)/\(path) failed: \(String(cString: strerror(err)))")
    }

    /// The mode an entry ends with (setuid/setgid only as root).
    private func finalMode(_ e: ManifestEntry) -> UInt32 {
        restoreOwner ? e.mode & 0o7777 : e.mode & 0o7777 & ~UInt32(0o6000)
    }

    /// A new entry already has the owner the entry wants.
    private func ownerMatches(_ e: ManifestEntry) -> Bool {
        !restoreOwner || (predictable && e.uid == euid && e.gid == egid)
    }

    /// The mode to create with, and whether the result is then final (no chown/chmod needed).
    /// When the owner differs, entries are created private and fixed at the end.
    private func createMode(_ e: ManifestEntry, ownerBits: UInt32) -> (mode_t, Bool) {
        guard predictable && ownerMatches(e) else { return (mode_t(ownerBits), false) }
        let mode = (e.mode & 0o777) | ownerBits
        return (mode_t(mode), mode & ~umaskBits == finalMode(e))
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

    /// Makes (0700) or checks every parent of `path` that is not a known directory; refuses
    /// anything else in the way. Serial: for parents a manifest does not list.
    func makeParents(_ path: String, known: inout Set<String>) throws {
        let (parent, _) = Self.split(path)
        if parent.isEmpty || known.contains(parent) { return }
        var cur = ""
        for c in parent.split(separator: "/") {
            cur = cur.isEmpty ? String(c) : cur + "/" + c
            if known.contains(cur) { continue }
            var st = stat()
            if fstatat(root, cur, &st, AT_SYMLINK_NOFOLLOW) != 0 {
                if mkdirat(root, cur, 0o700) != 0 && errno != EEXIST { throw fail("mkdir", cur) }
            } else if st.st_mode & S_IFMT != S_IFDIR {
                throw ToolError("refusing to write \(rootPath)/\(path): \(cur) is not a directory (a symlink or file is in the way)")
            }
            known.insert(cur)
        }
    }

    /// Makes the directory (its parent exists); returns true if it then has its final owner
    /// and mode (only its mtime is left to set).
    func makeDirectory(_ path: String, entry e: ManifestEntry) throws -> Bool {
        let (mode, exact) = createMode(e, ownerBits: 0o700)
        if mkdirat(root, path, mode) == 0 { return exact }
        guard errno == EEXIST else { throw fail("mkdir", path) }
        var st = stat()
        if fstatat(root, path, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_mode & S_IFMT == S_IFDIR { return false }
        try clear(path)
        if mkdirat(root, path, mode) != 0 { throw fail("mkdir", path) }
        return exact
    }

    private func createFile(_ path: String, entry e: ManifestEntry) throws -> (Int32, Bool) {
        let (mode, exact) = createMode(e, ownerBits: 0o600)
        var fd = openat(root, path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        if fd < 0 && errno == EEXIST {
            try clear(path)
            fd = openat(root, path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        }
        if fd < 0 { throw fail("create", path) }
        return (fd, exact)
    }

    private func finish(_ fd: Int32, _ path: String, entry e: ManifestEntry, exact: Bool) throws {
        if !exact {
            if restoreOwner && !(predictable && e.uid == euid && e.gid == egid) {
                if fchown(fd, e.uid, e.gid) != 0 { throw fail("chown", path) }
            }
            if fchmod(fd, mode_t(finalMode(e))) != 0 { throw fail("chmod", path) }
        }
        var times = Self.times(e)
        if futimens(fd, &times) != 0 { throw fail("set times of", path) }
    }

    static func times(_ e: ManifestEntry) -> [timespec] {
        let t = e.mtime.timespec
        return [t, t]
    }

    private func writeAll(_ fd: Int32, _ chunk: UnsafeRawBufferPointer, _ path: String) throws {
        var off = 0
        while off < chunk.count {
            let n = write(fd, chunk.baseAddress! + off, chunk.count - off)
            if n < 0 { if errno == EINTR { continue }; throw fail("write", path) }
            off += n
        }
    }

    private func mismatch(_ path: String, _ archive: String) -> ToolError {
        ToolError("\(path): content from \(archive) does not match its SHA-256 in the manifest (damaged archive). Run `hs-backup verify`.")
    }

    /// Creates `path` with `data`, checks the content against the manifest's SHA-256 and sets
    /// its metadata.
    func writeFile(_ path: String, entry: ManifestEntry, data: [UInt8], archive: String, check: Bool = true) throws {
        let (fd, exact) = try createFile(path, entry: entry)
        defer { close(fd) }
        var hasher = SHA256Hasher()
        try data.withUnsafeBytes { bytes in
            hasher.update(bytes)
            try writeAll(fd, bytes, path)
        }
        let digest = Digest(hasher.finalize())
        if check && digest != entry.hash { throw mismatch(path, archive) }
        try finish(fd, path, entry: entry, exact: exact)
    }

    /// Creates `path`, fills it from `produce`, checks its SHA-256 and sets its metadata.
    func writeFile(_ path: String, entry: ManifestEntry, archive: String,
                   produce: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        let (fd, exact) = try createFile(path, entry: entry)
        defer { close(fd) }
        var hasher = SHA256Hasher()
        try produce { chunk in
            hasher.update(chunk)
            try writeAll(fd, chunk, path)
        }
        if Digest(hasher.finalize()) != entry.hash { throw mismatch(path, archive) }
        try finish(fd, path, entry: entry, exact: exact)
    }

    func link(_ path: String, to target: String) throws {
        var st = stat()
        if fstatat(root, path, &st, AT_SYMLINK_NOFOLLOW) == 0 { try clear(path) }
        if linkat(root, target, root, path, 0) != 0 { throw fail("hardlink to \(target) at", path) }
    }

    func symlink(_ path: String, target: String, entry e: ManifestEntry) throws {
        var st = stat()
        if fstatat(root, path, &st, AT_SYMLINK_NOFOLLOW) == 0 { try clear(path) }
        if symlinkat(target, root, path) != 0 { throw fail("symlink", path) }
        if restoreOwner && fchownat(root, path, e.uid, e.gid, AT_SYMLINK_NOFOLLOW) != 0 { throw fail("chown", path) }
        var times = Self.times(e)
        if utimensat(root, path, &times, AT_SYMLINK_NOFOLLOW) != 0 { throw fail("set times of", path) }
    }

    /// Sets a directory's owner, mode and mtime (only the mtime when `exact`).
    func finishDirectory(_ path: String, entry e: ManifestEntry, exact: Bool) throws {
        if exact {
            var times = Self.times(e)
            if utimensat(root, path, &times, AT_SYMLINK_NOFOLLOW) != 0 { throw fail("set times of", path) }
            return
        }
        let fd = openat(root, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if fd < 0 { throw fail("open directory", path) }
        defer { close(fd) }
        try finish(fd, path, entry: e, exact: false)
    }
}
