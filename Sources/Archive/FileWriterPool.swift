import Foundation
import Glibc
import Support

/// A directory descriptor shared between the writer's walk cache and the file writers;
/// closed when the last user lets go.
final class DirHandle: @unchecked Sendable {
    let fd: Int32
    private let owned: Bool
    init(_ fd: Int32, owned: Bool = true) { self.fd = fd; self.owned = owned }
    deinit { if owned { close(fd) } }
}

/// What a file writer needs to know besides the entry (immutable, shared).
struct FileWriteContext: Sendable {
    var target: String
    var restoreOwnership: Bool
    /// New entries get euid/egid and the umask'd mode (see `CreationProbe`).
    var predictable: Bool
    var restoreXattrs: Bool
    var preserveSpecial: Bool
    var umaskBits: UInt32
    var euid: uid_t
    var egid: gid_t
}

/// One regular file to restore, in a directory the tree writer has already validated and
/// opened (`O_CREAT|O_EXCL|O_NOFOLLOW`): filled (zero runs and sparse holes left as holes),
/// given its owner, mode, xattrs and mtime through the descriptor. Streamed content is
/// written under a temporary name renamed when complete; content already in memory under the
/// final name. On any failure the file is removed.
final class FileJob: @unchecked Sendable {
    let entry: TarEntry
    let name: [UInt8]
    let parent: DirHandle?
    let expected: [UInt8]?
    /// Where the content comes from, for messages (e.g. the archive of a backup).
    var origin: String?
    let ctx: FileWriteContext?
    var data: [UInt8]
    // results (written by the writer before `done`, read by the tree writer after)
    var error: (any Error)?
    var warnings: [(text: String, xattr: Bool)] = []
    var done = false

    init(entry: TarEntry, name: [UInt8], parent: DirHandle?, data: [UInt8], expected: [UInt8]?, ctx: FileWriteContext?) {
        self.entry = entry; self.name = name; self.parent = parent; self.data = data
        self.expected = expected; self.ctx = ctx
    }

    static let placeholder = FileJob(entry: TarEntry(path: [], type: .file), name: [], parent: nil, data: [], expected: nil, ctx: nil)

    private var tempName: [UInt8] { Array(".hs-restore.\(getpid()).\(UInt(bitPattern: ObjectIdentifier(self).hashValue)).part".utf8) }

    /// Writes `data` (pool threads).
    func writeBuffered() {
        do {
            let bytes = data
            try write({ body in try bytes.withUnsafeBytes { try body(0, $0) } }, direct: true, removeExisting: {})
        } catch { self.error = error }
        data = []
    }

    /// Writes the content `content` produces (the tree writer's thread); throws on failure.
    func writeStreaming(_ content: ((_ body: (UInt64, UnsafeRawBufferPointer) throws -> Void) throws -> Void)?,
                        removeExisting: () throws -> Void) throws {
        try write(content ?? { _ in }, direct: false, removeExisting: removeExisting)
    }

    private func write(_ content: (_ body: (UInt64, UnsafeRawBufferPointer) throws -> Void) throws -> Void,
                       direct: Bool, removeExisting: () throws -> Void) throws {
        guard let parent, let ctx else { return }
        let e = entry
        let display = e.displayPath
        func fail(_ what: String, _ err: Int32) -> ArchiveError {
            ArchiveError(.io, entry: display, "\(what) failed under '\(ctx.target)': \(Sys.strerror(err))")
        }
        // Content held in memory (pool jobs, fresh target) is written under the final name
        // (one metadata operation less per small file) and removed on failure; streamed
        // content goes to a temporary name renamed when complete.
        var useTemp = !direct
        var tmp = direct ? name : tempName
        func create() -> Int32 {
            RestorePath.withCName(tmp) { openat(parent.fd, $0, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode_t(e.mode & 0o777)) }
        }
        var fd = create()
        if fd < 0 && errno == EEXIST && direct {
            // The name exists (an archive may hold a path twice): replace it by renaming.
            useTemp = true
            tmp = tempName
            fd = create()
        }
        guard fd >= 0 else { throw fail("create file", errno) }
        var renamed = false
        defer {
            close(fd)
            if !renamed { _ = RestorePath.withCName(tmp) { unlinkat(parent.fd, $0, 0) } }
        }
        do {
            // A sparse member's manifest hash is the `SparseHash` (its map and data, not its holes).
            var hasher: SHA256Hasher? = expected != nil && e.sparse == nil ? SHA256Hasher() : nil
            var sparseHasher: SparseHash? = nil
            if expected != nil, let map = e.sparse { sparseHasher = SparseHash(map: map, realSize: e.size) }
            var end: UInt64 = 0
            var written: UInt64 = 0  // the file's size so far (it was created empty, O_EXCL)
            try content { off, bytes in
                if hasher != nil {
                    guard off == end else { throw ArchiveError(.malformed, entry: display, "content out of order") }
                    hasher!.update(bytes)
                } else if sparseHasher != nil {
                    guard off >= end else { throw ArchiveError(.malformed, entry: display, "content out of order") }
                    sparseHasher!.update(bytes)
                }
                // 64 KiB zero runs become holes (made by the next write, or the final ftruncate).
                var p = 0
                while p < bytes.count {
                    let len = min(64 * 1024, bytes.count - p)
                    let piece = UnsafeRawBufferPointer(rebasing: bytes[p..<(p + len)])
                    if !(len == 64 * 1024 && Self.isZero(piece)) {
                        try Self.pwriteAll(fd, piece, at: off + UInt64(p)) { fail("write", $0) }
                        written = max(written, off + UInt64(p + len))
                    }
                    p += len
                }
                end = off + UInt64(bytes.count)
            }
            if let expected, hasher != nil || sparseHasher != nil {
                let got: [UInt8]
                if let h = hasher.take() { got = h.finalize() } else { got = sparseHasher.take()!.finalize() }
                guard end == (e.sparse == nil ? e.size : (e.sparse!.last.map { $0.offset + $0.length } ?? 0)), got == expected else {
                    throw ArchiveError(.malformed, entry: display, "content\(origin.map { " from \($0)" } ?? "") does not match its SHA-256 in the manifest (damaged archive). Run `hs-backup verify`.")
                }
            }
            // Only when a hole ends the file (the truncate costs a journal update per file).
            if written != e.size {
                guard ftruncate(fd, off_t(e.size)) == 0 else { throw fail("set size of", errno) }
            }
            if ctx.restoreOwnership && !(ctx.predictable && e.uid == ctx.euid && e.gid == ctx.egid) {
                if fchown(fd, e.uid, e.gid) != 0 { warnings.append(("\(display): chown failed: \(Sys.strerror(errno))", false)) }
            }
            let mode = ctx.preserveSpecial ? e.mode & 0o7777 : e.mode & 0o1777
            if !ctx.predictable || mode != (e.mode & 0o777) & ~ctx.umaskBits {
                guard fchmod(fd, mode_t(mode)) == 0 else { throw fail("chmod", errno) }
            }
            if ctx.restoreXattrs && !e.xattrs.isEmpty {
                for w in XattrApplier.apply(fd: fd, e.xattrs, path: display) { warnings.append((w, true)) }
            }
            var ts = TreeWriter.times(e)
            guard futimens(fd, &ts) == 0 else { throw fail("set mtime", errno) }
            if !useTemp { renamed = true; return }
            var rc = RestorePath.withCName(tmp) { t in RestorePath.withCName(name) { renameat(parent.fd, t, parent.fd, $0) } }
            if rc != 0 && (errno == EISDIR || errno == ENOTEMPTY || errno == EEXIST) {
                try removeExisting()
                rc = RestorePath.withCName(tmp) { t in RestorePath.withCName(name) { renameat(parent.fd, t, parent.fd, $0) } }
            }
            guard rc == 0 else { throw fail("rename into place", errno) }
            renamed = true
        } catch var err as ArchiveError {
            err.detail += "; '\(display)' was not restored (its partial copy was removed)"
            throw err
        }
    }

    static func isZero(_ b: UnsafeRawBufferPointer) -> Bool {
        let words = b.bindMemory(to: UInt64.self)
        for w in words where w != 0 { return false }
        return true
    }

    private static func pwriteAll(_ fd: Int32, _ b: UnsafeRawBufferPointer, at: UInt64, _ fail: (Int32) -> ArchiveError) throws {
        var off = 0
        while off < b.count {
            let n = Sys.retry { pwrite(fd, b.baseAddress! + off, b.count - off, off_t(at) + off_t(off)) }
            if n < 0 { throw fail(errno) }
            off += n
        }
    }
}

/// Writer threads for small files, with a bound on the content bytes waiting in memory.
/// Jobs go to the threads in batches (one hand-over, one wake-up and one lock per batch, not
/// per file: per-file hand-overs cost a restore of a million small files ~6 s of futex calls);
/// a batch is handed over when full or when someone waits for one of its jobs.
final class FileWriterPool: @unchecked Sendable {
    private let pool: WorkerPool
    // The submitting thread's batch (only that thread touches it).
    private var batch: [FileJob] = []
    private var batchBytes = 0
    static let batchJobs = 32
    static let batchMaxBytes = 256 << 10

    init(threads: Int) {
        pool = WorkerPool(threads: threads, maxPendingBytes: 8 << 20, maxPendingItems: 4096 / Self.batchJobs)
    }

    /// Queues a job; blocks while too many content bytes are waiting.
    func submit(_ job: FileJob) {
        batch.append(job)
        batchBytes += job.data.count
        if batch.count >= Self.batchJobs || batchBytes >= Self.batchMaxBytes { flush() }
    }

    /// Hands the batch being filled to the threads.
    func flush() {
        guard !batch.isEmpty else { return }
        let jobs = batch
        let bytes = batchBytes
        batch = []
        batchBytes = 0
        pool.submit(bytes: bytes, { for job in jobs { job.writeBuffered() } },
                    whenDone: { for job in jobs { job.done = true } })
    }

    func isDone(_ job: FileJob) -> Bool { pool.locked { job.done } }

    /// Runs `body(i)` for every i in 0..<count on the threads and waits (after the batch
    /// being filled).
    func forEach(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
        flush()
        pool.forEach(count, chunk: 1, body)
    }

    func wait(for job: FileJob) {
        flush()
        pool.wait { job.done }
    }

    /// Stops the threads after the job each is running (queued jobs are dropped).
    func shutdown() {
        batch = []
        pool.shutdown()
    }
}
