#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import Support

/// `--exclude-caches` and `--exclude-if-present NAME`: directories a file inside marks as not
/// worth backing up. As GNU tar's `--exclude-caches` and `--exclude-tag=NAME`: the marked
/// directory and the marker itself are kept, everything else in it is left out (so a restore
/// gives the app its empty cache directory back, tag included, and the tag still says why).
///
/// A cache is a directory holding a regular file `CACHEDIR.TAG` whose first 43 bytes are
/// `Signature: 8a477f597d28d172789f06886806bc55` (the Cache Directory Tagging Specification,
/// https://bford.info/cachedir/, checked as GNU tar and restic do); a tag with another
/// content, or a symlink named CACHEDIR.TAG, marks nothing. A `--exclude-if-present` marker
/// counts whatever its type (not followed). The source directory itself is never marked: it
/// is what was asked for. A marker that cannot be checked (permission) marks nothing: the
/// directory is backed up whole and a warning says why.
package struct ExcludeMarkers: Sendable, Equatable {
    /// Directories with a valid CACHEDIR.TAG (`--exclude-caches`).
    package var caches = false
    /// Names whose presence marks a directory (`--exclude-if-present`), as bytes.
    package var ifPresent: [[UInt8]] = []

    package static let cacheTagName = Array("CACHEDIR.TAG".utf8)
    package static let cacheSignature = Array("Signature: 8a477f597d28d172789f06886806bc55".utf8)

    package init(caches: Bool = false, ifPresent: [[UInt8]] = []) {
        self.caches = caches
        self.ifPresent = ifPresent
    }

    package var isEmpty: Bool { !caches && ifPresent.isEmpty }

    /// A `--exclude-if-present` value as the bytes of one file name.
    /// - Throws: `ToolError.usage` for an empty value, `.`, `..`, a path with `/`, or a bad escape.
    package static func name(_ argument: String) throws -> [UInt8] {
        let bytes: [UInt8]
        do { bytes = try NameArgument.bytes(of: argument) } catch {
            throw ToolError.usage("--exclude-if-present \(argument): \(error)")
        }
        guard !bytes.isEmpty, bytes != [0x2E], bytes != [0x2E, 0x2E], !bytes.contains(0x2F) else {
            throw ToolError.usage("--exclude-if-present takes a file name (like .nobackup), not '\(NameEscape.escape(bytes))': a directory holding a file of that name is backed up without its other contents")
        }
        return bytes
    }

    /// The marker in the directory open as `dirfd` (the name to keep), or nil. `warn` gets a
    /// message when a marker exists but cannot be checked.
    func marker(in dirfd: Int32, path: @autoclosure () -> String, warn: (String) -> Void) -> [UInt8]? {
        if caches {
            do {
                if try Self.isCacheTag(in: dirfd) { return Self.cacheTagName }
            } catch {
                warn("cannot check \(path())/CACHEDIR.TAG (\(error.reason)); the directory is backed up whole")
            }
        }
        for name in ifPresent {
            do {
                if try Sys.fstatat(dirfd, name) != nil { return name }
            } catch {
                warn("cannot check \(path())/\(NameEscape.escape(name)) (\(error.reason)); the directory is backed up whole")
            }
        }
        return nil
    }

    /// True when the directory open as `dirfd` holds a regular file CACHEDIR.TAG that starts
    /// with the signature (not followed when a symlink).
    static func isCacheTag(in dirfd: Int32) throws(SysError) -> Bool {
        let fd: Int32
        do {
            fd = try Sys.openat(dirfd, cacheTagName, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
        } catch where error.errno == ENOENT || error.errno == ELOOP || error.errno == ENXIO {
            return false  // none, a symlink, or a socket
        }
        return try Sys.closeAfter(fd) { fd throws(SysError) in
            guard try Sys.fstat(fd).type == UInt32(S_IFREG) else { return false }
            let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: cacheSignature.count, alignment: 1)
            defer { buf.deallocate() }
            let got = try Sys.readFull(fd, into: buf)
            return got == cacheSignature.count && buf.elementsEqual(cacheSignature)
        }
    }
}
