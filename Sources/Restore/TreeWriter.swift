import Archive
import FoundationEssentials
import Glibc
import Support
import Synchronization

/// The one place that creates restored entries below a target directory, for every source of
/// the restore executor. Its rules:
/// - paths arrive normalised and validated (`RestorePath`);
/// - nothing is ever followed: parents are walked component by component with
///   `openat(O_DIRECTORY|O_NOFOLLOW)` from the target's descriptor (missing ones are made on
///   the way, by whichever thread needs them), an existing symlink at an entry's name is
///   replaced, and a symlink inside a path is refused ("symlink-in-path");
/// - symlinks are data: created as recorded, with a warning when they point outside the tree;
/// - device nodes are skipped with a warning; FIFOs are made with `mknodat` and their
///   metadata set through an `O_PATH` descriptor, never by name;
/// - regular files are written under a temporary name and renamed when complete (removed on
///   failure, and the error says so); holes (sparse regions, 64 KiB zero runs) are made with
///   lseek/ftruncate, never written; the `too-large` rule is `SpaceBudget`'s;
/// - metadata is applied by `MetadataApplier` for every type, directories' at the end,
///   deepest first, one depth at a time on the writer threads.
///
/// In a fresh (empty) target, small files are written by `FileWriters` threads while this
/// thread reads on; directories are made by whoever first needs them.
final class TreeWriter {
    let target: String
    let policy: RestorePolicy
    private let root: DirHandle
    let metadata: MetadataApplier
    let notes = MetadataNotes()
    let space: SpaceBudget
    private let fresh: Bool
    private(set) var counts = RestoreCounts()
    private(set) var warnings: [String] = []
    private var absoluteWarned = false

    /// Open directory descriptors for the components of the last parent walked.
    private var dirStack: [(name: [UInt8], dir: DirHandle)] = []
    /// Directory metadata applied at the end (path -> entry, and the mode it was made with
    /// when it was made by this restore in a predictable directory).
    private var dirMeta: [PathKey: (entry: TarEntry, createdMode: UInt32?)] = [:]
    /// Small files are written by the writer threads (target was empty); paths of files in flight.
    private var writers: FileWriters?
    /// Paths of the files queued and not yet handed back, by hash (a collision of two hashes
    /// only makes a later entry wait for the writers).
    private var inflightPaths = HashCounts()
    /// A parent none of whose own parents (nor itself) was a queued file when last checked.
    private var clearParent: [UInt8]?
    /// Entries since the writers' finished jobs were last looked at.
    private var sinceReap = 0
    /// Early directory metadata (writer threads only): the directories the entries are still
    /// in (a stack: each below the one before), kept in `dirMeta` until the entries leave them.
    private var openDirs: [[UInt8]] = []
    /// Directories the entries left, with the number of files queued when they did: their
    /// metadata goes to the writer threads once those files were handed back.
    private var closing: [(queued: Int, dirs: [(entry: TarEntry, createdMode: UInt32?)])] = []
    private var closingHead = 0
    /// Left directories whose files are written, in order (deeper ones first), not yet handed over.
    private var readyDirs: [(entry: TarEntry, createdMode: UInt32?)] = []
    /// Directories left (applied early, or about to be): an entry created inside one later
    /// (an archive that comes back to a directory) puts it back into `dirMeta` for the end.
    private var closedDirs: [PathKey: (entry: TarEntry, createdMode: UInt32?)] = [:]
    private var closedHashes: Set<Int> = []
    /// The first directory noted (not made: a writer makes it) since the last file queued.
    private var firstNotedDirectory: [UInt8]?
    /// The parent of the last entry looked at by `reopenAncestors`.
    private var lastSeenParent: [UInt8]? = nil
    /// Directories of any mode and owner may get their metadata early (`noteOpen`).
    private let bypassesPermissions = TreeWriter.hasDACOverride()
    static let parallelMaxFileSize: UInt64 = 2 << 20
    /// Finished jobs are handed back once this many are queued (one pool lock per batch).
    private static let reapEvery = 256
    /// Hardlinks whose target was left out by a filter: (link path, target path).
    private(set) var pendingLinks: [(link: [UInt8], target: [UInt8], entry: TarEntry)] = []
    /// Called after each regular file is complete (in submission order).
    var onFile: ((TarEntry) -> Void)?
    /// Defer hardlinks to missing targets instead of failing (a filter is active).
    var deferMissingLinkTargets = false

    /// Mode of a directory made on the way to an entry (its own metadata comes at the end).
    private static let walkMode: UInt32 = 0o755

    init(target: String, policy: RestorePolicy, fresh: Bool) throws(RestoreError) {
        self.target = target
        self.policy = policy
        self.fresh = fresh
        let rootFd: Int32
        do { rootFd = try Sys.open(Array(target.utf8), O_RDONLY | O_DIRECTORY | O_CLOEXEC) } catch {
            throw .target(.cannotOpen(error), path: target)
        }
        root = DirHandle(rootFd)
        let isRoot = geteuid() == 0
        let mask = CreationProbe.currentUmask()
        metadata = MetadataApplier(restoreOwnership: policy.restoreOwnership,
                                   preserveSpecial: policy.preserveSpecialBits ?? (isRoot && fresh),
                                   restoreXattrs: policy.restoreXattrs,
                                   predictable: fresh && CreationProbe.isPredictable(rootFd, umask: mask),
                                   umaskBits: mask ?? 0o022, euid: geteuid(), egid: getegid(), notes: notes)
        space = SpaceBudget(dirfd: rootFd, asRoot: isRoot)
        if fresh && policy.writerThreads > 1 {
            writers = FileWriters(threads: policy.writerThreads, root: root,
                                  context: FileWriteContext(target: target, metadata: metadata, space: space))
        }
    }

    func close() {
        writers?.close()
        writers = nil
        dirStack.removeAll()
    }

    private var context: FileWriteContext { FileWriteContext(target: target, metadata: metadata, space: space) }

    // MARK: entries

    /// Counts an entry a filter left out.
    func skip() { counts.skipped += 1 }

    /// Creates one entry (`e.path` normalised, `parts` its parent's components and name). For regular files
    /// `content` hands the data as (offset, bytes) runs; `expectedSHA256`, when given, must
    /// match the content or nothing is left at the path.
    /// - Returns: false when the entry was skipped (device node, self hardlink, ...).
    @discardableResult
    func write(_ e: TarEntry, parts: RestorePath.Parts, stripped: Bool = false, expectedSHA256: [UInt8]? = nil, origin: String? = nil,
               content: FileJob.Content? = nil) throws -> Bool {
        do {
            if stripped { warnAbsolute() }
            return try create(e, parts: parts, expectedSHA256: expectedSHA256, origin: origin, content: content)
        } catch var error as ArchiveError where error.entry == nil {
            // Damage met while reading this entry's content: the error names it.
            try barrier()
            error.entry = NameEscape.escape(e.path)
            throw error
        } catch {
            // The files queued before this entry are completed first (an error of their own,
            // being earlier, is the one reported), so the target holds everything before it.
            try barrier()
            throw error
        }
    }

    private func create(_ e: TarEntry, parts: RestorePath.Parts, expectedSHA256: [UInt8]?, origin: String?,
                        content: FileJob.Content?) throws -> Bool {
        lazy var shown = NameEscape.escape(e.path)
        if e.path.isEmpty {
            // "." or an empty name: the target itself (the executor handles its metadata).
            if e.type == .directory { return false }
            throw RestoreError.refused(.emptyPath, entry: shown, detail: "an entry other than a directory names the target itself")
        }
        switch e.type {
        case .charDevice, .blockDevice:
            warn("\(shown): device node skipped (device nodes are never restored)")
            return false
        case .fifo where !policy.allowFIFOs:
            warn("\(shown): FIFO skipped (not restored with these options)")
            return false
        default: break
        }
        var hash = 0
        if writers != nil {
            // Small files go to the writers, and directories are only noted while they write
            // (made by whoever needs them first; a queued file of that name is caught by
            // `collides`). Anything else, or a name a queued file may still be writing (or lie
            // below), waits for the writers to drain first. A large or sparse file is streamed
            // on this thread while the writers go on with the small ones before it.
            leaveDirectories(for: e.path)
            let parentEnd = parts.parentEnd
            reopenAncestors(of: e.path, parentEnd: parentEnd)
            sinceReap += 1
            if sinceReap >= 32 && (writers!.pendingJobs >= Self.reapEvery || closingHead < closing.count) { sinceReap = 0; try reap(wait: false) }
            let ownThread = e.type == .file && content != nil
            hash = Self.pathHash(e.path[...])   // once: `collides` and the queued file's key
            let collision = collides(e.path, parentEnd: parentEnd, hash: hash)
            if e.type == .directory && !collision {
                dirMeta[PathKey(e.path)] = (Self.kept(e), Self.walkMode)
                noteOpen(e)
                if firstNotedDirectory == nil { firstNotedDirectory = e.path }
                counts.directories += 1
                return true
            }
            if !(ownThread || e.type == .directory) || collision { try barrier() }
        }
        if e.type == .file, writers != nil, e.sparse == nil, e.size <= Self.parallelMaxFileSize, let content {
            // The writer thread opens (and makes) the parent: this thread makes no directory.
            try queueFile(e, parts: parts, hash: hash, expectedSHA256: expectedSHA256, origin: origin, content: content)
            return true
        }
        let comps = parts.components(of: e.path)
        let name = comps.last!
        let parent = try openParentHandle(parts.parent, shown: shown)
        switch e.type {
        case .file: try createFile(e, name: name, parent: parent, comps: comps, expectedSHA256: expectedSHA256, origin: origin, content: content)
        case .directory: try createDirectory(e, name: name, parent: parent, comps: comps, shown: shown)
        // Made under their final names, then given their metadata: one step for a signal
        // (`InterruptCleanup.writingOne`), so none is left with the restore's own owner or times.
        case .symlink: try InterruptCleanup.shared.writingOne { try createSymlink(e, name: name, parent: parent, comps: comps, shown: shown) }
        case .hardlink: return try createHardlink(e, name: name, parent: parent, comps: comps, shown: shown)
        case .fifo: try InterruptCleanup.shared.writingOne { try createFIFO(e, name: name, parent: parent, comps: comps, shown: shown) }
        case .charDevice, .blockDevice: return false
        }
        return true
    }

    /// A small file for the writer threads: its content read now, written there.
    private func queueFile(_ e: TarEntry, parts: RestorePath.Parts, hash: Int, expectedSHA256: [UInt8]?, origin: String?,
                           content: FileJob.Content) throws {
        guard let writers else { return }
        func shown() -> String { NameEscape.escape(e.path) }
        // One array shared by the files of a directory (the splitter's), compared by identity
        // in the batches.
        let parent = parts.parent
        let nameStart = parts.nameStart
        // The first file queued below directories noted just before it (an archive lists a
        // directory, then what it holds): nobody made them yet, so the writer makes each
        // before opening it, from the first of them on (a failing open before each new chain's
        // first mkdir, 837 per 20,000 Plex-like files, otherwise). A wrong guess costs a
        // failing mkdir instead.
        var parentMissingFrom = Int.max
        if let d = firstNotedDirectory {
            let end = parts.parentEnd
            if parts.nameStart > 0, d.count <= end, Self.isPrefix(d, of: e.path, length: d.count),
               d.count == end || e.path[d.count] == UInt8(ascii: "/") {
                parentMissingFrom = d.reduce(0) { $0 + ($1 == UInt8(ascii: "/") ? 1 : 0) }   // its component index
            }
            firstNotedDirectory = nil
        }
        // The content goes straight into the batch's buffer (read now, written there).
        try writers.submit(parentComps: parent, fill: { data in
            let start = data.count
            try content { off, bytes in
                guard off == UInt64(data.count - start) else { throw RestoreError.source(ArchiveError(.malformed, entry: shown(), "content out of order"), possiblyWrong: [], more: 0) }
                data.append(contentsOf: bytes)
            }
            guard UInt64(data.count - start) == e.size else { throw RestoreError.source(ArchiveError(.truncated, entry: shown(), "content ends early"), possiblyWrong: [], more: 0) }
        }, make: { range in
            FileJob(entry: e, nameStart: nameStart, parent: nil, parentComps: parent, parentMissingFrom: parentMissingFrom,
                    expected: expectedSHA256, origin: origin, pathHash: hash, content: range)
        })
        inflightPaths.add(hash)
        counts.bytes += e.size
    }

    private func createFile(_ e: TarEntry, name: [UInt8], parent: DirHandle, comps: [[UInt8]], expectedSHA256: [UInt8]?,
                            origin: String?, content: FileJob.Content?) throws {
        lazy var shown = NameEscape.escape(e.path)
        let job = FileJob(entry: e, nameStart: e.path.count - name.count, parent: parent, expected: expectedSHA256, origin: origin)
        // The small files queued before are written meanwhile; unless this one may not fit
        // the space left: then they go first, so a full filesystem fails this file, not them.
        if e.size >= space.freeNow() { try barrier() } else { try writers?.flush() }
        try job.writeStreaming(content, context: context, removeExisting: { try self.removeExisting(parent.fd, name, comps: comps, shown: shown) })
        counts.bytes += e.size
        finished(e)
    }

    private func createDirectory(_ e: TarEntry, name: [UInt8], parent: DirHandle, comps: [[UInt8]], shown: String) throws {
        let mode = MetadataApplier.creationMode(directory: e.mode)
        var created = true
        if Sys.withCName(name, { mkdirat(parent.fd, $0, mode_t(mode)) }) != 0 {
            guard errno == EEXIST else { throw RestoreError.io(SysError(call: "mkdir", path: shown, errno: errno)) }
            created = false
            if !((try? Sys.fstatat(parent.fd, name))??.isDirectory ?? false) {
                try removeExisting(parent.fd, name, comps: comps, shown: shown)
                guard Sys.withCName(name, { mkdirat(parent.fd, $0, mode_t(mode)) }) == 0 else {
                    throw RestoreError.io(SysError(call: "mkdir", path: shown, errno: errno))
                }
                created = true
            }
        }
        dirMeta[PathKey(e.path)] = (Self.kept(e), created ? mode : nil)
        if writers != nil { noteOpen(e) }
        counts.directories += 1
    }

    private func createSymlink(_ e: TarEntry, name: [UInt8], parent: DirHandle, comps: [[UInt8]], shown: String) throws {
        if e.linkTarget.first == UInt8(ascii: "/") || RestorePath.escapes(link: e.linkTarget, depth: comps.count - 1) {
            warn("\(shown): symlink to '\(NameEscape.escape(e.linkTarget))' points outside the restored tree; restored as is (never followed)")
        }
        try removeExisting(parent.fd, name, comps: comps, shown: shown)
        let rc = Sys.withCName(e.linkTarget) { t in Sys.withCName(name) { symlinkat(t, parent.fd, $0) } }
        guard rc == 0 else { throw RestoreError.io(SysError(call: "symlink", path: shown, errno: errno)) }
        try metadata.apply(e, to: .symlink(dirfd: parent.fd, name: name), createdMode: nil, shown: shown)
        counts.symlinks += 1
    }

    private func createHardlink(_ e: TarEntry, name: [UInt8], parent: DirHandle, comps: [[UInt8]], shown: String) throws -> Bool {
        let (tcomps, tstripped) = try RestorePath.components(e.linkTarget, rule: .hardlinkEscape)
        if tstripped { warnAbsolute() }
        let targetShown = NameEscape.escape(e.linkTarget)
        guard !tcomps.isEmpty else { throw RestoreError.refused(.hardlinkEscape, entry: shown, detail: "hardlink to the target directory itself") }
        if tcomps == comps {
            if (try? Sys.fstatat(parent.fd, name))??.isRegular ?? false {
                counts.hardlinks += 1
                return true
            }
            warn("\(shown): hardlink to itself with no file restored before it; nothing to restore")
            return false
        }
        try barrier()
        let srcParent = try openDirectoryChain(Array(tcomps.dropLast()), shown: shown)
        let st = try srcParent.flatMap { p throws(SysError) in try Sys.fstatat(p.fd, tcomps.last!) }
        guard let st, let srcParent else {
            if deferMissingLinkTargets {
                pendingLinks.append((e.path, RestorePath.join(tcomps), e))
                return true
            }
            throw RestoreError.missingLinkTarget(entry: shown, target: targetShown, hint: "was not restored before the link")
        }
        if st.isDirectory { throw RestoreError.refused(.hardlinkToDirectory, entry: shown, detail: "hardlink to directory '\(targetShown)'") }
        try removeExisting(parent.fd, name, comps: comps, shown: shown)
        let rc = Sys.withCName(tcomps.last!) { s in Sys.withCName(name) { linkat(srcParent.fd, s, parent.fd, $0, 0) } }
        guard rc == 0 else { throw RestoreError.io(SysError(call: "link to '\(targetShown)'", path: shown, errno: errno)) }
        counts.hardlinks += 1
        return true
    }

    private func createFIFO(_ e: TarEntry, name: [UInt8], parent: DirHandle, comps: [[UInt8]], shown: String) throws {
        try removeExisting(parent.fd, name, comps: comps, shown: shown)
        guard Sys.withCName(name, { mknodat(parent.fd, $0, S_IFIFO | 0o600, 0) }) == 0 else {
            throw RestoreError.io(SysError(call: "mknod (FIFO)", path: shown, errno: errno))
        }
        // Metadata through an O_PATH|O_NOFOLLOW descriptor: if the name was swapped for a
        // symlink in between, the descriptor is the symlink and the type check refuses it.
        let fd = try Sys.openat(parent.fd, name, Sys.O_PATH | O_NOFOLLOW | O_CLOEXEC, shown: shown)
        defer { Sys.close(fd) }
        guard (try? Sys.fstat(fd))?.type == UInt32(S_IFIFO) else {
            throw RestoreError.refused(.swapped, entry: shown, detail: "the entry was replaced by something else while it was restored")
        }
        try metadata.apply(e, to: .path(fd), createdMode: nil, shown: shown)
        counts.fifos += 1
    }

    /// Applies the metadata of the archive's own "." entry to the target directory.
    func applyTopDirectory(_ e: TarEntry) throws {
        try metadata.apply(e, to: .fd(root.fd), createdMode: nil, shown: NameEscape.escape(Array(target.utf8)))
    }

    /// Waits for the writers, applies directory metadata (deepest first).
    ///
    /// One depth at a time, deepest first, each on the writer threads: a directory's metadata
    /// touches no other directory, and a level starts only when the deeper one is done (a
    /// parent's mode may take away the search permission its children need).
    func finish() throws {
        try barrier()
        // Path order ("/" as the smallest byte; names hold no NUL, so "/" becomes 0) within a
        // level keeps the directories of one parent together for the descriptor cache.
        var keyed = dirMeta.values.map { (key: $0.entry.path.map { $0 == 0x2f ? 0 : $0 }, meta: $0) }
        dirMeta = [:]
        keyed.sort { a, b in
            let c = a.key.withUnsafeBufferPointer { x in b.key.withUnsafeBufferPointer { y in memcmp(x.baseAddress!, y.baseAddress!, min(x.count, y.count)) } }
            return c != 0 ? c < 0 : a.key.count < b.key.count
        }
        var levels: [Int: [(entry: TarEntry, createdMode: UInt32?)]] = [:]
        for k in keyed { levels[k.key.reduce(0) { $0 + ($1 == 0 ? 1 : 0) }, default: []].append(k.meta) }
        keyed = []
        let walker = DirectoryWalker(root: root, metadata: metadata)
        for depth in levels.keys.sorted(by: >) {
            let dirs = levels.removeValue(forKey: depth)!
            let per = 128
            let chunks = (dirs.count + per - 1) / per
            let work: @Sendable (Int) throws -> Void = { c in
                var stack: [(name: [UInt8], dir: DirHandle)] = []
                for i in c * per ..< min(dirs.count, (c + 1) * per) {
                    try walker.applyDirectoryMetadata(dirs[i].entry, createdMode: dirs[i].createdMode, stack: &stack)
                }
            }
            if let writers, chunks > 1 { try writers.forEach(0 ..< chunks, work) } else { for c in 0 ..< chunks { try work(c) } }
        }
        writers?.close()
        writers = nil
    }

    /// A directory entry as kept until the end (its metadata is applied last): without the
    /// owner names, which a restore does not use (ownership is numeric), so a tree of many
    /// directories holds two allocations less per directory.
    private static func kept(_ e: TarEntry) -> TarEntry {
        var k = e
        k.uname = nil
        k.gname = nil
        return k
    }

    // MARK: writers

    private func finished(_ e: TarEntry) {
        counts.files += 1
        onFile?(e)
    }

    /// Hands finished jobs at the front of the queue back (in order); throws the first error.
    private func reap(wait: Bool) throws {
        guard let writers else { return }
        try writers.reap(wait: wait) { job, failure in
            inflightPaths.remove(job.pathHash)
            if let failure { throw failure }
            finished(job.entry)
        }
        // Directories whose files are all written get their metadata now, on the writer
        // threads, instead of all at the end (at a million files: ~80,000 directories, ~2 s
        // of a restore's end with nothing else left to overlap).
        // Handed over 64 at a time (one hand-over per directory cost a lock and a wake-up each).
        while closingHead < closing.count, writers.reapedJobs >= closing[closingHead].queued {
            readyDirs += closing[closingHead].dirs.filter { closedDirs[PathKey($0.entry.path)] != nil }
            closing[closingHead].dirs = []
            closingHead += 1
            if closingHead >= 64 && closingHead * 2 >= closing.count { closing.removeFirst(closingHead); closingHead = 0 }
        }
        if readyDirs.count >= 64 || (wait && !readyDirs.isEmpty) {
            let dirs = readyDirs
            readyDirs = []
            try writers.submitDirectories(dirs)
        }
    }

    // MARK: early directory metadata

    /// Notes a directory the entries are now in (applied early once they leave it). Only
    /// directories whose metadata cannot stop this restore from writing into them again
    /// (CAP_DAC_OVERRIDE, or the restoring user stays the owner with rwx: an archive may come
    /// back to a directory later) and that carry no extended attributes (a default ACL
    /// would be inherited by entries made in it later); the others wait for the end.
    private func noteOpen(_ e: TarEntry) {
        // Listed again after the entries left it once (an appended archive): the metadata it
        // was left with may be on a writer thread already, so this entry's (the last one
        // wins, as with GNU tar) waits for the end pass, after every batch, and the old one
        // may neither be handed over later nor come back through `reopenAncestors`.
        if !closedHashes.isEmpty, closedHashes.contains(Self.pathHash(e.path[...])) {
            closedDirs.removeValue(forKey: PathKey(e.path))
            return
        }
        guard e.xattrs.isEmpty else { return }
        if !bypassesPermissions {
            guard e.mode & 0o700 == 0o700, !metadata.restoreOwnership || e.uid == metadata.euid else { return }
        }
        openDirs.append(e.path)
    }

    /// True when this process may write into any directory whatever its mode and owner
    /// (CAP_DAC_OVERRIDE in its effective set: root, unless the capability was dropped).
    private static func hasDACOverride() -> Bool {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") }),
              let caps = UInt64(line.dropFirst("CapEff:".count).trimmingWhitespace(), radix: 16) else { return false }
        return caps & (1 << 1) != 0   // CAP_DAC_OVERRIDE
    }

    /// The directories the entries left for `path` (those it is not in), deepest first,
    /// queued for their metadata once the files queued so far are written.
    private func leaveDirectories(for path: [UInt8]) {
        guard let writers, let top = openDirs.last, !Self.isSelfOrAncestor(top, of: path) else { return }
        var left: [(entry: TarEntry, createdMode: UInt32?)] = []
        while let top = openDirs.last, !Self.isSelfOrAncestor(top, of: path) {
            openDirs.removeLast()
            let key = PathKey(top)
            if let m = dirMeta.removeValue(forKey: key) {
                closedDirs[key] = m
                closedHashes.insert(Self.pathHash(top[...]))
                left.append(m)
            }
        }
        if !left.isEmpty { closing.append((writers.reapedJobs + writers.pendingJobs, left)) }
    }

    private static func isSelfOrAncestor(_ dir: [UInt8], of path: [UInt8]) -> Bool {
        isPrefix(dir, of: path, length: dir.count) && (path.count == dir.count || path[dir.count] == UInt8(ascii: "/"))
    }

    /// An entry inside a directory left before (or making a missing directory there) changes
    /// that directory's mtime: it goes back into `dirMeta`, applied again at the end. Looked at
    /// once per parent: while entries stay in one parent, none of its ancestors is left.
    private func reopenAncestors(of path: [UInt8], parentEnd: Int) {
        if let seen = lastSeenParent, Self.isPrefix(seen, of: path, length: parentEnd) { return }
        lastSeenParent = Array(path[..<parentEnd])
        guard !closedHashes.isEmpty, parentEnd > 0 else { return }
        var i = 1
        while i <= parentEnd {
            if i == parentEnd || path[i] == UInt8(ascii: "/"), closedHashes.contains(Self.pathHash(path[..<i])) {
                let key = PathKey(Array(path[..<i]))
                // A newer entry of that directory (listed again) is already in `dirMeta`.
                if let m = closedDirs.removeValue(forKey: key), dirMeta[key] == nil { dirMeta[key] = m }
            }
            i += 1
        }
    }

    /// The hash a path (or a parent's prefix of it) is kept under in `inflightPaths` and
    /// `closedHashes`: 8 bytes a step, each folded through a 128-bit multiply by a secret
    /// (per-process random, odd) multiplier, as wyhash does. Two paths of one hash only make an
    /// entry wait for the writers (or look `closedDirs` up by its exact path), so it needs to be
    /// fast, not cryptographic (the standard library's SipHash over every file's whole path
    /// and over its parents' prefixes was ~1.6% of a restore's user samples, on the thread
    /// that reads the archive); but it stays seeded: a crafted archive must not be able to
    /// force collisions (c701a50's multiply/xorshift had seed-independent ones: a flipped top
    /// bit propagated the same way whatever the seed).
    static func pathHash(_ p: ArraySlice<UInt8>) -> Int {
        @inline(__always) func fold(_ a: UInt64, _ k: UInt64) -> UInt64 {
            let r = a.multipliedFullWidth(by: k)
            return r.high ^ r.low
        }
        return p.withUnsafeBytes { b in
            let n = b.count
            let (s0, s1, s2) = pathHashSecrets
            var h = s0 ^ UInt64(truncatingIfNeeded: n)
            var i = 0
            while i + 8 <= n {
                h = fold(h ^ b.loadUnaligned(fromByteOffset: i, as: UInt64.self), s1)
                i += 8
            }
            if i < n {
                var w: UInt64 = 0
                while i < n { w = w << 8 | UInt64(b[i]); i += 1 }
                h = fold(h ^ w, s1)
            }
            return Int(truncatingIfNeeded: fold(h, s2))
        }
    }

    private static let pathHashSecrets = (UInt64.random(in: .min ... .max), UInt64.random(in: .min ... .max) | 1,
                                          UInt64.random(in: .min ... .max) | 1)

    /// Every file queued is written, and every directory left was given its metadata (the
    /// second round waits for the directories the first one handed over).
    private func barrier() throws {
        try reap(wait: true)
        try reap(wait: true)
    }

    /// After a failure elsewhere (damage found by the reader): lets the files already queued
    /// finish, so `onFile` has seen everything that was written. Their own errors are left
    /// to the failure being reported.
    func settle() { try? barrier() }

    /// True if the path, or one of its parents, is a file still being written. The parents
    /// are looked up once per directory: while entries stay in one parent, the files queued
    /// meanwhile are all inside it, so none of them can be one of its parents.
    /// `hash` is `pathHash(path)`, `parentEnd` where its parent ends (`RestorePath.parentEnd`).
    private func collides(_ path: [UInt8], parentEnd: Int, hash: Int) -> Bool {
        if inflightPaths.isEmpty { return false }
        if !Self.isPrefix(clearParent, of: path, length: parentEnd) {
            var i = 0
            while i < parentEnd {
                if path[i] == UInt8(ascii: "/"), inflightPaths.contains(Self.pathHash(path[..<i])) { return true }
                i += 1
            }
            if parentEnd > 0, inflightPaths.contains(Self.pathHash(path[..<parentEnd])) { return true }
            clearParent = Array(path[..<parentEnd])
        }
        return inflightPaths.contains(hash)
    }

    // MARK: helpers

    /// True when `prefix` is exactly the first `length` bytes of `path` (memcmp: the generic
    /// `elementsEqual` compared byte by byte through iterators, once per file).
    private static func isPrefix(_ prefix: [UInt8]?, of path: [UInt8], length: Int) -> Bool {
        guard let prefix, prefix.count == length, length <= path.count else { return false }
        return prefix.withUnsafeBytes { a in path.withUnsafeBytes { b in length == 0 || memcmp(a.baseAddress!, b.baseAddress!, length) == 0 } }
    }

    func warn(_ s: String) { warnings.append(s) }

    private func warnAbsolute() {
        if absoluteWarned { return }
        absoluteWarned = true
        warn("removing leading '/' from member names (absolute names are restored inside the target)")
    }

    /// Removes what is at `name` (file, symlink, FIFO, empty directory). A symlink is removed
    /// itself, never followed.
    private func removeExisting(_ parent: Int32, _ name: [UInt8], comps: [[UInt8]], shown: String) throws {
        try barrier()
        guard let st = try Sys.fstatat(parent, name, shown: shown) else { return }
        if st.isDirectory {
            if dirStack.count >= comps.count && Array(dirStack.prefix(comps.count).map(\.name)) == comps {
                dirStack.removeLast(dirStack.count - comps.count + 1)
            }
            writers?.forgetDirectories()   // their walk caches may hold it (no job runs: barrier above)
            guard Sys.withCName(name, { unlinkat(parent, $0, AT_REMOVEDIR) }) == 0 else {
                throw RestoreError.io(SysError(call: "replace directory", path: shown, errno: errno, hint: "a non-directory replaces it only when it is empty"))
            }
            dirMeta[PathKey(RestorePath.join(comps))] = nil
            return
        }
        guard Sys.withCName(name, { unlinkat(parent, $0, 0) }) == 0 else { throw RestoreError.io(SysError(call: "remove existing", path: shown, errno: errno)) }
    }

    /// Opens (creating missing directories) the directory `comps` below the target, reusing
    /// the descriptors of the previous walk. Never follows a symlink.
    private func openParentHandle(_ comps: [[UInt8]], shown: @autoclosure () -> String) throws -> DirHandle {
        try DirectoryWalker.openParent(comps, root: root, stack: &dirStack, shown: shown())
    }

    /// Opens an existing directory chain (nil when a component is missing).
    private func openDirectoryChain(_ comps: [[UInt8]], shown: String) throws -> DirHandle? {
        var cur = root
        for (i, c) in comps.enumerated() {
            guard try Sys.fstatat(cur.fd, c, shown: shown) != nil else { return nil }
            cur = DirHandle(try DirectoryWalker.openChild(cur.fd, c, path: RestorePath.join(Array(comps[...i])), shown: shown, create: false))
        }
        return cur
    }
}

/// Walks below the target for any thread: parents opened component by component (missing
/// ones made), never following a symlink; and the directories' final metadata.
struct DirectoryWalker: Sendable {
    let root: DirHandle
    let metadata: MetadataApplier

    /// Owner, mode, xattrs and mtime of one directory (made now when nothing was put in it),
    /// through `stack` (a descriptor cache of the caller's thread).
    func applyDirectoryMetadata(_ e: TarEntry, createdMode: UInt32?, stack: inout [(name: [UInt8], dir: DirHandle)]) throws {
        lazy var shown = NameEscape.escape(e.path)
        // The directory itself is walked into the stack: deepest first, its parent comes
        // next and is then opened already (one open per directory, not one for the
        // directory and one more for each parent the stack had to drop for it).
        let dir = try Self.openDirectory(e.path, root: root, stack: &stack, shown: shown)
        try metadata.apply(e, to: .fd(dir.fd), createdMode: createdMode, shown: shown)
    }

    /// `openParent` of the components of `path` (a directory's path, normal form), compared
    /// with `stack` in place: arrays are made only for the components opened now (splitting
    /// each directory's path into arrays first cost ~3,500 instructions per directory on the
    /// writer threads, most of them for components the stack already had).
    static func openDirectory(_ path: [UInt8], root: DirHandle, stack: inout [(name: [UInt8], dir: DirHandle)],
                              shown: @autoclosure () -> String) throws -> DirHandle {
        try path.withUnsafeBufferPointer { p throws -> DirHandle in
            let n = p.count
            guard let base = p.baseAddress, n > 0 else { stack.removeAll(); return root }
            func end(from i: Int) -> Int {
                memchr(base + i, Int32(UInt8(ascii: "/")), n - i).map { base.distance(to: $0.assumingMemoryBound(to: UInt8.self)) } ?? n
            }
            // The components the stack holds already (empty components skipped, as `split` does).
            var i = 0, k = 0
            while i < n && k < stack.count {
                let e = end(from: i)
                if e == i { i += 1; continue }
                let same = stack[k].name.count == e - i && stack[k].name.withUnsafeBytes { memcmp($0.baseAddress!, base + i, e - i) == 0 }
                if !same { break }
                k += 1
                i = e + 1
            }
            if k < stack.count { stack.removeLast(stack.count - k) }
            var cur = stack.last?.dir ?? root
            var made = false
            while i < n {
                let e = end(from: i)
                if e == i { i += 1; continue }
                let name = Array(p[i ..< e])
                let fd = try openChild(cur.fd, name, path: RestorePath.join(RestorePath.split(Array(p[..<e]))), shown: shown(), create: true,
                                       likelyMissing: made, made: &made)
                cur = DirHandle(fd)
                stack.append((name, cur))
                i = e + 1
            }
            return cur
        }
    }

    /// Opens (creating missing directories) `comps` below `root`, reusing `stack`.
    /// `missingFrom`: the components from this index on are likely missing (made before opened).
    static func openParent(_ comps: [[UInt8]], root: DirHandle, stack: inout [(name: [UInt8], dir: DirHandle)],
                           shown: @autoclosure () -> String, missingFrom: Int = .max) throws -> DirHandle {
        var k = 0
        while k < stack.count && k < comps.count && stack[k].name == comps[k] { k += 1 }
        if k < stack.count { stack.removeLast(stack.count - k) }
        var cur = stack.last?.dir ?? root
        // Below a directory this walk made, the next component is made before it is opened
        // (it is missing, unless another thread made it meanwhile: then the open follows the
        // `EEXIST` as before): no failing open before each mkdir of a new chain.
        var made = false
        for i in k..<comps.count {
            let fd = try openChild(cur.fd, comps[i], path: RestorePath.join(Array(comps[...i])), shown: shown(), create: true,
                                   likelyMissing: made || i >= missingFrom, made: &made)
            cur = DirHandle(fd)
            stack.append((comps[i], cur))
        }
        return cur
    }

    /// Opens the directory `name` in `dir` (made with mode 0755 when missing and `create`).
    /// `path` and `shown` are for messages only (evaluated on failure).
    /// `likelyMissing` (with `create`): mkdir first, then open (what exists at the name, made
    /// by another thread or not a directory, is then opened or refused exactly as when the open
    /// comes first). `made` is set when this call made the directory.
    static func openChild(_ dir: Int32, _ name: [UInt8], path: @autoclosure () -> [UInt8], shown: @autoclosure () -> String,
                          create: Bool, likelyMissing: Bool = false) throws -> Int32 {
        var made = false
        return try openChild(dir, name, path: path(), shown: shown(), create: create, likelyMissing: likelyMissing, made: &made)
    }

    static func openChild(_ dir: Int32, _ name: [UInt8], path: @autoclosure () -> [UInt8], shown: @autoclosure () -> String,
                          create: Bool, likelyMissing: Bool, made: inout Bool) throws -> Int32 {
        let flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
        // Open first, unless the name is likely missing (then the first open would only fail);
        // a missing name is made and opened, whatever another thread made there meanwhile.
        var fd: Int32 = likelyMissing && create ? -1 : Sys.retry { Sys.withCName(name) { openat(dir, $0, flags) } }
        if create && (likelyMissing || (fd < 0 && errno == ENOENT)) {
            if Sys.withCName(name, { mkdirat(dir, $0, 0o755) }) == 0 {
                made = true
            } else if errno != EEXIST {
                throw RestoreError.io(SysError(call: "mkdir", name: path(), errno: errno, hint: "making a parent of '\(shown())'"))
            }
            fd = Sys.retry { Sys.withCName(name) { openat(dir, $0, flags) } }
        }
        if fd < 0 {
            let err = errno
            let path = path(), shown = shown()
            if let st = try? Sys.fstatat(dir, name) {
                if st.isSymlink {
                    throw RestoreError.refused(.symlinkInPath, entry: shown, detail: "'\(NameEscape.escape(path))' is a symlink; restores never write through symlinks")
                }
                if !st.isDirectory {
                    throw RestoreError.refused(.notADirectory, entry: shown, detail: "'\(NameEscape.escape(path))' is not a directory")
                }
            }
            throw RestoreError.io(SysError(call: "open directory", name: path, errno: err, hint: "on the way to '\(shown)'"))
        }
        return fd
    }
}

/// How many queued files there are of each path hash (`TreeWriter.inflightPaths`): open
/// addressing with linear probing, and deletion by shifting the following run back (no
/// tombstones). The keys are `TreeWriter.pathHash` values, already mixed by secret
/// per-process multipliers, so their low bits index the table as they are (a `[Int: Int]`
/// hashed each key again with SipHash: 3 lookups per file, ~1.5% of a restore's user samples,
/// on the thread that reads the archive). Grows at half full; never shrinks (at most a few
/// thousand files are queued at once).
struct HashCounts {
    private var slots: [(key: Int, count: Int)]
    private var mask: Int
    /// Keys present.
    private(set) var count = 0

    init(capacity: Int = 1024) {
        var n = 16
        while n < capacity { n <<= 1 }
        slots = Array(repeating: (0, 0), count: n)
        mask = n - 1
    }

    var isEmpty: Bool { count == 0 }

    func contains(_ key: Int) -> Bool {
        slots.withUnsafeBufferPointer { s in
            var i = key & mask
            while s[i].count != 0 {
                if s[i].key == key { return true }
                i = (i + 1) & mask
            }
            return false
        }
    }

    /// Counts `key` once more.
    mutating func add(_ key: Int) {
        if (count + 1) * 2 > slots.count { grow() }
        let m = mask
        let added = slots.withUnsafeMutableBufferPointer { s in
            var i = key & m
            while s[i].count != 0 {
                if s[i].key == key { s[i].count += 1; return false }
                i = (i + 1) & m
            }
            s[i] = (key, 1)
            return true
        }
        if added { count += 1 }
    }

    /// Counts `key` once less (it goes when its count reaches 0); a key not present is ignored.
    mutating func remove(_ key: Int) {
        let m = mask
        let removed = slots.withUnsafeMutableBufferPointer { s in
            var i = key & m
            while true {
                if s[i].count == 0 { return false }
                if s[i].key == key { break }
                i = (i + 1) & m
            }
            if s[i].count > 1 { s[i].count -= 1; return false }
            // Empty slot i, then move back every later entry of the run that may not stay
            // where it is (its home lies cyclically in (i, j]: it would no longer be found).
            var j = i
            while true {
                j = (j + 1) & m
                if s[j].count == 0 { break }
                let home = s[j].key & m
                let stays = i <= j ? (i < home && home <= j) : (i < home || home <= j)
                if !stays { s[i] = s[j]; i = j }
            }
            s[i] = (0, 0)
            return true
        }
        if removed { count -= 1 }
    }

    private mutating func grow() {
        let old = slots
        slots = Array(repeating: (0, 0), count: old.count * 2)
        mask = slots.count - 1
        count = 0
        for e in old where e.count != 0 {
            var i = e.key & mask
            while slots[i].count != 0 { i = (i + 1) & mask }
            slots[i] = e
            count += 1
        }
    }
}

/// A path as a dictionary key, hashed through `TreeWriter.pathHash` (`[UInt8]`'s own hashing
/// goes byte by byte, which showed at the top of a restore's profile).
struct PathKey: Hashable {
    let bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    /// The tree writer's seeded path hash, then the standard library's over that one word
    /// (SipHash over every byte of a ~80-byte path cost ~300 instructions more, ~5 times per
    /// directory on the thread that reads the archive).
    func hash(into h: inout Hasher) { h.combine(TreeWriter.pathHash(bytes[...])) }
    static func == (a: PathKey, b: PathKey) -> Bool { a.bytes == b.bytes }
}

/// Thread counts of the restore, in one place.
package enum RestoreThreads {
    /// Writers of small files. Their work (create, write, chown, chmod, utimens) sleeps in the
    /// filesystem's journal and on a VM disk, so more threads than cores pay off.
    /// `HS_RESTORE_WRITERS` overrides it (1: no writer threads; for measurements).
    package static var fileWriters: Int {
        if let v = Sys.environment("HS_RESTORE_WRITERS"), let n = Int(v), n >= 1 { return min(n, 64) }
        return 4
    }
}
