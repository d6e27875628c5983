internal import CShims
import Glibc
import Synchronization

/// Directory-relative extended attribute listing (`listxattrat`, Linux 6.13+), so a scan can
/// tell "no extended attributes" without a walk of the file's absolute path per file.
package enum XattrAt {
    /// Set once the kernel (or a seccomp filter) refused the call: every later call answers
    /// false at once and the caller uses its path-based listing.
    private static let unavailable = Atomic<Bool>(false)
    /// Tests: behave as on kernels without `listxattrat` (Debian 12: 6.1, Proxmox 8: 6.8), so
    /// every entry's attributes are read through `/proc/self/fd/<dir>/<name>` (`XattrTarget.at`).
    package static let forceProcFallback = Atomic<Bool>(false)

    /// True only when `name` in directory `dfd` (a final symlink not followed) certainly has
    /// no extended attributes. False means "ask with the path": the file has some, or the call
    /// failed or is not available.
    package static func certainlyNone(_ dfd: Int32, _ name: UnsafePointer<CChar>) -> Bool {
        if unavailable.load(ordering: .relaxed) || forceProcFallback.load(ordering: .relaxed) { return false }
        let n = cshims_listxattrat_nofollow(dfd, name, nil, 0)
        if n == 0 { return true }
        if n < 0 && (errno == ENOSYS || errno == EPERM) { unavailable.store(true, ordering: .relaxed) }
        return false
    }
}
