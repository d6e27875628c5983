import Foundation
import Support

/// Where provisioning acts: the live system, a directory whose files are edited while host
/// commands are only printed (`--root`), or a directory used as a chroot where files are
/// edited and commands really run via `chroot DIR ...` (`--chroot`).
package enum ExecMode: Sendable, Equatable {
    case live
    case root(String)
    case chroot(String)

    /// Prefix for file paths ("" for the live system).
    package var prefix: String {
        switch self {
        case .live: return ""
        case .root(let d), .chroot(let d): return d.hasSuffix("/") ? String(d.dropLast()) : d
        }
    }

    /// True when commands are executed (live and chroot), false when only printed.
    package var runsCommands: Bool { if case .root = self { return false } else { return true } }
}

/// File access and command execution for one `ExecMode`. Paths given to it are absolute
/// paths on the target system (`/etc/fstab`); it adds the root prefix.
package final class Machine: Sendable {
    package let mode: ExecMode
    /// Timestamp used for backups during this run (UTC, YYYYMMDDHHMMSS).
    package let stamp: String
    /// Environment for every command (apt must never ask questions).
    static let commandEnvironment = ["DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"]

    package init(mode: ExecMode, now: Date = Date()) {
        self.mode = mode
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMddHHmmss"
        stamp = f.string(from: now)
    }

    /// The path on this machine's filesystem for a target path.
    package func path(_ p: String) -> String { mode.prefix + p }

    /// Current content of a target file, nil when it does not exist.
    package func read(_ p: String) -> String? {
        FileManager.default.contents(atPath: path(p)).map { String(decoding: $0, as: UTF8.self) }
    }

    package func exists(_ p: String) -> Bool { FileManager.default.fileExists(atPath: path(p)) }

    /// Owner and mode of a target path, nil when missing.
    package func owner(_ p: String) -> (uid: Int, gid: Int, isDir: Bool)? {
        var st = stat()
        guard lstat(path(p), &st) == 0 else { return nil }
        return (Int(st.st_uid), Int(st.st_gid), (st.st_mode & S_IFMT) == S_IFDIR)
    }

    /// Runs a read-only query command on the target (live: directly, chroot: inside it).
    /// Returns nil in `--root` mode or when the program does not exist there.
    package func query(_ argv: [String]) -> ProcessResult? {
        switch mode {
        case .root: return nil
        case .live:
            guard Subprocess.which(argv[0]) != nil else { return nil }
            return try? Subprocess.run(argv, environment: Self.commandEnvironment)
        case .chroot(let dir):
            guard hasProgram(argv[0]) else { return nil }
            return try? Subprocess.run(["chroot", dir] + argv, environment: Self.commandEnvironment)
        }
    }

    /// True when the target has `name` in its usual bin directories.
    package func hasProgram(_ name: String) -> Bool {
        switch mode {
        case .live: return Subprocess.which(name) != nil
        case .root, .chroot:
            return ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"].contains {
                FileManager.default.isExecutableFile(atPath: path("\($0)/\(name)"))
            }
        }
    }

    /// Runs a command that changes the target. In `--root` mode this is never called.
    /// - Throws: `ProcessFailure` on a non-zero exit.
    package func execute(_ argv: [String]) throws -> ProcessResult {
        switch mode {
        case .root: preconditionFailure("commands are printed, not run, in --root mode")
        case .live: return try Subprocess.checked(argv, environment: Self.commandEnvironment)
        case .chroot(let dir): return try Subprocess.checked(["chroot", dir] + argv, environment: Self.commandEnvironment)
        }
    }

    /// Where the backup of a changed target file goes. Next to the file, except in
    /// directories whose readers choke on extra files (apt's sources.list.d warns about them,
    /// cron reads every file of its spool as a user's crontab, /etc/pve is a cluster filesystem): those go under /var/backups/home-server/.
    package func backupPath(for p: String) -> String {
        let dir = (p as NSString).deletingLastPathComponent
        let name = "\(p).hs-backup-\(stamp)"
        if dir == "/etc/apt/sources.list.d" || dir == CrontabEdits.spoolDirectory || p.hasPrefix("/etc/pve/") {
            return "/var/backups/home-server" + name
        }
        return name
    }

    /// Writes `content` atomically (temp file in the same directory, fsync, rename, fsync of
    /// the directory), keeping the old file's mode and owner and a timestamped backup of it.
    /// A `privateFile` (secrets) gets mode 0600 from its creation on, whatever its old mode
    /// was, and so does its backup.
    /// - Returns: the target path of the backup, if one was made.
    /// - Throws: `ProvisionError` naming the path and the failing call.
    @discardableResult
    package func writeAtomically(_ p: String, content: String, mode newMode: mode_t = 0o644, privateFile: Bool = false) throws -> String? {
        let real = path(p)
        let dir = (real as NSString).deletingLastPathComponent
        try makeDirectories(dir)
        var lst = stat()
        if lstat(real, &lst) == 0 && (lst.st_mode & S_IFMT) == S_IFLNK {
            throw ProvisionError("\(NameEscape.escape(real)) is a symbolic link: hs-provision does not write through links (it would replace the link); edit its target by hand or replace the link with a file, then re-run")
        }
        var st = stat()
        let existed = stat(real, &st) == 0
        var backup: String?
        if existed {
            let b = uniqueBackup(backupPath(for: p))
            try makeDirectories((path(b) as NSString).deletingLastPathComponent)
            do { try copyForBackup(real, to: path(b), privateFile: privateFile) } catch {
                throw ProvisionError("cannot back up \(NameEscape.escape(real)) to \(NameEscape.escape(path(b))): \(ProvisionError.text(of: error)); nothing was changed")
            }
            backup = b
        }
        let mode: mode_t = privateFile ? 0o600 : (existed ? st.st_mode & 0o7777 : newMode)
        let tmp = dir + "/.\((real as NSString).lastPathComponent).hs-tmp-\(getpid())"
        do throws(AtomicFile.Failure) {
            try AtomicFile.replace(real, with: Array(content.utf8), temporary: tmp, mode: mode,
                                   exactMode: privateFile) { fd in
                if existed {
                    _ = fchown(fd, st.st_uid, st.st_gid)
                    _ = fchmod(fd, mode)
                }
            }
        } catch where error.call == "create" {
            throw ProvisionError("cannot create \(NameEscape.escape(tmp)): \(error.reason); check permissions of \(NameEscape.escape(dir))")
        } catch {
            let what = error.call == "rename" ? "rename to \(NameEscape.escape(real))" : error.call
            throw ProvisionError("cannot write \(NameEscape.escape(real)) (\(what): \(error.reason)); the old file is unchanged")
        }
        return backup
    }

    /// Removes a target file by renaming it to its backup path (the removal is the backup).
    @discardableResult
    package func removeWithBackup(_ p: String) throws -> String {
        let b = uniqueBackup(backupPath(for: p))
        try makeDirectories((path(b) as NSString).deletingLastPathComponent)
        if (path(p) as NSString).deletingLastPathComponent == (path(b) as NSString).deletingLastPathComponent {
            guard rename(path(p), path(b)) == 0 else {
                throw ProvisionError("cannot move \(NameEscape.escape(path(p))) to \(NameEscape.escape(path(b))): \(Sys.strerror(errno))")
            }
        } else {
            do { try FileManager.default.copyItem(atPath: path(p), toPath: path(b)) } catch {
                throw ProvisionError("cannot back up \(NameEscape.escape(path(p))) to \(NameEscape.escape(path(b))): \(ProvisionError.text(of: error)); nothing was removed")
            }
            guard unlink(path(p)) == 0 else { throw ProvisionError("cannot remove \(NameEscape.escape(path(p))): \(Sys.strerror(errno))") }
        }
        syncDirectory((path(p) as NSString).deletingLastPathComponent)
        return b
    }

    /// Creates a target directory (and parents) and sets its owner.
    package func ensureDirectory(_ p: String, uid: Int, gid: Int) throws {
        try makeDirectories(path(p))
        guard chown(path(p), uid_t(uid), gid_t(gid)) == 0 else {
            throw ProvisionError("cannot chown \(NameEscape.escape(path(p))) to \(uid):\(gid): \(Sys.strerror(errno))")
        }
    }

    /// `mkdir -p` of a path on this machine's filesystem (already through `path()`).
    private func makeDirectories(_ real: String) throws {
        // mkdir itself, not FileManager: its CocoaError printed as "(null)UserInfo={...}", no errno.
        do { try Sys.makeDirectories(real, mode: 0o777) } catch {
            throw ProvisionError("cannot create directory \(NameEscape.escape(real)): \(ProvisionError.text(of: error))")
        }
    }

    /// Copies `real` to the backup path `dest`; a private file's copy is created 0600 before
    /// its content is written.
    private func copyForBackup(_ real: String, to dest: String, privateFile: Bool) throws {
        guard privateFile else { try FileManager.default.copyItem(atPath: real, toPath: dest); return }
        guard let data = FileManager.default.contents(atPath: real) else {
            throw ProvisionError("cannot read \(NameEscape.escape(real))")
        }
        do throws(AtomicFile.Failure) {
            try AtomicFile.replace(dest, with: Array(data), temporary: dest + ".hs-tmp-\(getpid())", mode: 0o600)
        } catch {
            throw ProvisionError("\(error.call): \(error.reason)")
        }
    }

    private func uniqueBackup(_ b: String) -> String {
        var candidate = b
        var n = 1
        while FileManager.default.fileExists(atPath: path(candidate)) { candidate = "\(b)-\(n)"; n += 1 }
        return candidate
    }

    private func syncDirectory(_ dir: String) {
        let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 { _ = fsync(fd); close(fd) }
    }
}
