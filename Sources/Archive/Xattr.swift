import Glibc

// <sys/xattr.h> is not part of Swift's Glibc module map; these are the libc entry points.
@_silgen_name("fsetxattr") private func c_fsetxattr(_ fd: Int32, _ name: UnsafePointer<CChar>, _ value: UnsafeRawPointer?, _ size: Int, _ flags: Int32) -> Int32
@_silgen_name("llistxattr") private func c_llistxattr(_ path: UnsafePointer<CChar>, _ list: UnsafeMutablePointer<CChar>?, _ size: Int) -> Int
@_silgen_name("lgetxattr") private func c_lgetxattr(_ path: UnsafePointer<CChar>, _ name: UnsafePointer<CChar>, _ value: UnsafeMutableRawPointer?, _ size: Int) -> Int

/// Linux constants missing from Swift's Glibc import.
enum LinuxConst {
    static let O_NOATIME: Int32 = 0o1000000
    static let O_PATH: Int32 = 0o10000000
    static let AT_EMPTY_PATH: Int32 = 0x1000
    static let UTIME_NOW: Int = (1 << 30) - 1
    static let UTIME_OMIT: Int = (1 << 30) - 2
}

/// Sets an extended attribute on an open file.
/// The corresponding libc call is `fsetxattr`.
func setXattr(fd: Int32, name: String, value: [UInt8]) -> Int32 {
    value.withUnsafeBytes { c_fsetxattr(fd, name, $0.baseAddress, $0.count, 0) }
}

/// Restores extended attributes (names and values as bytes, e.g. from pax `SCHILY.xattr.*`)
/// on an open file, never by path. `user.*` always; other namespaces (POSIX ACLs in
/// `system.posix_acl_access`/`_default`, `security.*`, `trusted.*`) only as root.
enum XattrApplier {
    /// - Returns: warnings for attributes that could not be set.
    /// The corresponding libc call is `fsetxattr`.
    static func apply(fd: Int32, _ xattrs: [(name: [UInt8], value: [UInt8])], path: String) -> [String] {
        var warnings: [String] = []
        let root = geteuid() == 0
        for (name, value) in xattrs {
            guard root || name.starts(with: Array("user.".utf8)), !name.contains(0) else { continue }
            let rc = RestorePath.withCName(name) { n in value.withUnsafeBytes { c_fsetxattr(fd, n, $0.baseAddress, $0.count, 0) } }
            if rc != 0 {
                warnings.append("\(path): extended attribute \(String(decoding: name, as: UTF8.self)) not restored: \(String(cString: strerror(errno)))")
            }
        }
        return warnings
    }
}

/// The `user.*` extended attributes of `path` (not following a final symlink); empty when the
/// filesystem has none or does not support them.
/// The corresponding libc calls are `llistxattr` and `lgetxattr`.
package func readUserXattrs(path: String) -> [String: [UInt8]] {
    var out: [String: [UInt8]] = [:]
    let n = c_llistxattr(path, nil, 0)
    guard n > 0 else { return out }
    var names = [CChar](repeating: 0, count: n + 1)
    let m = c_llistxattr(path, &names, n)
    guard m > 0 else { return out }
    var start = 0
    for i in 0..<m where names[i] == 0 {
        let name = String(decoding: names[start..<i].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        start = i + 1
        guard name.hasPrefix("user.") else { continue }
        let size = c_lgetxattr(path, name, nil, 0)
        guard size >= 0 else { continue }
        var value = [UInt8](repeating: 0, count: size)
        let got = value.withUnsafeMutableBytes { c_lgetxattr(path, name, $0.baseAddress, size) }
        if got >= 0 { out[name] = Array(value.prefix(got)) }
    }
    return out
}
