#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Support

/// The checks on a kernel-mounted media root: mount point, filesystem type, directories,
/// cross-device, and the hardlink probe itself.
package struct LocalProbe {
    package var root: String
    package var downloadsRel: String
    package var libraryRel: String
    package var requireMount: Bool
    package var mountTable: MountTable

    package var downloadsPath: String { TreeWalker.join(root, downloadsRel) }
    package var libraryPath: String { TreeWalker.join(root, libraryRel) }

    package init(root: String, downloads: String, library: String, requireMount: Bool, mountTable: MountTable) {
        self.root = root.count > 1 && root.hasSuffix("/") ? String(root.dropLast()) : root
        downloadsRel = downloads
        libraryRel = library
        self.requireMount = requireMount
        self.mountTable = mountTable
    }

    /// Checks the root: it exists, is a directory, is a mount point, and has a filesystem that
    /// keeps hardlinks. Returns false when nothing else can be checked (root missing), or when
    /// `--require-mount` forbids going on.
    package func checkRoot(_ report: inout LinkCheckReport) -> Bool {
        guard let st = try? Sys.stat(root) else {
            report.add(Finding(.error, "missing-directory", "media root \(NameEscape.escape(root)) does not exist.",
                               fix: "Create the mount point and mount the NAS export there (fstab: `truenas:/mnt/tank/media \(NameEscape.escape(root)) nfs rw,hard,nfsvers=4.2,_netdev,x-systemd.automount 0 0`, then `mount \(NameEscape.escape(root))`)."))
            return false
        }
        guard st.isDirectory else {
            report.add(Finding(.error, "missing-directory", "media root \(NameEscape.escape(root)) is not a directory.",
                               fix: "Point hs-linkcheck at the directory where the NAS export is mounted."))
            return false
        }
        let resolved = Sys.realpath(root) ?? root
        let m = mountTable.mount(containing: resolved)
        let isMountPoint = m?.mountPoint == resolved
        report.mounts = MountReport(root: m, rootIsMountPoint: isMountPoint, downloads: nil, library: nil)
        if !isMountPoint {
            let lands = m.map { "on \($0.describe)" } ?? "on an unknown filesystem"
            report.add(Finding(requireMount ? .error : .warning, "not-mount-point",
                               "\(NameEscape.escape(root)) is not a mount point: it is a plain directory \(lands). If the NFS export is not mounted, everything written there lands on that disk instead of the NAS (and the apps fill it up).",
                               fix: "Mount the export (`mount \(NameEscape.escape(root))`; fstab: `truenas:/mnt/tank/media \(NameEscape.escape(root)) nfs rw,hard,nfsvers=4.2,_netdev,x-systemd.automount 0 0`). Cron and provisioning run with --require-mount so this is an error there."))
            if requireMount { return false }
        }
        if let m, let f = Self.filesystemFinding(m, path: root) { report.add(f) }
        return true
    }

    /// Explains filesystem types that lose or refuse hardlinks; nil for ones that keep them.
    package static func filesystemFinding(_ m: MountInfo, path: String) -> Finding? {
        let t = m.fsType
        switch t {
        case "cifs", "smb3", "smbfs":
            return Finding(.warning, "filesystem-type",
                           "\(NameEscape.escape(path)) is on CIFS/SMB (\(m.describe)). SMB shares give hardlinks only with Unix/POSIX extensions, which TrueNAS shares normally do not offer: the *arr apps then copy every import (double disk use).",
                           fix: "Export the media dataset over NFS and mount it (the plan's CIFS -> NFS move): `truenas:/mnt/tank/media \(NameEscape.escape(path)) nfs rw,hard,nfsvers=4.2,_netdev 0 0`.")
        case "exfat", "vfat", "msdos", "fat":
            return Finding(.warning, "filesystem-type",
                           "\(NameEscape.escape(path)) is on \(t) (\(m.describe)), which has no hardlinks at all.",
                           fix: "Put media on a filesystem with hardlinks (ZFS dataset over NFS, ext4, xfs, btrfs).")
        case "autofs":
            return Finding(.warning, "filesystem-type",
                           "\(NameEscape.escape(path)) is still an automount point (\(m.describe)): the NFS export behind it did not mount on access (NAS down or unreachable, wrong export, or a failed mount).",
                           fix: "Run `mount \(NameEscape.escape(path))` or `systemctl status` of its .automount/.mount unit to see why; check the NAS is up and exports the path to this host.")
        case "overlay":
            return Finding(.warning, "filesystem-type",
                           "\(NameEscape.escape(path)) is on overlayfs (\(m.describe)): this looks like a container's own filesystem, not the NAS. Files written here vanish with the container and hardlinks to lower-layer files copy them up.",
                           fix: "Bind-mount the host's media root into the container (`/mnt/storage:/storage`, or `mp0: /mnt/storage,mp=/mnt/storage` for an LXC).")
        default:
            if t.hasPrefix("fuse.") {
                return Finding(.info, "filesystem-type",
                               "\(NameEscape.escape(path)) is on a FUSE filesystem (\(m.describe)): hardlinks depend on it (mergerfs links only within one branch, rclone mounts have none).",
                               fix: nil)
            }
            return nil
        }
    }

    /// Checks that downloads and library exist and share one mount, then runs the probe.
    package func checkDirectoriesAndProbe(_ report: inout LinkCheckReport, randomSuffix: String = Self.randomSuffix()) {
        var missing = false
        for (label, path) in [("downloads", downloadsPath), ("library", libraryPath)] {
            let st = try? Sys.stat(path)
            if st == nil {
                missing = true
                report.add(Finding(.error, "missing-directory", "\(label) directory \(NameEscape.escape(path)) does not exist.",
                                   fix: "Create the plan's tree with `hs-linkcheck --init \(NameEscape.escape(root))` (owner PUID:PGID, mode 775), or check --\(label)."))
            } else if st?.isDirectory == false {
                missing = true
                report.add(Finding(.error, "missing-directory", "\(label) path \(NameEscape.escape(path)) is not a directory.", fix: nil))
            }
        }
        if missing { return }

        let dlReal = Sys.realpath(downloadsPath) ?? downloadsPath
        let libReal = Sys.realpath(libraryPath) ?? libraryPath
        let dlMount = mountTable.mount(containing: dlReal)
        let libMount = mountTable.mount(containing: libReal)
        report.mounts?.downloads = dlMount
        report.mounts?.library = libMount
        let dlDev = (try? Sys.stat(downloadsPath))??.dev
        let libDev = (try? Sys.stat(libraryPath))??.dev
        var crossDevice = false
        if dlDev != libDev || dlMount?.id != libMount?.id {
            crossDevice = true
            let a = dlMount?.describe ?? "?", b = libMount?.describe ?? "?"
            if dlDev != libDev {
                report.add(Finding(.error, "cross-device",
                                   "downloads (\(NameEscape.escape(downloadsPath))) is on \(a) and library (\(NameEscape.escape(libraryPath))) is on \(b): two different filesystems (separate datasets, exports or mounts). Hardlinks cannot cross them, so every import is a full copy.",
                                   fix: "Keep downloads/ and library/ in ONE dataset, ONE NFS export, mounted ONCE at \(NameEscape.escape(root)) (TrueNAS: one dataset such as /mnt/tank/media holding both folders, no child dataset for either)."))
            } else {
                report.add(Finding(.error, "cross-device",
                                   "downloads (\(NameEscape.escape(downloadsPath))) and library (\(NameEscape.escape(libraryPath))) are the same filesystem mounted twice (at \(NameEscape.escape(dlMount?.mountPoint ?? "?")) and \(NameEscape.escape(libMount?.mountPoint ?? "?"))): the kernel refuses hardlinks across mount points.",
                                   fix: "Mount the media root once and use its subfolders: in Docker `- /mnt/storage:/storage` (not downloads and library as separate volumes); in LXC one `mp0: /mnt/storage,mp=/mnt/storage`."))
            }
        }
        if let libMount, libMount.id != report.mounts?.root?.id, let f = Self.filesystemFinding(libMount, path: libraryPath) {
            report.add(f)
        }
        removeStaleProbes()
        report.probe = probe(suffix: randomSuffix, crossDeviceKnown: crossDevice, report: &report)
    }

    /// Removes probe files left by a probe that was killed (its pid no longer exists).
    func removeStaleProbes() {
        let prefix = ".hs-linkcheck-probe-"
        for dir in [downloadsPath, libraryPath] {
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { continue }
            for n in names where n.hasPrefix(prefix) {
                let pidPart = n.dropFirst(prefix.count).prefix { $0 != "-" }
                guard let pid = Int32(pidPart), pid != Sys.pid, !Sys.processExists(pid) else { continue }
                try? Sys.unlink(TreeWalker.join(dir, n))
            }
        }
    }

    package static func randomSuffix() -> String {
        String(UInt64.random(in: 0...UInt64.max), radix: 16)
    }

    /// Creates `.hs-linkcheck-probe-<pid>-<random>` under downloads, hardlinks it into library
    /// with the same name, checks one inode with link count 2, and removes both (always).
    func probe(suffix: String, crossDeviceKnown: Bool, report: inout LinkCheckReport) -> ProbeResult {
        let name = ".hs-linkcheck-probe-\(Sys.pid)-\(suffix)"
        let src = TreeWalker.join(downloadsPath, name)
        let dst = TreeWalker.join(libraryPath, name)
        var result = ProbeResult(via: "local", downloadsFile: src, libraryFile: dst, sameInode: false, linkCount: 0,
                                 ok: false, failure: nil, cleanedUp: false)
        var created = false, linked = false
        defer {
            // Cleanup happens in every path; result.cleanedUp is set below before returning.
            if linked { try? Sys.unlink(dst) }
            if created { try? Sys.unlink(src) }
        }
        do {
            let fd = try Sys.createExclusive(src)
            created = true
            defer { Sys.close(fd) }
            try Sys.writeAll(fd, Array("hs-linkcheck probe \(Sys.pid)\n".utf8), path: src)
        } catch let e {
            result.failure = e.description
            report.add(cannotWrite(dir: downloadsPath, error: e))
            result.cleanedUp = !created || ((try? Sys.unlink(src)) != nil)
            return result
        }
        do {
            try Sys.link(src, dst)
            linked = true
        } catch let e {
            result.failure = e.description
            switch e.errno {
            case EXDEV:
                if !crossDeviceKnown {
                    report.add(Finding(.error, "cross-device",
                                       "link(\(NameEscape.escape(src)), \(NameEscape.escape(dst))) failed with EXDEV (cross-device) although both look like one mount: something in between (a bind mount, an overlay) splits them.",
                                       fix: "Mount the media root once and use its subfolders; in Docker `- /mnt/storage:/storage`."))
                }
            case EACCES, EROFS:
                report.add(cannotWrite(dir: libraryPath, error: e))
            case EPERM, ENOTSUP, ENOSYS, EMLINK:
                let fs = mountTable.mount(containing: Sys.realpath(libraryPath) ?? libraryPath)
                report.add(Finding(.error, "no-hardlinks",
                                   "the filesystem refused the hardlink \(NameEscape.escape(dst)) (\(Sys.strerror(e.errno))) on \(fs?.describe ?? "?"). CIFS/SMB without Unix extensions, exFAT/FAT and some FUSE filesystems have no hardlinks; with fs.protected_hardlinks=1 the link also needs you to own the file.",
                                   fix: "Use NFS (or a local filesystem with hardlinks) for the whole media tree, and run as the owner of the files (PUID:PGID)."))
            default:
                report.add(Finding(.error, "probe-failed", "hardlink probe failed: \(NameEscape.escape(e.description))", fix: nil))
            }
            try? Sys.unlink(src)
            created = false
            result.cleanedUp = (try? Sys.lstat(src)) == nil
            return result
        }
        let a = try? Sys.lstat(src), b = try? Sys.lstat(dst)
        if let a = a ?? nil, let b = b ?? nil {
            result.sameInode = a.dev == b.dev && a.ino == b.ino
            result.linkCount = b.nlink
        }
        result.ok = result.sameInode && result.linkCount == 2
        if !result.ok {
            report.add(Finding(.error, "probe-mismatch",
                               "the hardlink was created but does not behave like one: same inode \(result.sameInode), link count \(result.linkCount) (expected 2). The filesystem or a layer on top of it (FUSE, SMB) fakes links by copying.",
                               fix: "Use NFS or a local filesystem with real hardlinks for the media tree."))
        }
        try? Sys.unlink(dst); linked = false
        try? Sys.unlink(src); created = false
        result.cleanedUp = ((try? Sys.lstat(src)) ?? nil) == nil && ((try? Sys.lstat(dst)) ?? nil) == nil
        return result
    }

    /// "cannot write": who we are, who owns the directory, and why NFS may say no.
    func cannotWrite(dir: String, error: SysError) -> Finding {
        let me = "uid \(Sys.euid) (\(Sys.userName(Sys.euid))) gid \(Sys.egid) (\(Sys.groupName(Sys.egid)))"
        var owner = "unknown owner"
        var ownerUid: UInt32 = 0
        if let st = (try? Sys.stat(dir)) ?? nil {
            ownerUid = st.uid
            owner = "uid \(st.uid) (\(Sys.userName(st.uid))) gid \(st.gid) (\(Sys.groupName(st.gid))) mode \(String(st.permissions, radix: 8))"
        }
        let fs = mountTable.mount(containing: Sys.realpath(dir) ?? dir)
        var why: [String] = []
        if error.errno == EROFS {
            why.append("the filesystem is mounted read-only (\(fs?.describe ?? "?")): remount it rw (the NFS export must be Read-Write for this host).")
        }
        if fs?.fsType.hasPrefix("nfs") == true && Sys.euid == 0 {
            why.append("you are root and NFS exports squash root to nobody by default (root_squash; TrueNAS: Maproot User empty): run as PUID:PGID, or set Maproot User/Group to root for this host only.")
        }
        if ownerUid == 65534 {
            why.append("the directory belongs to nobody (65534): an ID-mapping problem. With NFSv4 the idmap domain must be the same on NAS and client (or use the NFSv3 ownership model); in an unprivileged LXC, pass PUID/PGID through with lxc.idmap lines.")
        }
        why.append("give the tree to the apps' user: `chown -R PUID:PGID` and mode 775 (UMASK 002), e.g. `hs-linkcheck --init` as a user allowed to chown.")
        return Finding(.error, "cannot-write",
                       "cannot create a file in \(NameEscape.escape(dir)) as \(me): \(Sys.strerror(error.errno)). The directory: \(owner).",
                       fix: why.joined(separator: " "))
    }
}
