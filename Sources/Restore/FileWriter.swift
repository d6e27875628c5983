import Archive
import Glibc
import Support
import Synchronization

/// A directory descriptor shared between the tree writer's walk cache and the file writers;
/// closed when the last user lets go.
final class DirHandle: Sendable {
    let fd: Int32
    private let owned: Bool
    init(_ fd: Int32, owned: Bool = true) { self.fd = fd; self.owned = owned }
    deinit { if owned { Sys.close(fd) } }
}

/// The `too-large` rule, counted while writing: an apparent size is bounded only by the
/// target filesystem's largest file (the kernel says EFBIG); only the bytes actually written
/// (not holes) take free space, so a file fails only when its data does not fit (the kernel
/// says ENOSPC or EDQUOT, which writers in parallel see in the order they write); and the
/// zeros of dense content turned into holes are bounded (twice the filesystem's size), so an
/// archive of zeros (a "zero bomb") cannot make the restore inflate for hours. Sparse members'
/// holes are never inflated and do not count.
final class SpaceBudget: Sendable {
    private let zeros: Atomic<Int64>
    /// Bytes free at the start, and the filesystem's size, for messages.
    let freeAtStart: UInt64
    let filesystemSize: UInt64

    /// - Parameter dirfd: the target directory (kept open by the caller while this lives).
    init(dirfd: Int32, asRoot: Bool) {
        self.dirfd = dirfd
        self.asRoot = asRoot
        var vfs = statvfs()
        if fstatvfs(dirfd, &vfs) == 0 {
            let unit = UInt64(vfs.f_frsize)
            freeAtStart = UInt64(asRoot ? vfs.f_bfree : vfs.f_bavail) * unit
            filesystemSize = UInt64(vfs.f_blocks) * unit
        } else {
            freeAtStart = UInt64(Int64.max); filesystemSize = UInt64(Int64.max) / 2
        }
        zeros = Atomic(Int64(clamping: filesystemSize) &* 2)
    }

    private let dirfd: Int32
    private let asRoot: Bool

    /// Bytes free on the target filesystem now.
    func freeNow() -> UInt64 {
        var vfs = statvfs()
        guard fstatvfs(dirfd, &vfs) == 0 else { return .max }
        return UInt64(asRoot ? vfs.f_bfree : vfs.f_bavail) * UInt64(vfs.f_frsize)
    }

    /// Takes `n` bytes of zeros made into holes; false past the bound.
    func spendZeros(_ n: Int) -> Bool { zeros.subtract(Int64(n), ordering: .relaxed).newValue >= 0 }
}

/// What every file write shares (immutable).
struct FileWriteContext: Sendable {
    /// The target as given, for messages.
    let target: String
    let metadata: MetadataApplier
    let space: SpaceBudget
}

/// One regular file to restore (`O_CREAT|O_EXCL|O_NOFOLLOW`) in a directory opened by the
/// tree writer, or by the writer thread itself (walking from the target, making missing
/// directories on the way, never following a symlink): filled (zero runs and sparse holes left as holes), given its
/// metadata through the descriptor (`MetadataApplier`). Streamed content is written under a
/// temporary name renamed when complete; content already in memory under the final name. On
/// any failure the file is removed.
///
/// One object per file, immutable, with no lock: handing it to a writer thread and back
/// retains it once (as a value, each copy retained its ~10 references, ~30% of the writer
/// threads' own CPU in a restore of small files). Small files travel in a `FileBatch` whose one
/// buffer holds their contents.
final class FileJob: Sendable {
    let entry: TarEntry
    /// Where its name starts in `entry.path` (the name is never copied out of the path: one
    /// allocation and one free less per file).
    let nameStart: Int
    /// The parent, opened by the tree writer; nil: the writer thread opens `parentComps`.
    let openedParent: DirHandle?
    let parentComps: [[UInt8]]
    /// The components of `parentComps` from this index on were likely not made yet (the writer
    /// makes each, then opens it); `Int.max`: none.
    let parentMissingFrom: Int
    let expected: [UInt8]?
    /// Where the content comes from, for messages (e.g. the archive of a backup).
    let origin: String?
    /// The hash of its path the tree writer keeps it under while it is queued.
    let pathHash: Int
    /// Where its content lies in its batch's buffer (pool jobs).
    let content: Range<Int>

    init(entry: TarEntry, nameStart: Int, parent: DirHandle?, parentComps: [[UInt8]] = [], parentMissingFrom: Int = .max,
         expected: [UInt8]?, origin: String?, pathHash: Int = 0, content: Range<Int> = 0 ..< 0) {
        self.entry = entry; self.nameStart = nameStart; self.openedParent = parent; self.parentComps = parentComps; self.pathHash = pathHash
        self.parentMissingFrom = parentMissingFrom
        self.expected = expected; self.origin = origin; self.content = content
    }

    typealias Content = (_ body: (UInt64, UnsafeRawBufferPointer) throws -> Void) throws -> Void

    /// Temporary names are unique within the process (and the pid makes them unique on the host).
    private static let temps = Atomic<Int>(0)
    private static func tempName() -> ArraySlice<UInt8> {
        Array(".hs-restore.\(getpid()).\(temps.add(1, ordering: .relaxed).newValue).part".utf8)[...]
    }

    /// Writes `bytes`, its content held in memory (writer threads; `stack` is the thread's
    /// descriptor cache, `last` the parent the job before in the batch was written in, by the
    /// address of its `parentComps` array: the files of a directory share one array, so the
    /// walk is skipped for all but the first, with no copy of the array, no compare and no
    /// retain of it; the batch keeps every job's array alive while it runs, so an address is
    /// never reused within it).
    func writeBuffered(_ bytes: UnsafeRawBufferPointer, root: DirHandle, stack: inout [(name: [UInt8], dir: DirHandle)],
                       last: inout (comps: UnsafeRawPointer?, dir: DirHandle?), context: FileWriteContext) throws {
        let parent: DirHandle
        if let p = openedParent {
            parent = p
        } else {
            let key = parentComps.withUnsafeBufferPointer { UnsafeRawPointer($0.baseAddress) }
            if let d = last.dir, last.comps == key {
                parent = d   // what `openParent` gives again: the stack is as the last call left it
            } else {
                parent = try DirectoryWalker.openParent(parentComps, root: root, stack: &stack, shown: NameEscape.escape(entry.path),
                                                        missingFrom: parentMissingFrom)
                last = (key, parent)
            }
        }
        try write({ body in try body(0, bytes) }, parent: parent, buffered: true, context: context, removeExisting: {})
    }

    /// Writes the content `content` produces (the tree writer's thread); throws on failure.
    func writeStreaming(_ content: Content?, context: FileWriteContext, removeExisting: () throws -> Void) throws {
        try write(content ?? { _ in }, parent: openedParent!, buffered: false, context: context, removeExisting: removeExisting)
    }

    private func write(_ content: Content, parent: DirHandle, buffered direct: Bool, context: FileWriteContext,
                       removeExisting: () throws -> Void) throws {
        lazy var shown = NameEscape.escape(entry.path)
        // Content held in memory (pool jobs, fresh target) is written under the final name
        // (one metadata operation less per small file) and removed on failure; streamed
        // content goes to a temporary name renamed when complete.
        var useTemp = !direct
        let name = entry.path[nameStart...]
        var tmp = direct ? name : Self.tempName()
        let createMode = entry.mode & 0o777
        var createErrno: Int32 = 0
        func create() -> Int32 {
            let fd = Sys.retry { Sys.withCName(tmp) { openat(parent.fd, $0, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode_t(createMode)) } }
            if fd < 0 { createErrno = errno }
            return fd
        }
        // A temporary file is registered with `InterruptCleanup` as it is made (hs-restore's
        // signal handler removes what is registered before the process dies of the signal: a
        // migration stopped halfway left `.part` files among appdata), and renamed under its
        // `committing`: a signal waits for a create or rename under way, and after it this
        // thread creates and renames nothing more (`parkAfterSignal`).
        var part: Int? = nil
        func createPart() -> Int32 {
            let (dir, t) = (parent, Array(tmp))
            let what = "'\(context.target)/\(NameEscape.escape(entry.path[..<nameStart] + tmp))'"
            return Self.parkAfterSignal {
                let (fd, token) = try InterruptCleanup.shared.creating(what, remove: { try Self.removePart(t, in: dir) }) { create() }
                part = token
                return fd
            }
        }
        var fd = useTemp ? createPart() : create()
        if fd < 0 && createErrno == EEXIST && direct {
            // The name exists (an archive may hold a path twice): replace it by renaming.
            useTemp = true
            tmp = Self.tempName()
            fd = createPart()
        }
        guard fd >= 0 else {
            if let part { InterruptCleanup.shared.unregister(part) }
            throw RestoreError.io(SysError(call: "create", path: shown, errno: createErrno))
        }
        var renamed = false
        defer {
            Sys.close(fd)
            if !renamed { _ = Sys.withCName(tmp) { unlinkat(parent.fd, $0, 0) } }
            if let part { InterruptCleanup.shared.unregister(part) }
        }
        do {
            try fill(fd, content, buffered: direct, space: context.space)
            try context.metadata.apply(entry, to: .fd(fd), createdMode: createMode, shown: shown)
            if !useTemp { renamed = true; return }
            func renameIntoPlace() -> Int32 {
                Self.parkAfterSignal {
                    try InterruptCleanup.shared.committing {
                        let rc = Sys.retry { Sys.withCName(tmp) { t in Sys.withCName(name) { renameat(parent.fd, t, parent.fd, $0) } } }
                        return rc == 0 ? 0 : errno
                    }
                }
            }
            var failure = renameIntoPlace()
            if failure == EISDIR || failure == ENOTEMPTY || failure == EEXIST {
                try removeExisting()
                failure = renameIntoPlace()
            }
            guard failure == 0 else { throw RestoreError.io(SysError(call: "rename into place", path: shown, errno: failure)) }
            renamed = true
        } catch let e as RestoreError {
            throw Self.notRestored(e, shown)
        }
    }

    /// Runs `body`, an `InterruptCleanup` step that never throws of its own; when a signal came
    /// first (`Stopping`: the handler removes the temporary files, then the process dies of the
    /// signal), the thread waits for that end instead of failing the file with a message.
    private static func parkAfterSignal<T>(_ body: () throws -> T) -> T {
        do { return try body() } catch {
            InterruptCleanup.shared.waitIfStopping()
            fatalError("unexpected \(error)")
        }
    }

    /// Removes a temporary file for hs-restore's signal handler (one its writer removed already
    /// is no error; the handler's message names the file).
    private static func removePart(_ name: [UInt8], in dir: DirHandle) throws {
        if Sys.withCName(name, { unlinkat(dir.fd, $0, 0) }) != 0 && errno != ENOENT {
            throw SysError(call: "unlinkat", path: "", errno: errno)
        }
    }

    /// Writes the content (zero runs of 64 KiB and sparse holes stay holes), checks the
    /// SHA-256 when one is expected, and sets the size.
    private func fill(_ fd: Int32, _ content: Content, buffered: Bool, space: SpaceBudget) throws {
        let size = entry.size, sparse = entry.sparse
        func shown() -> String { NameEscape.escape(entry.path) }
        func tooLarge(_ why: String) -> RestoreError {
            .refused(.tooLarge, entry: shown(), detail: why)
        }
        // A streamed (large or sparse) file gets its size first: a size the filesystem cannot
        // hold fails here (EFBIG), before anything is inflated.
        var sized = false
        if !buffered && size > TreeWriter.parallelMaxFileSize {
            if Sys.retry({ ftruncate(fd, off_t(clamping: size)) }) != 0 {
                throw errno == EFBIG || errno == EINVAL
                    ? tooLarge("its size of \(size) bytes is too large for the target filesystem (larger than its largest file); nothing was written")
                    : RestoreError.io(SysError(call: "set size of", path: shown(), errno: errno))
            }
            sized = true
        }
        // A sparse member's expected hash is the `SparseHash` (its map and data, not its holes).
        var hasher = expected != nil && sparse == nil ? SHA256Hasher() : nil
        var sparseHasher: SparseHash? = nil
        if expected != nil, let map = sparse { sparseHasher = SparseHash(map: map, realSize: size) }
        var end: UInt64 = 0
        var written: UInt64 = 0  // the file's size so far (it was created empty, O_EXCL)
        try content { off, bytes in
            if hasher != nil || sparseHasher != nil {
                guard hasher != nil ? off == end : off >= end else {
                    throw RestoreError.source(ArchiveError(.malformed, entry: shown(), "content out of order"), possiblyWrong: [], more: 0)
                }
                if hasher != nil { hasher!.update(bytes) } else { sparseHasher!.update(bytes) }
            }
            var p = 0
            while p < bytes.count {
                let len = min(64 * 1024, bytes.count - p)
                let piece = UnsafeRawBufferPointer(rebasing: bytes[p..<(p + len)])
                if len == 64 * 1024 && Self.isZero(piece) {
                    guard space.spendZeros(len) else {
                        throw RestoreError.refused(.zeroBomb, entry: shown(), detail: "the archive inflates to more zeros than twice the target filesystem's size (\(space.filesystemSize) bytes); nothing more is inflated")
                    }
                } else {
                    try Self.pwriteAll(fd, piece, at: off + UInt64(p), shown: shown(), space: space)
                    written = max(written, off + UInt64(p + len))
                }
                p += len
            }
            end = off + UInt64(bytes.count)
        }
        if let expected, hasher != nil || sparseHasher != nil {
            let got = hasher != nil ? hasher.take()!.finalize() : sparseHasher.take()!.finalize()
            // A sparse member's content ends where its map's last region ends.
            let dataEnd = sparse.map { $0.last.map { $0.offset + $0.length } ?? 0 } ?? size
            guard end == dataEnd, got == expected else { throw RestoreError.contentMismatch(entry: shown(), origin: origin) }
        }
        // Only when a hole ends the file (the truncate costs a journal update per file).
        if written != size && !sized {
            guard Sys.retry({ ftruncate(fd, off_t(clamping: size)) }) == 0 else {
                throw errno == EFBIG
                    ? tooLarge("its size of \(size) bytes is too large for the target filesystem (larger than its largest file)")
                    : RestoreError.io(SysError(call: "set size of", path: shown(), errno: errno))
            }
        }
    }

    /// Adds "it was not restored" to a failure of this file.
    private static func notRestored(_ e: RestoreError, _ shown: String) -> RestoreError {
        switch e {
        case .io(var s):
            s.hint = (s.hint.map { $0 + "; " } ?? "") + "'\(shown)' was not restored (its partial copy was removed)"
            return .io(s)
        case .refused(let rule, let entry, let detail) where rule == .tooLarge || rule == .zeroBomb:
            return .refused(rule, entry: entry, detail: detail + "; '\(shown)' was not restored (its partial copy was removed)")
        default:
            return e
        }
    }

    static func isZero(_ b: UnsafeRawBufferPointer) -> Bool {
        let words = b.bindMemory(to: UInt64.self)
        for w in words where w != 0 { return false }
        return true
    }

    private static func pwriteAll(_ fd: Int32, _ b: UnsafeRawBufferPointer, at: UInt64, shown: @autoclosure () -> String, space: SpaceBudget) throws {
        do { try Sys.writeAll(fd, b, at: at, shown: shown()) } catch {
            if error.errno == EFBIG {
                throw RestoreError.refused(.tooLarge, entry: shown(), detail: "data at offset \(at) is too large for the target filesystem (beyond its largest file)")
            }
            if error.errno == ENOSPC || error.errno == EDQUOT {
                throw RestoreError.refused(.tooLarge, entry: shown(), detail: "its data does not fit the free space of the target filesystem (\(space.freeAtStart) bytes were free when the restore started; \(error.reason))")
            }
            throw RestoreError.io(SysError(call: "write", path: shown(), errno: error.errno))
        }
    }
}

/// Writer threads for small files (a `WorkPool`), with a bound on the content bytes waiting
/// in memory. Jobs go to the threads in batches (one hand-over, one wake-up and one lock per
/// batch, not per file: per-file hand-overs cost a restore of a million small files ~6 s of
/// futex calls). A batch holds whole directories: it is handed over at the first change of
/// directory after `batchJobs` files (or within a directory past `batchMaxJobs`), or when
/// someone waits for one of its jobs. Creating a file locks its directory in the kernel
/// (and sleeps there in the filesystem's journal), so threads given different directories
/// run side by side where threads in one directory would queue on its lock.
/// Used from the tree writer's thread only.
final class FileWriters {
    private let pool: WorkPool
    private let root: DirHandle
    private let context: FileWriteContext
    private let caches = DirectoryCaches()
    /// The batch being filled: its jobs and their contents, one after the other.
    private var batch: [FileJob] = []
    private var batchContent: [UInt8] = []
    /// The directory of the last job of the batch being filled.
    private var batchParent: [[UInt8]] = []
    /// Batches handed to the threads and not yet handed back, in submission order; the
    /// first `headDone` jobs of the first one were handed back already.
    private var submitted: [(ticket: WorkPool.Ticket, batch: FileBatch?)] = []
    private var head = 0
    private var headDone = 0
    /// Batches handed back, freed by the writer thread that finishes a batch next (their
    /// jobs' deallocation, a release per entry array and a free per job, was ~1.4% of a
    /// restore's user CPU on this thread, which reads the archive). Given to the threads at
    /// the end of each `reap`; kept with the next batch handed over instead, they lived until
    /// that batch was written, behind up to 128 others (~3.5 MiB more at the peak of a
    /// 200k-file restore).
    private var reaped: [FileBatch] = []
    private let trash = BatchTrash()
    /// Jobs queued (in batches or the batch being filled) and not yet handed back.
    private(set) var pendingJobs = 0
    /// Jobs handed back so far (in submission order).
    private(set) var reapedJobs = 0
    static let batchJobs = 32
    static let batchMaxJobs = 512
    static let batchMaxBytes = 256 << 10
    static let jobOverhead = 2 << 10

    init(threads: Int, root: DirHandle, context: FileWriteContext) {
        self.root = root
        self.context = context
        pool = WorkPool(threads: threads, maxQueuedItems: max(2, 4096 / Self.batchJobs), maxQueuedBytes: 8 << 20,
                        stackSize: 512 << 10, name: "hs-restore-writer")
    }

    var threads: Int { pool.threads }

    /// Queues a file: `fill` appends its content to the batch's buffer, then `make` makes
    /// its job from where the content lies. Blocks while too many content bytes are waiting.
    /// Nothing is queued when `fill` throws.
    func submit(parentComps: [[UInt8]], fill: (inout [UInt8]) throws -> Void, make: (Range<Int>) -> FileJob) throws {
        if !batch.isEmpty && (batch.count >= Self.batchJobs || batchContent.count >= Self.batchMaxBytes) && parentComps != batchParent {
            try flush()
        }
        let start = batchContent.count
        do { try fill(&batchContent) } catch {
            batchContent.removeSubrange(start...)
            throw error
        }
        if batch.isEmpty || parentComps != batchParent { batchParent = parentComps }
        batch.append(make(start ..< batchContent.count))
        pendingJobs += 1
        if batch.count >= Self.batchMaxJobs || batchContent.count >= 4 * Self.batchMaxBytes { try flush() }
    }

    /// Hands the batch being filled to the threads.
    func flush() throws {
        guard !batch.isEmpty else { return }
        let b = FileBatch(jobs: batch, content: batchContent)
        let bytes = batchContent.count
        batch = []
        batchContent = []
        // The next batch's arrays are made about as large as this one's (the buffer capped at
        // 128 KiB): filled from empty, they reallocated and copied themselves ~7 times each
        // while doubling (as many bytes moved again as the contents, on this thread, which
        // reads the archive).
        batch.reserveCapacity(b.jobs.count)
        batchContent.reserveCapacity(min(bytes + bytes / 8, Self.batchMaxBytes / 2))
        // Each job counts 2 KiB besides its content: at most ~4,096 jobs wait in memory, as
        // when batches were 32 jobs (the pool holds 128 batches).
        try hand(b, bytes: bytes + b.jobs.count * Self.jobOverhead)
    }

    /// Hands the metadata of `dirs` (in this order: deepest first) to the threads, as a batch
    /// of its own. Call it once every file inside them was handed back; `reap` throws its
    /// first error in its turn.
    func submitDirectories(_ dirs: [(entry: TarEntry, createdMode: UInt32?)]) throws {
        try hand(FileBatch(jobs: [], content: [], directories: dirs), bytes: dirs.count * Self.jobOverhead)
    }

    private func hand(_ b: FileBatch, bytes: Int) throws {
        let root = root, caches = caches, context = context, trash = trash
        let t = try pool.submit(bytes: bytes) {
            var (generation, stack) = caches.take(for: b.firstDirectory)
            b.write(root: root, stack: &stack, context: context)
            caches.give(stack, generation: generation)
            trash.empty()
        }
        submitted.append((t, b))
    }

    /// Hands the written (or failed: with its error) jobs back to `each` in submission order:
    /// those done so far, or (`wait`) all of them, waiting for the threads. A job `each`
    /// throws on is handed back; the ones after it stay for the next call.
    func reap(wait: Bool, _ each: (FileJob, (any Error)?) throws -> Void) throws {
        if wait { try flush() }
        defer { if !reaped.isEmpty { trash.put(reaped); reaped = [] } }   // one lock per call
        while head < submitted.count {
            let t = submitted[head].ticket
            if wait { pool.wait(for: t) } else if !pool.isFinished(t) { break }
            let b = submitted[head].batch!
            let failures = b.failures
            // Through the buffer: one retain per job handed back.
            try b.jobs.withUnsafeBufferPointer { jobs in
                while headDone < jobs.count {
                    let i = headDone
                    headDone += 1
                    pendingJobs -= 1
                    reapedJobs += 1
                    try each(jobs[i], failures.isEmpty ? nil : failures[i])
                }
            }
            submitted[head].batch = nil
            reaped.append(b)
            head += 1
            headDone = 0
            if head >= 64 && head * 2 >= submitted.count { submitted.removeFirst(head); head = 0 }
            if let error = b.directoryFailure { throw error }
        }
    }

    /// Drops the threads' cached directory descriptors (a directory below the target was
    /// removed or replaced; call with no job running).
    func forgetDirectories() { caches.invalidate() }

    /// Runs `body(i)` for every i in `range` on the threads and waits (after the batch being
    /// filled).
    func forEach(_ range: Range<Int>, _ body: @escaping @Sendable (Int) throws -> Void) throws {
        try flush()
        try pool.forEach(range, chunk: 1, body)
    }

    /// Stops the threads after the job each is running (queued jobs are dropped).
    func close() {
        batch = []
        batchContent = []
        submitted = []
        reaped = []
        pool.close()
        trash.empty()
        caches.invalidate()
    }
}

/// Small files written by one writer thread in one go: their jobs and one buffer holding all
/// their contents (one allocation per batch), freed as soon as the batch is written.
final class FileBatch: Sendable {
    let jobs: [FileJob]
    /// Directories whose metadata the batch applies (in this order, after its files).
    let directories: [(entry: TarEntry, createdMode: UInt32?)]
    private let content: Mutex<[UInt8]>
    private let errors = Mutex<[Int: any Error]>([:])
    private let directoryError = Mutex<(any Error)?>(nil)

    init(jobs: [FileJob], content: [UInt8], directories: [(entry: TarEntry, createdMode: UInt32?)] = []) {
        self.jobs = jobs
        self.directories = directories
        self.content = Mutex(content)
    }

    /// Writes every job (each failure kept for its job; the others are still written). Files go
    /// under their final names with no registration each, so the batch is one run of
    /// `InterruptCleanup.beginWriting`: a signal stops it between two files, never inside one
    /// (a file cut short would look restored), and this thread then waits for the end.
    func write(root: DirHandle, stack: inout [(name: [UInt8], dir: DirHandle)], context: FileWriteContext) {
        let cleanup = InterruptCleanup.shared
        guard cleanup.beginWriting() else { cleanup.parkForStop() }
        defer { cleanup.endWriting() }
        func stopIfSignalled() {
            guard cleanup.isStopping else { return }
            cleanup.endWriting()
            cleanup.parkForStop()
        }
        let bytes = content.withLock { c in let b = c; c = []; return b }
        bytes.withUnsafeBytes { all in
            var last: (comps: UnsafeRawPointer?, dir: DirHandle?) = (nil, nil)
            jobs.withUnsafeBufferPointer { jobs in
                for i in jobs.indices {
                    stopIfSignalled()
                    let job = jobs[i]
                    do { try job.writeBuffered(UnsafeRawBufferPointer(rebasing: all[job.content]), root: root, stack: &stack, last: &last, context: context) } catch {
                        errors.withLock { $0[i] = error }
                    }
                }
            }
        }
        guard !directories.isEmpty else { return }
        let walker = DirectoryWalker(root: root, metadata: context.metadata)
        do {
            for d in directories {
                stopIfSignalled()
                try walker.applyDirectoryMetadata(d.entry, createdMode: d.createdMode, stack: &stack)
            }
        } catch {
            directoryError.withLock { $0 = error }
        }
    }

    /// The parent of its first job (or of its first directory): where its walk starts.
    var firstDirectory: [[UInt8]] {
        if let j = jobs.first { return j.openedParent == nil ? j.parentComps : [] }
        if let d = directories.first { return Array(RestorePath.split(d.entry.path).dropLast()) }
        return []
    }

    /// The first error applying `directories` (read after the batch finished).
    var directoryFailure: (any Error)? { directoryError.withLock { $0 } }

    /// The errors of the jobs that failed, by index (read after the batch finished).
    var failures: [Int: any Error] { errors.withLock { $0 } }
}

/// Batches handed back by the tree writer's thread, freed by the writer thread that finishes
/// a batch next (`FileWriters.reaped`).
final class BatchTrash: Sendable {
    private let batches = Mutex<[FileBatch]>([])

    func put(_ b: [FileBatch]) { batches.withLock { $0.append(contentsOf: b) } }

    /// Frees the batches given so far (released after the lock is let go).
    func empty() {
        let all = batches.withLock { b in
            if b.isEmpty { return [FileBatch]() }
            let x = b; b = []; return x
        }
        _ = all
    }
}

/// The writer threads' walk caches (open descriptors of the directories of a recent walk from
/// the target), kept between batches: a batch takes one, walks from the longest prefix its
/// directories share with it, and gives it back. Invalidated when the tree writer removes a
/// directory (a cached descriptor would then name a removed directory).
final class DirectoryCaches: Sendable {
    typealias Stack = [(name: [UInt8], dir: DirHandle)]
    private let state = Mutex<(generation: Int, stacks: [(Int, Stack)])>((0, []))

    /// A cached stack (or an empty one) and the generation it belongs to: the one sharing the
    /// longest prefix with `comps` (the batch's first directory), the latest given back among
    /// equals. (The latest alone made a batch reopen the chain of its directory whenever another
    /// thread's stack came back last: ~1,800 opens and closes on 20,000 Plex-like files.)
    func take(for comps: [[UInt8]]) -> (Int, Stack) {
        state.withLock { s in
            var best = -1, bestLength = -1
            var j = s.stacks.count - 1
            while j >= 0 {
                if s.stacks[j].0 == s.generation {
                    let k = s.stacks[j].1.withUnsafeBufferPointer { st in
                        var k = 0
                        while k < st.count && k < comps.count && st[k].name == comps[k] { k += 1 }
                        return k
                    }
                    if k > bestLength { best = j; bestLength = k }
                }
                j -= 1
            }
            guard best >= 0 else { s.stacks = []; return (s.generation, []) }
            return s.stacks.remove(at: best)
        }
    }

    /// Returns a stack taken before (dropped if the caches were invalidated meanwhile).
    func give(_ stack: Stack, generation: Int) {
        state.withLock { s in if generation == s.generation { s.stacks.append((generation, stack)) } }
    }

    func invalidate() { state.withLock { s in s.generation += 1; s.stacks = [] } }
}
