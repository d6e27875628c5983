import FoundationEssentials
import Support
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A destination on any remote of the `rclone` binary (`rclone:REMOTE:PATH`: S3, B2, SFTP,
/// WebDAV, Google Drive, ... as `rclone config` set them up; Debian 12 ships rclone 1.60).
/// No cloud SDK: everything goes through rclone (see `RcloneServer` for how it is run).
///
/// Same semantics as `LocalDestination`, with these differences:
/// - Uploads: a file written through `create` is uploaded when the writer is synced or
///   closed: small files (up to 4 MiB) in one request to the rclone server, larger ones
///   streamed to `rclone rcat` (with `--size` when the caller gave the size: S3 streams of
///   unknown size stop near 48 GiB). rclone 1.60's interrupted `rcat` leaves a truncated file
///   under the name it was given on SFTP, WebDAV and local remotes, so every caller in the
///   toolkit writes under a temporary name (`.partial`, `.tmp-<pid>`) and `rename`s (a
///   server-side `moveto`) once the writer succeeded; nothing is uploaded straight to a
///   final name.
/// - `createExclusive` is best-effort: rclone has no exclusive create, so it looks, uploads
///   and reads back. Two runs starting within the same second on two hosts can both believe
///   they hold a lock (`exclusiveCreateIsAtomic` is false; the lock message says so).
/// - `syncDirectory` checks the directory exists and does nothing else: a remote has no
///   directory fsync; an upload is durable when rclone reports it done. Not so on the local
///   backend (a USB disk named as a remote, an alias of a local path: `localDirectory`), where
///   rclone never fsyncs: there this process fsyncs as `LocalDestination` does (`onDisk`): each
///   file once rclone reports it written (writers, `upload(localFile:)`, the lock), directories
///   on `syncDirectory`, their parents on `syncParents`; `rename` alone fsyncs nothing, as there.
/// - Permissions are the remote's: SFTP servers apply their own umask (OpenSSH: `sftp-server
///   -u 0077`), the local backend gets umask 077, object stores have none.
/// - Errors are `RcloneError` (match `kind`; the description names what, where, rclone's
///   status and the tail of its stderr).
/// One rclone server per destination, shared by every thread.
package final class RcloneDestination: Destination {
    package let remote: RcloneRemote
    let server: RcloneServer
    /// The hash types the remote gives without reading the data (`md5`, `sha1`, `sha256`, ...).
    package let hashTypes: [String]
    /// True for object stores (S3, B2, GCS, ...), where an upload appears whole or not at all.
    package let isBucketBased: Bool

    package var displayName: String { remote.displayName }

    /// The directory on this machine when the remote is rclone's local backend (`:local:/x`, a
    /// configured `type = local` remote, an alias of one): its root as rclone resolved it.
    package let localDirectory: String?

    /// `localDirectory` as a local destination: the fsyncs rclone's local backend leaves out
    /// are its (nil for other remotes, which have none).
    let onDisk: LocalDestination?

    /// The local backend: the directory it names, as a local destination compares it (so
    /// `rclone::local:/x` and `/x` are one place). Others: the same remote (name, or
    /// connection string) and the same path, `.`, `..` and `//` taken lexically (a leading `/`
    /// kept: on sftp `nas:/x` and `nas:x` differ).
    package func isSamePlace(as other: any Destination) -> Bool {
        if let here = localDirectory {
            return other.localDirectory.map { LocalDestination.isSameDirectory(here, $0) } ?? false
        }
        guard let other = other as? RcloneDestination else { return false }
        func place(_ fs: String) -> [String] {
            let body = fs.hasPrefix(":") ? fs.dropFirst() : Substring(fs)
            let colon = body.firstIndex(of: ":") ?? body.endIndex
            return [String(fs[..<colon]), PlacePath.lexical(String(body[colon...].dropFirst()))]
        }
        return place(remote.fs) == place(other.remote.fs)
    }

    /// Variables set for every rclone this destination starts (over the environment).
    let environment: [String: String]

    private let callerChecks = Atomic<Bool>(false)

    /// From now on, small files written through `create` are uploaded without rclone's own
    /// comparison of the remote's hash with the bytes it received (one more hash command on an
    /// SFTP server per file): for a caller that checks every file it uploads itself (`copy`:
    /// the remote's hash against the bytes it sent, or read back). Larger files (`rcat --size`)
    /// and `upload(localFile:)` have no such comparison either way.
    package func leaveUploadChecksToCaller() { callerChecks.store(true, ordering: .relaxed) }

    var uploadsCheckedByCaller: Bool { callerChecks.load(ordering: .relaxed) }

    /// Starts rclone for `remote` and asks it what the remote can do (this reaches the remote:
    /// a wrong name or an unreachable server fails here).
    /// - Parameter environment: variables for rclone over this process's (tests: RCLONE_CONFIG).
    /// - Throws: `RcloneError` (`.usage` for a remote rclone does not know).
    package init(_ remote: RcloneRemote, environment: [String: String] = [:]) throws {
        self.remote = remote
        self.environment = environment
        server = try RcloneServer.start(extra: environment)
        let info = try server.call("operations/fsinfo", ["fs": remote.fs], location: remote.displayName, operation: "open")
        hashTypes = (info["Hashes"] as? [String] ?? []).map { $0.lowercased() }
        let features = info["Features"] as? [String: Any]
        isBucketBased = features?["BucketBased"] as? Bool ?? false
        // fsinfo's Root is the backend's own path: for the local backend, the absolute directory.
        let root = info["Root"] as? String
        localDirectory = features?["IsLocal"] as? Bool == true && root?.hasPrefix("/") == true ? root : nil
        onDisk = localDirectory.map { LocalDestination(root: $0) }
    }

    /// On the local backend, fsyncs the file `path` rclone has written (opened read-only: rclone
    /// closed it unsynced); nothing on other remotes.
    /// - Throws: `StorageError` (open or fsync) naming the file.
    func syncWrittenFile(_ path: String) throws {
        guard let onDisk else { return }
        let file = onDisk.absolutePath(path)
        do {
            let fd = try Sys.openRead(file)
            try Sys.closeAfter(fd) { fd throws(SysError) in try Sys.fsync(fd, path: file) }
        } catch {
            throw StorageError.posix(error.call, file, error.errno)
        }
    }

    /// Stops the rclone server now (it also stops when this process ends).
    package func shutdown() { server.stop() }

    package var exclusiveCreateIsAtomic: Bool { false }

    func call(_ method: String, _ params: [String: Any], _ path: String, _ operation: String) throws -> [String: Any] {
        try server.call(method, params, location: remote.display(path), operation: operation)
    }

    package func makeDirectories(_ path: String) throws {
        _ = try call("operations/mkdir", ["fs": remote.fs, "remote": path], path, "mkdir -p")
    }

    package func list(_ path: String) throws -> [DestinationEntry] {
        try listItems(path, options: [:]).map { Self.entry($0) }.sorted { $0.name < $1.name }
    }

    func listItems(_ path: String, options: [String: Any]) throws -> [[String: Any]] {
        var params: [String: Any] = ["fs": remote.fs, "remote": path]
        if !options.isEmpty { params["opt"] = options }
        let r = try call("operations/list", params, path, "list")
        return r["list"] as? [[String: Any]] ?? []
    }

    /// The hashes of type `type` (one of `hashTypes`) the remote holds for the files of
    /// directory `path`, by name (one request, no data read).
    package func hashes(in path: String, type: String) throws -> [String: String] {
        var out: [String: String] = [:]
        for item in try listItems(path, options: ["showHash": true, "hashTypes": [type], "filesOnly": true]) {
            if let name = item["Name"] as? String, let h = (item["Hashes"] as? [String: Any])?[type] as? String, !h.isEmpty {
                out[name] = h.lowercased()
            }
        }
        return out
    }

    /// The hash of type `type` (one of `hashTypes`) the remote gives for file `path` without
    /// transferring it (SFTP: `md5sum` run on the server; local: read there); nil when the
    /// remote has none for this file (e.g. some multipart uploads).
    package func hash(of path: String, type: String) throws -> String? {
        let r = try call("operations/stat", ["fs": remote.fs, "remote": path, "opt": ["showHash": true, "hashTypes": [type]]],
                         path, "hash (\(type))")
        guard let item = r["item"] as? [String: Any] else {
            throw RcloneError(kind: .notFound, operation: "hash (\(type))", location: remote.display(path), status: 0, detail: "no such file")
        }
        let h = ((item["Hashes"] as? [String: Any])?[type] as? String)?.lowercased()
        return h?.isEmpty == false ? h : nil
    }

    package func stat(_ path: String) throws -> DestinationEntry? {
        let r: [String: Any]
        do { r = try call("operations/stat", ["fs": remote.fs, "remote": path], path, "stat") } catch let e as RcloneError where e.kind == .notFound {
            return nil
        }
        guard let item = r["item"] as? [String: Any] else { return nil }
        var e = Self.entry(item)
        e.name = path.split(separator: "/").last.map(String.init) ?? ""
        return e
    }

    static func entry(_ item: [String: Any]) -> DestinationEntry {
        let isDir = item["IsDir"] as? Bool ?? false
        let size = item["Size"] as? Int64 ?? 0
        return DestinationEntry(name: item["Name"] as? String ?? "", kind: isDir ? .directory : .file, size: UInt64(max(size, 0)),
                                mtime: parseRFC3339(item["ModTime"] as? String ?? "") ?? 0)
    }

    package func create(_ path: String) throws -> any DestinationWriter {
        RcloneWriter(destination: self, path: path, size: nil)
    }

    package func create(_ path: String, size: UInt64?) throws -> any DestinationWriter {
        RcloneWriter(destination: self, path: path, size: size)
    }

    package func open(_ path: String) throws -> any DestinationReader {
        guard let st = try stat(path) else {
            throw RcloneError(kind: .notFound, operation: "open", location: remote.display(path), status: 0, detail: "no such file")
        }
        guard st.kind == .file else {
            throw RcloneError(kind: .failed, operation: "open", location: remote.display(path), status: 0, detail: "not a file")
        }
        return RcloneReader(destination: self, path: path, size: st.size)
    }

    /// An upload running in the rclone server (`upload(localFile:to:)`).
    package struct UploadJob: Sendable {
        let id: Int64
        let path: String
    }

    /// Starts uploading the local file `localPath` (absolute) to `path` by rclone itself
    /// (`operations/copyfile` from the local root, as an rclone job): its pooled connections to
    /// the remote, no process per file and no bytes through this process; what `rclone copy`
    /// does. rclone's own hash comparison is skipped (`IgnoreChecksum`): the caller checks the
    /// copy against the bytes it read itself (a file that changed between the two reads fails
    /// that check). `wait` for it.
    /// - Throws: `RcloneError`.
    package func upload(localFile localPath: String, to path: String) throws -> UploadJob {
        precondition(localPath.hasPrefix("/"), "upload(localFile:): an absolute path")
        let started = try call("operations/copyfile", ["srcFs": "/", "srcRemote": String(localPath.dropFirst()), "dstFs": remote.fs,
                                                       "dstRemote": path, "_config": ["IgnoreChecksum": true], "_async": true],
                               path, "upload (copyfile)")
        guard let id = started["jobid"] as? Int64 else {
            throw RcloneError(kind: .failed, operation: "upload (copyfile)", location: remote.display(path), status: 0,
                              detail: "rclone started no job: \(started)")
        }
        return UploadJob(id: id, path: path)
    }

    /// Waits until `job` has finished (polled); stops it when `cancelled()` turns true and
    /// then waits until it has stopped (at most 30 s), so nothing writes its file afterwards.
    /// - Throws: `RcloneError` when it failed; `CancellationError` when cancelled.
    package func wait(_ job: UploadJob, cancelled: () -> Bool) throws {
        let operation = "upload (copyfile)"
        var pause: useconds_t = 10_000
        var stopping: Date?
        while true {
            let status = try call("job/status", ["jobid": job.id], job.path, operation)
            if status["finished"] as? Bool == true {
                if stopping != nil { throw CancellationError() }
                if status["success"] as? Bool == true { return try syncWrittenFile(job.path) }
                let text = status["error"] as? String ?? "the job failed"
                throw RcloneError(kind: RcloneError.kind(httpStatus: 500, error: text), operation: operation, location: remote.display(job.path),
                                  status: 0, detail: text)
            }
            if stopping == nil, cancelled() {
                stopping = Date()
                _ = try call("job/stop", ["jobid": job.id], job.path, "stop \(operation)")
            }
            if let stopping, Date().timeIntervalSince(stopping) > 30 {
                throw RcloneError(kind: .failed, operation: "stop \(operation)", location: remote.display(job.path), status: 0,
                                  detail: "the upload did not stop within 30 s")
            }
            usleep(pause)
            pause = min(pause * 2, 100_000)
        }
    }

    package func rename(_ from: String, to: String) throws {
        _ = try call("operations/movefile", ["srcFs": remote.fs, "srcRemote": from, "dstFs": remote.fs, "dstRemote": to],
                     from, "rename to \(to) (moveto)")
    }

    package func remove(_ path: String) throws {
        do { _ = try call("operations/deletefile", ["fs": remote.fs, "remote": path], path, "remove") } catch let e as RcloneError where e.kind == .notFound {}
    }

    package func removeDirectory(_ path: String) throws {
        do { _ = try call("operations/rmdir", ["fs": remote.fs, "remote": path], path, "rmdir") } catch let e as RcloneError where e.kind == .notFound {}
    }

    /// Best-effort: false when `path` exists; else uploads `contents` and reads the file back,
    /// false when another writer's contents are there. Ours is fsynced on the local backend (as
    /// `LocalDestination` fsyncs its lock; not its directory).
    package func createExclusive(_ path: String, contents: [UInt8]) throws -> Bool {
        if try stat(path) != nil { return false }
        try server.upload(fs: remote.fs, path: path, contents: contents, location: remote.display(path), callerChecks: uploadsCheckedByCaller)
        guard try readAll(path) == contents else { return false }
        try syncWrittenFile(path)
        return true
    }

    /// On the local backend, `LocalDestination.syncParents` (rclone's mkdir fsyncs nothing).
    package func syncParents(of path: String) throws { try onDisk?.syncParents(of: path) }

    package func syncDirectory(_ path: String) throws {
        if let onDisk { return try onDisk.syncDirectory(path) }
        guard let st = try stat(path), st.kind == .directory else {
            throw RcloneError(kind: .notFound, operation: "sync directory", location: remote.display(path), status: 0, detail: "not a directory")
        }
    }

    /// Seconds since the epoch of an RFC 3339 time as rclone writes it (fractions ignored).
    static func parseRFC3339(_ s: String) -> Int64? {
        let b = Array(s.utf8)
        guard b.count >= 20 else { return nil }
        func num(_ r: Range<Int>) -> Int32? { Int32(String(decoding: b[r], as: UTF8.self)) }
        guard let y = num(0..<4), let mo = num(5..<7), let d = num(8..<10), let h = num(11..<13), let mi = num(14..<16),
              let sec = num(17..<19) else { return nil }
        var t = tm()
        t.tm_year = y - 1900; t.tm_mon = mo - 1; t.tm_mday = d; t.tm_hour = h; t.tm_min = mi; t.tm_sec = sec
        var seconds = Int64(timegm(&t))
        var i = 19
        while i < b.count, b[i] == UInt8(ascii: ".") || (b[i] >= 0x30 && b[i] <= 0x39) { i += 1 }
        if i + 6 <= b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-"), let oh = num((i + 1)..<(i + 3)), let om = num((i + 4)..<(i + 6)) {
            let offset = Int64(oh) * 3600 + Int64(om) * 60
            seconds += b[i] == UInt8(ascii: "+") ? -offset : offset
        }
        return seconds
    }
}

/// A file being uploaded: kept in memory while small, then streamed to `rclone rcat`.
final class RcloneWriter: DestinationWriter {
    /// Files up to this size go up in one request to the rclone server.
    static let smallLimit = 4 << 20

    let destination: RcloneDestination
    let path: String
    let size: UInt64?
    private var buffer: [UInt8] = []
    private var upload: ChildProcess?
    private var written: UInt64 = 0
    private var finished = false

    init(destination: RcloneDestination, path: String, size: UInt64?) {
        self.destination = destination
        self.path = path
        self.size = size
    }

    deinit {
        // Never finished (the caller gave up): stop rclone without completing the upload.
        if let upload, !finished { upload.signal(SIGTERM); upload.wait() }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        precondition(!finished, "write after sync/close")
        written += UInt64(bytes.count)
        if upload == nil, written <= UInt64(Self.smallLimit), (size ?? 0) <= UInt64(Self.smallLimit) {
            buffer.append(contentsOf: bytes)
            return
        }
        if upload == nil {
            upload = try startUpload()
            let pending = buffer
            buffer = []
            try send(pending)
        }
        try send(bytes)
    }

    private func send(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try send($0) } }

    private func send(_ bytes: UnsafeRawBufferPointer) throws {
        guard let upload else { return }
        do { try upload.write(bytes) } catch is ChildInputClosed {
            finished = true
            throw failure(upload.wait())
        }
    }

    private func startUpload() throws -> ChildProcess {
        var args = ["sh", "-c", #"umask 077; exec "$@""#, "hs-rclone", RcloneServer.binary, "rcat"]
        if let size { args += ["--size", String(size)] }
        args.append(destination.remote.path(path))
        do {
            return try ChildProcess.start(args, environment: RcloneServer.environment.merging(destination.environment) { $1 },
                                          input: .stream)
        } catch {
            throw RcloneError(kind: .failed, operation: "upload (rcat)", location: destination.remote.display(path), status: 127, detail: "\(error)")
        }
    }

    private func failure(_ r: ProcessResult) -> RcloneError {
        RcloneError(kind: RcloneError.kind(exitStatus: r.status, stderr: r.stderr), operation: "upload (rcat)",
                    location: destination.remote.display(path), status: r.status, detail: RcloneError.tail(r.stderr))
    }

    /// Completes the upload: the file is on the remote when this returns (on the local
    /// backend, fsynced).
    func sync() throws { try finish() }

    func close() throws { try finish() }

    private func finish() throws {
        guard !finished else { return }
        finished = true
        if let size, written != size {
            upload?.signal(SIGTERM)
            upload?.wait()
            throw RcloneError(kind: .failed, operation: "upload", location: destination.remote.display(path), status: 0,
                              detail: "\(written) bytes written where \(size) were announced; nothing was completed")
        }
        if let upload {
            upload.closeInput()
            let r = upload.wait()
            if r.status != 0 { throw failure(r) }
        } else {
            try destination.server.upload(fs: destination.remote.fs, path: path, contents: buffer, location: destination.remote.display(path),
                                          callerChecks: destination.uploadsCheckedByCaller)
            buffer = []
        }
        try destination.syncWrittenFile(path)
    }
}

/// A file read through the rclone server with ranged requests, read ahead while the reads are
/// sequential (1 MiB, doubling to 16 MiB).
final class RcloneReader: DestinationReader {
    static let firstWindow = 1 << 20
    static let maxWindow = 16 << 20

    let destination: RcloneDestination
    let path: String
    let size: UInt64
    private let cache = Mutex<(offset: UInt64, bytes: [UInt8], window: Int)>((0, [], firstWindow))

    init(destination: RcloneDestination, path: String, size: UInt64) {
        self.destination = destination
        self.path = path
        self.size = size
    }

    func read(at offset: UInt64, count: Int) throws -> [UInt8] {
        guard offset < size, count > 0 else { return [] }
        let want = Int(min(UInt64(count), size - offset))
        let (hit, window) = cache.withLock { c -> ([UInt8]?, Int) in
            if offset >= c.offset, offset + UInt64(want) <= c.offset + UInt64(c.bytes.count) {
                let start = Int(offset - c.offset)
                return (Array(c.bytes[start..<(start + want)]), c.window)
            }
            let sequential = offset >= c.offset && offset <= c.offset + UInt64(c.bytes.count) && !c.bytes.isEmpty
            return (nil, sequential ? min(c.window * 2, Self.maxWindow) : Self.firstWindow)
        }
        if let hit { return hit }
        let length = Int(min(UInt64(max(want, window)), size - offset))
        var bytes: [UInt8] = []
        bytes.reserveCapacity(length)
        while bytes.count < length {
            let got = try destination.server.read(fs: destination.remote.fs, path: path, offset: offset + UInt64(bytes.count),
                                                  count: length - bytes.count, location: destination.remote.display(path))
            if got.isEmpty { break }
            bytes += got
        }
        cache.withLock { $0 = (offset, bytes, window) }
        return Array(bytes.prefix(want))
    }

    func close() throws {
        cache.withLock { $0.bytes = [] }
    }
}
