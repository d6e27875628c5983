#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials

/// Whether new entries in a directory come out exactly as a restore creates them: owned by
/// this process's euid/egid, with the requested mode minus the umask. Restores use it to skip
/// chown/chmod for entries that already have their final owner and mode.
///
/// Not so when the directory has the setgid bit (new entries take its group, new directories
/// its setgid bit) or a default ACL (modes come from the ACL, not the umask), on an NFS mount
/// with root_squash, or on a filesystem mounted with fixed uid=/gid=/mode options: the probe
/// creates a directory and a file in it and looks, then removes them.
package enum CreationProbe {
    /// The process umask, read without changing it (other threads may be creating files),
    /// or nil when the kernel does not report it.
    package static func currentUmask() -> UInt32? {
        if let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
           let line = s.split(separator: "\n").first(where: { $0.hasPrefix("Umask:") }),
           let v = UInt32(line.dropFirst(6).trimmingWhitespace(), radix: 8) {
            return v
        }
        return nil
    }

    /// True when entries created in the directory open as `dirfd` get `uid`/`gid` and the
    /// mode minus `umask` (defaults: this process's). Leaves nothing behind.
    package static func isPredictable(_ dirfd: Int32, uid: uid_t = geteuid(), gid: gid_t = getegid(), umask: UInt32? = currentUmask()) -> Bool {
        guard let umask else { return false }
        var st = stat()
        guard fstat(dirfd, &st) == 0, st.st_mode & S_ISGID == 0 else { return false }
        if (try? Sys.getXattr(.fd(dirfd), Array("system.posix_acl_default".utf8))) != nil { return false }
        let name = ".hs-create-probe-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        guard mkdirat(dirfd, name, 0o750) == 0 else { return false }
        defer { _ = unlinkat(dirfd, name + "/f", 0); _ = unlinkat(dirfd, name, AT_REMOVEDIR) }
        guard fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0, st.st_uid == uid, st.st_gid == gid,
              UInt32(st.st_mode) & 0o7777 == 0o750 & ~umask else { return false }
        let fd = openat(dirfd, name + "/f", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o640)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        guard fstat(fd, &st) == 0, st.st_uid == uid, st.st_gid == gid, UInt32(st.st_mode) & 0o7777 == 0o640 & ~umask else { return false }
        return true
    }
}
