import FoundationEssentials
import Glibc
import NFS
import Support
import Synchronization

/// A failure of a destination operation: what, where, and the system's reason.
package struct StorageError: Error, CustomStringConvertible {
    package var operation: String
    package var location: String
    package var errno: Int32
    package var detail: String
    package var description: String {
        "\(operation) \(NameEscape.escape(location)) failed: \(detail)" + (errno != 0 ? " (errno \(errno))" : "")
    }

    package static func posix(_ operation: String, _ location: String, _ err: Int32 = Glibc.errno) -> StorageError {
        StorageError(operation: operation, location: location, errno: err, detail: Sys.strerror(err))
    }

    /// The operation of a failed sync of a directory's entries (`syncDirectory`, or the parent
    /// of a directory `makeDirectories` made): what is in it may not survive a power loss.
    package static let directorySync = "fsync directory"
}

/// A destination in a local directory (or any kernel-mounted filesystem).
///
/// Private by default: files it creates are 0600 and directories 0700 whatever the umask
/// (archives hold appdata's API keys and passwords, unencrypted).
package final class LocalDestination: Destination {
    /// Permission bits of every file created (archives, manifests, locks, temp files).
    package static let fileMode: mode_t = 0o600
    /// Permission bits of every directory created.
    package static let directoryMode: mode_t = 0o700

    package let root: String
    package var displayName: String { root }
    /// Directories whose entries this process fsynced after it made a directory in them
    /// (`makeDirectories`), so that `syncParents` does not fsync them again.
    private let syncedParents = Mutex<Set<String>>([])

    /// - Parameter root: an absolute or relative directory; created on first write if missing.
    package init(root: String) {
        self.root = root.count > 1 && root.hasSuffix("/") ? String(root.dropLast()) : root
    }

    func full(_ path: String) -> String { path.isEmpty ? root : root + "/" + path }

    /// The absolute path of `path` (a relative root taken from the current directory).
    package func absolutePath(_ path: String) -> String {
        let p = full(path)
        return p.hasPrefix("/") ? p : FileManager.default.currentDirectoryPath + "/" + p
    }

    package var localDirectory: String? { absolutePath("") }

    /// The same directory as `other`'s `localDirectory` (another local destination, or an
    /// rclone remote of the local backend): `isSameDirectory`.
    package func isSamePlace(as other: any Destination) -> Bool {
        guard let there = other.localDirectory else { return false }
        return Self.isSameDirectory(absolutePath(""), there)
    }

    /// The same directory: device and inode of what both absolute paths resolve to (symlinks,
    /// `..`, a bind mount). When one does not exist yet, where its `mkdir -p` would make it: the
    /// longest existing prefix resolved (`realpath`), the rest taken lexically.
    package static func isSameDirectory(_ a: String, _ b: String) -> Bool {
        var sa = Glibc.stat(), sb = Glibc.stat()
        if fstatat(AT_FDCWD, a, &sa, 0) == 0, fstatat(AT_FDCWD, b, &sb, 0) == 0 {
            return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino
        }
        return resolved(a) == resolved(b)
    }

    /// `path` (absolute) with its longest existing prefix resolved and the rest lexically.
    private static func resolved(_ path: String) -> String {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        for n in stride(from: parts.count, through: 1, by: -1) {
            let prefix = parts[..<n].joined(separator: "/")
            if let real = Sys.realpath(prefix.isEmpty ? "/" : prefix) {
                return PlacePath.lexical(real + "/" + parts[n...].joined(separator: "/"))
            }
        }
        return PlacePath.lexical(path)
    }

    /// Creates missing directories 0700 (private whatever the umask), each durable (its parent
    /// fsynced) before it returns: a commit in them must not be lost with the directory.
    /// Existing ones are left as they are.
    /// - Throws: `StorageError`; its operation is `directorySync` when a parent's fsync failed.
    package func makeDirectories(_ path: String) throws {
        let target = full(path)
        do {
            let synced = try Sys.makeDirectories(target, mode: 0o700, exactMode: true, durable: true)
            if !synced.isEmpty { syncedParents.withLock { $0.formUnion(synced) } }
        } catch {
            if let e = Self.syncFailure(error) { throw e }
            guard error.errno == ENOTDIR, error.hint != nil else { throw StorageError.posix("mkdir -p \(NameEscape.escape(target)): create", error.path, error.errno) }
            throw StorageError(operation: "mkdir -p", location: target, errno: ENOTDIR,
                               detail: error.path == target ? "exists and is not a directory" : "\(NameEscape.escape(error.path)) exists and is not a directory")
        }
    }

    /// `Sys.syncParents` of `path`: up to the root of its filesystem, or a parent this process
    /// may not write.
    /// - Throws: `StorageError`; its operation is `directorySync` when a parent's fsync failed.
    package func syncParents(of path: String) throws {
        do { try Sys.syncParents(of: absolutePath(path), synced: syncedParents.withLock { $0 }) } catch {
            throw Self.syncFailure(error) ?? StorageError.posix(error.call, error.path, error.errno)
        }
    }

    /// A failed open or fsync of a directory whose entries were being made durable, as a
    /// StorageError; nil for other calls.
    private static func syncFailure(_ error: SysError) -> StorageError? {
        switch error.call {
        case "fsync": StorageError.posix(StorageError.directorySync, error.path, error.errno)
        case "open": StorageError.posix("open directory", error.path, error.errno)
        default: nil
        }
    }

    package func list(_ path: String) throws -> [DestinationEntry] {
        guard let dir = opendir(full(path)) else { throw StorageError.posix("list", full(path)) }
        defer { closedir(dir) }
        var out: [DestinationEntry] = []
        while let ent = readdir(dir) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { raw in
                String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            if name == "." || name == ".." { continue }
            let rel = path.isEmpty ? name : path + "/" + name
            if let e = try stat(rel) { out.append(e) }
        }
        return out.sorted { $0.name < $1.name }
    }

    package func stat(_ path: String) throws -> DestinationEntry? {
        var st = Glibc.stat()
        if lstat(full(path), &st) != 0 {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw StorageError.posix("stat", full(path))
        }
        let kind: DestinationEntry.Kind
        switch st.st_mode & S_IFMT {
        case S_IFREG: kind = .file
        case S_IFDIR: kind = .directory
        case S_IFLNK: kind = .symlink
        default: kind = .other
        }
        let name = path.split(separator: "/").last.map(String.init) ?? ""
        return DestinationEntry(name: name, kind: kind, size: UInt64(st.st_size), mtime: Int64(st.st_mtim.tv_sec))
    }

    package func create(_ path: String) throws -> any DestinationWriter {
        let fd = Glibc.open(full(path), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, Self.fileMode)
        if fd < 0 { throw StorageError.posix("create", full(path)) }
        fchmod(fd, Self.fileMode)  // an existing file keeps its old mode otherwise
        return LocalWriter(fd: fd, path: full(path))
    }

    package func open(_ path: String) throws -> any DestinationReader {
        let fd = Glibc.open(full(path), O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw StorageError.posix("open", full(path)) }
        var st = Glibc.stat()
        fstat(fd, &st)
        return LocalReader(fd: fd, path: full(path), size: UInt64(st.st_size))
    }

    package func rename(_ from: String, to: String) throws {
        if Glibc.rename(full(from), full(to)) != 0 { throw StorageError.posix("rename to \(NameEscape.escape(full(to)))", full(from)) }
    }

    package func remove(_ path: String) throws {
        if unlink(full(path)) != 0 && errno != ENOENT { throw StorageError.posix("remove", full(path)) }
    }

    package func removeDirectory(_ path: String) throws {
        if rmdir(full(path)) != 0 && errno != ENOENT { throw StorageError.posix("rmdir", full(path)) }
    }

    package func createExclusive(_ path: String, contents: [UInt8]) throws -> Bool {
        let fd = Glibc.open(full(path), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, Self.fileMode)
        if fd < 0 {
            if errno == EEXIST { return false }
            throw StorageError.posix("create", full(path))
        }
        let w = LocalWriter(fd: fd, path: full(path))
        try w.write(contents)
        try w.sync()
        try w.close()
        return true
    }

    package var syncsFilesConcurrently: Bool { true }

    package func syncDirectory(_ path: String) throws {
        let fd = Glibc.open(full(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd < 0 { throw StorageError.posix("open directory", full(path)) }
        defer { Glibc.close(fd) }
        if fsync(fd) != 0 && errno != EINVAL { throw StorageError.posix(StorageError.directorySync, full(path)) }
    }
}

final class LocalWriter: DestinationWriter {
    private var fd: Int32
    private let path: String

    init(fd: Int32, path: String) { self.fd = fd; self.path = path }
    deinit { if fd >= 0 { Glibc.close(fd) } }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        var off = 0
        while off < bytes.count {
            let n = Sys.retry { Glibc.write(fd, bytes.baseAddress! + off, bytes.count - off) }
            if n < 0 { throw StorageError.posix("write", path) }
            off += n
        }
    }

    func sync() throws {
        if fsync(fd) != 0 { throw StorageError.posix("fsync", path) }
    }

    func close() throws {
        guard fd >= 0 else { return }
        let rc = Glibc.close(fd)
        fd = -1
        if rc != 0 { throw StorageError.posix("close", path) }
    }
}

final class LocalReader: DestinationReader {
    private var fd: Int32
    private let path: String
    let size: UInt64

    init(fd: Int32, path: String, size: UInt64) { self.fd = fd; self.path = path; self.size = size }
    deinit { if fd >= 0 { Glibc.close(fd) } }

    func read(at offset: UInt64, count: Int) throws -> [UInt8] {
        // Not zero-filled first (a memset of every byte read: ~2% of a no-change backup's
        // instructions, reading the previous manifest): only the bytes read are kept.
        guard count > 0 else { return [] }
        return try [UInt8](unsafeUninitializedCapacity: count) { buf, initialized in
            var got = 0
            while got < count {
                let n = Sys.retry { pread(fd, buf.baseAddress! + got, count - got, off_t(offset) + off_t(got)) }
                if n < 0 { throw StorageError.posix("read", path) }
                if n == 0 { break }
                got += n
            }
            initialized = got
        }
    }

    func close() throws {
        guard fd >= 0 else { return }
        Glibc.close(fd)
        fd = -1
    }
}
