#if canImport(Glibc)
import Glibc
#endif

/// A failed system call: which call, on which path, and errno.
package struct SysError: Error, CustomStringConvertible, Sendable {
    package var call: String
    package var path: String
    package var errno: Int32
    package var description: String { "\(call) \(path): \(Sys.strerror(errno)) (errno \(errno))" }
}

/// What `lstat`/`fstat` says about a file, as plain values.
package struct FileStat: Sendable, Equatable {
    package var dev: UInt64
    package var ino: UInt64
    package var mode: UInt32
    package var nlink: UInt64
    package var uid: UInt32
    package var gid: UInt32
    package var size: UInt64
    /// Modification and change times as (seconds, nanoseconds): the full range a filesystem can
    /// hold (nanoseconds since 1970 in one Int64 would trap after 2262 and before 1677).
    package var mtime: Stamp
    package var ctime: Stamp

    package struct Stamp: Equatable, Sendable {
        package var seconds: Int64
        package var nanoseconds: Int64
        init(_ t: timespec) { seconds = Int64(t.tv_sec); nanoseconds = Int64(t.tv_nsec) }
    }

    init(_ st: stat) {
        dev = UInt64(st.st_dev)
        ino = UInt64(st.st_ino)
        mode = UInt32(st.st_mode)
        nlink = UInt64(st.st_nlink)
        uid = st.st_uid
        gid = st.st_gid
        size = UInt64(max(0, st.st_size))
        mtime = Stamp(st.st_mtim)
        ctime = Stamp(st.st_ctim)
    }

    package var isRegular: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFREG) }
    package var isDirectory: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFDIR) }
    package var permissions: UInt32 { mode & 0o7777 }
    /// Same file, unchanged: inode, size, mtime and ctime (ctime moves on any metadata change).
    package func sameUnchangedFile(as other: FileStat) -> Bool {
        dev == other.dev && ino == other.ino && size == other.size && mtime == other.mtime
            && ctime == other.ctime
    }
}

private func cStat(_ p: String, _ st: UnsafeMutablePointer<stat>) -> Int32 { stat(p, st) }
private func cLstat(_ p: String, _ st: UnsafeMutablePointer<stat>) -> Int32 { lstat(p, st) }
private func cFstat(_ fd: Int32, _ st: UnsafeMutablePointer<stat>) -> Int32 { fstat(fd, st) }

/// The one place in LinkCheck that calls libc for files. Retries on EINTR; throws `SysError`.
package enum Sys {
    package static func strerror(_ e: Int32) -> String { String(cString: Glibc.strerror(e)) }

    @inline(__always)
    static func retry(_ body: () -> Int32) -> Int32 {
        while true {
            let r = body()
            if r == -1 && errno == EINTR { continue }
            return r
        }
    }

    /// `lstat`; nil when the path does not exist.
    package static func lstat(_ path: String) throws -> FileStat? {
        var st = Glibc.stat()
        if retry({ cLstat(path, &st) }) != 0 {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw SysError(call: "lstat", path: path, errno: errno)
        }
        return FileStat(st)
    }

    /// `stat` (follows symlinks); nil when the path does not exist.
    package static func stat(_ path: String) throws -> FileStat? {
        var st = Glibc.stat()
        if retry({ cStat(path, &st) }) != 0 {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw SysError(call: "stat", path: path, errno: errno)
        }
        return FileStat(st)
    }

    package static func fstat(_ fd: Int32, path: String) throws -> FileStat {
        var st = Glibc.stat()
        if retry({ cFstat(fd, &st) }) != 0 { throw SysError(call: "fstat", path: path, errno: errno) }
        return FileStat(st)
    }

    /// `realpath`; nil when a component does not exist.
    package static func realpath(_ path: String) -> String? {
        guard let p = Glibc.realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    /// Opens a file read-only without following a final symlink.
    package static func openRead(_ path: String) throws -> Int32 {
        let fd = retry { Glibc.open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) }
        if fd < 0 { throw SysError(call: "open", path: path, errno: errno) }
        return fd
    }

    /// Creates a new file (O_EXCL) for writing.
    package static func createExclusive(_ path: String, mode: mode_t = 0o644) throws -> Int32 {
        let fd = retry { Glibc.open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode) }
        if fd < 0 { throw SysError(call: "create", path: path, errno: errno) }
        return fd
    }

    package static func close(_ fd: Int32) { _ = Glibc.close(fd) }

    package static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { raw in Glibc.write(fd, raw.baseAddress! + off, raw.count - off) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SysError(call: "write", path: path, errno: errno)
            }
            off += n
        }
    }

    /// Reads up to `count` bytes into `buffer`; 0 at end of file.
    package static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, path: String) throws -> Int {
        while true {
            let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if n < 0 {
                if errno == EINTR { continue }
                throw SysError(call: "read", path: path, errno: errno)
            }
            return n
        }
    }

    /// Fills `buffer` completely unless end of file comes first; returns the bytes read.
    package static func readFull(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, path: String) throws -> Int {
        var got = 0
        while got < buffer.count {
            let n = try read(fd, into: UnsafeMutableRawBufferPointer(rebasing: buffer[got...]), path: path)
            if n == 0 { break }
            got += n
        }
        return got
    }

    package static func fsync(_ fd: Int32, path: String) throws {
        if retry({ Glibc.fsync(fd) }) != 0 { throw SysError(call: "fsync", path: path, errno: errno) }
    }

    /// Flushes a directory's entries (after renames). Errors are ignored where unsupported.
    package static func syncDirectory(_ path: String) {
        let fd = retry { Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        guard fd >= 0 else { return }
        _ = Glibc.fsync(fd)
        _ = Glibc.close(fd)
    }

    /// `link(existing, new)`: a hardlink; never follows symlinks.
    package static func link(_ existing: String, _ new: String) throws {
        if retry({ Glibc.linkat(AT_FDCWD, existing, AT_FDCWD, new, 0) }) != 0 {
            throw SysError(call: "link", path: "\(existing) -> \(new)", errno: errno)
        }
    }

    /// `rename(from, to)`, atomically replacing `to`.
    package static func rename(_ from: String, _ to: String) throws {
        if retry({ Glibc.rename(from, to) }) != 0 {
            throw SysError(call: "rename", path: "\(from) -> \(to)", errno: errno)
        }
    }

    /// Removes a file; a missing file is not an error.
    package static func unlink(_ path: String) throws {
        if retry({ Glibc.unlink(path) }) != 0 && errno != ENOENT {
            throw SysError(call: "unlink", path: path, errno: errno)
        }
    }

    /// Creates one directory; false when it already exists.
    package static func mkdir(_ path: String, mode: mode_t) throws -> Bool {
        if retry({ Glibc.mkdir(path, mode) }) != 0 {
            if errno == EEXIST { return false }
            throw SysError(call: "mkdir", path: path, errno: errno)
        }
        return true
    }

    package static func chown(_ path: String, uid: UInt32, gid: UInt32) throws {
        if retry({ Glibc.lchown(path, uid, gid) }) != 0 { throw SysError(call: "chown", path: path, errno: errno) }
    }

    package static func chmod(_ path: String, mode: mode_t) throws {
        if retry({ Glibc.chmod(path, mode) }) != 0 { throw SysError(call: "chmod", path: path, errno: errno) }
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

/// A directory walker over file descriptors: `openat` + `readdir` + `fstatat(AT_SYMLINK_NOFOLLOW)`,
/// stats only entries that may be regular files (d_type), never follows symlinks or crosses
/// into other filesystems. No per-file Foundation objects.
package enum TreeWalker {
    /// Walks `root` depth-first. `visit` gets each regular file; `directories` collects each
    /// directory's path relative to `root` ("" for the root). Unreadable directories are
    /// reported through `onError` and skipped.
    package static func walk(root: String, directories: inout [String],
                             skipName: (String) -> Bool = { _ in false },
                             onError: (SysError) -> Void,
                             visit: (Int32, UnsafePointer<CChar>, FileStat) -> Void) throws {
        guard let rootSt = try Sys.stat(root) else { throw SysError(call: "opendir", path: root, errno: ENOENT) }
        let rootDev = rootSt.dev
        directories.append("")
        // Pending directories by index into `directories`; opened by path when popped, so
        // wide trees never hold more than one directory descriptor open.
        var stack: [Int32] = [0]
        var st = Glibc.stat()
        while let idx = stack.popLast() {
            let dirPath = join(root, directories[Int(idx)])
            let fd = Sys.retry { Glibc.open(dirPath, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            if fd < 0 {
                let e = SysError(call: "opendir", path: dirPath, errno: errno)
                if idx == 0 { throw e }
                onError(e)
                continue
            }
            guard let dirp = fdopendir(fd) else {
                onError(SysError(call: "fdopendir", path: dirPath, errno: errno))
                Glibc.close(fd)
                continue
            }
            while let ent = readdir(dirp) {
                let type = ent.pointee.d_type
                if type != UInt8(DT_REG) && type != UInt8(DT_DIR) && type != UInt8(DT_UNKNOWN) { continue }
                withUnsafePointer(to: &ent.pointee.d_name) { p in
                    p.withMemoryRebound(to: CChar.self, capacity: 256) { name in
                        if name[0] == 46 && (name[1] == 0 || (name[1] == 46 && name[2] == 0)) { return }
                        if Glibc.fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 {
                            onError(SysError(call: "lstat", path: join(dirPath, String(cString: name)), errno: errno))
                            return
                        }
                        let fmt = st.st_mode & S_IFMT
                        if fmt == S_IFREG {
                            visit(idx, name, FileStat(st))
                        } else if fmt == S_IFDIR {
                            guard UInt64(st.st_dev) == rootDev else { return }
                            let n = String(cString: name)
                            if skipName(n) { return }
                            let parent = directories[Int(idx)]
                            directories.append(parent.isEmpty ? n : parent + "/" + n)
                            stack.append(Int32(directories.count - 1))
                        }
                    }
                }
            }
            closedir(dirp)
        }
    }

    package static func join(_ a: String, _ b: String) -> String {
        if b.isEmpty { return a }
        if a.isEmpty { return b }
        return a.hasSuffix("/") ? a + b : a + "/" + b
    }
}
