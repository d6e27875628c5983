import Archive
import Foundation
import Glibc
import Support

/// Archives a whole directory tree (lstat only, never following symlinks): the reference
/// walker used by tests and the benchmark. Hardlinked files are stored once, later names as
/// hardlink entries. Entries are added in sorted order (bytewise per directory).
package enum DirectoryArchiver {
    /// Adds every entry below `root` (not `root` itself) to `writer`.
    /// - Returns: the number of entries added and the paths whose size changed while read.
    @discardableResult
    package static func archive(_ root: String, into writer: ArchiveWriter) throws -> (entries: Int, sizeChanged: [String]) {
        var seen: [UInt64: [UInt64: [UInt8]]] = [:]   // dev -> ino -> first path
        var names = NameCache()
        var count = 0
        var changed: [String] = []
        let rootBytes = Array(root.utf8)
        // Names are bytes throughout (any name a Linux file system allows).
        func walk(_ rel: [UInt8]) throws {
            let dirPath = rel.isEmpty ? rootBytes : rootBytes + [0x2F] + rel
            guard let d = opendir(cString(dirPath)) else {
                throw ArchiveError(.io, entry: String(decoding: rel, as: UTF8.self), "opendir('\(String(decoding: dirPath, as: UTF8.self))') failed: \(Sys.strerror(errno))")
            }
            var children: [[UInt8]] = []
            while let ent = readdir(d) {
                let name = withUnsafeBytes(of: ent.pointee.d_name) { raw in Array(raw.prefix(while: { $0 != 0 })) }
                if name == [0x2E] || name == [0x2E, 0x2E] { continue }
                children.append(name)
            }
            closedir(d)
            children.sort { $0.lexicographicallyPrecedes($1) }
            for name in children {
                let childRel = rel.isEmpty ? name : rel + [0x2F] + name
                let full = rootBytes + [0x2F] + childRel
                var st = stat()
                var e = try metadata(cString(full), relative: childRel, names: &names, stat: &st)
                if e.type == .file && st.st_nlink > 1 {
                    if let first = seen[UInt64(st.st_dev)]?[UInt64(st.st_ino)] {
                        e.type = .hardlink; e.linkBytes = first; e.size = 0
                    } else {
                        seen[UInt64(st.st_dev), default: [:]][UInt64(st.st_ino)] = childRel
                    }
                }
                let r = try writer.add(e, contentPathBytes: e.type == .file ? full : nil)
                if r.sizeChanged { changed.append(e.path) }
                count += 1
                if e.type == .directory { try walk(childRel) }
            }
        }
        try walk([])
        return (count, changed)
    }

    static func cString(_ b: [UInt8]) -> [CChar] { b.map { CChar(bitPattern: $0) } + [0] }

    /// Metadata of one filesystem object (lstat), named `relative` in the archive.
    package static func metadata(_ path: String, relative: String) throws -> EntryMetadata {
        var names = NameCache()
        return try metadata(path, relative: relative, names: &names)
    }

    struct NameCache {
        var users: [UInt32: String?] = [:]
        var groups: [UInt32: String?] = [:]
        mutating func user(_ uid: UInt32) -> String? {
            if let u = users[uid] { return u }
            let n = getpwuid(uid).map { String(cString: $0.pointee.pw_name) }
            users[uid] = n
            return n
        }
        mutating func group(_ gid: UInt32) -> String? {
            if let g = groups[gid] { return g }
            let n = getgrgid(gid).map { String(cString: $0.pointee.gr_name) }
            groups[gid] = n
            return n
        }
    }

    static func metadata(_ path: String, relative: String, names: inout NameCache) throws -> EntryMetadata {
        var st = stat()
        return try metadata(cString(Array(path.utf8)), relative: Array(relative.utf8), names: &names, stat: &st)
    }

    /// As above; `path` is a C string, `st` receives the lstat result (one lstat per entry).
    static func metadata(_ path: [CChar], relative: [UInt8], names: inout NameCache, stat st: inout stat) throws -> EntryMetadata {
        let shown = String(decoding: relative, as: UTF8.self)
        guard lstat(path, &st) == 0 else {
            throw ArchiveError(.io, entry: shown, "lstat failed: \(Sys.strerror(errno))")
        }
        let type: EntryType
        switch st.st_mode & S_IFMT {
        case S_IFREG: type = .file
        case S_IFDIR: type = .directory
        case S_IFLNK: type = .symlink
        case S_IFIFO: type = .fifo
        case S_IFCHR: type = .charDevice
        case S_IFBLK: type = .blockDevice
        default: throw ArchiveError(.invalidInput, entry: shown, "sockets and other special files are not archived")
        }
        var e = EntryMetadata(pathBytes: relative, type: type, mode: UInt32(st.st_mode & 0o7777), uid: st.st_uid, gid: st.st_gid,
                              uname: names.user(st.st_uid), gname: names.group(st.st_gid),
                              size: type == .file ? UInt64(clamping: st.st_size) : 0,
                              mtimeSeconds: Int64(st.st_mtim.tv_sec), mtimeNanoseconds: UInt32(clamping: min(max(st.st_mtim.tv_nsec, 0), 999_999_999)))
        if type == .symlink {
            var buf = [CChar](repeating: 0, count: 4097)
            let n = readlink(path, &buf, 4096)
            guard n >= 0 else { throw ArchiveError(.io, entry: shown, "readlink failed: \(Sys.strerror(errno))") }
            e.linkBytes = buf[0..<n].map { UInt8(bitPattern: $0) }
        }
        if type == .charDevice || type == .blockDevice {
            e.devMajor = UInt32((st.st_rdev >> 8) & 0xfff) | UInt32((st.st_rdev >> 32) & ~0xfff)
            e.devMinor = UInt32(st.st_rdev & 0xff) | UInt32((st.st_rdev >> 12) & ~0xff)
        }
        if type == .file || type == .directory {
            for a in path.withUnsafeBufferPointer({ readXattrs(.path($0.baseAddress!)) }) where a.name.hasPrefix("user.") { e.xattrs[a.name] = a.value }
        }
        return e
    }
}
