import Foundation
import Glibc
import Support

/// The one place that creates restored entries below a target directory, for both
/// `hs-restore --archive` and `--from`. Its rules:
/// - every path goes through `RestorePath` (relative, no `..`, no NUL; a leading "/" is
///   stripped with a warning, as GNU tar does);
/// - nothing is ever followed: parents are walked component by component with
///   `openat(O_DIRECTORY|O_NOFOLLOW)` from the target's descriptor, an existing symlink at an
///   entry's name is replaced, and a symlink inside a path is refused ("symlink-in-path");
/// - symlinks are data: created as recorded, with a warning when they point outside the tree;
/// - device nodes are skipped with a warning; FIFOs are made with `mknodat` and their
///   metadata set through an `O_PATH` descriptor, never by name;
/// - regular files are written under a temporary name and renamed when complete (removed on
///   failure, and the error says so); holes (sparse regions, 64 KiB zero runs) are made with
///   lseek/ftruncate, never written; a declared size larger than the target filesystem is
///   refused before anything is written;
/// - owner, mode (setuid/setgid only as root into an empty target, unless the policy says),
///   xattrs and ns mtimes (full signed range) are applied through descriptors; directories
///   get theirs at the end, deepest first.
package final class TreeWriter {
    let target: String
    let options: ExtractOptions
    private let rootFd: Int32
    private let rootHandle: DirHandle
    private let preserveSpecial: Bool
    /// New entries come out with their final owner and mode (see `CreationProbe`).
    package let predictable: Bool
    private let umaskBits: UInt32
    private let euid = geteuid(), egid = getegid()
    private let fsSize: UInt64
    package private(set) var summary = ExtractSummary()
    private var xattrWarned = false
    private var absoluteWarned = false
    private var tempSeq = 0

    /// Open directory descriptors for the components of the last parent walked.
    private var dirStack: [(name: [UInt8], dir: DirHandle)] = []
    /// Directory metadata applied at the end (path -> entry, created now with its mode).
    private var dirMeta: [PathKey: (TarEntry, Bool)] = [:]
    /// Small files are written by a pool (target was empty); paths of files in flight.
    private var pool: FileWriterPool?
    private var inflight: [FileJob] = []
    private var inflightHead = 0
    private var inflightPaths: [PathKey: Int] = [:]
    /// A parent none of whose own parents (nor itself) was a queued file when last checked.
    private var clearParent: [UInt8]?
    package static let parallelMaxFileSize: UInt64 = 2 << 20
    /// Finished jobs are handed back once this many are queued (one pool lock per batch).
    private static let reapEvery = 256
    /// Hardlinks whose target was left out by a filter: (link path, target path).
    private(set) var pendingLinks: [(link: [UInt8], target: [UInt8], entry: TarEntry)] = []
    /// Called after each regular file is complete (in submission order).
    var onFile: ((TarEntry) -> Void)?
    /// Defer hardlinks to missing targets instead of failing (a filter is active).
    var deferMissingLinkTargets = false

    package init(target: String, options: ExtractOptions, fresh: Bool) throws {
        self.target = target
        self.options = options
        preserveSpecial = options.preserveSpecialBits ?? (geteuid() == 0 && fresh)
        let mask = CreationProbe.currentUmask()
        umaskBits = mask ?? 0o022
        rootFd = open(target, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard rootFd >= 0 else {
            throw ArchiveError(.io, "cannot open target directory '\(target)': \(Sys.strerror(errno))")
        }
        rootHandle = DirHandle(rootFd, owned: false)
        predictable = fresh && CreationProbe.isPredictable(rootFd, umask: mask)
        var vfs = statvfs()
        fsSize = fstatvfs(rootFd, &vfs) == 0 ? UInt64(vfs.f_blocks) * UInt64(vfs.f_frsize) : .max
        let threads = RestoreThreads.fileWriters
        if fresh && threads > 1 {
            pool = FileWriterPool(threads: threads)
        }
    }

    package func close() {
        pool?.shutdown()
        pool = nil
        inflight.removeAll()
        dirStack.removeAll()
        Glibc.close(rootFd)
    }

    // MARK: entries

    /// Counts an entry a filter left out.
    func skip() { summary.skipped += 1 }

    /// Creates one entry. For regular files `content` hands the data as (offset, bytes) runs;
    /// `expectedSHA256`, when given, must match the content or nothing is left at the path.
    /// - Returns: false when the entry was skipped (device node, self hardlink, ...).
    @discardableResult
    package func write(_ raw: TarEntry, expectedSHA256: [UInt8]? = nil, origin: String? = nil,
                       content: ((_ body: (UInt64, UnsafeRawBufferPointer) throws -> Void) throws -> Void)? = nil) throws -> Bool {
        do {
            return try create(raw, expectedSHA256: expectedSHA256, origin: origin, content: content)
        } catch {
            // The files queued before this entry are completed first (an error of their own,
            // being earlier, is the one reported), so the target holds everything before it.
            try barrier()
            guard var err = error as? ArchiveError, err.entry == nil else { throw error }
            err.entry = raw.displayPath
            throw err
        }
    }

    private func create(_ raw: TarEntry, expectedSHA256: [UInt8]?, origin: String?,
                        content: ((_ body: (UInt64, UnsafeRawBufferPointer) throws -> Void) throws -> Void)?) throws -> Bool {
        var e = raw
        let (comps, stripped) = try RestorePath.components(raw.path, entry: raw.displayPath, rule: "parent-traversal")
        if stripped { warnAbsolute() }
        if comps.isEmpty {
            // "." or an empty name: the target itself; its metadata is not changed.
            if e.type == .directory { return false }
            throw refuse(raw.displayPath, "empty-path", "an entry other than a directory names the target itself")
        }
        // Rejoined only when the name had "//", "./" or a leading or trailing "/".
        if raw.path.count != comps.reduce(comps.count - 1, { $0 + $1.count }) { e.path = RestorePath.join(comps) }
        var display: String { e.displayPath }   // for messages only: made when needed
        switch e.type {
        case .charDevice, .blockDevice:
            warn("\(display): device node skipped (device nodes are never restored)")
            return false
        case .fifo where !options.allowFIFOs:
            warn("\(display): FIFO skipped (not restored with these options)")
            return false
        default: break
        }
        if pool != nil {
            // Small files go to the pool, and directories are made while it writes (mkdirat
            // makes a new name or finds a directory; a queued file of that name is caught by
            // `collides`). Anything else, or a name a queued file may still be writing (or lie
            // below), waits for the pool to drain first.
            if inflight.count - inflightHead >= Self.reapEvery { try reap(wait: false) }
            // A large or sparse file is streamed on this thread while the pool goes on with the
            // small ones before it (nothing of theirs can be in its way unless `collides`).
            let ownThread = e.type == .file && content != nil
            if !(ownThread || e.type == .directory) || collides(e.path) { try barrier() }
        }
        let parent = try openParentHandle(Array(comps.dropLast()), entry: display)
        let name = comps.last!
        switch e.type {
        case .file:
            guard e.size <= fsSize else {
                throw ArchiveError(.refused, entry: display, rule: "too-large",
                                   "declared size of \(e.size) bytes is too large for the target filesystem (\(fsSize) bytes in all); nothing was written")
            }
            if let pool, e.sparse == nil, e.size <= Self.parallelMaxFileSize, let content {
                var data = [UInt8]()
                data.reserveCapacity(Int(e.size))
                try content { off, bytes in
                    guard off == UInt64(data.count) else { throw ArchiveError(.malformed, entry: display, "content out of order") }
                    data.append(contentsOf: bytes)
                }
                guard UInt64(data.count) == e.size else { throw ArchiveError(.truncated, entry: display, "content ends early") }
                let job = FileJob(entry: e, name: name, parent: parent, data: data, expected: expectedSHA256, ctx: context)
                job.origin = origin
                inflight.append(job)
                inflightPaths[PathKey(e.path), default: 0] += 1
                summary.bytes += e.size
                pool.submit(job)
                return true
            }
            let job = FileJob(entry: e, name: name, parent: parent, data: [], expected: expectedSHA256, ctx: context)
            job.origin = origin
            pool?.flush()   // the small files queued before are written meanwhile
            try job.writeStreaming(content, removeExisting: { try self.removeExisting(parent.fd, name, comps: comps, entry: display) })
            summary.bytes += e.size
            finished(job)
        case .directory:
            let dirCreateMode = mode_t((e.mode & 0o777) | 0o700)
            var created = true
            if RestorePath.withCName(name, { mkdirat(parent.fd, $0, dirCreateMode) }) != 0 {
                guard errno == EEXIST else { throw ioError(display, "mkdir", errno) }
                created = false
                var st = stat()
                if RestorePath.withCName(name, { fstatat(parent.fd, $0, &st, AT_SYMLINK_NOFOLLOW) }) != 0 || (st.st_mode & S_IFMT) != S_IFDIR {
                    try removeExisting(parent.fd, name, comps: comps, entry: display)
                    guard RestorePath.withCName(name, { mkdirat(parent.fd, $0, dirCreateMode) }) == 0 else { throw ioError(display, "mkdir", errno) }
                    created = true
                }
            }
            dirMeta[PathKey(e.path)] = (e, created && predictable)
            summary.directories += 1
        case .symlink:
            if e.linkTarget.first == UInt8(ascii: "/") || RestorePath.escapes(link: e.linkTarget, depth: comps.count - 1) {
                warn("\(display): symlink to '\(e.displayLink)' points outside the restored tree; restored as is (never followed)")
            }
            try removeExisting(parent.fd, name, comps: comps, entry: display)
            let rc = RestorePath.withCName(e.linkTarget) { t in RestorePath.withCName(name) { symlinkat(t, parent.fd, $0) } }
            guard rc == 0 else { throw ioError(display, "symlink", errno) }
            if options.restoreOwnership {
                _ = RestorePath.withCName(name) { fchownat(parent.fd, $0, e.uid, e.gid, AT_SYMLINK_NOFOLLOW) }
            }
            if options.restoreXattrs && !e.xattrs.isEmpty {
                for w in XattrApplier.applyToSymlink(dirFd: parent.fd, name: name, e.xattrs, path: display) { xattrWarning(w) }
            }
            var ts = Self.times(e)
            _ = RestorePath.withCName(name) { utimensat(parent.fd, $0, &ts, AT_SYMLINK_NOFOLLOW) }
            summary.symlinks += 1
        case .hardlink:
            let (tcomps, tstripped) = try RestorePath.components(e.linkTarget, entry: display, rule: "hardlink-escape")
            if tstripped { warnAbsolute() }
            guard !tcomps.isEmpty else { throw refuse(display, "hardlink-escape", "hardlink to the target directory itself") }
            if tcomps == comps {
                var st = stat()
                if RestorePath.withCName(name, { fstatat(parent.fd, $0, &st, AT_SYMLINK_NOFOLLOW) }) == 0 && (st.st_mode & S_IFMT) == S_IFREG {
                    summary.hardlinks += 1
                    return true
                }
                warn("\(display): hardlink to itself with no file restored before it; nothing to restore")
                return false
            }
            try barrier()
            let srcParent = try openDirectoryChain(Array(tcomps.dropLast()), entry: display)
            var st = stat()
            let found = srcParent.map { p in RestorePath.withCName(tcomps.last!) { fstatat(p.fd, $0, &st, AT_SYMLINK_NOFOLLOW) } == 0 } ?? false
            guard found, let srcParent else {
                if deferMissingLinkTargets {
                    pendingLinks.append((e.path, RestorePath.join(tcomps), e))
                    return true
                }
                throw ArchiveError(.malformed, entry: display, "hardlink target '\(e.displayLink)' was not restored before the link")
            }
            if (st.st_mode & S_IFMT) == S_IFDIR { throw refuse(display, "hardlink-to-directory", "hardlink to directory '\(e.displayLink)'") }
            try removeExisting(parent.fd, name, comps: comps, entry: display)
            let rc = RestorePath.withCName(tcomps.last!) { s in RestorePath.withCName(name) { linkat(srcParent.fd, s, parent.fd, $0, 0) } }
            guard rc == 0 else { throw ioError(display, "link to '\(e.displayLink)'", errno) }
            summary.hardlinks += 1
        case .fifo:
            try removeExisting(parent.fd, name, comps: comps, entry: display)
            guard RestorePath.withCName(name, { mknodat(parent.fd, $0, S_IFIFO | 0o600, 0) }) == 0 else { throw ioError(display, "mknod (FIFO)", errno) }
            try setMetadataThroughPath(parent.fd, name, e, expect: S_IFIFO)
            summary.fifos += 1
        case .charDevice, .blockDevice:
            break
        }
        return true
    }

    /// Sets owner, mode and mtime of a just-made non-regular, non-directory entry through an
    /// `O_PATH|O_NOFOLLOW` descriptor (if the name was swapped for a symlink in between, the
    /// descriptor is the symlink and the type check refuses it).
    private func setMetadataThroughPath(_ parent: Int32, _ name: [UInt8], _ e: TarEntry, expect: mode_t) throws {
        let fd = RestorePath.withCName(name) { openat(parent, $0, Sys.O_PATH | O_NOFOLLOW | O_CLOEXEC) }
        guard fd >= 0 else { throw ioError(e.displayPath, "open (O_PATH)", errno) }
        defer { Glibc.close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == expect else {
            throw refuse(e.displayPath, "swapped", "the entry was replaced by something else while it was restored")
        }
        if options.restoreOwnership && !(predictable && e.uid == euid && e.gid == egid) {
            if fchownat(fd, "", e.uid, e.gid, Sys.AT_EMPTY_PATH) != 0 { warn("\(e.displayPath): chown failed: \(Sys.strerror(errno))") }
        }
        let proc = "/proc/self/fd/\(fd)"
        guard chmod(proc, mode_t(effectiveMode(e.mode))) == 0 else { throw ioError(e.displayPath, "chmod", errno) }
        var ts = Self.times(e)
        guard utimensat(AT_FDCWD, proc, &ts, 0) == 0 else { throw ioError(e.displayPath, "set mtime", errno) }
    }

    /// Waits for the pool, applies directory metadata (deepest first).
    ///
    /// One depth at a time, deepest first, each on the writer threads: a directory's metadata
    /// touches no other directory, and a level starts only when the deeper one is done (a
    /// parent's mode may take away the search permission its children need).
    package func finish() throws {
        try barrier()
        // Path order ("/" as the smallest byte; names hold no NUL, so "/" becomes 0) within a
        // level keeps the directories of one parent together for the descriptor cache.
        var keyed = dirMeta.values.map { (key: $0.0.path.map { $0 == 0x2f ? 0 : $0 }, meta: $0) }
        dirMeta = [:]
        keyed.sort { a, b in
            let c = a.key.withUnsafeBufferPointer { x in b.key.withUnsafeBufferPointer { y in memcmp(x.baseAddress!, y.baseAddress!, min(x.count, y.count)) } }
            return c != 0 ? c < 0 : a.key.count < b.key.count
        }
        var levels: [Int: [(TarEntry, Bool)]] = [:]
        for k in keyed { levels[k.key.reduce(0) { $0 + ($1 == 0 ? 1 : 0) }, default: []].append(k.meta) }
        keyed = []
        let failures = FirstError()
        let notes = NoteList()
        let me = UnsafeSendable(self)
        for depth in levels.keys.sorted(by: >) {
            let dirs = UnsafeSendable(levels.removeValue(forKey: depth)!)
            let per = 128
            let chunks = (dirs.value.count + per - 1) / per
            let work: @Sendable (Int) -> Void = { c in
                var stack: [(name: [UInt8], dir: DirHandle)] = []
                for i in c * per ..< min(dirs.value.count, (c + 1) * per) where !failures.failed {
                    do { try me.value.applyDirectoryMetadata(dirs.value[i].0, createdFresh: dirs.value[i].1, stack: &stack, notes: notes) } catch {
                        failures.record(error, order: i)
                    }
                }
            }
            if let pool, chunks > 1 { pool.forEach(chunks, work) } else { for c in 0 ..< chunks { work(c) } }
            try failures.check()
        }
        for n in notes.take() { if n.xattr { xattrWarning(n.text) } else { warn(n.text) } }
        pool?.shutdown()
        pool = nil
    }

    /// Owner, mode, xattrs and mtime of one directory, through `stack` (a descriptor cache of
    /// the caller's thread); warnings go to `notes`.
    private func applyDirectoryMetadata(_ e: TarEntry, createdFresh: Bool, stack: inout [(name: [UInt8], dir: DirHandle)],
                                        notes: NoteList) throws {
        let comps = RestorePath.split(e.path)
        let parent = try openParentHandle(Array(comps.dropLast()), stack: &stack, entry: e.displayPath)
        let mode = effectiveMode(e.mode)
        let needChown = options.restoreOwnership && !(createdFresh && e.uid == euid && e.gid == egid)
        let needChmod = !createdFresh || mode != ((e.mode & 0o777) | 0o700) & ~umaskBits
        let needXattrs = options.restoreXattrs && !e.xattrs.isEmpty
        var ts = Self.times(e)
        if !needChown && !needChmod && !needXattrs {
            guard RestorePath.withCName(comps.last!, { utimensat(parent.fd, $0, &ts, AT_SYMLINK_NOFOLLOW) }) == 0 else { throw ioError(e.displayPath, "set mtime", errno) }
            return
        }
        let fd = try openChild(parent.fd, comps.last!, path: e.path, entry: e.displayPath, create: false)
        defer { Glibc.close(fd) }
        if needChown, fchown(fd, e.uid, e.gid) != 0 { notes.add("\(e.displayPath): chown failed: \(Sys.strerror(errno))") }
        if needChmod || needChown {  // chown may clear setgid
            guard fchmod(fd, mode_t(mode)) == 0 else { throw ioError(e.displayPath, "chmod", errno) }
        }
        if needXattrs { for w in XattrApplier.apply(fd: fd, e.xattrs, path: e.displayPath) { notes.add(w, xattr: true) } }
        guard futimens(fd, &ts) == 0 else { throw ioError(e.displayPath, "set mtime", errno) }
    }

    // MARK: pool

    private var context: FileWriteContext {
        FileWriteContext(target: target, restoreOwnership: options.restoreOwnership, predictable: predictable,
                         restoreXattrs: options.restoreXattrs, preserveSpecial: preserveSpecial, umaskBits: umaskBits,
                         euid: euid, egid: egid)
    }

    private func finished(_ job: FileJob) {
        for w in job.warnings { if w.xattr { xattrWarning(w.text) } else { warn(w.text) } }
        summary.files += 1
        onFile?(job.entry)
    }

    /// Hands finished jobs at the front of the queue back (in order); throws the first error.
    private func reap(wait: Bool) throws {
        guard let pool else { return }
        while inflightHead < inflight.count {
            let job = inflight[inflightHead]
            if wait { pool.wait(for: job) } else if !pool.isDone(job) { break }
            inflight[inflightHead] = FileJob.placeholder
            inflightHead += 1
            if inflightHead >= 256 { inflight.removeFirst(inflightHead); inflightHead = 0 }
            let key = PathKey(job.entry.path)
            if let n = inflightPaths[key] { inflightPaths[key] = n > 1 ? n - 1 : nil }
            if let err = job.error { throw err }
            finished(job)
        }
    }

    private func barrier() throws { try reap(wait: true) }

    /// After a failure elsewhere (damage found by the reader): lets the files already queued
    /// finish, so `onFile` has seen everything that was written. Their own errors are left
    /// to the failure being reported.
    func settle() { try? barrier() }

    /// True if the path, or one of its parents, is a file still being written. The parents
    /// are looked up once per directory: while entries stay in one parent, the files queued
    /// meanwhile are all inside it, so none of them can be one of its parents.
    private func collides(_ path: [UInt8]) -> Bool {
        if inflightPaths.isEmpty { return false }
        let parentEnd = path.lastIndex(of: UInt8(ascii: "/")) ?? 0
        if clearParent == nil || !path[..<parentEnd].elementsEqual(clearParent!) {
            var i = 0
            while i < parentEnd {
                if path[i] == UInt8(ascii: "/"), inflightPaths[PathKey(Array(path[..<i]))] != nil { return true }
                i += 1
            }
            if parentEnd > 0, inflightPaths[PathKey(Array(path[..<parentEnd]))] != nil { return true }
            clearParent = Array(path[..<parentEnd])
        }
        return inflightPaths[PathKey(path)] != nil
    }

    // MARK: helpers

    private func effectiveMode(_ m: UInt32) -> UInt32 { preserveSpecial ? m & 0o7777 : m & 0o1777 }

    private func warn(_ s: String) { summary.warnings.append(s) }

    private func xattrWarning(_ s: String) {
        if xattrWarned { return }
        xattrWarned = true
        warn(s + " (further xattr failures not reported)")
    }

    private func warnAbsolute() {
        if absoluteWarned { return }
        absoluteWarned = true
        warn("removing leading '/' from member names (absolute names are restored inside the target)")
    }

    static func times(_ e: TarEntry) -> [timespec] {
        [timespec(tv_sec: 0, tv_nsec: Sys.UTIME_NOW),
         timespec(tv_sec: Int(e.mtime.seconds), tv_nsec: Int(e.mtime.nanoseconds))]
    }

    private func refuse(_ entry: String, _ rule: String, _ detail: String) -> ArchiveError {
        ArchiveError(.refused, entry: entry, rule: rule, detail + "; nothing was written outside '\(target)'")
    }

    private func ioError(_ entry: String, _ what: String, _ err: Int32) -> ArchiveError {
        ArchiveError(.io, entry: entry, "\(what) failed under '\(target)': \(Sys.strerror(err))")
    }

    /// Removes what is at `name` (file, symlink, FIFO, empty directory). A symlink is removed
    /// itself, never followed.
    private func removeExisting(_ parent: Int32, _ name: [UInt8], comps: [[UInt8]], entry: String) throws {
        try barrier()
        var st = stat()
        guard RestorePath.withCName(name, { fstatat(parent, $0, &st, AT_SYMLINK_NOFOLLOW) }) == 0 else {
            if errno == ENOENT { return }
            throw ioError(entry, "stat", errno)
        }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            if dirStack.count >= comps.count && Array(dirStack.prefix(comps.count).map(\.name)) == comps {
                dirStack.removeLast(dirStack.count - comps.count + 1)
            }
            guard RestorePath.withCName(name, { unlinkat(parent, $0, AT_REMOVEDIR) }) == 0 else {
                throw ArchiveError(.io, entry: entry, "cannot replace directory '\(entry)' with a non-directory: \(Sys.strerror(errno))")
            }
            dirMeta[PathKey(RestorePath.join(comps))] = nil
            return
        }
        guard RestorePath.withCName(name, { unlinkat(parent, $0, 0) }) == 0 else { throw ioError(entry, "remove existing", errno) }
    }

    /// Opens (creating missing directories) the directory `comps` below the target, reusing
    /// the descriptors of the previous walk. Never follows a symlink.
    private func openParentHandle(_ comps: [[UInt8]], entry: @autoclosure () -> String) throws -> DirHandle {
        try openParentHandle(comps, stack: &dirStack, entry: entry())
    }

    /// As above with the descriptors of `stack` (one per thread).
    private func openParentHandle(_ comps: [[UInt8]], stack: inout [(name: [UInt8], dir: DirHandle)],
                                  entry: @autoclosure () -> String) throws -> DirHandle {
        var k = 0
        while k < stack.count && k < comps.count && stack[k].name == comps[k] { k += 1 }
        if k < stack.count { stack.removeLast(stack.count - k) }
        var cur = stack.last?.dir ?? rootHandle
        for i in k..<comps.count {
            let fd = try openChild(cur.fd, comps[i], path: RestorePath.join(Array(comps[...i])), entry: entry(), create: true)
            cur = DirHandle(fd)
            stack.append((comps[i], cur))
        }
        return cur
    }

    /// Opens an existing directory chain (nil when a component is missing).
    private func openDirectoryChain(_ comps: [[UInt8]], entry: String) throws -> DirHandle? {
        var cur = rootHandle
        for (i, c) in comps.enumerated() {
            var st = stat()
            if RestorePath.withCName(c, { fstatat(cur.fd, $0, &st, AT_SYMLINK_NOFOLLOW) }) != 0 { return nil }
            cur = DirHandle(try openChild(cur.fd, c, path: RestorePath.join(Array(comps[...i])), entry: entry, create: false))
        }
        return cur
    }

    private func openChild(_ dir: Int32, _ name: [UInt8], path: [UInt8], entry: String, create: Bool) throws -> Int32 {
        var fd = RestorePath.withCName(name) { openat(dir, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
        if fd < 0 && errno == ENOENT && create {
            if RestorePath.withCName(name, { mkdirat(dir, $0, 0o755) }) != 0 && errno != EEXIST {
                throw ioError(entry, "mkdir '\(TarReader.display(path))'", errno)
            }
            fd = RestorePath.withCName(name) { openat(dir, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
        }
        if fd < 0 {
            let err = errno
            var st = stat()
            if RestorePath.withCName(name, { fstatat(dir, $0, &st, AT_SYMLINK_NOFOLLOW) }) == 0 {
                if (st.st_mode & S_IFMT) == S_IFLNK {
                    throw refuse(entry, "symlink-in-path", "'\(TarReader.display(path))' is a symlink; restores never write through symlinks")
                }
                if (st.st_mode & S_IFMT) != S_IFDIR {
                    throw refuse(entry, "not-a-directory", "'\(TarReader.display(path))' is not a directory")
                }
            }
            throw ioError(entry, "open directory '\(TarReader.display(path))'", err)
        }
        return fd
    }
}

/// The one path validator: archive and manifest paths as bytes.
package enum RestorePath {
    /// Splits `path` into components, dropping "" and "."; a leading "/" is stripped
    /// (`stripped` is true then); ".." and NUL bytes are refused (`rule` names the case).
    package static func components(_ path: [UInt8], entry: @autoclosure () -> String, rule: String) throws -> (comps: [[UInt8]], stripped: Bool) {
        if path.contains(0) {
            throw ArchiveError(.refused, entry: entry(), rule: "nul-in-path", "path contains a NUL byte")
        }
        var out: [[UInt8]] = []
        try path.withUnsafeBufferPointer { p in
            var start = 0
            for i in 0...p.count where i == p.count || p[i] == UInt8(ascii: "/") {
                let n = i - start
                defer { start = i + 1 }
                if n == 0 || (n == 1 && p[start] == UInt8(ascii: ".")) { continue }
                if n == 2 && p[start] == UInt8(ascii: ".") && p[start + 1] == UInt8(ascii: ".") {
                    throw ArchiveError(.refused, entry: entry(), rule: rule, "'..' in '\(entry())' is not restored (it would climb out of the target)")
                }
                out.append(Array(p[start..<i]))
            }
        }
        return (out, path.first == UInt8(ascii: "/"))
    }

    package static func split(_ path: [UInt8]) -> [[UInt8]] {
        path.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true).map(Array.init)
    }

    package static func join(_ comps: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = []
        for (i, c) in comps.enumerated() {
            if i > 0 { out.append(UInt8(ascii: "/")) }
            out += c
        }
        return out
    }

    /// True if a relative link target, read from a directory `depth` levels below the
    /// target, climbs out of it (lexically).
    package static func escapes(link: [UInt8], depth: Int) -> Bool {
        var d = depth
        for c in link.split(separator: UInt8(ascii: "/")) {
            if c.elementsEqual("..".utf8) { d -= 1; if d < 0 { return true } } else if !c.elementsEqual(".".utf8) { d += 1 }
        }
        return false
    }

    /// Calls `body` with `name` as a NUL-terminated C string.
    package static func withCName<R>(_ name: [UInt8], _ body: (UnsafePointer<CChar>) throws -> R) rethrows -> R {
        var z = name
        z.append(0)
        return try z.withUnsafeBufferPointer { try $0.withMemoryRebound(to: CChar.self) { try body($0.baseAddress!) } }
    }
}

/// Thread counts of the restore, in one place.
/// A path as a dictionary key, hashed in one call over its bytes (`[UInt8]`'s own hashing
/// goes byte by byte, which showed at the top of a restore's profile).
struct PathKey: Hashable {
    let bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    func hash(into h: inout Hasher) { bytes.withUnsafeBytes { h.combine(bytes: $0) } }
    static func == (a: PathKey, b: PathKey) -> Bool { a.bytes == b.bytes }
}

package enum RestoreThreads {
    /// Writers of small files (create, write, chmod, utimens are latency-bound on a VM disk).
    /// `HS_RESTORE_WRITERS` overrides it (1: no pool; for measurements).
    package static var fileWriters: Int {
        if let v = ProcessInfo.processInfo.environment["HS_RESTORE_WRITERS"], let n = Int(v), n >= 1 { return min(n, 64) }
        return min(4, max(2, ProcessInfo.processInfo.activeProcessorCount))
    }
}

/// Warnings of work on several threads, in no particular order.
private final class NoteList: @unchecked Sendable {
    private let lock = NSLock()
    private var notes: [(text: String, xattr: Bool)] = []
    func add(_ text: String, xattr: Bool = false) { lock.lock(); notes.append((text, xattr)); lock.unlock() }
    func take() -> [(text: String, xattr: Bool)] { lock.lock(); defer { lock.unlock() }; return notes }
}
