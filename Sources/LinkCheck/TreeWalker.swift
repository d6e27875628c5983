#if canImport(Glibc)
import Glibc
#endif
import Support

/// A directory walker over file descriptors: `openat` + `readdir` + `fstatat(AT_SYMLINK_NOFOLLOW)`,
/// stats only entries that may be regular files (d_type), never follows symlinks or crosses
/// into other filesystems. No per-file Foundation objects. Names stay bytes (`MediaPath`): a
/// directory whose name is not UTF-8 is re-opened by its own bytes.
package enum TreeWalker {
    /// Walks `root` depth-first. `visit` gets each regular file; `directories` collects each
    /// directory's path relative to `root` (empty for the root). Unreadable directories are
    /// reported through `onError` (names escaped) and skipped.
    package static func walk(root: MediaPath, directories: inout [MediaPath],
                             onError: (SysError) -> Void,
                             visit: (Int32, UnsafePointer<CChar>, FileStat) -> Void) throws {
        guard let rootSt = try Sys.fstatat(AT_FDCWD, root.bytes, followSymlinks: true) else {
            throw SysError(call: "opendir", name: root.bytes, errno: ENOENT)
        }
        let rootDev = rootSt.dev
        directories.append(MediaPath([]))
        // Pending directories by index into `directories`; opened by path when popped, so
        // wide trees never hold more than one directory descriptor open.
        var stack: [Int32] = [0]
        var st = Glibc.stat()
        while let idx = stack.popLast() {
            let dirPath = root.appending(directories[Int(idx)].bytes)
            let fd = Sys.retry { Sys.withCName(dirPath.bytes) { Glibc.open($0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) } }
            if fd < 0 {
                let e = SysError(call: "opendir", name: dirPath.bytes, errno: errno)
                if idx == 0 { throw e }
                onError(e)
                continue
            }
            guard let dirp = fdopendir(fd) else {
                onError(SysError(call: "fdopendir", name: dirPath.bytes, errno: errno))
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
                            let e = errno   // before the path is built (it allocates)
                            onError(SysError(call: "lstat", name: dirPath.appending(bytes(of: name)).bytes, errno: e))
                            return
                        }
                        let fmt = st.st_mode & S_IFMT
                        if fmt == S_IFREG {
                            visit(idx, name, FileStat(st))
                        } else if fmt == S_IFDIR {
                            guard UInt64(st.st_dev) == rootDev else { return }
                            directories.append(directories[Int(idx)].appending(bytes(of: name)))
                            stack.append(Int32(directories.count - 1))
                        }
                    }
                }
            }
            closedir(dirp)
        }
    }

    /// A C string's bytes (without the NUL).
    package static func bytes(of name: UnsafePointer<CChar>) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: name, count: strlen(name))
    }

    package static func join(_ a: String, _ b: String) -> String {
        if b.isEmpty { return a }
        if a.isEmpty { return b }
        return a.hasSuffix("/") ? a + b : a + "/" + b
    }
}
