import Archive
import Glibc
import Support
import Synchronization

/// The one place a restore applies metadata (owner, mode, extended attributes and ACLs,
/// times) to an entry it created, for every entry type, with one failure policy. Every
/// `fchown*`, `fchmod*`, `futimens`, `utimensat` and xattr write of the restore is here.
///
/// Order: owner, then mode (a chown clears setuid/setgid), then xattrs (a POSIX ACL after the
/// mode: chmod rewrites the ACL's mask), then times (last: the others change ctime only).
///
/// Failure policy, the same for files, directories, symlinks and FIFOs:
/// - **error** (the restore stops, the entry is removed if it is a file being written): mode
///   and times that cannot be set, a descriptor that is not the entry just made;
/// - **warning, once per class** with a count and the first entries (`MetadataNotes`):
///   ownership that could not be set (chown failed) or was not attempted (not root: entries
///   stay owned by the restoring user), setuid/setgid bits not kept, extended attributes the
///   restoring user may not set (`trusted.*`, `security.*`, a symlink's attributes: root
///   only) and attributes the filesystem refused.
///
/// POSIX ACLs (`system.posix_acl_access`/`_default`) are restored by root and by the owner of
/// the entry (a non-root restore owns what it creates), as `tar --acls -x` does.
struct MetadataApplier: Sendable {
    /// chown to the archived ids (root).
    let restoreOwnership: Bool
    /// Keep setuid/setgid bits.
    let preserveSpecial: Bool
    let restoreXattrs: Bool
    /// New entries come out with euid/egid and the umask'd mode (see `CreationProbe`).
    let predictable: Bool
    let umaskBits: UInt32
    let euid: UInt32
    let egid: UInt32
    let notes: MetadataNotes

    /// How the entry is reached.
    enum Handle {
        /// An open descriptor of the entry (regular files, directories).
        case fd(Int32)
        /// An `O_PATH | O_NOFOLLOW` descriptor (FIFOs: opening them for I/O could block).
        case path(Int32)
        /// A symlink `name` in the directory open as `dirfd` (never followed).
        case symlink(dirfd: Int32, name: [UInt8])
    }

    /// The permission bits restored for an archived mode.
    func mode(_ m: UInt32) -> UInt32 { preserveSpecial ? m & 0o7777 : m & 0o1777 }

    /// The mode a directory is created with: its own bits, searchable and writable by us until
    /// its metadata is applied at the end.
    static func creationMode(directory m: UInt32) -> UInt32 { (m & 0o777) | 0o700 }

    /// Applies the metadata of `e` to the entry behind `h`.
    /// - Parameters:
    ///   - createdMode: the mode the entry was created with when it was made just now in a
    ///     predictable directory (chmod/chown are skipped when they would change nothing);
    ///     nil: always apply.
    ///   - shown: the entry for messages (escaped).
    /// - Throws: `RestoreError.io` when the mode or the times cannot be set.
    func apply(_ e: TarEntry, to h: Handle, createdMode: UInt32?, shown: @autoclosure () -> String) throws {
        let fresh = createdMode != nil && predictable
        try applyOwner(e, h, fresh: fresh, shown: shown())
        try applyMode(e, h, createdMode: fresh ? createdMode : nil, shown: shown())
        if restoreXattrs && !e.xattrs.isEmpty { applyXattrs(e, h, shown: shown()) }
        try applyTimes(e, h, shown: shown())
    }

    private func applyOwner(_ e: TarEntry, _ h: Handle, fresh: Bool, shown: @autoclosure () -> String) throws {
        guard restoreOwnership else {
            if e.uid != euid || e.gid != egid { notes.note(.ownerNotRestored, shown(), detail: "\(e.uid):\(e.gid)") }
            return
        }
        // Scalars out first: a closure capturing `e` copied the entry (retaining its arrays).
        let uid = e.uid, gid = e.gid
        if fresh && uid == euid && gid == egid { return }
        let rc: Int32
        switch h {
        case .fd(let fd): rc = Sys.retry { fchown(fd, uid, gid) }
        case .path(let fd): rc = Sys.retry { fchownat(fd, "", uid, gid, Sys.AT_EMPTY_PATH) }
        case .symlink(let dirfd, let name): rc = Sys.retry { Sys.withCName(name) { fchownat(dirfd, $0, uid, gid, AT_SYMLINK_NOFOLLOW) } }
        }
        if rc != 0 { notes.note(.ownerFailed, shown(), detail: "\(uid):\(gid): \(Sys.strerror(errno))") }
    }

    private func applyMode(_ e: TarEntry, _ h: Handle, createdMode: UInt32?, shown: @autoclosure () -> String) throws {
        if case .symlink = h { return }   // a symlink has no mode of its own on Linux
        let m = mode(e.mode)
        if e.mode & 0o6000 != 0 && m & 0o6000 == 0 { notes.note(.specialBitsDropped, shown(), detail: String(e.mode, radix: 8)) }
        // Made just now with exactly this mode (no special bits: they are never created).
        if let createdMode, createdMode & ~umaskBits == m { return }
        let rc: Int32
        switch h {
        case .fd(let fd): rc = Sys.retry { fchmod(fd, mode_t(m)) }
        case .path(let fd): rc = Sys.retry { fchmodat(AT_FDCWD, "/proc/self/fd/\(fd)", mode_t(m), 0) }
        case .symlink: return
        }
        if rc != 0 { throw RestoreError.io(SysError(call: "chmod", path: shown(), errno: errno)) }
    }

    private func applyTimes(_ e: TarEntry, _ h: Handle, shown: @autoclosure () -> String) throws {
        // On the stack (an array per file would be one allocation more per restored file); the
        // time taken out first (a closure capturing `e` copied the entry).
        let mtime = timespec(tv_sec: Int(e.mtime.seconds), tv_nsec: Int(e.mtime.nanoseconds))
        let rc: Int32 = withUnsafeTemporaryAllocation(of: timespec.self, capacity: 2) { b in
            let ts = b.baseAddress!
            ts[0] = timespec(tv_sec: 0, tv_nsec: Sys.UTIME_NOW)
            ts[1] = mtime
            switch h {
            case .fd(let fd): return Sys.retry { futimens(fd, ts) }
            case .path(let fd): return Sys.retry { utimensat(AT_FDCWD, "/proc/self/fd/\(fd)", ts, 0) }
            case .symlink(let dirfd, let name): return Sys.retry { Sys.withCName(name) { utimensat(dirfd, $0, ts, AT_SYMLINK_NOFOLLOW) } }
            }
        }
        if rc != 0 { throw RestoreError.io(SysError(call: "set mtime", path: shown(), errno: errno)) }
    }

    /// Which namespaces this restore may write: `user.*` on files and directories; POSIX ACLs
    /// as root or as the entry's owner; everything else (and a symlink's own attributes) as root.
    private func allowed(_ name: [UInt8], symlink: Bool) -> Bool {
        if euid == 0 { return true }
        if symlink { return false }
        if name.starts(with: "user.".utf8) { return true }
        return name.elementsEqual("system.posix_acl_access".utf8) || name.elementsEqual("system.posix_acl_default".utf8)
    }

    private func applyXattrs(_ e: TarEntry, _ h: Handle, shown: @autoclosure () -> String) {
        var isSymlink = false
        let target: XattrTarget
        switch h {
        case .fd(let fd): target = .fd(fd)
        case .path(let fd): target = .path(Array("/proc/self/fd/\(fd)".utf8))
        case .symlink(let dirfd, let name): target = .at(dirfd: dirfd, name: name); isSymlink = true
        }
        for (name, value) in e.xattrs where !name.contains(0) && !name.isEmpty {
            guard allowed(name, symlink: isSymlink) else {
                notes.note(.xattrNeedsRoot, shown(), detail: NameEscape.escape(name))
                continue
            }
            do { try Sys.setXattr(target, name, value) } catch {
                notes.note(.xattrFailed, shown(), detail: "\(NameEscape.escape(name)): \(error.reason)")
            }
        }
    }
}

/// What metadata could not be applied, by class: one warning per class at the end of a
/// restore, with a count and the first entries (collected from every writer thread).
final class MetadataNotes: Sendable {
    enum Class: Int, CaseIterable, Sendable {
        case ownerNotRestored, ownerFailed, specialBitsDropped, xattrNeedsRoot, xattrFailed
    }

    private struct Tally {
        var count = 0
        var examples: [String] = []
    }

    private let tallies = Mutex([Tally](repeating: Tally(), count: Class.allCases.count))

    func note(_ c: Class, _ entry: String, detail: String) {
        tallies.withLock { t in
            t[c.rawValue].count += 1
            if t[c.rawValue].examples.count < 3 { t[c.rawValue].examples.append("\(entry) (\(detail))") }
        }
    }

    /// One line per class that was noted.
    var warnings: [String] {
        let all = tallies.withLock { $0 }
        return Class.allCases.compactMap { c in
            let t = all[c.rawValue]
            guard t.count > 0 else { return nil }
            let some = t.examples.joined(separator: ", ") + (t.count > t.examples.count ? " and \(t.count - t.examples.count) more" : "")
            switch c {
            case .ownerNotRestored:
                return "ownership of \(t.count) entries not restored (not run as root: they are owned by the restoring user): \(some)"
            case .ownerFailed:
                return "could not set the owner of \(t.count) entries: \(some)"
            case .specialBitsDropped:
                return "setuid/setgid bits of \(t.count) entries not restored (kept only by root restoring into an empty target): \(some)"
            case .xattrNeedsRoot:
                return "\(t.count) extended attributes not restored (trusted.*, security.* and a symlink's attributes need root): \(some)"
            case .xattrFailed:
                return "\(t.count) extended attributes or ACLs not restored (the target filesystem refused them): \(some)"
            }
        }
    }
}
