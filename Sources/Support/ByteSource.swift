import Glibc
import Synchronization

/// Bytes an archive is read from: the seam below the tar reader.
///
/// A random-access source (a local file, a Storage `DestinationReader` on NFS or rclone, an
/// age-decrypting reader over one of those) has a `size` and answers `read(at:count:)` at any
/// offset. A stream (stdin: `age -d ... | hs-restore --archive -`) has no size and answers
/// only at the offset after the last read; it ends with a short read.
///
/// Called from the archive reader's decompression job (one call at a time, never
/// concurrently for one reader), so an implementation must be safe to hand to another thread.
///
///     final class Decrypted: ByteSource {
///         let base: any ByteSource
///         var displayName: String { base.displayName }
///         var size: UInt64? { plaintextSize }
///         func read(at offset: UInt64, count: Int) throws -> [UInt8] { ... }
///     }
package protocol ByteSource: Sendable {
    /// What to call the source in messages (a path, an nfs:// URL, "stdin").
    var displayName: String { get }
    /// Total bytes; nil for a stream whose end is found by reading.
    var size: UInt64? { get }
    /// Up to `count` bytes at `offset`: fewer only at the end. A stream accepts only the offset
    /// after the last read.
    func read(at offset: UInt64, count: Int) throws -> [UInt8]
}

/// A local regular file, read with `pread`.
package final class FileByteSource: ByteSource {
    package let displayName: String
    package let size: UInt64?
    private let fd: Int32

    /// Opens `path` (a regular file; a final symlink is followed, as a path given by a person).
    /// - Throws: `SysError` when it cannot be opened, or (ENOTSUP-free) `EINVAL` with a hint
    ///   when it is not a regular file.
    package init(path: String) throws(SysError) {
        displayName = NameEscape.escape(path)   // a path a person gave, in messages
        fd = try Sys.open(Array(path.utf8), O_RDONLY | O_CLOEXEC)
        let st: FileStat
        do { st = try Sys.fstat(fd, shown: displayName) } catch { Sys.close(fd); throw error }
        guard st.isRegular else {
            Sys.close(fd)
            throw SysError(call: "open", path: displayName, errno: st.isDirectory ? EISDIR : EINVAL, hint: "not a regular file")
        }
        size = st.size
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
    }

    deinit { Sys.close(fd) }

    package func read(at offset: UInt64, count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        let fd = fd, name = displayName
        let got = try out.withUnsafeMutableBytes { (b: UnsafeMutableRawBufferPointer) throws -> Int in
            try Sys.readFull(fd, into: b, at: offset, shown: name)
        }
        if got < count { out.removeLast(count - got) }
        return out
    }
}

/// A stream read once from a descriptor (stdin): sequential reads only.
package final class StreamByteSource: ByteSource {
    package let displayName: String
    package var size: UInt64? { nil }
    private let fd: Int32
    private let position = Mutex<UInt64>(0)

    package init(fd: Int32, displayName: String) {
        self.fd = fd
        self.displayName = displayName
    }

    package func read(at offset: UInt64, count: Int) throws -> [UInt8] {
        try position.withLock { (pos: inout UInt64) throws -> [UInt8] in
            guard offset == pos else {
                throw SysError(call: "read", path: displayName, errno: ESPIPE,
                               hint: "a stream is read once, in order; give the archive as a file for this")
            }
            var out = [UInt8](repeating: 0, count: count)
            let fd = fd, name = displayName
            let got = try out.withUnsafeMutableBytes { (b: UnsafeMutableRawBufferPointer) throws -> Int in
                try Sys.readFull(fd, into: b, shown: name)
            }
            if got < count { out.removeLast(count - got) }
            pos += UInt64(got)
            return out
        }
    }
}
