import CNFS
import Foundation

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
package final class NFSFile: @unchecked Sendable {
    let client: NFSClient
    var handle: OpaquePointer?
    /// The path relative to the client's URL directory.
    package let path: String
    /// Offset of the next sequential `write`.
    package private(set) var position: UInt64
    var inflight: [NFSRequest] = []
    var pendingError: NFSError?
    /// Requests were left in flight on a broken connection: libnfs may still run their
    /// callbacks (it cancels them when the context goes), which touch the handle, so the
    /// handle is never freed with `nfs_close`.
    var stranded = false

    init(client: NFSClient, handle: OpaquePointer, path: String, position: UInt64) {
        self.client = client
        self.handle = handle
        self.path = path
        self.position = position
    }

    deinit {
        if handle != nil { try? close() }
    }

    func openHandle(_ call: String) throws -> OpaquePointer {
        guard let handle else {
            throw NFSError(kind: .other(EBADF), call: call, location: client.location(path), errno: EBADF,
                           detail: "the file is closed")
        }
        return handle
    }

    // MARK: - Event loop (lock held)

    /// Waits for socket events once and lets libnfs run callbacks.
    func serviceOnce(_ ctx: OpaquePointer, _ call: String) throws {
        var pfd = pollfd(fd: nfs_get_fd(ctx), events: Int16(truncatingIfNeeded: nfs_which_events(ctx)), revents: 0)
        let r = poll(&pfd, 1, 100)
        if r < 0 && errno != EINTR {
            throw NFSError(kind: .other(errno), call: "poll", location: client.location(path), errno: errno, detail: "")
        }
        if nfs_service(ctx, Int32(pfd.revents)) < 0 {
            let text = String(cString: nfs_get_error(ctx))
            throw NFSError(kind: .disconnected, call: call, location: client.location(path), errno: EIO,
                           detail: text.isEmpty ? "nfs_service failed: the connection to the server broke" : text)
        }
    }

    /// Queues one request.
    func submit(_ ctx: OpaquePointer, _ fh: OpaquePointer, _ req: NFSRequest) throws {
        let token = Unmanaged.passRetained(req).toOpaque()
        let rc: Int32
        if req.isRead {
            rc = nfs_pread_async(ctx, fh, req.offset, UInt64(req.count), { err, _, data, priv in
                let req = Unmanaged<NFSRequest>.fromOpaque(priv!).takeRetainedValue()
                req.status = err
                req.done = true
                if err > 0, let data { req.buffer.copyMemory(from: data, byteCount: min(Int(err), req.count)) }
                if err < 0, let data { req.errorText = String(cString: data.assumingMemoryBound(to: CChar.self)) }
            }, token)
        } else {
            rc = nfs_pwrite_async(ctx, fh, req.offset, UInt64(req.count), req.buffer, { err, _, data, priv in
                let req = Unmanaged<NFSRequest>.fromOpaque(priv!).takeRetainedValue()
                req.status = err
                req.done = true
                if err < 0, let data { req.errorText = String(cString: data.assumingMemoryBound(to: CChar.self)) }
            }, token)
        }
        if rc < 0 {
            Unmanaged<NFSRequest>.fromOpaque(token).release()
            throw client.failure(req.isRead ? "nfs_pread_async" : "nfs_pwrite_async", path, rc)
        }
        inflight.append(req)
    }

    /// Handles finished requests: errors are remembered, short writes are re-queued.
    func reap(_ ctx: OpaquePointer, _ fh: OpaquePointer) throws {
        var still: [NFSRequest] = []
        var requeue: [NFSRequest] = []
        for req in inflight {
            if !req.done { still.append(req); continue }
            if req.isRead { continue }
            if req.status < 0 {
                if pendingError == nil {
                    let e = -req.status
                    if e == ETIMEDOUT { client.noteTimeout() }
                    pendingError = NFSError(kind: NFSError.kind(forErrno: e, detail: req.errorText), call: "nfs_pwrite_async",
                                            location: "\(client.location(path)) at offset \(req.offset)",
                                            errno: e, detail: req.errorText)
                }
            } else if Int(req.status) < req.count {
                if req.status == 0 {
                    pendingError = pendingError ?? NFSError(kind: .other(EIO), call: "nfs_pwrite_async",
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
        inflight = still
        for r in requeue { try submit(ctx, fh, r) }
    }

    /// Waits until at most `limit` requests are in flight.
    func drain(_ ctx: OpaquePointer, _ fh: OpaquePointer, to limit: Int, _ call: String) throws {
        try reap(ctx, fh)
        // No answer to any request for the client's timeout: the server is gone or frozen.
        let timeout = TimeInterval(client.currentTimeoutMilliseconds) / 1000
        var lastProgress = Date()
        var waiting = inflight.count
        while inflight.count > limit {
            do {
                try serviceOnce(ctx, call)
                if timeout > 0 && Date().timeIntervalSince(lastProgress) > timeout {
                    client.noteTimeout()
                    throw NFSError(kind: .timedOut, call: call, location: client.location(path), errno: ETIMEDOUT,
                                   detail: "the server did not answer for \(Int(timeout)) s")
                }
            } catch let e as NFSError {
                // The connection is gone: the callbacks of what was in flight may never run.
                // Keep the requests (and their buffers) alive forever rather than free memory
                // libnfs may still touch; drop our references.
                for r in inflight where !r.done {
                    _ = Unmanaged.passRetained(r)
                    stranded = true
                }
                inflight = []
                pendingError = pendingError ?? e
                throw e
            }
            try reap(ctx, fh)
            if inflight.count < waiting { lastProgress = Date() }
            waiting = inflight.count
        }
    }

    func throwPending() throws {
        if let e = pendingError { throw e }
    }

    // MARK: - Writing

    /// Appends `bytes` at `position` (pipelined; see the type's comment).
    /// - Throws: `NFSError` for this write or an earlier pipelined one.
    /// The corresponding libnfs call is `nfs_pwrite_async`.
    package func write(_ bytes: UnsafeRawBufferPointer) throws {
        try client.locked { ctx in
            let fh = try openHandle("nfs_pwrite_async")
            try throwPending()
            let chunk = client.writeMax
            var off = 0
            while off < bytes.count {
                try drain(ctx, fh, to: max(1, client.options.writePipelineDepth) - 1, "nfs_pwrite_async")
                try throwPending()
                let n = min(chunk, bytes.count - off)
                let copy = UnsafeMutableRawPointer.allocate(byteCount: n, alignment: 16)
                copy.copyMemory(from: bytes.baseAddress! + off, byteCount: n)
                try submit(ctx, fh, NFSRequest(buffer: copy, ownsBuffer: true, offset: position, count: n, isRead: false))
                position += UInt64(n)
                off += n
            }
        }
    }

    /// Appends bytes (see `write(_:)` for an `UnsafeRawBufferPointer`).
    package func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    /// Writes all of `bytes` at `offset` and waits for it; does not move `position`.
    /// The corresponding libnfs call is `nfs_pwrite`.
    package func pwrite(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws {
        try client.locked { ctx in
            let fh = try openHandle("nfs_pwrite")
            try drain(ctx, fh, to: 0, "nfs_pwrite")
            try throwPending()
            var done = 0
            while done < bytes.count {
                let n = min(client.writeMax, bytes.count - done)
                let rc = nfs_pwrite(ctx, fh, offset + UInt64(done), UInt64(n), bytes.baseAddress! + done)
                if rc < 0 { throw client.failure("nfs_pwrite", path, rc) }
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
        try client.locked { ctx in
            let fh = try openHandle("flush")
            try drain(ctx, fh, to: 0, "nfs_pwrite_async")
            try throwPending()
        }
    }

    /// Flushes and asks the server to put the file's data on stable storage (NFS COMMIT).
    /// The corresponding libnfs call is `nfs_fsync`.
    package func sync() throws {
        try client.locked { ctx in
            let fh = try openHandle("nfs_fsync")
            try drain(ctx, fh, to: 0, "nfs_pwrite_async")
            try throwPending()
            try client.check("nfs_fsync", path, nfs_fsync(ctx, fh))
        }
    }

    /// Sets the file's size.
    /// The corresponding libnfs call is `nfs_ftruncate`.
    package func truncate(to size: UInt64) throws {
        try client.locked { ctx in
            let fh = try openHandle("nfs_ftruncate")
            try drain(ctx, fh, to: 0, "nfs_pwrite_async")
            try throwPending()
            try client.check("nfs_ftruncate", path, nfs_ftruncate(ctx, fh, size))
        }
    }

    // MARK: - Reading

    /// Reads up to `buffer.count` bytes at `offset` with up to `readPipelineDepth` READs in
    /// flight; fewer bytes only at end of file.
    /// - Returns: the number of bytes read (0 at or after the end).
    /// The corresponding libnfs call is `nfs_pread_async`.
    package func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Int {
        try client.locked { ctx in
            let fh = try openHandle("nfs_pread_async")
            try drain(ctx, fh, to: 0, "nfs_pwrite_async")
            try throwPending()
            var total = 0
            while total < buffer.count {
                // One pipelined round: up to readPipelineDepth READs of readMax bytes.
                var batch: [NFSRequest] = []
                var queued = 0
                while total + queued < buffer.count && batch.count < max(1, client.options.readPipelineDepth) {
                    let n = min(client.readMax, buffer.count - total - queued)
                    let req = NFSRequest(buffer: buffer.baseAddress! + total + queued, ownsBuffer: false,
                                         offset: offset + UInt64(total + queued), count: n, isRead: true)
                    try submit(ctx, fh, req)
                    batch.append(req)
                    queued += n
                }
                // Wait for all of them (the buffer belongs to the caller: never return early).
                do {
                    try drain(ctx, fh, to: 0, "nfs_pread_async")
                } catch {
                    throw error
                }
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
            return total
        }
    }

    /// Reads up to `count` bytes at `offset`; fewer only at end of file.
    package func read(at offset: UInt64, count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        let n = try out.withUnsafeMutableBytes { try read(into: $0, at: offset) }
        out.removeLast(count - n)
        return out
    }

    /// The file's current attributes.
    /// The corresponding libnfs call is `nfs_fstat64`.
    package func stat() throws -> NFSStat {
        try client.locked { ctx in
            let fh = try openHandle("nfs_fstat64")
            try drain(ctx, fh, to: 0, "nfs_pwrite_async")
            var st = nfs_stat_64()
            try client.check("nfs_fstat64", path, nfs_fstat64(ctx, fh, &st))
            return NFSStat(st)
        }
    }

    /// Waits for pipelined writes, then closes. Idempotent.
    /// - Throws: an error of a pipelined write, or of the close.
    /// The corresponding libnfs call is `nfs_close`.
    package func close() throws {
        try client.locked { ctx in
            guard let fh = handle else { return }
            var firstError: NFSError?
            do {
                try drain(ctx, fh, to: 0, "nfs_pwrite_async")
            } catch let e as NFSError {
                firstError = e
            }
            firstError = firstError ?? pendingError
            if inflight.isEmpty && !stranded {
                let rc = nfs_close(ctx, fh)
                if rc < 0 && firstError == nil { firstError = client.failure("nfs_close", path, rc) }
            }
            // With requests stranded on a dead connection the handle is left to the context.
            handle = nil
            if let firstError { throw firstError }
        }
    }
}
