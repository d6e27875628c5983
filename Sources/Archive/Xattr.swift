import Glibc
import Support

/// The `user.*` extended attributes of `path` (not following a final symlink); empty when the
/// filesystem has none or does not support them.
package func readUserXattrs(path: String) -> [String: [UInt8]] {
    var out: [String: [UInt8]] = [:]
    for a in (try? Sys.readXattrs(.path(Array(path.utf8)))) ?? [] where a.name.starts(with: Array("user.".utf8)) {
        out[String(decoding: a.name, as: UTF8.self)] = a.value
    }
    return out
}

/// Where extended attributes are read from: a path (NUL-terminated bytes, a final symlink is
/// not followed), an open descriptor, or a name (NUL-terminated, no "/") in the directory open
/// as the descriptor, a final symlink not followed (`XattrTarget.at`: no path from the root is
/// walked).
package enum XattrSource {
    case path(UnsafePointer<CChar>)
    case fd(Int32)
    case at(Int32, UnsafePointer<CChar>)
}

/// Every extended attribute of a file, all namespaces the caller may read (`user.*`, and as
/// root `trusted.*`, `security.*`; POSIX ACLs appear as `system.posix_acl_access` /
/// `system.posix_acl_default`), sorted by name. Empty when there are none, the file system
/// does not support them or they cannot be read; an attribute removed between listing and
/// reading is left out. Names that are not UTF-8 are left out (no tar reader could restore
/// them by name).
/// The corresponding calls are `Sys.listXattrs`/`Sys.getXattr`.
package func readXattrs(_ source: XattrSource) -> [(name: String, value: [UInt8])] {
    let target: XattrTarget
    switch source {
    case .path(let p): target = .path(Array(UnsafeRawBufferPointer(start: p, count: strlen(p))))
    case .fd(let fd): target = .fd(fd)
    case .at(let dfd, let name): target = .at(dirfd: dfd, name: Array(UnsafeRawBufferPointer(start: name, count: strlen(name))))
    }
    guard let attrs = try? Sys.readXattrs(target) else { return [] }
    return attrs.compactMap { a in
        a.name.withUnsafeBufferPointer { String(validating: $0, as: UTF8.self) }.map { ($0, a.value) }
    }
}
