#if canImport(Glibc)
import Glibc
#endif
import Support

/// Why an entry the scan found is not in the backup: the one rule for "left out" (as restic
/// has one `fileChanged`). Decided when the entry is opened for reading, against what the
/// scan saw (`ScanIdentity`).
///
/// - `vanished`: gone between the scan and the read (deleted, or renamed away). Normal on a
///   live host (logs, temp files): a warning; the run exits 0.
/// - `unreadable`: it is there but cannot be opened or read (EACCES on a root-squashed NFS or
///   a FUSE source, EIO). It is named, the backup is committed without it, exit 3.
/// - `replaced`: another file is there now: another type (a symlink, a directory, a FIFO) or
///   another inode than the scan saw. Named, committed without it, exit 3. Whatever is there
///   now is never read in its place (a symlink swapped in is not followed).
package enum LeftOut: Sendable, Equatable {
    case vanished
    case unreadable(errno: Int32)
    case replaced(now: String)

    /// True when the entry counts as missing from a committed backup (exit 3).
    package var isMissing: Bool { self != .vanished }

    /// Why, in a few words ("permission denied", "replaced by a symlink").
    package var reason: String {
        switch self {
        case .vanished: "disappeared while the backup ran"
        case .unreadable(let e): "cannot be read: " + Sys.strerror(e)
        case .replaced(let now): "was replaced by \(now) while the backup ran"
        }
    }

    /// The warning for `path` (the escaped relative path).
    package func warning(_ path: String) -> String {
        switch self {
        case .vanished: "\(path) disappeared while the backup ran; not in this backup"
        case .unreadable, .replaced: "\(path) \(reason); it is left out of this backup (exit 3)"
        }
    }

    /// What an `open` of the entry that failed with `err` means: ENOENT (and ENOTDIR, a parent
    /// gone) is a vanished entry; ELOOP (`O_NOFOLLOW` met a symlink) and ENXIO/EISDIR are
    /// another type of file; anything else leaves a file there that cannot be read.
    package static func fromOpen(errno err: Int32) -> LeftOut {
        switch err {
        case ENOENT, ENOTDIR: .vanished
        case ELOOP: .replaced(now: "a symlink")
        case EISDIR: .replaced(now: "a directory")
        case ENXIO, ENODEV: .replaced(now: "a socket, FIFO or device")
        default: .unreadable(errno: err)
        }
    }

    /// A file opened for reading checked against the scan: nil when it is the file the scan
    /// saw (same device and inode, a regular file); otherwise why it is left out.
    package static func check(_ st: FileStat, against identity: ScanIdentity) -> LeftOut? {
        if !st.isRegular { return .replaced(now: kindName(mode_t(st.type))) }
        if st.dev != identity.dev || st.ino != identity.ino { return .replaced(now: "another file") }
        return nil
    }

    /// "a directory", "a symlink", ... for a `st_mode & S_IFMT`.
    static func kindName(_ kind: mode_t) -> String {
        switch kind {
        case S_IFDIR: "a directory"
        case S_IFLNK: "a symlink"
        case S_IFREG: "a regular file"
        default: "a socket, FIFO or device"
        }
    }
}

/// Where an entry was when the scan saw it: device and inode (compared only within this run,
/// never stored: device numbers change after a migration).
package struct ScanIdentity: Sendable, Equatable {
    package var dev: UInt64
    package var ino: UInt64
    package init(dev: UInt64, ino: UInt64) { self.dev = dev; self.ino = ino }
}

/// One file named in `MissingFiles`.
package struct MissingFile: Codable, Sendable, Equatable {
    /// The relative path, escaped (`NameEscape`; `--only` accepts this form).
    package var path: String
    package var reason: String
}

/// The files a committed backup lacks (exit 3): how many, and the first ones by name.
package struct MissingFiles: Codable, Sendable, Equatable {
    package var count = 0
    package var first: [MissingFile] = []
    /// At most this many are listed in `first` (all are named in warnings).
    package static let listed = 20

    package init() {}

    package mutating func add(_ path: String, _ why: LeftOut) {
        count += 1
        if first.count < Self.listed { first.append(MissingFile(path: path, reason: why.reason)) }
    }
}
