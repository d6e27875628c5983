// Archive: streaming POSIX pax tar writer and reader, parallel gzip members, safe extraction.
//
// What it does:
// - `ArchiveWriter` turns entries (metadata + a file to read content from) into ONE pax tar
//   stream (ustar headers, pax records where ustar cannot express a value), cut into gzip
//   members at entry boundaries (and at a size cap inside big files). Members are compressed
//   on a small thread pool and written in order; incompressible file content is stored, not
//   deflated. The output is ordinary multi-member gzip: gzip, GNU tar, bsdtar and Python's
//   tarfile read it. `finish()` returns an `ArchiveIndex` (members and where each entry's
//   header is) so a restore can start at one member instead of the beginning.
// - `TarReader` reads pax, ustar, GNU, old GNU and v7 tar, GNU sparse files, from any
//   `ByteSource` (a file, a Destination reader, an age-decrypting reader, stdin). The restore
//   executor (module Restore) drives it; so does `hs-backup verify`.
//
// What it does not guarantee:
// - Sparse files are archived as ordinary (zero-filled) files unless the caller says
//   otherwise; extraction makes holes again.
// - The writer archives every extended attribute and POSIX ACL it is given.

/// The kind of a tar entry.
package enum EntryType: String, Sendable, Equatable, Codable {
    case file, directory, symlink, hardlink, fifo, charDevice, blockDevice
}

/// Everything an archive records about one entry: the writer's input.
///
/// Names are bytes (`pathBytes`, `linkBytes`): a Linux file name is any byte string without
/// NUL and `/`, and the writer puts exactly these bytes into the tar headers (pax `path` /
/// `linkpath` with `hdrcharset=BINARY` when they are not UTF-8, as GNU tar does). `path` and
/// `linkTarget` are String views for display and for readers that have not moved to bytes.
/// The real name and size of a sparse member (`EntryMetadata.sparse`).
package struct SparseInfo: Sendable, Equatable {
    package var realPath: [UInt8]
    package var realSize: UInt64
    package init(realPath: [UInt8], realSize: UInt64) { self.realPath = realPath; self.realSize = realSize }
}

package struct EntryMetadata: Sendable, Equatable {
    /// Relative, "/"-separated, no leading "/", no trailing "/" (also for directories).
    package var pathBytes: [UInt8]
    package var type: EntryType
    /// Permission bits including setuid/setgid/sticky (07777).
    package var mode: UInt32
    package var uid: UInt32
    package var gid: UInt32
    package var uname: String?
    package var gname: String?
    /// Content size; regular files only (0 for everything else).
    package var size: UInt64
    /// Full signed range (before 1970 and after 2262 included); nanoseconds in 0..<1e9.
    package var mtimeSeconds: Int64
    package var mtimeNanoseconds: UInt32
    /// Symlink target, or for hardlinks the path of the earlier archived entry.
    package var linkBytes: [UInt8]?
    /// Extended attributes by name, all namespaces (`user.*`, `trusted.*`, `security.*`,
    /// `system.posix_acl_access` / `system.posix_acl_default`). The writer emits every one as a
    /// pax `SCHILY.xattr.NAME` record, and the two POSIX ACLs also as `SCHILY.acl.access` /
    /// `SCHILY.acl.default` text (what GNU tar `--acls` and bsdtar restore ACLs from).
    package var xattrs: [String: [UInt8]]
    package var devMajor: UInt32
    package var devMinor: UInt32
    /// A GNU pax sparse 1.0 member (see `SparseFile`): the real path and size, written as its
    /// `GNU.sparse.*` records; `pathBytes` is then the placeholder name and `size` the stored
    /// size (map block and data).
    package var sparse: SparseInfo?

    /// The path as a String (bytes that are not UTF-8 show as U+FFFD): for display only.
    package var path: String {
        get { String(decoding: pathBytes, as: UTF8.self) }
        set { pathBytes = Array(newValue.utf8) }
    }

    /// The link target as a String (lossy, as `path`).
    package var linkTarget: String? {
        get { linkBytes.map { String(decoding: $0, as: UTF8.self) } }
        set { linkBytes = newValue.map { Array($0.utf8) } }
    }

    package init(path: String, type: EntryType, mode: UInt32 = 0o644, uid: UInt32 = 0, gid: UInt32 = 0,
                 uname: String? = nil, gname: String? = nil, size: UInt64 = 0,
                 mtimeSeconds: Int64 = 0, mtimeNanoseconds: UInt32 = 0, linkTarget: String? = nil,
                 xattrs: [String: [UInt8]] = [:], devMajor: UInt32 = 0, devMinor: UInt32 = 0) {
        self.init(pathBytes: Array(path.utf8), type: type, mode: mode, uid: uid, gid: gid, uname: uname, gname: gname,
                  size: size, mtimeSeconds: mtimeSeconds, mtimeNanoseconds: mtimeNanoseconds,
                  linkBytes: linkTarget.map { Array($0.utf8) }, xattrs: xattrs, devMajor: devMajor, devMinor: devMinor)
    }

    package init(pathBytes: [UInt8], type: EntryType, mode: UInt32 = 0o644, uid: UInt32 = 0, gid: UInt32 = 0,
                 uname: String? = nil, gname: String? = nil, size: UInt64 = 0,
                 mtimeSeconds: Int64 = 0, mtimeNanoseconds: UInt32 = 0, linkBytes: [UInt8]? = nil,
                 xattrs: [String: [UInt8]] = [:], devMajor: UInt32 = 0, devMinor: UInt32 = 0) {
        self.pathBytes = pathBytes; self.type = type; self.mode = mode; self.uid = uid; self.gid = gid
        self.uname = uname; self.gname = gname; self.size = size
        self.mtimeSeconds = mtimeSeconds; self.mtimeNanoseconds = mtimeNanoseconds
        self.linkBytes = linkBytes; self.xattrs = xattrs
        self.devMajor = devMajor; self.devMinor = devMinor
    }
}

/// A failure of the archive format layer (reading or writing tar/gzip): what failed, where
/// (entry / offset), and what to do. Restore-side refusals and target problems are
/// `RestoreError` (module Restore).
package struct ArchiveError: Error, CustomStringConvertible, Sendable {
    package enum Kind: Sendable, Equatable {
        /// The archive bytes are not valid tar/gzip (malformed header, bad pax record, ...).
        case malformed
        /// The archive ends early.
        case truncated
        /// A system call failed (`detail` names the call, path and errno).
        case io
        /// The caller passed something invalid (a bad entry, a bad start offset, ...).
        case invalidInput
    }

    /// A named bound the reader applies to a (hostile) archive.
    package enum Rule: String, Sendable, Equatable {
        /// A pax / GNU long-name / sparse-map header larger than `TarLimits.maxExtendedHeader`.
        case extendedHeaderSize = "extended-header-size"
        /// A sparse map with more regions than `TarLimits.maxSparseRegions`.
        case sparseRegions = "sparse-regions"
        /// Multi-volume continuation entries (type 'M').
        case multiVolume = "multi-volume"
    }

    package var kind: Kind
    /// The entry path concerned, if any (as shown to people).
    package var entry: String?
    /// The bound that refused the archive, if one did.
    package var rule: Rule?
    package var detail: String

    package init(_ kind: Kind, entry: String? = nil, rule: Rule? = nil, _ detail: String) {
        self.kind = kind; self.entry = entry; self.rule = rule; self.detail = detail
    }

    /// Damage to the archive's bytes (as opposed to an I/O failure or a caller's mistake).
    package var isDamage: Bool { kind == .malformed || kind == .truncated }

    package var description: String {
        var s: String
        switch kind {
        case .malformed: s = "malformed archive"
        case .truncated: s = "truncated archive"
        case .io: s = "I/O error"
        case .invalidInput: s = "invalid input"
        }
        if let entry { s += " '\(entry)'" }
        if let rule { s += " (rule: \(rule.rawValue))" }
        return s + ": " + detail
    }
}
