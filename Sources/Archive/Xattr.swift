import Glibc
import Support

// <sys/xattr.h> is not part of Swift's Glibc module map; these are the libc entry points.
@_silgen_name("fsetxattr") private func c_fsetxattr(_ fd: Int32, _ name: UnsafePointer<CChar>, _ value: UnsafeRawPointer?, _ size: Int, _ flags: Int32) -> Int32
@_silgen_name("lsetxattr") private func c_lsetxattr(_ path: UnsafePointer<CChar>, _ name: UnsafePointer<CChar>, _ value: UnsafeRawPointer?, _ size: Int, _ flags: Int32) -> Int32
@_silgen_name("llistxattr") private func c_llistxattr(_ path: UnsafePointer<CChar>, _ list: UnsafeMutablePointer<CChar>?, _ size: Int) -> Int
@_silgen_name("lgetxattr") private func c_lgetxattr(_ path: UnsafePointer<CChar>, _ name: UnsafePointer<CChar>, _ value: UnsafeMutableRawPointer?, _ size: Int) -> Int
@_silgen_name("flistxattr") private func c_flistxattr(_ fd: Int32, _ list: UnsafeMutablePointer<CChar>?, _ size: Int) -> Int
@_silgen_name("fgetxattr") private func c_fgetxattr(_ fd: Int32, _ name: UnsafePointer<CChar>, _ value: UnsafeMutableRawPointer?, _ size: Int) -> Int

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

    /// Sets the xattrs of the symlink `name` in the directory open as `dirFd`, never following
    /// it: `lsetxattr` on `/proc/self/fd/<dirFd>/<name>` (the directory is the checked
    /// descriptor; the final symlink is not followed). Linux allows only `trusted.*` and
    /// `security.*` on symlinks, so this is for root.
    /// The corresponding libc call is `lsetxattr`.
    static func applyToSymlink(dirFd: Int32, name: [UInt8], _ xattrs: [(name: [UInt8], value: [UInt8])], path: String) -> [String] {
        guard geteuid() == 0 else { return [] }
        var warnings: [String] = []
        let link = Array("/proc/self/fd/\(dirFd)/".utf8) + name
        for (attr, value) in xattrs where !attr.contains(0) && !attr.starts(with: Array("user.".utf8)) {
            let rc = RestorePath.withCName(link) { l in
                RestorePath.withCName(attr) { n in value.withUnsafeBytes { c_lsetxattr(l, n, $0.baseAddress, $0.count, 0) } }
            }
            if rc != 0 {
                warnings.append("\(path): extended attribute \(String(decoding: attr, as: UTF8.self)) not restored on the symlink: \(String(cString: strerror(errno)))")
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

/// Where extended attributes are read from: a path (NUL-terminated bytes, a final symlink is
/// not followed) or an open descriptor.
package enum XattrSource {
    case path(UnsafePointer<CChar>)
    case fd(Int32)
    /// A name (NUL-terminated, no "/") in the directory open as the descriptor, a final
    /// symlink not followed (`XattrAt`: no path from the root is walked).
    case at(Int32, UnsafePointer<CChar>)
}

/// Every extended attribute of a file, all namespaces the caller may read (`user.*`, and as
/// root `trusted.*`, `security.*`; POSIX ACLs appear as `system.posix_acl_access` /
/// `system.posix_acl_default`), sorted by name. Empty when there are none or the file system
/// does not support them; an attribute removed between listing and reading is left out.
/// Names that are not UTF-8 are left out (no tar reader could restore them by name).
/// The corresponding libc calls are `llistxattr`/`lgetxattr` (`flistxattr`/`fgetxattr`).
package func readXattrs(_ source: XattrSource) -> [(name: String, value: [UInt8])] {
    func list(_ buf: UnsafeMutablePointer<CChar>?, _ size: Int) -> Int {
        switch source {
        case .path(let p): return c_llistxattr(p, buf, size)
        case .fd(let fd): return c_flistxattr(fd, buf, size)
        case .at(let dfd, let name): return XattrAt.list(dfd, name, buf, size)
        }
    }
    func get(_ name: UnsafePointer<CChar>, _ buf: UnsafeMutableRawPointer?, _ size: Int) -> Int {
        switch source {
        case .path(let p): return c_lgetxattr(p, name, buf, size)
        case .fd(let fd): return c_fgetxattr(fd, name, buf, size)
        case .at(let dfd, let entry): return XattrAt.get(dfd, entry, name, buf, size)
        }
    }
    var names: [CChar] = []
    var n = 0
    // The list can grow between the size query and the read (ERANGE): retry a few times.
    for _ in 0 ..< 4 {
        let want = list(nil, 0)
        guard want > 0 else { return [] }
        names = [CChar](repeating: 0, count: want + 1)
        n = names.withUnsafeMutableBufferPointer { list($0.baseAddress!, want) }
        if n >= 0 || errno != ERANGE { break }
    }
    guard n > 0 else { return [] }
    var out: [(name: String, value: [UInt8])] = []
    var start = 0
    for i in 0 ..< n where names[i] == 0 {
        defer { start = i + 1 }
        guard i > start else { continue }
        let raw = names[start ..< i].map { UInt8(bitPattern: $0) }
        guard let name = raw.withUnsafeBufferPointer({ String(validating: $0, as: UTF8.self) }) else { continue }
        let cname = Array(names[start ... i])
        for _ in 0 ..< 4 {
            let size = get(cname, nil, 0)
            guard size >= 0 else { break }
            var value = [UInt8](repeating: 0, count: size)
            let got = size == 0 ? 0 : value.withUnsafeMutableBytes { get(cname, $0.baseAddress, size) }
            if got < 0 && errno == ERANGE { continue }
            if got >= 0 { out.append((name, Array(value.prefix(got)))) }
            break
        }
    }
    return out.sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
}
