// NFS: a userspace NFS client on libnfs 4.0 (the only importer of CNFS). `NFSClient` mounts an
// export from an `nfs://` URL (see `NFSURL` for the forms that work) and offers POSIX-like
// calls on paths relative to the URL's directory; `NFSFile` reads and writes one file, with
// large pipelined writes (several WRITE RPCs in flight) and pipelined reads.
//
// Guarantees: every failure is an `NFSError` naming the libnfs call, URL and path, errno and
// libnfs's error text. Data written is on stable storage only after `NFSFile.sync()` (COMMIT);
// writes are sent UNSTABLE before that, like a kernel client. No libnfs pointer leaves the
// module. One libnfs context per client; calls on one client (and its files) are serialised by
// a lock, so a client may be shared between threads but gives no parallelism: open one client
// per thread for that.
// Not guaranteed: atomicity across several operations. NFSv3 is the supported version:
// over NFSv4 libnfs 4.0 moves file data only in 2 KiB pieces (`smallIOOnly`).
import CNFS
import FoundationEssentials
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A mounted NFS export, reached through libnfs.
///
/// Paths given to its methods are relative to the URL's directory (`""` is that directory
/// itself) and use `/`. The directory may not exist yet; `makeDirectories("")` creates it.
package final class NFSClient: Sendable {
    /// Connection settings that are not part of the URL.
    package struct Options: Sendable {
        /// Per-RPC timeout in milliseconds (libnfs `nfs_set_timeout`; pipelined READs/WRITEs
        /// give up when none is answered for this long); 0 waits forever. The URL's
        /// `timeout=SECONDS` wins.
        package var timeoutMilliseconds: Int32 = Int32(NFSClient.defaultTimeoutSeconds) * 1000
        /// Reconnect attempts after the connection drops (`nfs_set_autoreconnect`):
        /// -1 forever (a kernel "hard" mount), 0 fail at once. The URL's `autoreconnect=` wins.
        package var autoreconnect: Int32 = 3
        /// WRITE RPCs (of `writeMax` bytes) kept in flight by `NFSFile.write`. With 1, one WRITE
        /// is still in flight while the caller prepares the next bytes. Measured on loopback
        /// (bench/nfs-throughput.sh) 1 is fastest: the server is CPU-bound and parallel WRITEs
        /// to one file contend. Raise it (4-8) for high-latency links (WAN, VPN).
        package var writePipelineDepth: Int = 1
        /// READ RPCs (of `readMax` bytes) kept in flight by `NFSFile.read`.
        package var readPipelineDepth: Int = 4
        /// Send every WRITE as FILE_SYNC (`O_SYNC`) instead of UNSTABLE + COMMIT. Slower on
        /// servers without a fast log device, but a server reboot between WRITE and COMMIT
        /// cannot lose acknowledged data (libnfs 4.0 does not compare COMMIT verifiers, so with
        /// unstable writes such a loss would go unnoticed).
        package var stableWrites: Bool = false
        /// libnfs's directory cache. Off by default: another client (or process) changing the
        /// export must be visible at once. The URL's `dircache=` wins.
        package var directoryCache: Bool = false

        package init() {}
    }

    /// The default per-call timeout in seconds.
    package static let defaultTimeoutSeconds = 60

    /// The URL this client was opened with.
    package let url: NFSURL
    /// The export path that was mounted (a prefix of the URL's path).
    package let mountedPath: String
    /// Path components of the URL's directory below `mountedPath` (may not exist yet).
    package let basePath: [String]
    /// Largest READ sent, in bytes (the server's maximum; `smallIOFallback` when libnfs does
    /// not know it, as over NFSv4).
    package let readMax: Int
    /// Largest WRITE sent, in bytes (as `readMax`).
    package let writeMax: Int
    /// True when libnfs reported no READ/WRITE size (NFSv4 with libnfs 4.0): file data then
    /// moves in `smallIOFallback`-byte pieces, which works but is slow.
    package let smallIOOnly: Bool
    /// The READ/WRITE size used when libnfs reports none. Measured with libnfs 4.0 over
    /// NFSv4 against ganesha: WRITEs of 3000 bytes work, 4000 fail to encode.
    package static let smallIOFallback = 2048
    package let options: Options

    /// The libnfs context and the state of the files open on it: one call at a time, so they
    /// are only reached through `withConnection` (or `locked`).
    private let connection: Mutex<Connection>
    private let nextFileID = Atomic<Int>(0)

    /// What the client's lock guards.
    struct Connection {
        let context: OpaquePointer
        /// The open `NFSFile`s' handles and requests in flight, by `NFSFile.id`.
        var files: [Int: OpenFile] = [:]
    }
    /// Set once a call timed out (changed with the connection locked): the server is frozen or
    /// gone, so later calls (removing the partial file, releasing a lock) wait at most
    /// `timeoutAfterTimeout`, and a run ends within about its timeout instead of a timeout per
    /// cleanup call.
    private let timedOut = Atomic<Bool>(false)
    /// The per-call limit in milliseconds after a timeout (or the configured one if smaller).
    static let timeoutAfterTimeout: Int32 = 5_000

    /// The per-call limit in milliseconds now (0: none). Call with the lock held.
    var currentTimeoutMilliseconds: Int32 {
        let t = options.timeoutMilliseconds
        guard timedOut.load(ordering: .relaxed), t > 0 else { return t }
        return min(t, NFSClient.timeoutAfterTimeout)
    }

    /// Records that a call timed out and shortens the limit of the calls after it, on this
    /// client and on every other client (or new mount) of the same server in this process.
    /// `ctx` is the client's context, inside `locked`.
    func noteTimeout(_ ctx: OpaquePointer) {
        UnresponsiveServers.shared.insert(url.server)
        guard !timedOut.exchange(true, ordering: .relaxed) else { return }
        libnfs.nfs_set_timeout(ctx, currentTimeoutMilliseconds)
    }

    /// Takes over a timeout seen by another client of the same server (inside `locked`).
    func adoptServerTimeout(_ ctx: OpaquePointer) {
        if !timedOut.load(ordering: .relaxed) && UnresponsiveServers.shared.contains(url.server) { noteTimeout(ctx) }
    }

    /// The URL without credentials, for messages.
    package var displayURL: String { url.displayString }

    /// Parses `url` and mounts its export.
    ///
    /// When the server refuses the whole path, shorter prefixes are tried: the longest one it
    /// mounts is the export and the rest is a directory inside it (so a not-yet-created backup
    /// directory below an export works).
    /// - Throws: `NFSError` (`.invalidURL`, `.connectionRefused`, `.hostUnreachable`,
    ///   `.exportNotFound`, `.permissionDenied`, ..., `.libraryMissing` when libnfs.so.13
    ///   cannot be loaded).
    /// The corresponding libnfs calls are `nfs_init_context`, `nfs_parse_url_dir`, `nfs_mount`.
    package convenience init(url: String, options: Options = Options()) throws {
        try self.init(url: try NFSURL(url), options: options)
    }

    /// Mounts the export of an already parsed URL; see `init(url:options:)`.
    package init(url: NFSURL, options: Options = Options()) throws {
        var options = options
        if let t = url.timeoutSeconds { options.timeoutMilliseconds = Int32(t) * 1000 }
        self.url = url
        self.options = options
        // First: without libnfs nothing below can run (no context, no call).
        _ = try LibNFS.load(for: url.displayString)
        try NFSClient.resolve(url)
        let token = NFSCallMonitor.shared.begin(server: url.server, timeoutSeconds: Int(options.timeoutMilliseconds / 1000))
        defer { NFSCallMonitor.shared.end(token) }
        var firstError: NFSError?
        let parts = url.components
        for keep in stride(from: parts.count, through: 1, by: -1) {
            let (ctx, server) = try NFSClient.makeContext(url, options)
            let prefix = "/" + parts[..<keep].joined(separator: "/")
            let rc = libnfs.nfs_mount(ctx, server, prefix)
            if rc == 0 {
                mountedPath = prefix
                basePath = Array(parts[keep...])
                let rm = Int(libnfs.nfs_get_readmax(ctx)), wm = Int(libnfs.nfs_get_writemax(ctx))
                readMax = rm > 0 ? rm : NFSClient.smallIOFallback
                writeMax = wm > 0 ? wm : NFSClient.smallIOFallback
                smallIOOnly = rm == 0 || wm == 0
                connection = Mutex(Connection(context: ctx))
                return
            }
            let err = NFSClient.mountError(ctx, rc: rc, url: url, prefix: prefix)
            libnfs.nfs_destroy_context(ctx)
            if firstError == nil { firstError = err }
            // Only a refused path is worth retrying with a shorter one.
            guard err.kind == .exportNotFound || err.kind == .notFound || err.kind == .permissionDenied else { break }
        }
        throw firstError!
    }

    deinit {
        connection.withLock { libnfs.nfs_destroy_context($0.context) }
    }

    /// Fails with a clear message when the server's name does not resolve (a typo in the
    /// URL), instead of libnfs's "No route to host".
    /// The corresponding libc call is `getaddrinfo`.
    static func resolve(_ url: NFSURL) throws {
        var host = url.server
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, nil, &hints, &res)
        if rc == 0 { freeaddrinfo(res); return }
        throw NFSError(kind: .hostUnreachable, call: "resolve server name", location: url.displayString, errno: 0,
                       detail: "the server name '\(host)' could not be resolved (\(String(cString: gai_strerror(rc))))")
    }

    static func makeContext(_ url: NFSURL, _ options: Options) throws -> (OpaquePointer, String) {
        guard let ctx = libnfs.nfs_init_context() else {
            throw NFSError(kind: .other(ENOMEM), call: "nfs_init_context", location: url.displayString,
                           errno: ENOMEM, detail: "cannot create an NFS context")
        }
        libnfs.nfs_set_dircache(ctx, options.directoryCache ? 1 : 0)
        libnfs.nfs_set_autoreconnect(ctx, options.autoreconnect)
        var timeout = options.timeoutMilliseconds
        if timeout > 0 && UnresponsiveServers.shared.contains(url.server) { timeout = min(timeout, NFSClient.timeoutAfterTimeout) }
        libnfs.nfs_set_timeout(ctx, timeout)
        // Applies version=, nfsport=, mountport=, uid=, gid=, ... to the context.
        // The URL without a user@ part (libnfs would take it for the host name).
        guard let parsed = libnfs.nfs_parse_url_dir(ctx, url.libnfsString) else {
            let text = nfsErrorText(ctx)
            libnfs.nfs_destroy_context(ctx)
            throw NFSError(kind: .invalidURL, call: "nfs_parse_url_dir", location: url.displayString, errno: 0, detail: text)
        }
        defer { libnfs.nfs_destroy_url(parsed) }
        let server = String(cString: parsed.pointee.server)
        return (ctx, server)
    }

    /// Classifies a failed `nfs_mount`.
    static func mountError(_ ctx: OpaquePointer, rc: Int32, url: NFSURL, prefix: String) -> NFSError {
        let e = -rc
        let text = nfsErrorText(ctx)
        let location = "\(url.displayString) (export \(prefix))"
        var kind: NFSError.Kind
        if text.contains("MNT3ERR_ACCES") || text.contains("MNT3ERR_NOENT") || text.contains("MNT3ERR_NOTDIR")
            || text.contains("NFS4ERR_NOENT") || text.contains("NFS3ERR_NOENT") || text.contains("NFS4ERR_NOTDIR") {
            kind = .exportNotFound
        } else if text.contains("NFS4ERR_ACCESS") || text.contains("NFS4ERR_PERM") || text.contains("NFS3ERR_ACCES")
            || text.contains("NFS4ERR_WRONGSEC") || text.contains("MNT3ERR_PERM") {
            kind = .permissionDenied
        } else if e == ECONNREFUSED || text.contains("onnection refused") {
            kind = .connectionRefused
        } else if text.contains("resolv") || text.contains("Invalid address") || text.contains("getaddrinfo")
            || e == EHOSTUNREACH || e == ENETUNREACH {
            kind = .hostUnreachable
        } else if e == ETIMEDOUT || text.lowercased().contains("timed out") || text.lowercased().contains("timeout") {
            kind = .timedOut
        } else {
            // libnfs often reports a dead socket only as "nfs_service failed": find out why.
            kind = NFSClient.probe(url: url) ?? .disconnected
        }
        // libnfs reports many connection failures as -1/-EIO; name the real cause instead.
        var errno = e > 0 ? e : 0
        if kind == .connectionRefused { errno = ECONNREFUSED }
        if kind == .hostUnreachable && (errno == EPERM || errno == EIO) { errno = EHOSTUNREACH }
        return NFSError(kind: kind, call: "nfs_mount", location: location, errno: errno, detail: text)
    }

    /// Tries plain TCP connects to the ports the URL uses; returns why they fail, if they do.
    static func probe(url: NFSURL) -> NFSError.Kind? {
        var ports: [UInt16] = []
        if let p = url.argument("nfsport").flatMap(UInt16.init) { ports.append(p) } else { ports.append(url.version == 4 ? 2049 : 111) }
        if url.version == 3, let p = url.argument("mountport").flatMap(UInt16.init) { ports.append(p) }
        for port in ports {
            if let kind = tcpProbe(host: url.server, port: port) { return kind }
        }
        return nil
    }

    static func tcpProbe(host: String, port: UInt16) -> NFSError.Kind? {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        var h = host
        if h.hasPrefix("[") && h.hasSuffix("]") { h = String(h.dropFirst().dropLast()) }
        guard getaddrinfo(h, String(port), &hints, &res) == 0, let first = res else { return .hostUnreachable }
        defer { freeaddrinfo(res) }
        let fd = socket(first.pointee.ai_family, first.pointee.ai_socktype | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        if connect(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 { return nil }
        if errno == ECONNREFUSED { return .connectionRefused }
        guard errno == EINPROGRESS else { return .hostUnreachable }
        var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        guard poll(&pfd, 1, 3000) == 1 else { return .hostUnreachable }
        var soerr: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len)
        if soerr == 0 { return nil }
        return soerr == ECONNREFUSED ? .connectionRefused : .hostUnreachable
    }

    // MARK: - Plumbing

    /// Runs `body` with the connection, holding the client's lock: every libnfs call of the
    /// client and its files runs in such a body.
    func withConnection<T: Sendable, E: Error>(_ body: sending (inout Connection) throws(E) -> T) throws(E) -> T {
        try connection.withLock { c throws(E) in
            adoptServerTimeout(c.context)
            let token = NFSCallMonitor.shared.begin(server: url.server, timeoutSeconds: Int(currentTimeoutMilliseconds / 1000))
            defer { NFSCallMonitor.shared.end(token) }
            return try body(&c)
        }
    }

    /// Runs `body` with the libnfs context, holding the client's lock.
    func locked<T: Sendable>(_ body: sending (OpaquePointer) throws -> T) throws -> T {
        try withConnection { c in try body(c.context) }
    }

    /// Keeps a newly opened handle in the connection and returns its file.
    private func register(_ c: inout Connection, _ handle: OpaquePointer) -> Int {
        let id = nextFileID.add(1, ordering: .relaxed).newValue
        c.files[id] = OpenFile(handle: handle)
        return id
    }

    /// The libnfs path (absolute inside the mount) for a path relative to the URL's directory.
    func nfsPath(_ relative: String) -> String {
        "/" + (basePath + relative.split(separator: "/").map(String.init)).joined(separator: "/")
    }

    /// The URL plus the relative path, for messages.
    func location(_ relative: String) -> String {
        relative.isEmpty ? url.displayString : "\(url.displayString) path \(relative)"
    }

    /// The error for a libnfs call on `ctx` (inside `locked`) that returned `-errno`.
    func failure(_ ctx: OpaquePointer, _ call: String, _ relative: String, _ rc: Int32) -> NFSError {
        let e = rc < 0 ? -rc : rc
        let text = nfsErrorText(ctx)
        var kind = NFSError.kind(forErrno: e, detail: text)
        if case .other = kind, text.contains("service failed") || text.contains("connect") || text.contains("Connection")
            || text.contains("socket") {
            kind = .disconnected
        }
        if kind == .timedOut || text.lowercased().contains("timed out") {
            kind = .timedOut
            noteTimeout(ctx)
        }
        return NFSError(kind: kind, call: call, location: location(relative), errno: e, detail: text)
    }

    func check(_ ctx: OpaquePointer, _ call: String, _ relative: String, _ rc: Int32) throws {
        if rc < 0 { throw failure(ctx, call, relative, rc) }
    }

    // MARK: - Metadata

    /// Attributes of `path`, following a final symlink.
    /// The corresponding libnfs call is `nfs_stat64`.
    package func stat(_ path: String) throws -> NFSStat {
        try locked { ctx in
            var st = nfs_stat_64()
            try check(ctx, "nfs_stat64", path, libnfs.nfs_stat64(ctx, nfsPath(path), &st))
            return NFSStat(st)
        }
    }

    /// Attributes of `path` itself (a symlink is not followed).
    /// The corresponding libnfs call is `nfs_lstat64`.
    package func lstat(_ path: String) throws -> NFSStat {
        try locked { ctx in
            var st = nfs_stat_64()
            try check(ctx, "nfs_lstat64", path, libnfs.nfs_lstat64(ctx, nfsPath(path), &st))
            return NFSStat(st)
        }
    }

    /// Like `lstat`, but nil when the path (or a parent) does not exist.
    package func lstatIfExists(_ path: String) throws -> NFSStat? {
        do { return try lstat(path) } catch let e as NFSError where e.kind == .notFound || e.kind == .notDirectory {
            return nil
        }
    }

    /// Reads a directory (without "." and ".."), with each entry's attributes.
    /// The corresponding libnfs calls are `nfs_opendir`, `nfs_readdir`, `nfs_closedir`.
    package func readDirectory(_ path: String) throws -> [NFSDirectoryEntry] {
        try locked { ctx in
            var dir: OpaquePointer?
            try check(ctx, "nfs_opendir", path, libnfs.nfs_opendir(ctx, nfsPath(path), &dir))
            guard let dir else { return [] }
            defer { libnfs.nfs_closedir(ctx, dir) }
            var out: [NFSDirectoryEntry] = []
            while let ent = libnfs.nfs_readdir(ctx, dir) {
                let name = String(cString: ent.pointee.name)
                if name == "." || name == ".." { continue }
                var attrs = NFSStat(ent.pointee)
                if attrs.kind == .unknown {
                    // READDIRPLUS did not carry attributes for this one: ask.
                    var st = nfs_stat_64()
                    let rel = path.isEmpty ? name : path + "/" + name
                    if libnfs.nfs_lstat64(ctx, nfsPath(rel), &st) == 0 { attrs = NFSStat(st) }
                }
                out.append(NFSDirectoryEntry(name: name, attributes: attrs))
            }
            return out
        }
    }

    /// Reads a symlink's target.
    /// The corresponding libnfs call is `nfs_readlink2`.
    package func readLink(_ path: String) throws -> String {
        try locked { ctx in
            var buf: UnsafeMutablePointer<CChar>?
            try check(ctx, "nfs_readlink2", path, libnfs.nfs_readlink2(ctx, nfsPath(path), &buf))
            defer { free(buf) }
            return buf.map { String(cString: $0) } ?? ""
        }
    }

    /// Space on the export.
    /// The corresponding libnfs call is `nfs_statvfs64`.
    package func space() throws -> NFSSpace {
        try locked { ctx in
            var sv = nfs_statvfs_64()
            try check(ctx, "nfs_statvfs64", "", libnfs.nfs_statvfs64(ctx, nfsPath(""), &sv))
            let unit = sv.f_frsize != 0 ? sv.f_frsize : sv.f_bsize
            return NFSSpace(totalBytes: sv.f_blocks &* unit, freeBytes: sv.f_bfree &* unit, availableBytes: sv.f_bavail &* unit)
        }
    }

    // MARK: - Namespace

    /// Creates one directory (its parent must exist).
    /// The corresponding libnfs call is `nfs_mkdir2`.
    package func makeDirectory(_ path: String, mode: UInt32 = 0o755) throws {
        try locked { ctx in try check(ctx, "nfs_mkdir2", path, libnfs.nfs_mkdir2(ctx, nfsPath(path), Int32(mode))) }
    }

    /// Creates a directory and its missing parents (`mkdir -p`); existing directories are fine.
    /// - Throws: `.notDirectory` when a component exists and is not a directory.
    /// The corresponding libnfs calls are `nfs_stat64` and `nfs_mkdir2`.
    package func makeDirectories(_ path: String, mode: UInt32 = 0o755) throws {
        // libnfs applies its umask (022) to `mode`.
        try locked { ctx in
            var st = nfs_stat_64()
            if libnfs.nfs_stat64(ctx, nfsPath(path), &st) == 0 {
                if NFSStat.kind(mode: UInt32(truncatingIfNeeded: st.nfs_mode)) == .directory { return }
                throw NFSError(kind: .notDirectory, call: "mkdir -p", location: location(path), errno: ENOTDIR,
                               detail: "exists and is not a directory")
            }
            // Components of the URL's own directory count too: it may not exist yet.
            let all = basePath + path.split(separator: "/").map(String.init)
            var current = ""
            for part in all {
                current += "/" + part
                let rc = libnfs.nfs_mkdir2(ctx, current, Int32(mode))
                if rc == 0 { continue }
                if -rc == EEXIST {
                    if libnfs.nfs_stat64(ctx, current, &st) == 0,
                       NFSStat.kind(mode: UInt32(truncatingIfNeeded: st.nfs_mode)) == .directory { continue }
                    throw NFSError(kind: .notDirectory, call: "mkdir -p", location: "\(url.displayString) path \(current)",
                                   errno: ENOTDIR, detail: "exists and is not a directory")
                }
                let e = failure(ctx, "nfs_mkdir2", path, rc)
                throw NFSError(kind: e.kind, call: e.call, location: "\(location(path)) (at \(current))",
                               errno: e.errno, detail: e.detail)
            }
        }
    }

    /// Removes an empty directory.
    /// The corresponding libnfs call is `nfs_rmdir`.
    package func removeDirectory(_ path: String) throws {
        try locked { ctx in try check(ctx, "nfs_rmdir", path, libnfs.nfs_rmdir(ctx, nfsPath(path))) }
    }

    /// Removes a file or symlink.
    /// The corresponding libnfs call is `nfs_unlink`.
    package func unlink(_ path: String) throws {
        try locked { ctx in try check(ctx, "nfs_unlink", path, libnfs.nfs_unlink(ctx, nfsPath(path))) }
    }

    /// Renames `from` to `to`, replacing `to` if it exists (atomic on the server).
    /// The corresponding libnfs call is `nfs_rename`.
    package func rename(_ from: String, to: String) throws {
        try locked { ctx in
            let rc = libnfs.nfs_rename(ctx, nfsPath(from), nfsPath(to))
            if rc < 0 {
                let e = failure(ctx, "nfs_rename", from, rc)
                throw NFSError(kind: e.kind, call: e.call, location: "\(location(from)) -> \(to)", errno: e.errno, detail: e.detail)
            }
        }
    }

    /// Creates a hard link `newPath` to the existing file `existing`.
    /// The corresponding libnfs call is `nfs_link`.
    package func link(_ existing: String, _ newPath: String) throws {
        try locked { ctx in
            let rc = libnfs.nfs_link(ctx, nfsPath(existing), nfsPath(newPath))
            if rc < 0 {
                let e = failure(ctx, "nfs_link", existing, rc)
                throw NFSError(kind: e.kind, call: e.call, location: "\(location(existing)) -> \(newPath)", errno: e.errno, detail: e.detail)
            }
        }
    }

    /// Creates a symlink at `path` whose target is `target` (stored verbatim).
    /// The corresponding libnfs call is `nfs_symlink`.
    package func symlink(target: String, at path: String) throws {
        try locked { ctx in try check(ctx, "nfs_symlink", path, libnfs.nfs_symlink(ctx, target, nfsPath(path))) }
    }

    // MARK: - Attributes

    /// Sets permission bits (follows a symlink).
    /// The corresponding libnfs call is `nfs_chmod`.
    package func chmod(_ path: String, mode: UInt32) throws {
        try locked { ctx in try check(ctx, "nfs_chmod", path, libnfs.nfs_chmod(ctx, nfsPath(path), Int32(mode & 0o7777))) }
    }

    /// Sets owner and group; `followSymlink: false` changes a symlink itself.
    /// The corresponding libnfs calls are `nfs_chown` / `nfs_lchown`.
    package func chown(_ path: String, uid: UInt32, gid: UInt32, followSymlink: Bool = true) throws {
        try locked { ctx in
            if followSymlink {
                try check(ctx, "nfs_chown", path, libnfs.nfs_chown(ctx, nfsPath(path), Int32(bitPattern: uid), Int32(bitPattern: gid)))
            } else {
                try check(ctx, "nfs_lchown", path, libnfs.nfs_lchown(ctx, nfsPath(path), Int32(bitPattern: uid), Int32(bitPattern: gid)))
            }
        }
    }

    /// Sets access and modification times (microsecond precision, as `utimes(2)`);
    /// `followSymlink: false` asks to change a symlink itself — libnfs 4.0 accepts that but
    /// (measured against ganesha) leaves the link's times unchanged.
    /// The corresponding libnfs calls are `nfs_utimes` / `nfs_lutimes`.
    package func setTimes(_ path: String, access: NFSTime, modification: NFSTime, followSymlink: Bool = true) throws {
        try locked { ctx in
            var tv = [
                timeval(tv_sec: Int(access.seconds), tv_usec: Int(access.nanoseconds / 1000)),
                timeval(tv_sec: Int(modification.seconds), tv_usec: Int(modification.nanoseconds / 1000)),
            ]
            let p = nfsPath(path)
            if followSymlink {
                try check(ctx, "nfs_utimes", path, libnfs.nfs_utimes(ctx, p, &tv))
            } else {
                try check(ctx, "nfs_lutimes", path, libnfs.nfs_lutimes(ctx, p, &tv))
            }
        }
    }

    // MARK: - Files

    /// How `create` treats an existing file.
    package enum CreateMode: Sendable {
        /// Replace: an existing file is truncated to 0 bytes.
        case truncate
        /// Fail with `.exists` if the path exists (NFSv3 EXCLUSIVE create: atomic on the server,
        /// safe for lock files).
        case exclusive
    }

    /// Creates a file for writing (and reading).
    /// - Parameters:
    ///   - mode: permission bits for a new file (libnfs applies its umask, 022).
    ///   - how: `.truncate` (default) or `.exclusive`.
    /// - Throws: `.exists` for an exclusive create of an existing path, `.notFound` when the
    ///   parent directory is missing, `.permissionDenied`, ...
    /// The corresponding libnfs call is `nfs_create` (with `O_TRUNC` or `O_EXCL`).
    package func create(_ path: String, mode: UInt32 = 0o644, _ how: CreateMode = .truncate) throws -> NFSFile {
        let id = try withConnection { c in
            var fh: OpaquePointer?
            let flags = O_RDWR | (how == .exclusive ? O_EXCL : O_TRUNC) | (options.stableWrites ? O_SYNC : 0)
            try check(c.context, "nfs_create", path, libnfs.nfs_create(c.context, nfsPath(path), flags, Int32(mode), &fh))
            return register(&c, fh!)
        }
        return NFSFile(client: self, id: id, path: path)
    }

    /// Opens an existing file. `flags` is `O_RDONLY`, `O_WRONLY` or `O_RDWR`, optionally with
    /// `O_TRUNC`, `O_APPEND`, `O_SYNC`, `O_NOFOLLOW`.
    /// The corresponding libnfs call is `nfs_open`.
    package func open(_ path: String, flags: Int32 = O_RDONLY) throws -> NFSFile {
        let id = try withConnection { c in
            var fh: OpaquePointer?
            let writing = flags & O_ACCMODE != O_RDONLY
            let all = flags | (writing && options.stableWrites ? O_SYNC : 0)
            try check(c.context, "nfs_open", path, libnfs.nfs_open(c.context, nfsPath(path), all, &fh))
            return register(&c, fh!)
        }
        return NFSFile(client: self, id: id, path: path)
    }
}


/// Servers that let a call of this process time out (frozen or gone): later calls to them, on
/// any client, wait at most `NFSClient.timeoutAfterTimeout`, so cleanup after a stall (remove
/// the partial file, release the lock) cannot add a full timeout per client or mount.
final class UnresponsiveServers: Sendable {
    static let shared = UnresponsiveServers()
    private let servers = Mutex(Set<String>())

    func insert(_ server: String) { servers.withLock { _ = $0.insert(server) } }
    func contains(_ server: String) -> Bool { servers.withLock { $0.contains(server) } }
}
