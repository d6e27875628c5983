// The one system-call layer of the toolkit: every module calls libc for files through `Sys`
// (EINTR retried in one helper, errno kept in one typed error, `strerror` in one place, the
// Linux flags Swift's Glibc import leaves out defined once, libc that Glibc does not declare
// reached through `CShims`). Calls take names as bytes (`[UInt8]`) or C strings: a file name
// is bytes until it is shown, and `SysError` shows it escaped (`NameEscape`).
internal import CShims
import Glibc

/// A failed system call: which call, on which file (as shown to a person, escaped), errno and
/// an optional hint saying what to do.
package struct SysError: Error, CustomStringConvertible, Sendable, Equatable {
    package var call: String
    package var path: String
    package var errno: Int32
    package var hint: String?

    /// - Parameter path: the file as shown to a person (already escaped, or a plain path).
    package init(call: String, path: String, errno: Int32, hint: String? = nil) {
        self.call = call; self.path = path; self.errno = errno; self.hint = hint
    }

    /// - Parameter name: the file's bytes; shown escaped (`NameEscape.escape`).
    package init(call: String, name: some Collection<UInt8>, errno: Int32, hint: String? = nil) {
        self.init(call: call, path: NameEscape.escape(name), errno: errno, hint: hint)
    }

    /// `strerror` of the errno ("No such file or directory").
    package var reason: String { Sys.strerror(errno) }

    package var description: String {
        let at = path.isEmpty ? "" : " \(path)"
        return "\(call)\(at): \(reason) (errno \(errno))" + (hint.map { "; \($0)" } ?? "")
    }
}

/// What `lstat`/`fstat`/`fstatat` says about a file, as plain values.
package struct FileStat: Sendable, Equatable {
    package var dev: UInt64
    package var ino: UInt64
    package var mode: UInt32
    package var nlink: UInt64
    package var uid: UInt32
    package var gid: UInt32
    package var rdev: UInt64
    package var size: UInt64
    /// 512-byte blocks allocated (less than size/512 for a sparse file).
    package var blocks: UInt64
    /// Modification and change times as (seconds, nanoseconds): the full range a filesystem can
    /// hold (nanoseconds since 1970 in one Int64 would trap after 2262 and before 1677).
    package var mtime: Stamp
    package var ctime: Stamp

    package struct Stamp: Equatable, Sendable {
        package var seconds: Int64
        package var nanoseconds: Int64
        package init(seconds: Int64, nanoseconds: Int64) { self.seconds = seconds; self.nanoseconds = nanoseconds }
        init(_ t: timespec) { seconds = Int64(t.tv_sec); nanoseconds = Int64(t.tv_nsec) }
    }

    package init(_ st: stat) {
        dev = UInt64(st.st_dev)
        ino = UInt64(st.st_ino)
        mode = UInt32(st.st_mode)
        nlink = UInt64(st.st_nlink)
        uid = st.st_uid
        gid = st.st_gid
        rdev = UInt64(st.st_rdev)
        size = UInt64(max(0, st.st_size))
        blocks = UInt64(max(0, st.st_blocks))
        mtime = Stamp(st.st_mtim)
        ctime = Stamp(st.st_ctim)
    }

    /// The `S_IFMT` bits.
    package var type: UInt32 { mode & UInt32(S_IFMT) }
    package var isRegular: Bool { type == UInt32(S_IFREG) }
    package var isDirectory: Bool { type == UInt32(S_IFDIR) }
    package var isSymlink: Bool { type == UInt32(S_IFLNK) }
    package var permissions: UInt32 { mode & 0o7777 }
    /// Same file object (device and inode) of the same type: the identity check after an open.
    package func sameIdentity(as other: FileStat) -> Bool { dev == other.dev && ino == other.ino && type == other.type }
    /// Same file, unchanged: inode, size, mtime and ctime (ctime moves on any metadata change).
    package func sameUnchangedFile(as other: FileStat) -> Bool {
        dev == other.dev && ino == other.ino && size == other.size && mtime == other.mtime
            && ctime == other.ctime
    }
}

/// Where an extended attribute call goes.
package enum XattrTarget: Sendable {
    /// An open descriptor (`f*xattr`).
    case fd(Int32)
    /// A path; a final symlink is not followed (`l*xattr`).
    case path([UInt8])
    /// `name` in the directory open as `dirfd`, a final symlink not followed: the `l*xattr`
    /// calls on `/proc/self/fd/<dirfd>/<name>` (the kernels of Debian 12 and Proxmox 8 have no
    /// `*xattrat` calls; the directory is the checked descriptor, no path is walked).
    case at(dirfd: Int32, name: [UInt8])

    /// The bytes shown in an error.
    var shown: [UInt8] {
        switch self {
        case .fd(let fd): return Array("fd \(fd)".utf8)
        case .path(let p): return p
        case .at(_, let name): return name
        }
    }
}

/// The one place that calls libc for files. Every call retries on EINTR; failures throw
/// `SysError` (call, errno, file, hint).
///
///     let dir = try Sys.open(Array("/srv/appdata".utf8), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
///     defer { Sys.close(dir) }
///     let fd = try Sys.openat(dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC | Sys.O_NOATIME)
///     let st = try Sys.fstat(fd)
///     guard st.sameIdentity(as: scanned) else { ... left out: changed }
///     for attr in try Sys.listXattrs(.fd(fd)) { let value = try Sys.getXattr(.fd(fd), attr) }
package enum Sys {
    // MARK: Linux constants Swift's Glibc import leaves out (values from the C headers).
    package static let O_PATH: Int32 = cshims_o_path()
    package static let O_NOATIME: Int32 = cshims_o_noatime()
    package static let O_TMPFILE: Int32 = cshims_o_tmpfile()
    package static let AT_EMPTY_PATH: Int32 = cshims_at_empty_path()
    package static let UTIME_NOW: Int = cshims_utime_now()
    package static let UTIME_OMIT: Int = cshims_utime_omit()
    package static let FALLOC_FL_PUNCH_HOLE: Int32 = cshims_falloc_punch_hole()
    package static let FALLOC_FL_KEEP_SIZE: Int32 = cshims_falloc_keep_size()
    package static let SEEK_DATA: Int32 = cshims_seek_data()
    package static let SEEK_HOLE: Int32 = cshims_seek_hole()

    // MARK: The two helpers everything else uses.

    /// The text of an errno ("Permission denied"). The only `strerror` call of the toolkit.
    package static func strerror(_ e: Int32) -> String { String(cString: Glibc.strerror(e)) }

    /// Runs `body` again while it fails with EINTR; returns its last result (errno is set
    /// when that is -1). The only EINTR loop of the toolkit.
    @inline(__always)
    package static func retry<T: BinaryInteger>(_ body: () -> T) -> T {
        while true {
            let r = body()
            if r == -1 && errno == EINTR { continue }
            return r
        }
    }

    /// `retry` for the `Int32` results of most calls. Not generic: a generic call from another
    /// module is not specialized and went through the runtime's metadata cache on every call
    /// (seen in a restore's writer threads, once per file and directory).
    package static func retry(_ body: () -> Int32) -> Int32 {
        while true {
            let r = body()
            if r == -1 && errno == EINTR { continue }
            return r
        }
    }

    /// `retry(body)`, throwing `SysError(call, file, errno)` when the result is negative.
    @inline(__always)
    package static func check<T: BinaryInteger>(_ call: String, _ file: @autoclosure () -> String,
                                                hint: String? = nil, _ body: () -> T) throws(SysError) -> T {
        let r = retry(body)
        if r < 0 { throw SysError(call: call, path: file(), errno: errno, hint: hint) }
        return r
    }

    /// Calls `body` with `bytes` as a NUL-terminated C string (bytes up to a NUL are used).
    @inline(__always)
    package static func withCName<R>(_ bytes: some Collection<UInt8>, _ body: (UnsafePointer<CChar>) -> R) -> R {
        var c = [CChar](); c.reserveCapacity(bytes.count + 1)
        for b in bytes { c.append(CChar(bitPattern: b)) }
        c.append(0)
        return c.withUnsafeBufferPointer { body($0.baseAddress!) }
    }

    /// `withCName` of an array for the `Int32` results of most calls (not generic: see `retry`).
    package static func withCName(_ bytes: [UInt8], _ body: (UnsafePointer<CChar>) -> Int32) -> Int32 {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: bytes.count + 1) { buf in
            bytes.withUnsafeBytes { src in
                if src.count > 0 { UnsafeMutableRawPointer(buf.baseAddress!).copyMemory(from: src.baseAddress!, byteCount: src.count) }
            }
            buf[bytes.count] = 0
            return body(UnsafePointer(buf.baseAddress!))
        }
    }

    /// `withCName` for an array: copied once into a temporary (stack) buffer, no per-byte work
    /// and no allocation for a name of ordinary length (a restore makes one per entry).
    package static func withCName<R>(_ bytes: [UInt8], _ body: (UnsafePointer<CChar>) -> R) -> R {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: bytes.count + 1) { buf in
            bytes.withUnsafeBytes { src in
                if src.count > 0 { UnsafeMutableRawPointer(buf.baseAddress!).copyMemory(from: src.baseAddress!, byteCount: src.count) }
            }
            buf[bytes.count] = 0
            return body(UnsafePointer(buf.baseAddress!))
        }
    }

    /// `withCName` of an array slice (a name within a path), as for an array (not generic:
    /// see `retry`).
    package static func withCName(_ bytes: ArraySlice<UInt8>, _ body: (UnsafePointer<CChar>) -> Int32) -> Int32 {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: bytes.count + 1) { buf in
            bytes.withUnsafeBytes { src in
                if src.count > 0 { UnsafeMutableRawPointer(buf.baseAddress!).copyMemory(from: src.baseAddress!, byteCount: src.count) }
            }
            buf[bytes.count] = 0
            return body(UnsafePointer(buf.baseAddress!))
        }
    }

    /// `withCName` of an array slice: copied once into a temporary (stack) buffer.
    package static func withCName<R>(_ bytes: ArraySlice<UInt8>, _ body: (UnsafePointer<CChar>) -> R) -> R {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: bytes.count + 1) { buf in
            bytes.withUnsafeBytes { src in
                if src.count > 0 { UnsafeMutableRawPointer(buf.baseAddress!).copyMemory(from: src.baseAddress!, byteCount: src.count) }
            }
            buf[bytes.count] = 0
            return body(UnsafePointer(buf.baseAddress!))
        }
    }

    // MARK: Opening and closing.

    /// `open(path, flags, mode)`.
    package static func open(_ path: [UInt8], _ flags: Int32, mode: UInt32 = 0, hint: String? = nil) throws(SysError) -> Int32 {
        try check("open", NameEscape.escape(path), hint: hint) { withCName(path) { Glibc.open($0, flags, mode) } }
    }

    /// `openat(dirfd, name, flags, mode)`: `name` relative to the directory open as `dirfd`.
    /// - Parameter shown: the file as named in an error (default: `name`, escaped).
    package static func openat(_ dirfd: Int32, _ name: UnsafePointer<CChar>, _ flags: Int32, mode: UInt32 = 0,
                               shown: @autoclosure () -> String? = nil) throws(SysError) -> Int32 {
        try check("open", shown() ?? escaped(name)) { Glibc.openat(dirfd, name, flags, mode) }
    }

    /// `openat` with the name as bytes.
    package static func openat(_ dirfd: Int32, _ name: [UInt8], _ flags: Int32, mode: UInt32 = 0,
                               shown: @autoclosure () -> String? = nil) throws(SysError) -> Int32 {
        let fd = retry { withCName(name) { Glibc.openat(dirfd, $0, flags, mode) } }
        if fd < 0 { throw SysError(call: "open", path: shown() ?? NameEscape.escape(name), errno: errno) }
        return fd
    }

    /// `close(fd)`; its result is of no use after a successful write and fsync (Linux frees the
    /// descriptor even when close reports EINTR, so it is never retried).
    package static func close(_ fd: Int32) { _ = Glibc.close(fd) }

    /// Runs `body(fd)` and closes `fd` afterwards, also when `body` throws.
    package static func closeAfter<R, E: Error>(_ fd: Int32, _ body: (Int32) throws(E) -> R) throws(E) -> R {
        defer { close(fd) }
        return try body(fd)
    }

    // MARK: Status.

    /// `fstat(fd)`.
    package static func fstat(_ fd: Int32, shown: @autoclosure () -> String = "") throws(SysError) -> FileStat {
        var st = Glibc.stat()
        _ = try check("fstat", shown()) { Glibc.fstat(fd, &st) }
        return FileStat(st)
    }

    /// `fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW unless followSymlinks)`; nil when there is no
    /// such entry (ENOENT, ENOTDIR).
    package static func fstatat(_ dirfd: Int32, _ name: UnsafePointer<CChar>, followSymlinks: Bool = false,
                                shown: @autoclosure () -> String? = nil) throws(SysError) -> FileStat? {
        var st = Glibc.stat()
        if retry({ Glibc.fstatat(dirfd, name, &st, followSymlinks ? 0 : AT_SYMLINK_NOFOLLOW) }) != 0 {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw SysError(call: "lstat", path: shown() ?? escaped(name), errno: errno)
        }
        return FileStat(st)
    }

    /// `fstatat` with the name as bytes.
    package static func fstatat(_ dirfd: Int32, _ name: [UInt8], followSymlinks: Bool = false,
                                shown: @autoclosure () -> String? = nil) throws(SysError) -> FileStat? {
        var st = Glibc.stat()
        if retry({ withCName(name) { Glibc.fstatat(dirfd, $0, &st, followSymlinks ? 0 : AT_SYMLINK_NOFOLLOW) } }) != 0 {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw SysError(call: "lstat", path: shown() ?? NameEscape.escape(name), errno: errno)
        }
        return FileStat(st)
    }

    /// `lstat`; nil when the path does not exist.
    package static func lstat(_ path: String) throws(SysError) -> FileStat? {
        try fstatat(AT_FDCWD, path, followSymlinks: false, shown: path)
    }

    /// `stat` (follows symlinks); nil when the path does not exist.
    package static func stat(_ path: String) throws(SysError) -> FileStat? {
        try fstatat(AT_FDCWD, path, followSymlinks: true, shown: path)
    }

    /// `readlinkat(dirfd, name)`: a symlink's target as bytes.
    package static func readlinkat(_ dirfd: Int32, _ name: [UInt8], shown: @autoclosure () -> String? = nil) throws(SysError) -> [UInt8] {
        var size = 256
        while true {
            var buf = [UInt8](repeating: 0, count: size)
            let n = retry { withCName(name) { n in buf.withUnsafeMutableBytes { Glibc.readlinkat(dirfd, n, $0.baseAddress!.assumingMemoryBound(to: CChar.self), size) } } }
            if n < 0 { throw SysError(call: "readlink", path: shown() ?? NameEscape.escape(name), errno: errno) }
            if n < size { return Array(buf[..<n]) }
            size *= 4
        }
    }

    // MARK: Reading and writing.

    /// Reads up to `buffer.count` bytes; 0 at end of file.
    package static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, shown: @autoclosure () -> String = "") throws(SysError) -> Int {
        try check("read", shown()) { Glibc.read(fd, buffer.baseAddress, buffer.count) }
    }

    /// Reads up to `buffer.count` bytes at `offset`; 0 at end of file.
    package static func pread(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64,
                              shown: @autoclosure () -> String = "") throws(SysError) -> Int {
        try check("read", shown()) { Glibc.pread(fd, buffer.baseAddress, buffer.count, off_t(offset)) }
    }

    /// Fills `buffer` unless end of file comes first; returns the bytes read. With `offset`,
    /// reads at that offset (`pread`) without moving the file position.
    package static func readFull(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64? = nil,
                                 shown: @autoclosure () -> String = "") throws(SysError) -> Int {
        var got = 0
        while got < buffer.count {
            let rest = UnsafeMutableRawBufferPointer(rebasing: buffer[got...])
            let n: Int
            if let offset { n = try pread(fd, into: rest, at: offset + UInt64(got), shown: shown()) }
            else { n = try read(fd, into: rest, shown: shown()) }
            if n == 0 { break }
            got += n
        }
        return got
    }

    /// Writes all of `bytes` (at `offset` when given, with `pwrite`).
    package static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: UInt64? = nil,
                                 shown: @autoclosure () -> String = "") throws(SysError) {
        var done = 0
        while done < bytes.count {
            let p = bytes.baseAddress! + done, n = bytes.count - done
            let w = try check("write", shown()) {
                if let offset { return Glibc.pwrite(fd, p, n, off_t(offset + UInt64(done))) }
                return Glibc.write(fd, p, n)
            }
            if w == 0 { throw SysError(call: "write", path: shown(), errno: EIO) }
            done += w
        }
    }

    /// Writes all of `bytes`.
    package static func writeAll(_ fd: Int32, _ bytes: [UInt8], at offset: UInt64? = nil, shown: @autoclosure () -> String = "") throws(SysError) {
        var failure: SysError?
        bytes.withUnsafeBytes { b in
            do throws(SysError) { try writeAll(fd, b, at: offset, shown: shown()) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// `lseek(fd, offset, SEEK_DATA)`: the next offset at or after `offset` holding data, or
    /// nil when only a hole follows (ENXIO). Filesystems without hole support report all data.
    package static func nextData(_ fd: Int32, from offset: UInt64, shown: @autoclosure () -> String = "") throws(SysError) -> UInt64? {
        let r = Glibc.lseek(fd, off_t(offset), Sys.SEEK_DATA)
        if r < 0 { if errno == ENXIO { return nil }; throw SysError(call: "lseek(SEEK_DATA)", path: shown(), errno: errno) }
        return UInt64(r)
    }

    /// `lseek(fd, offset, SEEK_HOLE)`: the next hole at or after `offset` (the end of file
    /// counts as one).
    package static func nextHole(_ fd: Int32, from offset: UInt64, shown: @autoclosure () -> String = "") throws(SysError) -> UInt64 {
        let r = Glibc.lseek(fd, off_t(offset), Sys.SEEK_HOLE)
        if r < 0 { throw SysError(call: "lseek(SEEK_HOLE)", path: shown(), errno: errno) }
        return UInt64(r)
    }

    /// `ftruncate(fd, size)`.
    package static func ftruncate(_ fd: Int32, _ size: UInt64, shown: @autoclosure () -> String = "") throws(SysError) {
        _ = try check("truncate", shown()) { Glibc.ftruncate(fd, off_t(size)) }
    }

    /// `fallocate(fd, mode, offset, length)`.
    package static func fallocate(_ fd: Int32, mode: Int32 = 0, offset: UInt64, length: UInt64,
                                  shown: @autoclosure () -> String = "") throws(SysError) {
        _ = try check("fallocate", shown()) { cshims_fallocate(fd, mode, Int64(offset), Int64(length)) }
    }

    /// `fsync(fd)`.
    package static func fsync(_ fd: Int32, shown: @autoclosure () -> String = "") throws(SysError) {
        _ = try check("fsync", shown()) { Glibc.fsync(fd) }
    }

    /// Flushes a directory's entries (after renames). Errors are ignored where unsupported.
    package static func syncDirectory(_ path: String) {
        let fd = retry { Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        guard fd >= 0 else { return }
        _ = Glibc.fsync(fd)
        close(fd)
    }

    /// `getdents64(fd, buffer)`: raw directory entries (`linux_dirent64` records); 0 at the end.
    package static func getdents64(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, shown: @autoclosure () -> String = "") throws(SysError) -> Int {
        try check("getdents64", shown()) { cshims_getdents64(fd, buffer.baseAddress, buffer.count) }
    }

    /// The names in the directory `path` (without "." and ".."), in the directory's order.
    /// - Throws: the SysError of the open (EACCES, ENOTDIR, ...) or of a read ("readdir":
    ///   EIO, ...): a directory that cannot be read is never taken for an empty one.
    package static func directoryNames(_ path: String) throws(SysError) -> [[UInt8]] {
        let fd = try check("open", path) { Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        guard let dir = fdopendir(fd) else {
            let e = errno
            close(fd)
            throw SysError(call: "fdopendir", path: path, errno: e)
        }
        defer { closedir(dir) }
        var names: [[UInt8]] = []
        while true {
            errno = 0   // readdir's end and its failure both return NULL: errno tells them apart
            guard let ent = readdir(dir) else {
                if errno != 0 { throw SysError(call: "readdir", path: path, errno: errno) }
                return names
            }
            let name = withUnsafeBytes(of: ent.pointee.d_name) { raw in Array(raw.prefix { $0 != 0 }) }
            if name != [0x2E] && name != [0x2E, 0x2E] { names.append(name) }
        }
    }

    /// Gives memory freed by the process back to the system (`malloc_trim(0)`).
    package static func mallocTrim() { _ = cshims_malloc_trim(0) }

    // MARK: Extended attributes.

    /// Runs one xattr call on `target` with the C strings it needs.
    private static func xattrCall(_ target: XattrTarget, fd: (Int32) -> Int, path: (UnsafePointer<CChar>) -> Int) -> Int {
        switch target {
        case .fd(let f): return retry { fd(f) }
        case .path(let p): return retry { withCName(p) { path($0) } }
        case .at(let dirfd, let name): return retry { withCName(Array("/proc/self/fd/\(dirfd)/".utf8) + name) { path($0) } }
        }
    }

    /// The names of every extended attribute of `target` that this process may list (empty
    /// when none, or when the filesystem does not support them: ENOTSUP).
    /// The corresponding libc calls are `flistxattr`/`llistxattr`.
    package static func listXattrs(_ target: XattrTarget) throws(SysError) -> [[UInt8]] {
        // The list can grow between the size query and the read (ERANGE): ask again.
        for _ in 0 ..< 8 {
            let want = xattrCall(target, fd: { flistxattr($0, nil, 0) }, path: { llistxattr($0, nil, 0) })
            if want < 0 { if errno == ENOTSUP { return [] }; throw SysError(call: "listxattr", name: target.shown, errno: errno) }
            if want == 0 { return [] }
            var buf = [CChar](repeating: 0, count: want)
            let n = buf.withUnsafeMutableBufferPointer { b in
                xattrCall(target, fd: { flistxattr($0, b.baseAddress, want) }, path: { llistxattr($0, b.baseAddress, want) })
            }
            if n < 0 && errno == ERANGE { continue }
            if n < 0 { throw SysError(call: "listxattr", name: target.shown, errno: errno) }
            return buf[..<n].split(separator: 0).map { $0.map { UInt8(bitPattern: $0) } }
        }
        throw SysError(call: "listxattr", name: target.shown, errno: ERANGE)
    }

    /// The value of the extended attribute `name` of `target` (possibly empty); nil when it
    /// has no such attribute (ENODATA: removed since it was listed).
    /// The corresponding libc calls are `fgetxattr`/`lgetxattr`.
    package static func getXattr(_ target: XattrTarget, _ name: [UInt8]) throws(SysError) -> [UInt8]? {
        for _ in 0 ..< 8 {
            let size = withCName(name) { n in xattrCall(target, fd: { fgetxattr($0, n, nil, 0) }, path: { lgetxattr($0, n, nil, 0) }) }
            if size < 0 { if errno == ENODATA { return nil }; throw SysError(call: "getxattr", name: target.shown, errno: errno, hint: "attribute \(NameEscape.escape(name))") }
            if size == 0 { return [] }
            var value = [UInt8](repeating: 0, count: size)
            let got = withCName(name) { n in value.withUnsafeMutableBytes { v in
                xattrCall(target, fd: { fgetxattr($0, n, v.baseAddress, size) }, path: { lgetxattr($0, n, v.baseAddress, size) })
            } }
            if got < 0 && errno == ERANGE { continue }
            if got < 0 { if errno == ENODATA { return nil }; throw SysError(call: "getxattr", name: target.shown, errno: errno, hint: "attribute \(NameEscape.escape(name))") }
            return Array(value[..<got])
        }
        throw SysError(call: "getxattr", name: target.shown, errno: ERANGE)
    }

    /// Sets the extended attribute `name` of `target` to `value` (an empty value is a value).
    /// The corresponding libc calls are `fsetxattr`/`lsetxattr`.
    package static func setXattr(_ target: XattrTarget, _ name: [UInt8], _ value: [UInt8]) throws(SysError) {
        // An empty value needs a pointer all the same: NULL with size 0 removes the attribute
        // on some filesystems (ext4) instead of setting it to "".
        var empty: UInt8 = 0
        let rc = withCName(name) { n in value.withUnsafeBytes { v in
            let p = UnsafeRawPointer(v.baseAddress) ?? withUnsafePointer(to: &empty) { UnsafeRawPointer($0) }
            return xattrCall(target, fd: { Int(fsetxattr($0, n, p, v.count, 0)) },
                             path: { Int(lsetxattr($0, n, p, v.count, 0)) })
        } }
        if rc != 0 { throw SysError(call: "setxattr", name: target.shown, errno: errno, hint: "attribute \(NameEscape.escape(name))") }
    }

    /// Every extended attribute of `target` this process may read, sorted by name bytes; an
    /// attribute removed between listing and reading is left out.
    package static func readXattrs(_ target: XattrTarget) throws(SysError) -> [(name: [UInt8], value: [UInt8])] {
        var out: [(name: [UInt8], value: [UInt8])] = []
        for name in try listXattrs(target) {
            if let v = try getXattr(target, name) { out.append((name, v)) }
        }
        return out.sorted { $0.name.lexicographicallyPrecedes($1.name) }
    }

    // MARK: Paths (LinkCheck's and the tools' file operations).

    /// `realpath`; nil when a component does not exist.
    package static func realpath(_ path: String) -> String? {
        guard let p = Glibc.realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    /// Opens a file read-only without following a final symlink.
    package static func openRead(_ path: String) throws(SysError) -> Int32 {
        try check("open", path) { Glibc.open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) }
    }

    /// Creates a new file (O_EXCL) for writing.
    package static func createExclusive(_ path: String, mode: UInt32 = 0o644) throws(SysError) -> Int32 {
        try check("create", path) { Glibc.open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode) }
    }

    /// Reads up to `buffer.count` bytes; 0 at end of file.
    package static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, path: String) throws(SysError) -> Int {
        try read(fd, into: buffer, shown: path)
    }

    /// Fills `buffer` completely unless end of file comes first; returns the bytes read.
    package static func readFull(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, path: String) throws(SysError) -> Int {
        try readFull(fd, into: buffer, shown: path)
    }

    package static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws(SysError) {
        try writeAll(fd, bytes, shown: path)
    }

    package static func fsync(_ fd: Int32, path: String) throws(SysError) { try fsync(fd, shown: path) }

    package static func fstat(_ fd: Int32, path: String) throws(SysError) -> FileStat { try fstat(fd, shown: path) }

    /// `link(existing, new)`: a hardlink; never follows symlinks.
    package static func link(_ existing: String, _ new: String) throws(SysError) {
        _ = try check("link", "\(existing) -> \(new)") { Glibc.linkat(AT_FDCWD, existing, AT_FDCWD, new, 0) }
    }

    /// `rename(from, to)`, atomically replacing `to`.
    package static func rename(_ from: String, _ to: String) throws(SysError) {
        _ = try check("rename", "\(from) -> \(to)") { Glibc.rename(from, to) }
    }

    /// Removes a file; a missing file is not an error.
    package static func unlink(_ path: String) throws(SysError) {
        if retry({ Glibc.unlink(path) }) != 0 && errno != ENOENT {
            throw SysError(call: "unlink", path: path, errno: errno)
        }
    }

    /// Creates one directory; false when it already exists.
    package static func mkdir(_ path: String, mode: UInt32) throws(SysError) -> Bool {
        if retry({ Glibc.mkdir(path, mode) }) != 0 {
            if errno == EEXIST { return false }
            throw SysError(call: "mkdir", path: path, errno: errno)
        }
        return true
    }

    /// Creates `path` and its missing parents, as `mkdir -p`: each new directory with `mode`
    /// less the umask (`exactMode`: with `mode` whatever the umask); directories already there
    /// (or symlinks to them) are left as they are. With `durable`, the parent of each directory
    /// it makes is fsynced right after the mkdir: a new directory is an entry of its parent, and
    /// until that is on stable storage a power loss can take the directory away with all that
    /// was later written and synced in it (ext4's journal happens to keep it; XFS, btrfs need
    /// the fsync). Parents that were there already need nothing.
    /// - Returns: with `durable`, the parents it fsynced (resolved by `realpath`, as
    ///   `syncParents` names them, so that it can leave them out); otherwise empty.
    /// - Throws: the SysError of the mkdir that failed, naming that directory with the errno the
    ///   kernel gave (EACCES, EROFS, ...); ENOTDIR, with a hint, when a component is not a
    ///   directory; with `durable`, that of the open or fsync of a parent ("open", "fsync").
    @discardableResult
    package static func makeDirectories(_ path: String, mode: UInt32, exactMode: Bool = false, durable: Bool = false) throws(SysError) -> [String] {
        var synced: [String] = []
        if let st = try? stat(path) {
            if st.isDirectory { return synced }
            throw SysError(call: "mkdir", path: path, errno: ENOTDIR, hint: "exists and is not a directory")
        }
        for part in path.split(separator: "/") {
            let current = String(path[..<part.endIndex])   // the path up to this component, as given
            if try mkdir(current, mode: mode) {
                // mkdir applies the umask, which can only take bits away: set them.
                if exactMode { _ = Glibc.chmod(current, mode) }
                if durable {
                    let up = parent(of: path[..<part.startIndex])
                    try syncEntries(up)
                    synced.append(realpath(up) ?? up)
                }
                continue
            }
            if (try? stat(current))?.isDirectory == true { continue }
            throw SysError(call: "mkdir", path: current, errno: ENOTDIR, hint: "exists and is not a directory")
        }
        return synced
    }

    /// Makes the existing directory `path` and the directories above it durable as entries of
    /// their parents, for when an earlier process may have made them with `makeDirectories` and
    /// stopped before its `durable` fsync (a crash, a power loss): their parents are fsynced,
    /// nearest first. How far up (the rule): a `mkdir -p` of ours could have made any of them,
    /// so up to the root of `path`'s filesystem (a mount point's own entry is in the filesystem
    /// below, set up with the mount, not made by a mkdir of ours through it), stopping early at
    /// a parent this process may not write (no mkdir of ours could have added an entry to it:
    /// `/mnt` above a user's share). Symlinks are resolved first: the entries are where the
    /// directories really are. Parents in `synced` (fsynced by this process after it made a
    /// directory in them, as `makeDirectories` returns them) are not fsynced again: on ext4 an
    /// fsync of a directory with nothing to commit still flushes the disk's cache.
    /// - Throws: SysError ("realpath", "stat", "open", "fsync") naming the directory.
    package static func syncParents(of path: String, synced: Set<String> = []) throws(SysError) {
        guard var dir = realpath(path) else { throw SysError(call: "realpath", path: path, errno: errno) }
        guard var st = try stat(dir) else { throw SysError(call: "stat", path: dir, errno: ENOENT) }
        while dir != "/" {
            let slash = dir.lastIndex(of: "/")!   // realpath's answer: absolute, no "//", no trailing "/"
            let up = slash == dir.startIndex ? "/" : String(dir[..<slash])
            guard let upStat = try stat(up), upStat.dev == st.dev, Glibc.faccessat(AT_FDCWD, up, W_OK, AT_EACCESS) == 0 else { return }
            if !synced.contains(up) { try syncEntries(up) }
            (dir, st) = (up, upStat)
        }
    }

    /// The directory named by `prefix`, a path up to (not including) one of its components:
    /// without its trailing slashes ("/" itself kept), "." when empty.
    private static func parent(of prefix: Substring) -> String {
        var p = prefix
        while p.count > 1 && p.hasSuffix("/") { p = p.dropLast() }
        return p.isEmpty ? "." : String(p)
    }

    /// fsync of the directory `dir`, which puts its entries on stable storage. EINVAL (a
    /// filesystem that cannot sync a directory) is not a failure, as in `syncDirectory`.
    private static func syncEntries(_ dir: String) throws(SysError) {
        let fd = try check("open", dir) { Glibc.open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        defer { close(fd) }
        if retry({ Glibc.fsync(fd) }) != 0 && errno != EINVAL { throw SysError(call: "fsync", path: dir, errno: errno) }
    }

    package static func chown(_ path: String, uid: UInt32, gid: UInt32) throws(SysError) {
        _ = try check("chown", path) { Glibc.lchown(path, uid, gid) }
    }

    package static func chmod(_ path: String, mode: UInt32) throws(SysError) {
        _ = try check("chmod", path) { Glibc.chmod(path, mode) }
    }

    /// `access(path, W_OK|X_OK)` with the effective ids.
    package static func canWrite(_ path: String) -> Bool { faccessat(AT_FDCWD, path, W_OK | X_OK, AT_EACCESS) == 0 }

    package static var euid: UInt32 { geteuid() }
    package static var egid: UInt32 { getegid() }
    package static var pid: Int32 { getpid() }

    /// A user name for a uid ("uid N" when unknown).
    package static func userName(_ uid: UInt32) -> String {
        if let pw = getpwuid(uid), let n = pw.pointee.pw_name { return String(cString: n) }
        return "uid \(uid)"
    }

    package static func groupName(_ gid: UInt32) -> String {
        if let gr = getgrgid(gid), let n = gr.pointee.gr_name { return String(cString: n) }
        return "gid \(gid)"
    }

    /// True when a process with this pid exists (kill(pid, 0) does not say ESRCH).
    package static func processExists(_ pid: Int32) -> Bool { Glibc.kill(pid, 0) == 0 || errno != ESRCH }

    /// Sends SIGKILL to this process (test hook for interrupted-reclaim tests).
    package static func killSelf() -> Never {
        _ = Glibc.kill(getpid(), SIGKILL)
        while true { pause() }
    }
}

/// A C string's bytes, escaped for a person (`NameEscape.escape`).
private func escaped(_ name: UnsafePointer<CChar>) -> String {
    NameEscape.escape(UnsafeRawBufferPointer(start: name, count: strlen(name)))
}
