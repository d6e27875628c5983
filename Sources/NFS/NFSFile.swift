import CNFS
import FoundationEssentials
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One asynchronous READ or WRITE in flight. Owned by the file until its callback ran.
final class NFSRequest {
    /// WRITE: a private copy of the caller's bytes. READ: where the bytes go.
    let buffer: UnsafeMutableRawPointer
    let ownsBuffer: Bool
    var offset: UInt64
    var count: Int
    /// Set by the callback: bytes done (>= 0) or -errno.
    var status: Int32 = 0
    var done = false
    var errorText = ""
    let isRead: Bool

    init(buffer: UnsafeMutableRawPointer, ownsBuffer: Bool, offset: UInt64, count: Int, isRead: Bool) {
        self.buffer = buffer
        self.ownsBuffer = ownsBuffer
        self.offset = offset
        self.count = count
        self.isRead = isRead
    }

    deinit { if ownsBuffer { buffer.deallocate() } }
}

/// An open file on an NFS export.
///
/// Sequential `write` appends at `position` with up to `writePipelineDepth` WRITE RPCs of
/// `writeMax` bytes in flight (the bytes are copied, so the caller's buffer is free when
/// `write` returns). `flush` waits for them; `sync` also COMMITs; `close` flushes first.
/// An error of a pipelined write is reported by a later `write`, `flush`, `sync` or `close`.
/// Uses its client's lock: one operation at a time per client.
package final class NFSFile: Sendable {
    let client: NFSClient
    /// The key of this file's `OpenFile` in the client's connection.
    let id: Int
    /// The path relative to the client's URL directory.
    package let path: String

    init(client: NFSClient, id: Int, path: String) {
        self.client = client
        self.id = id
        self.path = path
    }

    deinit {
        try? close()
    }

    /// Offset of the next sequential `write`.
    package var position: UInt64 {
        client.withConnection { [id] c in c.files[id]?.position ?? 0 }
    }

    /// Runs `body` with the client's context and this file's open state, under the client's
    /// lock. - Throws: EBADF "the file is closed" after `close`.
    func withOpenFile<T: Sendable>(_ call: String, _ body: sending (OpaquePointer, OpaquePointer, OpenFile) throws -> T) throws -> T {
        try client.withConnection { [id, path, client] c in
            guard let f = c.files[id], let fh = f.handle else {
                throw NFSError(kind: .other(EBADF), call: call, location: client.location(path), errno: EBADF,
                               detail: "the file is closed")
            }
            return try body(c.context, fh, f)
        }
    }

    // MARK: - Event loop (inside withOpenFile)

    /// Waits for socket events once and lets libnfs run callbacks.
    func serviceOnce(_ ctx: OpaquePointer, _ call: String) throws {
        var pfd = pollfd(fd: libnfs.nfs_get_fd(ctx), events: Int16(truncatingIfNeeded: libnfs.nfs_which_events(ctx)), revents: 0)
        let r = poll(&pfd, 1, 100)
        if r < 0 && errno != EINTR {
            throw NFSError(kind: .other(errno), call: "poll", location: client.location(path), errno: errno, detail: "")
        }
        if libnfs.nfs_service(ctx, Int32(pfd.revents)) < 0 {
            let text = nfsErrorText(ctx)
            throw NFSError(kind: .disconnected, call: call, location: client.location(path), errno: EIO,
                           detail: text.isEmpty ? "nfs_service failed: the connection to the server broke" : text)
        }
    }

    /// Queues one request.
    func submit(_ ctx: OpaquePointer, _ fh: OpaquePointer, _ f: OpenFile, _ req: NFSRequest) throws {
        let token = Unmanaged.passRetained(req).toOpaque()
        let rc: Int32
        if req.isRead {
            rc = libnfs.nfs_pread_async(ctx, fh, req.offset, UInt64(req.count), { err, _, data, priv in
                let req = Unmanaged<NFSRequest>.fromOpaque(priv!).takeRetainedValue()
                req.status = err
                req.done = true
                if err > 0, let data { req.buffer.copyMemory(from: data, byteCount: min(Int(err), req.count)) }
                if err < 0, let data { req.errorText = String(cString: data.assumingMemoryBound(to: CChar.self)) }
            }, token)
        } else {
            rc = libnfs.nfs_pwrite_async(ctx, fh, req.offset, UInt64(req.count), req.buffer, { err, _, data, priv in
                let req = Unmanaged<NFSRequest>.fromOpaque(priv!).takeRetainedValue()
                req.status = err
                req.done = true
                if err < 0, let data { req.errorText = String(cString: data.assumingMemoryBound(to: CChar.self)) }
            }, token)
        }
        if rc < 0 {
            Unmanaged<NFSRequest>.fromOpaque(token).release()
            throw client.failure(ctx, req.isRead ? "nfs_pread_async" : "nfs_pwrite_async", path, rc)
        }
        f.inflight.append(req)
    }

    /// Handles finished requests: errors are remembered, short writes are re-queued.
    func reap(_ ctx: OpaquePointer, _ fh: OpaquePointer, _ f: OpenFile) throws {
        var still: [NFSRequest] = []
        var requeue: [NFSRequest] = []
        for req in f.inflight {
            if !req.done { still.append(req); continue }
            if req.isRead { continue }
            if req.status < 0 {
                if f.pendingError == nil {
                    let e = -req.status
                    if e == ETIMEDOUT { client.noteTimeout(ctx) }
                    f.pendingError = NFSError(kind: NFSError.kind(forErrno: e, detail: req.errorText), call: "nfs_pwrite_async",
                                            location: "\(client.location(path)) at offset \(req.offset)",
                                            errno: e, detail: req.errorText)
                }
            } else if Int(req.status) < req.count {
                if req.status == 0 {
                    f.pendingError = f.pendingError ?? NFSError(kind: .other(EIO), call: "nfs_pwrite_async",
                                                            location: "\(client.location(path)) at offset \(req.offset)",
                                                            errno: EIO, detail: "the server wrote 0 bytes")
                    continue
                }
                // Short write: send the rest.
                let n = Int(req.status)
                let rest = UnsafeMutableRawPointer.allocate(byteCount: req.count - n, alignment: 16)
                rest.copyMemory(from: req.buffer + n, byteCount: req.count - n)
                requeue.append(NFSRequest(buffer: rest, ownsBuffer: true, offset: req.offset + UInt64(n),
                                          count: req.count - n, isRead: false))
            }
        }
        f.inflight = still
        for r in requeue { try submit(ctx, fh, f, r) }
    }

    /// Waits until at most `limit` requests are in flight.
    func drain(_ ctx: OpaquePointer, _ fh: OpaquePointer, _ f: OpenFile, to limit: Int, _ call: String) throws {
        try reap(ctx, fh, f)
        // No answer to any request for the client's timeout: the server is gone or frozen.
        let timeout = TimeInterval(client.currentTimeoutMilliseconds) / 1000
        var lastProgress = Date()
        var waiting = f.inflight.count
        while f.inflight.count > limit {
            do {
                try serviceOnce(ctx, call)
                if timeout > 0 && Date().timeIntervalSince(lastProgress) > timeout {
                    client.noteTimeout(ctx)
                    throw NFSError(kind: .timedOut, call: call, location: client.location(path), errno: ETIMEDOUT,
                                   detail: "the server did not answer for \(Int(timeout)) s")
                }
            } catch let e as NFSError {
                // The connection is gone: the callbacks of what was in flight may never run.
                // Keep the requests (and their buffers) alive forever rather than free memory
                // libnfs may still touch; drop our references.
                for r in f.inflight where !r.done {
                    _ = Unmanaged.passRetained(r)
                    f.stranded = true
                }
                f.inflight = []
                f.pendingError = f.pendingError ?? e
                throw e
            }
            try reap(ctx, fh, f)
            if f.inflight.count < waiting { lastProgress = Date() }
            waiting = f.inflight.count
        }
    }

    func throwPending(_ f: OpenFile) throws {
        if let e = f.pendingError { throw e }
    }

    // MARK: - Writing

    /// Appends `bytes` at `position` (pipelined; see the type's comment).
    /// - Throws: `NFSError` for this write or an earlier pipelined one.
    /// The corresponding libnfs call is `nfs_pwrite_async`.
    package func write(_ bytes: UnsafeRawBufferPointer) throws {
        try write([UInt8](bytes))
    }

    /// Appends bytes (see `write(_:)` for an `UnsafeRawBufferPointer`).
    package func write(_ bytes: [UInt8]) throws {
        try withOpenFile("nfs_pwrite_async") { [self] ctx, fh, f in
            try throwPending(f)
            var off = 0
            while off < bytes.count {
                try drain(ctx, fh, f, to: max(1, client.options.writePipelineDepth) - 1, "nfs_pwrite_async")
                try throwPending(f)
                let n = min(client.writeMax, bytes.count - off)
                // The request owns a copy until its callback ran.
                let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: n, alignment: 16)
                copy.copyBytes(from: bytes[off ..< off + n])
                try submit(ctx, fh, f, NFSRequest(buffer: copy.baseAddress!, ownsBuffer: true, offset: f.position, count: n, isRead: false))
                f.position += UInt64(n)
                off += n
            }
        }
    }

    /// Writes all of `bytes` at `offset` and waits for it; does not move `position`.
    /// The corresponding libnfs call is `nfs_pwrite`.
    package func pwrite(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws {
        let bytes = [UInt8](bytes)
        try withOpenFile("nfs_pwrite") { [self] ctx, fh, f in
            try drain(ctx, fh, f, to: 0, "nfs_pwrite")
            try throwPending(f)
            var done = 0
            while done < bytes.count {
                let n = min(client.writeMax, bytes.count - done)
                let rc = bytes.withUnsafeBytes { libnfs.nfs_pwrite(ctx, fh, offset + UInt64(done), UInt64(n), $0.baseAddress! + done) }
                if rc < 0 { throw client.failure(ctx, "nfs_pwrite", path, rc) }
                if rc == 0 {
                    throw NFSError(kind: .other(EIO), call: "nfs_pwrite", location: client.location(path), errno: EIO,
                                   detail: "the server wrote 0 bytes at offset \(offset + UInt64(done))")
                }
                done += Int(rc)
            }
        }
    }

    /// Waits until every pipelined write has been answered.
    /// - Throws: the first error of a pipelined write.
    package func flush() throws {
        try withOpenFile("flush") { [self] ctx, fh, f in
            try drain(ctx, fh, f, to: 0, "nfs_pwrite_async")
            try throwPending(f)
        }
    }

    /// Flushes and asks the server to put the file's data on stable storage (NFS COMMIT).
    /// The corresponding libnfs call is `nfs_fsync`.
    package func sync() throws {
        try withOpenFile("nfs_fsync") { [self] ctx, fh, f in
            try drain(ctx, fh, f, to: 0, "nfs_pwrite_async")
            try throwPending(f)
            try client.check(ctx, "nfs_fsync", path, libnfs.nfs_fsync(ctx, fh))
        }
    }

    /// Sets the file's size.
    /// The corresponding libnfs call is `nfs_ftruncate`.
    package func truncate(to size: UInt64) throws {
        try withOpenFile("nfs_ftruncate") { [self] ctx, fh, f in
            try drain(ctx, fh, f, to: 0, "nfs_pwrite_async")
            try throwPending(f)
            try client.check(ctx, "nfs_ftruncate", path, libnfs.nfs_ftruncate(ctx, fh, size))
        }
    }

    // MARK: - Reading

    /// Reads up to `count` bytes at `offset` with up to `readPipelineDepth` READs in flight;
    /// fewer only at end of file (none at or after the end).
    /// The corresponding libnfs call is `nfs_pread_async`.
    package func read(at offset: UInt64, count: Int) throws -> [UInt8] {
        try withOpenFile("nfs_pread_async") { [self] ctx, fh, f in
            try drain(ctx, fh, f, to: 0, "nfs_pwrite_async")
            try throwPending(f)
            // READs land here (the requests point into it), so it lives until all are answered.
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, 1), alignment: 16)
            defer { buffer.deallocate() }
            var total = 0
            while total < count {
                // One pipelined round: up to readPipelineDepth READs of readMax bytes.
                var batch: [NFSRequest] = []
                var queued = 0
                while total + queued < count && batch.count < max(1, client.options.readPipelineDepth) {
                    let n = min(client.readMax, count - total - queued)
                    let req = NFSRequest(buffer: buffer.baseAddress! + total + queued, ownsBuffer: false,
                                         offset: offset + UInt64(total + queued), count: n, isRead: true)
                    try submit(ctx, fh, f, req)
                    batch.append(req)
                    queued += n
                }
                // Wait for all of them (never return while one may still write into the buffer).
                try drain(ctx, fh, f, to: 0, "nfs_pread_async")
                var eof = false
                for req in batch {
                    if req.status < 0 {
                        let e = -req.status
                        throw NFSError(kind: NFSError.kind(forErrno: e, detail: req.errorText), call: "nfs_pread_async",
                                       location: "\(client.location(path)) at offset \(req.offset)", errno: e, detail: req.errorText)
                    }
                    total += Int(req.status)
                    if Int(req.status) < req.count {
                        // Short read: at end of file, or the server chose to; the outer loop
                        // asks again from here and stops on a 0-byte answer.
                        eof = req.status == 0
                        break
                    }
                }
                if eof { break }
            }
            return [UInt8](UnsafeRawBufferPointer(rebasing: buffer[..<total]))
        }
    }

    /// Reads up to `buffer.count` bytes at `offset` (see `read(at:count:)`).
    /// - Returns: the number of bytes read (0 at or after the end).
    package func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Int {
        let bytes = try read(at: offset, count: buffer.count)
        buffer.copyBytes(from: bytes)
        return bytes.count
    }

    /// The file's current attributes.
    /// The corresponding libnfs call is `nfs_fstat64`.
    package func stat() throws -> NFSStat {
        try withOpenFile("nfs_fstat64") { [self] ctx, fh, f in
            try drain(ctx, fh, f, to: 0, "nfs_pwrite_async")
            var st = nfs_stat_64()
            try client.check(ctx, "nfs_fstat64", path, libnfs.nfs_fstat64(ctx, fh, &st))
            return NFSStat(st)
        }
    }

    /// Waits for pipelined writes, then closes. Idempotent.
    /// - Throws: an error of a pipelined write, or of the close.
    /// The corresponding libnfs call is `nfs_close`.
    package func close() throws {
        try client.withConnection { [self] c throws(NFSError) in
            guard let f = c.files.removeValue(forKey: id), let fh = f.handle else { return }
            let ctx = c.context
            var firstError: NFSError?
            do {
                try drain(ctx, fh, f, to: 0, "nfs_pwrite_async")
            } catch let e as NFSError {
                firstError = e
            } catch {
                firstError = NFSError(kind: .other(EIO), call: "nfs_close", location: client.location(path), errno: EIO, detail: "\(error)")
            }
            firstError = firstError ?? f.pendingError
            // With requests stranded on a dead connection the handle is left to the context.
            if f.inflight.isEmpty && !f.stranded {
                let rc = libnfs.nfs_close(ctx, fh)
                if rc < 0 && firstError == nil { firstError = client.failure(ctx, "nfs_close", path, rc) }
            }
            if let firstError { throw firstError }
        }
    }
}

/// A file's state while it is open: kept in its client's connection, so it is only reached
/// with the client's lock held (like the libnfs handle it wraps).
final class OpenFile {
    var handle: OpaquePointer?
    /// Offset of the next sequential `write`.
    var position: UInt64 = 0
    var inflight: [NFSRequest] = []
    var pendingError: NFSError?
    /// Requests were left in flight on a broken connection: libnfs may still run their
    /// callbacks (it cancels them when the context goes), which touch the handle, so the
    /// handle is never freed with `nfs_close`.
    var stranded = false

    init(handle: OpaquePointer) { self.handle = handle }
}
