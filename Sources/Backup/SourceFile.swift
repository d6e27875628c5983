#if canImport(Glibc)
import Glibc
#endif
import Archive
import Support

/// An entry of the source as the scan found it, to be read: the directory that holds it (open
/// since the scan), its name there and its identity. The one place the backup opens what it
/// reads: `openat(parent, name, O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_NOATIME)`, never a
/// path from the root, so a parent directory swapped for a symlink is never followed and no
/// path is too long; then `fstat` and the `LeftOut` rule against what the scan saw (a FIFO
/// swapped in cannot hang the run: `O_NONBLOCK`).
struct SourceFile: Sendable {
    let parent: DirectoryHandle
    /// The entry's name, NUL-terminated.
    let name: [CChar]
    let identity: ScanIdentity

    init(_ s: ScannedEntry) {
        parent = s.parent
        name = s.name.map { CChar(bitPattern: $0) } + [0]
        identity = s.identity
    }

    static let flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC
    /// Linux `O_NOATIME` (not in Swift's Glibc import).
    static let noatime: Int32 = 0o1000000

    /// Opens the regular file for reading and checks it is the one the scan saw.
    /// - Returns: the descriptor (the caller closes it) and its `fstat`, or why it is left out.
    func open() -> Result<(fd: Int32, stat: stat), LeftOutError> {
        var fd = name.withUnsafeBufferPointer { openat(parent.fd, $0.baseAddress!, Self.flags | Self.noatime) }
        // O_NOATIME is refused (EPERM) on files another user owns, unless root.
        if fd < 0 && errno == EPERM { fd = name.withUnsafeBufferPointer { openat(parent.fd, $0.baseAddress!, Self.flags) } }
        if fd < 0 { return .failure(LeftOutError(why: LeftOut.fromOpen(errno: errno))) }
        var st = stat()
        if fstat(fd, &st) != 0 {
            let err = errno
            close(fd)
            return .failure(LeftOutError(why: .unreadable(errno: err)))
        }
        if let why = LeftOut.check(st, against: identity) {
            close(fd)
            return .failure(LeftOutError(why: why))
        }
        return .success((fd, st))
    }

    /// `fstatat` of the entry (a final symlink not followed) checked against the scan's
    /// device and inode (any type): nil when it is still the entry the scan saw.
    func replacedSinceScan() -> LeftOut? {
        var st = stat()
        let rc = name.withUnsafeBufferPointer { fstatat(parent.fd, $0.baseAddress!, &st, AT_SYMLINK_NOFOLLOW) }
        if rc != 0 { return errno == ENOENT ? .vanished : .unreadable(errno: errno) }
        if UInt64(st.st_dev) != identity.dev || UInt64(st.st_ino) != identity.ino { return .replaced(now: LeftOut.kindName(st.st_mode & S_IFMT)) }
        return nil
    }

    /// The extended attributes of the entry, read relative to its directory (`XattrAt`).
    func xattrs() -> [(name: String, value: [UInt8])] {
        name.withUnsafeBufferPointer { readXattrs(.at(parent.fd, $0.baseAddress!)) }
    }

    /// The xattr hash of the entry (see `xattrHash`), read relative to its directory.
    func xattrDigest() -> UInt64 {
        name.withUnsafeBufferPointer { xattrHash(.at(parent.fd, $0.baseAddress!)) }
    }

    /// The content hash the manifest keeps for this file: the `SparseHash` when `sparse`
    /// (read by extents), else the SHA-256 of its bytes. nil when it cannot be opened or read
    /// (or is no longer the file the scan saw).
    func contentHash(sparse: Bool) -> Digest? {
        guard case .success(let (fd, st)) = open() else { return nil }
        defer { close(fd) }
        let size = UInt64(clamping: st.st_size)
        var buf = [UInt8](repeating: 0, count: 256 * 1024)
        func readAll(from: UInt64, count: UInt64, _ body: (UnsafeRawBufferPointer) -> Void) -> Bool {
            var at = from, left = count
            while left > 0 {
                let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, Int(min(UInt64($0.count), left)), off_t(at)) }
                if n < 0 { if errno == EINTR { continue }; return false }
                if n == 0 { return false }
                buf.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[0 ..< n])) }
                at += UInt64(n); left -= UInt64(n)
            }
            return true
        }
        if sparse {
            let map = SparseFile.dataRegions(fd, size: size, allocatedBytes: UInt64(st.st_blocks) * 512) ?? [SparseRegion(offset: 0, length: size)]
            var h = SparseHash(map: map, realSize: size)
            for r in SparseFile.canonical(map) { guard readAll(from: r.offset, count: r.length, { h.update($0) }) else { return nil } }
            return Digest(h.finalize())
        }
        var h = SHA256Hasher()
        guard readAll(from: 0, count: size, { h.update($0) }) else { return nil }
        return Digest(h.finalize())
    }
}

/// `SourceFile.open` found the entry not readable as the scan saw it.
struct LeftOutError: Error, Sendable {
    var why: LeftOut
}
