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
        // The last component of the path and a NUL, in one allocation. (Reserved and appended:
        // `Array(unsafeUninitializedCapacity:)` and `Array(repeating:count:)` allocate through
        // the standard library's unspecialized generic path, ~600 instructions per array.)
        let path = s.path
        let start = (path.lastIndex(of: 0x2F).map { $0 + 1 }) ?? 0
        var n: [CChar] = []
        n.reserveCapacity(path.count - start + 1)
        for i in start ..< path.count { n.append(CChar(bitPattern: path[i])) }
        n.append(0)
        name = n
        identity = s.identity
    }

    static let flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC

    /// The one open of an entry for reading its content: `name` relative to the directory
    /// `dir`, with `flags` and `O_NOATIME` (without it where that is refused). Used here and by
    /// the scan's walkers (`ScanWorker`, which read small files as they find them).
    static func openAt(_ dir: Int32, _ name: UnsafePointer<CChar>) throws(SysError) -> Int32 {
        do {
            return try Sys.openat(dir, name, flags | Sys.O_NOATIME)
        } catch where error.errno == EPERM {
            // O_NOATIME is refused (EPERM) on files another user owns, unless root.
            return try Sys.openat(dir, name, flags)
        }
    }

    /// Opens the regular file for reading and checks it is the one the scan saw.
    /// - Returns: the descriptor (the caller closes it) and its `fstat`, or why it is left out.
    func open() -> Result<(fd: Int32, stat: FileStat), LeftOutError> {
        let fd: Int32
        do {
            fd = try name.withUnsafeBufferPointer { n throws(SysError) in try Self.openAt(parent.fd, n.baseAddress!) }
        } catch {
            return .failure(LeftOutError(why: LeftOut.fromOpen(errno: error.errno)))
        }
        let st: FileStat
        do { st = try Sys.fstat(fd) } catch {
            Sys.close(fd)
            return .failure(LeftOutError(why: .unreadable(errno: error.errno)))
        }
        if let why = LeftOut.check(st, against: identity) {
            Sys.close(fd)
            return .failure(LeftOutError(why: why))
        }
        return .success((fd, st))
    }

    /// `fstatat` of the entry (a final symlink not followed) checked against the scan's
    /// device and inode (any type): nil when it is still the entry the scan saw.
    func replacedSinceScan() -> LeftOut? {
        let st: FileStat?
        do { st = try name.withUnsafeBufferPointer { n throws(SysError) in try Sys.fstatat(parent.fd, n.baseAddress!) } } catch {
            return .unreadable(errno: error.errno)
        }
        guard let st else { return .vanished }
        if st.dev != identity.dev || st.ino != identity.ino { return .replaced(now: LeftOut.kindName(mode_t(st.type))) }
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
        defer { Sys.close(fd) }
        let size = st.size
        var buf = [UInt8](repeating: 0, count: 256 * 1024)
        func readAll(from: UInt64, count: UInt64, _ body: (UnsafeRawBufferPointer) -> Void) -> Bool {
            var at = from, left = count
            while left > 0 {
                let n = buf.withUnsafeMutableBytes { b in Sys.retry { pread(fd, b.baseAddress!, Int(min(UInt64(b.count), left)), off_t(at)) } }
                if n < 0 { return false }
                if n == 0 { return false }
                buf.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[0 ..< n])) }
                at += UInt64(n); left -= UInt64(n)
            }
            return true
        }
        if sparse {
            let map = SparseFile.dataRegions(fd, size: size, allocatedBytes: st.blocks * 512) ?? [SparseRegion(offset: 0, length: size)]
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
