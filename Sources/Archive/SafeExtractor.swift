import Foundation
import Glibc
import Support

/// Writes parsed entries below a target directory without ever following a symlink.
///
/// Every path is walked component by component from the target's directory descriptor with
/// `openat(O_DIRECTORY|O_NOFOLLOW)`; files are created with `O_CREAT|O_EXCL|O_NOFOLLOW`
/// after removing whatever was at the name (a symlink is removed, never followed).
/// Metadata is applied after content; directories get theirs at the end, deepest first.
final class Extractor: TarEntryHandler {
    private let target: String
    private let options: ExtractOptions
    private let rootFd: Int32
    private let preserveSpecial: Bool
    private let filter: ((EntryMetadata) -> Bool)?
    private let onFile: ((EntryMetadata, [UInt8]) throws -> Void)?
    private(set) var summary = ExtractSummary()

    /// Open directory descriptors for the components of the last parent walked.
    private var dirStack: [(name: String, dir: DirHandle)] = []
    private let rootHandle: DirHandle
    /// Content writers for small regular files (fresh targets only); nil: all on this thread.
    private var pool: FileWriterPool?
    /// Files handed to the pool, in archive order (onFile is called in that order).
    private var inflight: [FileJob] = []
    private var inflightHead = 0
    private var currentJob: FileJob?
    /// Hashes of every path created so far, and of those that are not directories, while the
    /// pool is used: an entry that reuses a name, or lies below a non-directory, waits for the
    /// pool to drain first. (Hashes keep this small; a collision only costs a needless wait.)
    private var createdNames = Set<Int>()
    private var createdNonDirs = Set<Int>()
    static let parallelMaxFileSize: UInt64 = 2 << 20
    /// Directories whose metadata is applied at the end (path components -> entry).
    private var dirMeta: [String: (EntryMetadata, Bool)] = [:]   // (entry, created now with its mode); path = components joined by "/"
    private var createdSymlinks: [([String], String)] = []

    // current regular file
    private var fileFd: Int32 = -1
    private var fileEntry: EntryMetadata?
    private var hasher: SHA256Hasher?
    private var pendingZeros: UInt64 = 0   // sparse output: zero runs become holes
    private var xattrWarned = false
    private let freshTarget: Bool
    /// The target was empty and `CreationProbe` found that new entries there get this
    /// process's uid/gid and the umask'd mode: chown/chmod are skipped when that is final.
    private let predictable: Bool
    private let umaskBits: UInt32
    private let euid = geteuid(), egid = getegid()

    init(target: String, options: ExtractOptions, freshTarget: Bool,
         filter: ((EntryMetadata) -> Bool)?, onFile: ((EntryMetadata, [UInt8]) throws -> Void)?) throws {
        self.target = target
        self.options = options
        self.filter = filter
        self.onFile = onFile
        self.preserveSpecial = options.preserveSpecialBits ?? (geteuid() == 0 && freshTarget)
        self.freshTarget = freshTarget
        let mask = CreationProbe.currentUmask()
        self.umaskBits = mask ?? 0o022
        rootFd = open(target, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard rootFd >= 0 else {
            throw ArchiveError(.io, "cannot open target directory '\(target)': \(String(cString: strerror(errno)))")
        }
        predictable = freshTarget && CreationProbe.isPredictable(rootFd, umask: mask)
        rootHandle = DirHandle(rootFd, owned: false)
        // Parallel content writes only into a target that was empty: then every name in it
        // was created by this extraction and the bookkeeping in `created` is complete.
        let threads = min(2, ProcessInfo.processInfo.activeProcessorCount)
        if freshTarget && threads > 1 {
            pool = FileWriterPool(threads: threads, ctx: FileWriteContext(
                target: target, restoreOwnership: options.restoreOwnership, predictable: predictable,
                restoreXattrs: options.restoreXattrs, preserveSpecial: preserveSpecial,
                umaskBits: umaskBits, euid: geteuid(), egid: getegid()))
        }
    }

    func closeAll() {
        pool?.shutdown()
        pool = nil
        inflight.removeAll()
        currentJob = nil
        if fileFd >= 0 { close(fileFd); fileFd = -1 }
        dirStack.removeAll()
        close(rootFd)
    }

    // MARK: parallel writes

    /// Hands finished jobs at the front of the queue back: summary, onFile, errors (in order).
    private func reap(wait: Bool) throws {
        while inflightHead < inflight.count {
            let job = inflight[inflightHead]
            if wait { pool!.wait(for: job) } else if !pool!.isDone(job) { break }
            inflight[inflightHead] = FileJob.placeholder
            inflightHead += 1
            if inflightHead >= 256 { inflight.removeFirst(inflightHead); inflightHead = 0 }
            for w in job.warnings {
                if w.xattr { if xattrWarned { continue }; xattrWarned = true }
                summary.warnings.append(w.text)
            }
            if let err = job.error { throw err }
            summary.files += 1
            try onFile?(job.entry, job.digest)
        }
    }

    /// Waits until every file handed to the pool is written (and reported).
    private func barrier() throws {
        guard pool != nil else { return }
        try reap(wait: true)
    }

    /// True if `comps` (an entry's path) may race with a file still being written: the name
    /// itself was created before, or a parent is not a directory.
    private func collides(_ comps: [String], path: String) -> Bool {
        if createdNames.contains(path.hashValue) { return true }
        if createdNonDirs.isEmpty { return false }
        var prefix = ""
        for c in comps.dropLast() {
            prefix = prefix.isEmpty ? c : prefix + "/" + c
            if createdNonDirs.contains(prefix.hashValue) { return true }
        }
        return false
    }

    // MARK: entries

    func beginEntry(_ raw: EntryMetadata, headerOffset: UInt64) throws -> Bool {
        var e = raw
        let comps = try Self.components(e.path, entry: raw.path, absoluteRule: "absolute-path")
        if comps.isEmpty {
            // "." or "./": the target itself. Its metadata is not changed.
            if e.type == .directory { return false }
            throw refuse(raw.path, "empty-path", "an entry other than a directory names the target itself")
        }
        e.path = comps.joined(separator: "/")
        if let filter, !filter(e) { summary.skipped += 1; return false }
        switch e.type {
        case .charDevice, .blockDevice:
            throw refuse(e.path, "device-node", "device nodes are never extracted")
        case .fifo where !options.allowFIFOs:
            throw refuse(e.path, "fifo", "FIFOs are not extracted with these options")
        default: break
        }
        var parallel = false
        if pool != nil {
            try reap(wait: false)
            parallel = e.type == .file && e.size <= Self.parallelMaxFileSize
            if collides(comps, path: e.path) || (e.type != .file && e.type != .directory) {
                try barrier(); parallel = false
            } else if e.type == .file && !parallel {
                try barrier()   // keeps onFile in archive order
            }
            createdNames.insert(e.path.hashValue)
            if e.type != .directory { createdNonDirs.insert(e.path.hashValue) }
        }
        let parentHandle = try openParentHandle(Array(comps.dropLast()), entry: e.path)
        let parent = parentHandle.fd
        let name = comps.last!
        switch e.type {
        case .file where parallel:
            let job = FileJob(entry: e, name: name, parent: parentHandle)
            job.data.reserveCapacity(Int(e.size))
            currentJob = job
            return true
        case .file:
            // Create first (the common case in a fresh target); on EEXIST remove what is
            // there (a symlink is removed, never followed) and create again.
            let createMode = mode_t(e.mode & 0o777)  // as tar does; umask applies, fixed below
            var fd = openat(parent, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, createMode)
            if fd < 0 && errno == EEXIST {
                try removeExisting(parent, name, comps: comps, entry: e.path, keepDirectory: false)
                fd = openat(parent, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, createMode)
            }
            guard fd >= 0 else { throw ioError(e.path, "create file", errno) }
            fileFd = fd
            fileEntry = e
            hasher = SHA256Hasher()
            pendingZeros = 0
            return true
        case .directory:
            // Created with its permission bits (plus owner rwx while extracting); the end
            // pass only fixes what differs.
            let dirCreateMode = mode_t((e.mode & 0o777) | 0o700)
            var created = true
            if mkdirat(parent, name, dirCreateMode) != 0 {
                guard errno == EEXIST else { throw ioError(e.path, "mkdir", errno) }
                created = false
                var st = stat()
                if fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && (st.st_mode & S_IFMT) == S_IFDIR {
                    // exists: metadata at the end
                } else {
                    try removeExisting(parent, name, comps: comps, entry: e.path, keepDirectory: false)
                    guard mkdirat(parent, name, dirCreateMode) == 0 else { throw ioError(e.path, "mkdir", errno) }
                    created = true
                }
            }
            dirMeta[e.path] = (e, created && predictable)
            summary.directories += 1
        case .symlink:
            let t = e.linkTarget ?? ""
            if !options.allowSymlinksOutside {
                if t.hasPrefix("/") {
                    throw refuse(e.path, "symlink-escape", "symlink to absolute path '\(t)' points outside the target")
                }
                if !resolvesInside(Array(comps.dropLast()), t) {
                    throw refuse(e.path, "symlink-escape", "symlink to '\(t)' resolves outside the target")
                }
            }
            try removeExisting(parent, name, comps: comps, entry: e.path, keepDirectory: false)
            guard symlinkat(t, parent, name) == 0 else { throw ioError(e.path, "symlink", errno) }
            if options.restoreOwnership {
                _ = fchownat(parent, name, e.uid, e.gid, AT_SYMLINK_NOFOLLOW)
            }
            var ts = Self.times(e)
            _ = utimensat(parent, name, &ts, AT_SYMLINK_NOFOLLOW)
            createdSymlinks.append((comps, t))
            summary.symlinks += 1
        case .hardlink:
            let t = e.linkTarget ?? ""
            let tcomps = try Self.components(t, entry: e.path, absoluteRule: "hardlink-escape")
            guard !tcomps.isEmpty else { throw refuse(e.path, "hardlink-escape", "hardlink to the target directory itself") }
            if tcomps == comps { return false }
            // Walk the source's parent separately (never creating, never following).
            let srcParent = try openDirectoryChain(Array(tcomps.dropLast()), entry: e.path, create: false)
            defer { if srcParent != rootFd { close(srcParent) } }
            var st = stat()
            guard fstatat(srcParent, tcomps.last!, &st, AT_SYMLINK_NOFOLLOW) == 0 else {
                throw ArchiveError(.malformed, entry: e.path, "hardlink target '\(t)' was not extracted before the link (\(String(cString: strerror(errno))))")
            }
            if (st.st_mode & S_IFMT) == S_IFDIR { throw refuse(e.path, "hardlink-to-directory", "hardlink to directory '\(t)'") }
            try removeExisting(parent, name, comps: comps, entry: e.path, keepDirectory: false)
            guard linkat(srcParent, tcomps.last!, parent, name, 0) == 0 else { throw ioError(e.path, "link to '\(t)'", errno) }
            summary.hardlinks += 1
        case .fifo:
            try removeExisting(parent, name, comps: comps, entry: e.path, keepDirectory: false)
            guard mkfifoat(parent, name, 0o600) == 0 else { throw ioError(e.path, "mkfifo", errno) }
            // metadata: open O_PATH is not enough for fchmod on all kernels; use *at calls
            if options.restoreOwnership { _ = fchownat(parent, name, e.uid, e.gid, AT_SYMLINK_NOFOLLOW) }
            _ = fchmodat(parent, name, mode_t(effectiveMode(e.mode)), 0)
            var ts = Self.times(e)
            _ = utimensat(parent, name, &ts, AT_SYMLINK_NOFOLLOW)
            summary.fifos += 1
        case .charDevice, .blockDevice:
            break
        }
        return false
    }

    func entryContent(_ bytes: UnsafeRawBufferPointer) throws {
        if let job = currentJob {
            job.data.append(contentsOf: bytes)
            summary.bytes += UInt64(bytes.count)
            return
        }
        guard fileFd >= 0 else { return }
        hasher!.update(bytes)
        // Zero 64 KiB-aligned runs become holes (sparse files stay sparse and restore fast).
        var p = 0
        let n = bytes.count
        while p < n {
            let len = min(64 * 1024, n - p)
            let piece = UnsafeRawBufferPointer(rebasing: bytes[p..<(p + len)])
            if len == 64 * 1024 && Self.isZero(piece) {
                pendingZeros += UInt64(len)
            } else {
                if pendingZeros > 0 {
                    guard lseek(fileFd, off_t(pendingZeros), SEEK_CUR) >= 0 else { throw ioError(fileEntry!.path, "lseek", errno) }
                    pendingZeros = 0
                }
                try writeAll(fileFd, piece)
            }
            p += len
        }
        summary.bytes += UInt64(n)
    }

    func endEntry() throws {
        if let job = currentJob {
            currentJob = nil
            inflight.append(job)
            pool!.submit(job)
            return
        }
        guard fileFd >= 0, let e = fileEntry else { return }
        defer { close(fileFd); fileFd = -1; fileEntry = nil }
        if pendingZeros > 0 {
            guard ftruncate(fileFd, off_t(e.size)) == 0 else { throw ioError(e.path, "ftruncate", errno) }
            pendingZeros = 0
        }
        // A new file in a predictable target already belongs to euid:egid (its directories get
        // their setgid bits only at the end), so chown only when the archive says otherwise.
        if options.restoreOwnership && !(predictable && e.uid == euid && e.gid == egid) {
            if fchown(fileFd, e.uid, e.gid) != 0 { summary.warnings.append("\(e.path): chown failed: \(String(cString: strerror(errno)))") }
        }
        let mode = effectiveMode(e.mode)
        // Created with the permission bits minus the umask (when predictable): fchmod only
        // when that differs.
        if !predictable || mode != (e.mode & 0o777) & ~umaskBits {
            guard fchmod(fileFd, mode_t(mode)) == 0 else { throw ioError(e.path, "chmod", errno) }
        }
        if options.restoreXattrs { setXattrs(fileFd, e) }
        var ts = Self.times(e)
        guard futimens(fileFd, &ts) == 0 else { throw ioError(e.path, "set mtime", errno) }
        let digest = hasher.take()!.finalize()
        summary.files += 1
        try onFile?(e, digest)
    }

    /// Applies directory metadata (deepest first) and re-checks every symlink created.
    func finishExtraction() throws {
        try barrier()
        pool?.shutdown()
        pool = nil
        if !options.allowSymlinksOutside {
            for (comps, t) in createdSymlinks where !resolvesInside(Array(comps.dropLast()), t) {
                let parent = try openParent(Array(comps.dropLast()), entry: comps.joined(separator: "/"))
                _ = unlinkat(parent, comps.last!, 0)
                throw refuse(comps.joined(separator: "/"), "symlink-escape",
                             "symlink to '\(t)' resolves outside the target through symlinks extracted later; removed")
            }
        }
        // Reverse path order: children before their parent, siblings together (the cached
        // parent walk is reused).
        // (Comparing paths with "/" as the smallest byte orders them like their components.)
        let dirs = dirMeta.values.sorted { a, b in
            b.0.path.utf8.lazy.map { $0 == 0x2f ? 0 : $0 }.lexicographicallyPrecedes(a.0.path.utf8.lazy.map { $0 == 0x2f ? 0 : $0 })
        }
        dirMeta = [:]
        for (e, createdFresh) in dirs {
            let comps = e.path.split(separator: "/").map(String.init)
            let parent = try openParent(Array(comps.dropLast()), entry: e.path)
            let mode = effectiveMode(e.mode)
            let needChown = options.restoreOwnership && !(createdFresh && e.uid == euid && e.gid == egid)
            let needChmod = !createdFresh || mode != ((e.mode & 0o777) | 0o700) & ~umaskBits
            let needXattrs = options.restoreXattrs && !e.xattrs.isEmpty
            var ts = Self.times(e)
            if !needChown && !needChmod && !needXattrs {
                // Only the mtime: no need to open the directory (the final component is not
                // followed if it is a symlink).
                guard utimensat(parent, comps.last!, &ts, AT_SYMLINK_NOFOLLOW) == 0 else { throw ioError(e.path, "set mtime", errno) }
                continue
            }
            let fd = try openChild(parent, comps.last!, path: e.path, entry: e.path, create: false)
            defer { close(fd) }
            if needChown {
                if fchown(fd, e.uid, e.gid) != 0 { summary.warnings.append("\(e.path): chown failed: \(String(cString: strerror(errno)))") }
            }
            if needChmod || needChown {  // chown may clear setgid
                guard fchmod(fd, mode_t(mode)) == 0 else { throw ioError(e.path, "chmod", errno) }
            }
            if needXattrs { setXattrs(fd, e) }
            guard futimens(fd, &ts) == 0 else { throw ioError(e.path, "set mtime", errno) }
        }
    }

    // MARK: helpers

    private func effectiveMode(_ m: UInt32) -> UInt32 {
        preserveSpecial ? m & 0o7777 : m & 0o1777
    }

    private func setXattrs(_ fd: Int32, _ e: EntryMetadata) {
        for (k, v) in e.xattrs where k.hasPrefix("user.") {
            let rc = setXattr(fd: fd, name: k, value: v)
            if rc != 0 && !xattrWarned {
                xattrWarned = true
                summary.warnings.append("\(e.path): extended attribute \(k) not restored: \(String(cString: strerror(errno))) (further xattr failures not reported)")
            }
        }
    }

    static func times(_ e: EntryMetadata) -> [timespec] {
        [timespec(tv_sec: 0, tv_nsec: LinuxConst.UTIME_NOW),
         timespec(tv_sec: Int(e.mtimeSeconds), tv_nsec: Int(min(e.mtimeNanoseconds, 999_999_999)))]
    }

    static func isZero(_ b: UnsafeRawBufferPointer) -> Bool {
        let words = b.bindMemory(to: UInt64.self)
        for w in words where w != 0 { return false }
        return true
    }

    private func writeAll(_ fd: Int32, _ b: UnsafeRawBufferPointer) throws {
        var off = 0
        while off < b.count {
            let n = write(fd, b.baseAddress! + off, b.count - off)
            if n < 0 {
                if errno == EINTR { continue }
                throw ioError(fileEntry?.path ?? "?", "write", errno)
            }
            off += n
        }
    }

    private func refuse(_ entry: String, _ rule: String, _ detail: String) -> ArchiveError {
        ArchiveError(.refused, entry: entry, rule: rule, detail + "; nothing was written outside '\(target)'")
    }

    private func ioError(_ entry: String, _ what: String, _ err: Int32) -> ArchiveError {
        ArchiveError(.io, entry: entry, "\(what) failed under '\(target)': \(String(cString: strerror(err)))")
    }

    /// Splits an archive path into components, dropping "" and "."; refuses absolute paths,
    /// "..", and NUL bytes.
    static func components(_ path: String, entry: String, absoluteRule: String) throws -> [String] {
        if path.hasPrefix("/") {
            throw ArchiveError(.refused, entry: entry, rule: absoluteRule, "absolute path '\(path)' is not extracted")
        }
        if path.utf8.contains(0) {
            throw ArchiveError(.refused, entry: entry, rule: "nul-in-path", "path contains a NUL byte")
        }
        var out: [String] = []
        for c in path.split(separator: "/", omittingEmptySubsequences: true) {
            if c == "." { continue }
            if c == ".." {
                throw ArchiveError(.refused, entry: entry, rule: absoluteRule == "absolute-path" ? "parent-traversal" : absoluteRule,
                                   "'..' in '\(path)' is not extracted")
            }
            out.append(String(c))
        }
        return out
    }

    /// Removes what is at `name` (file, symlink, FIFO; an empty directory unless kept).
    /// A symlink is removed itself — never followed.
    private func removeExisting(_ parent: Int32, _ name: String, comps: [String], entry: String, keepDirectory: Bool) throws {
        try barrier()
        var st = stat()
        guard fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else {
            if errno == ENOENT { return }
            throw ioError(entry, "stat", errno)
        }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            if keepDirectory { return }
            // Invalidate cached descriptors under this path.
            if dirStack.count >= comps.count && Array(dirStack.prefix(comps.count).map(\.name)) == comps {
                dirStack.removeLast(dirStack.count - comps.count + 1)
            }
            guard unlinkat(parent, name, AT_REMOVEDIR) == 0 else {
                throw ArchiveError(.io, entry: entry, "cannot replace directory '\(comps.joined(separator: "/"))' with a non-directory: \(String(cString: strerror(errno)))")
            }
            dirMeta[comps.joined(separator: "/")] = nil
            return
        }
        guard unlinkat(parent, name, 0) == 0 else { throw ioError(entry, "remove existing", errno) }
    }

    /// Opens (creating missing directories) the directory `comps` below the target, reusing
    /// the descriptors of the previous walk. Never follows a symlink.
    private func openParent(_ comps: [String], entry: String) throws -> Int32 {
        try openParentHandle(comps, entry: entry).fd
    }

    private func openParentHandle(_ comps: [String], entry: String) throws -> DirHandle {
        var k = 0
        while k < dirStack.count && k < comps.count && dirStack[k].name == comps[k] { k += 1 }
        if k < dirStack.count {
            dirStack.removeLast(dirStack.count - k)
        }
        var cur = dirStack.last?.dir ?? rootHandle
        for i in k..<comps.count {
            let fd = try openChild(cur.fd, comps[i], path: comps[...i].joined(separator: "/"), entry: entry, create: true)
            cur = DirHandle(fd)
            dirStack.append((comps[i], cur))
        }
        return cur
    }

    /// Opens a directory chain without the cache (caller closes the result unless it is rootFd).
    private func openDirectoryChain(_ comps: [String], entry: String, create: Bool) throws -> Int32 {
        var cur = rootFd
        for (i, c) in comps.enumerated() {
            let fd = try openChild(cur, c, path: comps[...i].joined(separator: "/"), entry: entry, create: create)
            if cur != rootFd { close(cur) }
            cur = fd
        }
        if cur == rootFd { return dup(rootFd) }
        return cur
    }

    private func openChild(_ dir: Int32, _ name: String, path: String, entry: String, create: Bool) throws -> Int32 {
        var fd = openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if fd < 0 && errno == ENOENT && create {
            if mkdirat(dir, name, 0o755) != 0 && errno != EEXIST { throw ioError(entry, "mkdir '\(path)'", errno) }
            fd = openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        }
        if fd < 0 {
            let err = errno
            var st = stat()
            if fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 {
                if (st.st_mode & S_IFMT) == S_IFLNK {
                    throw refuse(entry, "symlink-in-path", "'\(path)' is a symlink; extraction never writes through symlinks")
                }
                if (st.st_mode & S_IFMT) != S_IFDIR {
                    throw refuse(entry, "not-a-directory", "'\(path)' is not a directory")
                }
            }
            throw ioError(entry, "open directory '\(path)'", err)
        }
        return fd
    }

    /// Resolves `target` relative to directory `dir` (components below the target root) the
    /// way the kernel would, following symlinks already on disk; false if it leaves the root.
    private func resolvesInside(_ dir: [String], _ target: String) -> Bool {
        if target.hasPrefix("/") { return false }
        var stack = dir
        var pending = ArraySlice(target.split(separator: "/", omittingEmptySubsequences: true).map(String.init))
        var hops = 0
        while let c = pending.first {
            pending = pending.dropFirst()
            if c == "." { continue }
            if c == ".." {
                if stack.isEmpty { return false }
                stack.removeLast()
                continue
            }
            stack.append(c)
            var st = stat()
            let rel = stack.joined(separator: "/")
            guard fstatat(rootFd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0 else { continue }  // missing: lexical
            if (st.st_mode & S_IFMT) == S_IFLNK {
                hops += 1
                if hops > 40 { return false }
                var buf = [CChar](repeating: 0, count: 4097)
                let n = readlinkat(rootFd, rel, &buf, 4096)
                guard n > 0 else { return false }
                let link = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
                if link.hasPrefix("/") { return false }
                stack.removeLast()
                pending = ArraySlice(link.split(separator: "/", omittingEmptySubsequences: true).map(String.init)) + pending
            }
        }
        return true
    }
}
