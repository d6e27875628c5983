import Foundation
import Stacks
import Support
import Testing
import TestSupport

/// The storage guard against real mounts (`mount -t tmpfs`, tests run as root).
@Suite struct StorageGuardTests {
    @Test func refusesAPlainDirectory() throws {
        let dir = try TempDir("hs-guard")
        let storage = dir.sub("storage")
        try FileManager.default.createDirectory(atPath: storage, withIntermediateDirectories: true)
        let v = StorageGuard(path: storage, allowedFSTypes: ["nfs", "nfs4", "tmpfs"]).check()
        #expect(!v.ok)
        #expect(v.message.contains("is not a mount point"))
        #expect(v.message.contains("plain directory on"))
    }

    /// In an LXC guest the share comes from the Proxmox host (mpN bind), not from an fstab line.
    @Test func hintFitsTheKindOfGuest() throws {
        let dir = try TempDir("hs-guard")
        let storage = dir.sub("storage")
        try FileManager.default.createDirectory(atPath: storage, withIntermediateDirectories: true)
        var lxc = StorageGuard(path: storage)
        lxc.container = "lxc"
        let inLXC = lxc.check(mountinfo: "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n")
        #expect(!inLXC.ok && inLXC.message.contains("LXC guest") && inLXC.message.contains("Proxmox host"))
        #expect(inLXC.message.contains("mpN: \(storage),mp=\(storage)") && !inLXC.message.contains("fstab.template"))
        var vm = StorageGuard(path: storage)
        vm.container = nil
        let onVM = vm.check(mountinfo: "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n")
        #expect(onVM.message.contains("mount \(storage)") && onVM.message.contains("fstab.template"))
        lxc.path = dir.sub("missing")
        #expect(lxc.check().message.contains("Proxmox host"))
    }

    @Test func refusesAMissingPath() throws {
        let dir = try TempDir("hs-guard")
        let v = StorageGuard(path: dir.sub("nope"), allowedFSTypes: ["tmpfs"]).check()
        #expect(!v.ok && v.message.contains("does not exist"))
    }

    @Test func acceptsTmpfsOnlyWhenAllowed() throws {
        let dir = try TempDir("hs-guard")
        let storage = dir.sub("storage")
        try FileManager.default.createDirectory(atPath: storage, withIntermediateDirectories: true)
        try Subprocess.checked(["mount", "-t", "tmpfs", "-o", "size=1m", "hs-guard-test", storage])
        defer { _ = try? Subprocess.run(["umount", storage]) }
        let allowed = StorageGuard(path: storage, allowedFSTypes: ["nfs", "nfs4", "tmpfs"]).check()
        #expect(allowed.ok, "\(allowed.message)")
        #expect(allowed.fsType == "tmpfs" && allowed.source == "hs-guard-test")
        // The production default accepts only NFS.
        let strict = StorageGuard(path: storage).check()
        #expect(!strict.ok)
        #expect(strict.message.contains("mounted as tmpfs") && strict.message.contains("expected nfs or nfs4"))
        // A subdirectory of the mount is not the mount point itself.
        try FileManager.default.createDirectory(atPath: storage + "/sub", withIntermediateDirectories: true)
        #expect(!StorageGuard(path: storage + "/sub", allowedFSTypes: ["tmpfs"]).check().ok)
    }

    @Test func topmostMountWinsAndAutofsMeansNFSIsDown() throws {
        let dir = try TempDir("hs-guard")
        let storage = dir.sub("storage")
        try FileManager.default.createDirectory(atPath: storage, withIntermediateDirectories: true)
        let root = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        let autofs = "40 22 0:40 / \(storage) rw,relatime shared:20 - autofs systemd-1 rw,fd=50\n"
        let nfs = "41 40 0:41 / \(storage) rw,relatime shared:21 - nfs4 truenas:/mnt/tank/media rw,vers=4.2\n"
        let up = StorageGuard(path: storage).check(mountinfo: root + autofs + nfs)
        #expect(up.ok && up.fsType == "nfs4" && up.source == "truenas:/mnt/tank/media")
        let down = StorageGuard(path: storage).check(mountinfo: root + autofs)
        #expect(!down.ok && down.message.contains("autofs") && down.message.contains("NFS did not mount"))
        let escaped = MountTable(parsing: "50 22 0:50 / /mnt/with\\040space rw - nfs srv:/x rw\n")
        #expect(escaped.mounts.first?.mountPoint == "/mnt/with space")
    }
}
