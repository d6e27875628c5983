import Foundation

extension LXCConfig {
    /// Where container id `id` lands on the host under a config's `lxc.idmap` lines of kind
    /// `u` or `g`; Proxmox's default for an unprivileged container (no idmap lines) is
    /// 100000 + id. Nil when the lines do not map it. Pure.
    package static func hostID(_ id: Int, kind: String, config: String) -> Int? {
        let maps = liveEntries(config).filter { $0.key == "lxc.idmap" }.compactMap { e -> (Int, Int, Int)? in
            let f = e.value.split(separator: " ")
            guard f.count == 4, f[0] == kind, let a = Int(f[1]), let b = Int(f[2]), let n = Int(f[3]) else { return nil }
            return (a, b, n)
        }
        guard !maps.isEmpty else { return 100000 + id }
        for (a, b, n) in maps where id >= a && id < a + n { return b + (id - a) }
        return nil
    }

    /// The warning for an idmap change on an existing container: which of its files change
    /// owner (those of PUID/PGID inside it, now mapped to other host ids) and the commands
    /// that re-own them on the Proxmox host with the container stopped. Nil when PUID and
    /// PGID map to the same host ids before and after. Pure.
    package static func idmapChange(current: String, merged: String, vmid: Int, guest: String, proxmox: String,
                                    puid: Int, pgid: Int) -> String? {
        let (oldU, newU) = (hostID(puid, kind: "u", config: current), hostID(puid, kind: "u", config: merged))
        let (oldG, newG) = (hostID(pgid, kind: "g", config: current), hostID(pgid, kind: "g", config: merged))
        guard oldU != newU || oldG != newG, let newU, let newG else { return nil }
        let rootfs = "/var/lib/lxc/\(vmid)/rootfs"
        var steps = ["pct stop \(vmid)", "pct mount \(vmid)"]
        var what: [String] = []
        if let oldU, oldU != newU {
            steps.append("find \(rootfs) -xdev -uid \(oldU) -exec chown -h \(newU) {} +")
            what.append("uid \(puid) (host \(oldU) -> \(newU))")
        }
        if let oldG, oldG != newG {
            steps.append("find \(rootfs) -xdev -gid \(oldG) -exec chgrp -h \(newG) {} +")
            what.append("gid \(pgid) (host \(oldG) -> \(newG))")
        }
        steps.append("pct unmount \(vmid) && pct start \(vmid)")
        return "container \(vmid) (\(guest)) gets the PUID/PGID idmap: inside it, \(what.joined(separator: " and ")) now map to other host ids, "
            + "so after the restart every file of the container owned by them (its /opt/appdata, /opt/stacks, the PUID user's home, ...) shows as nobody/nogroup. "
            + "Files on /mnt/storage are not affected (they already belong to host \(newU):\(newG)). "
            + "Re-own the container's own files on \(proxmox) once, with the container stopped: "
            + steps.joined(separator: " && ")
            + " (other mpN volumes of the container: run the same find on their host path)"
    }
}
