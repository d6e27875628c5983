internal import CShims
import Glibc
import Synchronization

/// Extended attributes of an entry named relative to an open directory, never through a path
/// from the root: `listxattrat`/`getxattrat` (Linux 6.13+, a final symlink not followed), or
/// on older kernels (Debian 12 runs 6.1, Proxmox 8 runs 6.8) `llistxattr`/`lgetxattr` on
/// `/proc/self/fd/<dfd>/<name>`: the directory's descriptor is resolved by the kernel, so a
/// directory renamed or swapped for a symlink meanwhile is still the one that was opened.
package enum XattrAt {
    /// Set once the kernel (or a seccomp filter) refused the *at calls: every later call goes
    /// through `/proc/self/fd` at once.
    private static let unavailable = Atomic<Bool>(false)
    /// Tests: use the `/proc/self/fd` way even where the *at calls exist.
    package static let forceProcFallback = Atomic<Bool>(false)

    private static var useAt: Bool {
        !unavailable.load(ordering: .relaxed) && !forceProcFallback.load(ordering: .relaxed)
    }

    /// True only when `name` in directory `dfd` (a final symlink not followed) certainly has
    /// no extended attributes. False means "ask": the file has some, or the call failed or is
    /// not available.
    package static func certainlyNone(_ dfd: Int32, _ name: UnsafePointer<CChar>) -> Bool {
        guard useAt else { return false }
        let n = cshims_listxattrat_nofollow(dfd, name, nil, 0)
        if n == 0 { return true }
        if n < 0 && (errno == ENOSYS || errno == EPERM) { unavailable.store(true, ordering: .relaxed) }
        return false
    }

    /// `llistxattr` of `name` in `dfd`: the names, NUL-separated, into `list` (size 0: the
    /// size needed). -1 with errno on failure.
    package static func list(_ dfd: Int32, _ name: UnsafePointer<CChar>, _ list: UnsafeMutablePointer<CChar>?, _ size: Int) -> Int {
        if useAt {
            let n = cshims_listxattrat_nofollow(dfd, name, list, UInt(size))
            if n >= 0 || (errno != ENOSYS && errno != EPERM) { return n }
            unavailable.store(true, ordering: .relaxed)
        }
        return viaProc(dfd, name) { cshims_llistxattr($0, list, UInt(size)) }
    }

    /// `lgetxattr` of attribute `attr` of `name` in `dfd` into `value` (size 0: the size
    /// needed). -1 with errno on failure.
    package static func get(_ dfd: Int32, _ name: UnsafePointer<CChar>, _ attr: UnsafePointer<CChar>,
                            _ value: UnsafeMutableRawPointer?, _ size: Int) -> Int {
        if useAt {
            let n = cshims_getxattrat_nofollow(dfd, name, attr, value, UInt(size))
            if n >= 0 || (errno != ENOSYS && errno != EPERM) { return n }
            unavailable.store(true, ordering: .relaxed)
        }
        return viaProc(dfd, name) { cshims_lgetxattr($0, attr, value, UInt(size)) }
    }

    /// Calls `body` with "/proc/self/fd/<dfd>/<name>".
    private static func viaProc(_ dfd: Int32, _ name: UnsafePointer<CChar>, _ body: (UnsafePointer<CChar>) -> Int) -> Int {
        var path = Array("/proc/self/fd/\(dfd)/".utf8CString.dropLast())
        var p = name
        while p.pointee != 0 { path.append(p.pointee); p += 1 }
        path.append(0)
        return path.withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}
