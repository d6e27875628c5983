#if canImport(Glibc)
import Glibc
#endif
import Support

/// A path of the media tree as bytes. A Linux name is any bytes but NUL and "/": a share written
/// by an old SMB client holds Latin-1 names (`Am\xe9lie (2001)`), which a String turns into
/// U+FFFD, and the file could not be opened again by that String. So the audit and the reclaim
/// walk, open, link and rename by these bytes; a person sees `shown` (`NameEscape`).
package struct MediaPath: Hashable, Comparable, Sendable, Encodable, CustomStringConvertible {
    package var bytes: [UInt8]

    package init(_ bytes: [UInt8]) { self.bytes = bytes }
    package init(_ path: String) { bytes = Array(path.utf8) }

    /// The escaped form, for a person.
    package var shown: String { NameEscape.escape(bytes) }
    package var description: String { shown }

    /// `self/name`; `name` alone when `self` is empty, `self` when `name` is.
    package func appending(_ name: some Collection<UInt8>) -> MediaPath {
        if name.isEmpty { return self }
        if bytes.isEmpty { return MediaPath(Array(name)) }
        return MediaPath(bytes.last == 0x2F ? bytes + name : bytes + [0x2F] + name)
    }

    /// The directory part ("." when there is no slash) and the last name.
    package var parentAndName: (parent: [UInt8], name: ArraySlice<UInt8>) {
        guard let slash = bytes.lastIndex(of: 0x2F) else { return ([0x2E], bytes[...]) }
        return (Array(bytes[..<slash]), bytes[(slash + 1)...])
    }

    package static func < (a: MediaPath, b: MediaPath) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }

    /// In `--json`: the path as it is when it is UTF-8 (JSON escapes what it must), otherwise
    /// its escaped form, as the text shows it: JSON text is UTF-8 and cannot hold other bytes.
    package func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(String(validating: bytes, as: UTF8.self) ?? shown)
    }

    // MARK: File operations by bytes (`Sys` takes byte names; these are its String-path calls).

    /// Opens the file read-only without following a final symlink.
    func openRead() throws(SysError) -> Int32 { try Sys.open(bytes, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) }

    /// `lstat`; nil when the path does not exist.
    func lstat() throws(SysError) -> FileStat? { try Sys.fstatat(AT_FDCWD, bytes) }

    /// `link(self, new)`: a hardlink; never follows symlinks.
    func link(as new: MediaPath) throws(SysError) {
        _ = try Sys.check("link", "\(shown) -> \(new.shown)") {
            Sys.withCName(bytes) { a in Sys.withCName(new.bytes) { Glibc.linkat(AT_FDCWD, a, AT_FDCWD, $0, 0) } }
        }
    }

    /// `rename(self, to)`, atomically replacing `to`.
    func rename(to: MediaPath) throws(SysError) {
        _ = try Sys.check("rename", "\(shown) -> \(to.shown)") {
            Sys.withCName(bytes) { a in Sys.withCName(to.bytes) { Glibc.rename(a, $0) } }
        }
    }

    /// Removes the file; a missing file is not an error.
    func unlink() throws(SysError) {
        if Sys.retry({ Sys.withCName(bytes) { Glibc.unlink($0) } }) != 0 && errno != ENOENT {
            throw SysError(call: "unlink", name: bytes, errno: errno)
        }
    }

    /// Flushes the entries of this directory (after a rename); errors are ignored where
    /// unsupported, as `Sys.syncDirectory` does.
    func syncDirectory() {
        guard let fd = try? Sys.open(bytes, O_RDONLY | O_DIRECTORY | O_CLOEXEC) else { return }
        _ = try? Sys.fsync(fd)
        Sys.close(fd)
    }
}
