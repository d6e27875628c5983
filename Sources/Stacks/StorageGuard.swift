import Foundation
import Support

/// Refuses to start a stack whose storage path is not a mounted filesystem of the expected
/// kind. Without it, a stack started while the NFS share is down writes downloads into the
/// empty directory `/mnt/storage` on the guest's root disk until that disk is full, and the
/// files are hidden once the share is mounted again.
///
/// How it decides: it first lists the directory (which triggers a systemd automount, as the
/// fstab template uses `x-systemd.automount`), then reads /proc/self/mountinfo and takes the
/// topmost mount whose mount point is exactly the storage path. An `autofs` entry on top means
/// the automount did not bring NFS up. Bind mounts (an LXC's `mp0:`) report the original
/// filesystem's type, so the guard works the same inside an LXC.
package struct StorageGuard: Sendable {
    /// The storage path the stacks' compose files mount.
    package static let defaultPath = "/mnt/storage"

    /// Why checking `storagePath` would leave storage of `project` unguarded: the project
    /// bind-mounts the default path but `--storage` names another one. Nil when not so.
    package static func unguardedStorage(_ project: ComposeProject, storagePath: String) -> String? {
        guard storagePath != defaultPath, project.services(mounting: storagePath).isEmpty else { return nil }
        let services = project.services(mounting: defaultPath)
        guard !services.isEmpty else { return nil }
        return "\(services.map(NameEscape.escape).joined(separator: ", ")) bind-mount \(defaultPath), but --storage \(NameEscape.escape(storagePath)) names another path: "
            + "the storage guard would not check \(defaultPath). Leave --storage out, or give the path the compose file mounts"
    }

    /// The default kinds: NFS (the kernel reports v4 mounts as `nfs4`).
    package static let defaultFSTypes = ["nfs", "nfs4"]

    package var path: String
    package var allowedFSTypes: [String]
    /// How long to wait for the directory listing that triggers an automount.
    package var accessTimeout: TimeInterval = 45
    /// The container this runs in (`lxc`, ...; nil on a VM or bare metal): in an LXC guest the
    /// share is mounted on the Proxmox host and bound in, so the hint differs.
    package var container: String? = StorageGuard.detectContainer()

    package init(path: String = StorageGuard.defaultPath, allowedFSTypes: [String] = StorageGuard.defaultFSTypes) {
        self.path = path
        self.allowedFSTypes = allowedFSTypes
    }

    /// What the guard found.
    package struct Verdict: Sendable, Encodable {
        package var path: String
        package var ok: Bool
        package var fsType: String?
        package var source: String?
        package var message: String
    }

    /// Checks the storage path.
    /// - Parameter mountinfo: the text of /proc/self/mountinfo (read from the system when nil).
    package func check(mountinfo: String? = nil) -> Verdict {
        let shown = NameEscape.escape(path)   // in the message; the verdict's fields are as they are
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else {
            return Verdict(path: path, ok: false, message: "\(shown) does not exist: \(mountHint()), then run hs-deploy again")
        }
        let resolved = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        if mountinfo == nil && !touch(resolved) {
            return Verdict(path: path, ok: false, message: "\(shown) did not answer within \(Int(accessTimeout))s (NFS server down or unreachable?): check `mount | grep \(shown)` and the NAS, then run hs-deploy again")
        }
        let text = mountinfo ?? ((try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? "")
        let mounts = MountTable(parsing: text).mounts
        guard let top = mounts.last(where: { $0.mountPoint == resolved }) else {
            let parent = MountTable(mounts: mounts).mount(containing: resolved)
            let on = parent.map { " (it is a plain directory on \(NameEscape.escape($0.mountPoint)), a \(NameEscape.escape($0.fsType)) filesystem)" } ?? ""
            return Verdict(path: path, ok: false, fsType: nil, source: nil,
                           message: "\(shown) is not a mount point\(on): containers would fill the local disk instead of the NAS. Mount it first: \(mountHint()), then run hs-deploy again")
        }
        guard allowedFSTypes.contains(top.fsType) else {
            let hint = top.fsType == "autofs"
                ? " (the automount is there but NFS did not mount: check the NAS and `journalctl -u \(NameEscape.escape(Self.systemdUnit(resolved))).mount`)"
                : ""
            return Verdict(path: path, ok: false, fsType: top.fsType, source: top.source,
                           message: "\(shown) is mounted as \(NameEscape.escape(top.fsType)) from \(NameEscape.escape(top.source))\(hint), expected \(allowedFSTypes.map(NameEscape.escape).joined(separator: " or ")); allow other kinds with --storage-fstype or HS_STORAGE_FSTYPES")
        }
        return Verdict(path: path, ok: true, fsType: top.fsType, source: top.source,
                       message: "\(shown) is mounted (\(NameEscape.escape(top.fsType)) from \(NameEscape.escape(top.source)))")
    }

    /// Lists the directory on a helper thread (triggers an automount); false on timeout.
    func touch(_ dir: String) -> Bool {
        let sem = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            _ = try? FileManager.default.contentsOfDirectory(atPath: dir)
            sem.signal()
        }
        return sem.wait(timeout: .now() + accessTimeout) == .success
    }

    /// How the storage path gets mounted on this kind of guest.
    func mountHint() -> String {
        let path = NameEscape.escape(self.path)
        if container == "lxc" {
            return "this is an LXC guest, so the share is mounted on the Proxmox host and bound in: `hs-provision apply --inventory provisioning/inventory.yml --host <proxmox host>` adds `mpN: \(path),mp=\(path)` to the container's config, then `pct reboot <vmid>`"
        }
        return "`mount \(path)` (fstab line in provisioning/fstab.template; `hs-provision apply --host <this guest>` writes it on a VM)"
    }

    /// `lxc` inside an LXC container (systemd's /run/systemd/container, else PID 1's
    /// `container=` environment variable), nil otherwise.
    package static func detectContainer() -> String? {
        if let s = try? String(contentsOfFile: "/run/systemd/container", encoding: .utf8) {
            let v = s.trimmingCharacters(in: .whitespacesAndNewlines)
            if !v.isEmpty { return v }
        }
        guard let env = FileManager.default.contents(atPath: "/proc/1/environ") else { return nil }
        for entry in env.split(separator: 0) where entry.starts(with: Array("container=".utf8)) {
            return String(decoding: entry.dropFirst("container=".utf8.count), as: UTF8.self)
        }
        return nil
    }

    /// systemd's unit name for a mount point: /mnt/storage -> mnt-storage.
    static func systemdUnit(_ path: String) -> String {
        path.split(separator: "/").joined(separator: "-")
    }
}
