#if canImport(Glibc)
import Glibc
#endif

/// Replaces a file's content so that a reader (or a crash) sees the old file or the new one,
/// never a mix: the bytes go to a temporary file in the same directory, which is fsynced and
/// renamed over the target, then the directory is fsynced. The one writer of this kind for
/// hs-provision's managed files (`Machine.writeAtomically`) and hs-deploy's .env copies
/// (`EnvBackup`). Writes retry on EINTR; on any failure the temporary file is removed and
/// the target is unchanged.
package enum AtomicFile {
    /// Which call failed, with its errno.
    package struct Failure: Error, Sendable {
        /// `create`, `write`, `fsync` or `rename`.
        package var call: String
        /// The file the call was made on (the temporary file, or the target for `rename`).
        package var path: String
        package var errno: Int32

        /// `strerror` of `errno`.
        package var reason: String { Sys.strerror(errno) }
    }

    /// Writes `bytes` to `path` through `temporary`.
    /// - Parameters:
    ///   - temporary: the temporary file's path (same directory as `path`).
    ///   - mode: permission bits the temporary file is created with.
    ///   - exactMode: also set `mode` with `fchmod`, so the umask does not take bits away.
    ///   - prepare: called with the temporary file's descriptor after the write (e.g. `fchown`).
    /// - Throws: `Failure` naming the call that failed.
    /// The underlying calls are `open` (`O_NOFOLLOW`), `write`, `fsync` and `rename`.
    package static func replace(_ path: String, with bytes: [UInt8], temporary: String, mode: mode_t,
                                exactMode: Bool = true, prepare: (Int32) -> Void = { _ in }) throws(Failure) {
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode)
        guard fd >= 0 else { throw Failure(call: "create", path: temporary, errno: errno) }
        var failure: Failure?
        if exactMode && fchmod(fd, mode) != 0 { failure = Failure(call: "fchmod", path: temporary, errno: errno) }
        var off = 0
        while failure == nil && off < bytes.count {
            let n = Sys.retry { bytes[off...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } }
            if n < 0 {
                failure = Failure(call: "write", path: temporary, errno: errno)
            } else {
                off += n
            }
        }
        if failure == nil { prepare(fd) }
        if failure == nil && fsync(fd) != 0 { failure = Failure(call: "fsync", path: temporary, errno: errno) }
        close(fd)
        if failure == nil && rename(temporary, path) != 0 { failure = Failure(call: "rename", path: path, errno: errno) }
        if let failure {
            unlink(temporary)
            throw failure
        }
        let dir = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        let dfd = open(dir.isEmpty ? "/" : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { _ = fsync(dfd); close(dfd) }
    }
}
