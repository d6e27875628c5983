import Foundation
import Glibc
import Support

/// A directory descriptor shared between the extraction thread and the file writers; closed
/// when the last user lets go (the extractor's walk cache may move on while a writer still
/// creates a file in it).
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

/// One small regular file to create and fill: created by a writer thread with
/// `openat(parent, name, O_CREAT|O_EXCL|O_NOFOLLOW)` in a directory the extraction thread has
/// already validated and opened; it never follows or replaces anything.
final class FileJob: @unchecked Sendable {
    let entry: EntryMetadata
    let name: String
    let parent: DirHandle?
    var data: [UInt8] = []
    // results (written by the writer before `done`, read by the extraction thread after)
    var digest: [UInt8] = []
    var error: (any Error)?
    var warnings: [(text: String, xattr: Bool)] = []
    var done = false

    init(entry: EntryMetadata, name: String, parent: DirHandle?) {
        self.entry = entry; self.name = name; self.parent = parent
    }

    static let placeholder = FileJob(entry: EntryMetadata(path: "", type: .file), name: "", parent: nil)
}

/// Writer threads for small files, with a bound on the content bytes waiting in memory
/// (the threads are a `WorkerPool`).
final class FileWriterPool: @unchecked Sendable {
    private let pool: WorkerPool
    private let ctx: FileWriteContext

    init(threads: Int, ctx: FileWriteContext) {
        self.ctx = ctx
        pool = WorkerPool(threads: threads, maxPendingBytes: 2 << 20, maxPendingItems: .max)
    }

    /// Queues a job; blocks while too many content bytes are waiting.
    func submit(_ job: FileJob) {
        let ctx = ctx
        pool.submit(bytes: job.data.count, {
            Self.write(job, ctx)
            job.data = []
        }, whenDone: { job.done = true })
    }

    func isDone(_ job: FileJob) -> Bool { pool.locked { job.done } }

    func wait(for job: FileJob) { pool.wait { job.done } }

    /// Stops the threads after the job each is running (queued jobs are dropped).
    func shutdown() { pool.shutdown() }

    /// Creates the file, writes its content (64 KiB zero runs become holes), applies owner,
    /// mode, xattrs and mtime, and hashes the content.
    static func write(_ job: FileJob, _ ctx: FileWriteContext) {
        let e = job.entry
        func fail(_ what: String, _ err: Int32) {
            job.error = ArchiveError(.io, entry: e.path, "\(what) failed under '\(ctx.target)': \(String(cString: strerror(err)))")
        }
        guard let parent = job.parent else { return }
        let fd = openat(parent.fd, job.name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode_t(e.mode & 0o777))
        guard fd >= 0 else { fail("create file", errno); return }
        defer { close(fd) }
        var hasher = SHA256Hasher()
        let ok: Bool = job.data.withUnsafeBytes { bytes in
            hasher.update(bytes)
            var pendingZeros = 0
            var p = 0
            let n = bytes.count
            while p < n {
                let len = min(64 * 1024, n - p)
                let piece = UnsafeRawBufferPointer(rebasing: bytes[p..<(p + len)])
                if len == 64 * 1024 && Extractor.isZero(piece) {
                    pendingZeros += len
                } else {
                    if pendingZeros > 0 {
                        guard lseek(fd, off_t(pendingZeros), SEEK_CUR) >= 0 else { fail("lseek", errno); return false }
                        pendingZeros = 0
                    }
                    var off = 0
                    while off < len {
                        let w = Glibc.write(fd, piece.baseAddress! + off, len - off)
                        if w < 0 {
                            if errno == EINTR { continue }
                            fail("write", errno); return false
                        }
                        off += w
                    }
                }
                p += len
            }
            if pendingZeros > 0 {
                guard ftruncate(fd, off_t(n)) == 0 else { fail("ftruncate", errno); return false }
            }
            return true
        }
        guard ok else { return }
        if ctx.restoreOwnership && !(ctx.predictable && e.uid == ctx.euid && e.gid == ctx.egid) {
            if fchown(fd, e.uid, e.gid) != 0 { job.warnings.append(("\(e.path): chown failed: \(String(cString: strerror(errno)))", false)) }
        }
        let mode = ctx.preserveSpecial ? e.mode & 0o7777 : e.mode & 0o1777
        if !ctx.predictable || mode != (e.mode & 0o777) & ~ctx.umaskBits {
            guard fchmod(fd, mode_t(mode)) == 0 else { fail("chmod", errno); return }
        }
        if ctx.restoreXattrs {
            for (k, v) in e.xattrs where k.hasPrefix("user.") {
                if setXattr(fd: fd, name: k, value: v) != 0 {
                    job.warnings.append(("\(e.path): extended attribute \(k) not restored: \(String(cString: strerror(errno))) (further xattr failures not reported)", true))
                }
            }
        }
        var ts = Extractor.times(e)
        guard futimens(fd, &ts) == 0 else { fail("set mtime", errno); return }
        job.digest = hasher.finalize()
    }
}
