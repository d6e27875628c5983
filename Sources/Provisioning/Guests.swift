// Guests: creating the inventory's containers and VMs on their Proxmox host.
//
// A guest whose inventory entry has `template` (lxc) or `image` (vm) gets two steps on its
// Proxmox host: `guest:<name>` creates it when it does not exist (`pct create` / `qm create`
// + `qm disk resize`), and `start:<name>` starts it when `onboot` is true and it is stopped.
// Between them the existing `lxc:<name>` step edits the new container's config (bind mount,
// TUN, idmap), so a new container boots with its final config.
//
// What it guarantees: a guest that exists is never created again, whatever its settings say
// now; existence is the Proxmox config file (`/etc/pve/lxc/<vmid>.conf`,
// `/etc/pve/qemu-server/<vmid>.conf`, any cluster node's under `/etc/pve/nodes/`) or, on the
// live host, `pct status` / `qm status`. What it does not do: change an existing guest's
// cores, memory or disk (edit those with `pct set` / `qm set`), or delete guests.
import Foundation
import Support

/// How hs-provision creates one guest (inventory fields `template`/`image`, `cores`,
/// `memory`, `swap`, `disk`, `onboot`, `startup`, `disk_storage`, `bridge`, `ssh_keys`).
package struct GuestSpec: Sendable, Equatable {
    /// LXC: the template volume (`local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst`).
    /// VM: the disk image imported as the boot disk (a path on the Proxmox host or a volume).
    package var source: String
    package var cores = 2
    /// MiB.
    package var memory = 2048
    /// MiB (LXC only).
    package var swap = 512
    /// Root disk size in GiB.
    package var disk: Int
    /// Start at boot (and `start:<name>` keeps it running).
    package var onboot = true
    /// Boot order (`--startup order=N`); nil leaves Proxmox's default.
    package var startup: Int?
    /// Proxmox storage for the root disk (and the VM's cloud-init drive).
    package var diskStorage = "local-lvm"
    /// Network bridge for net0 (DHCP).
    package var bridge = "vmbr0"
    /// File of SSH public keys on the Proxmox host for root (LXC) / the cloud-init user (VM).
    package var sshKeys: String?

    package init(source: String, disk: Int) { self.source = source; self.disk = disk }
}

/// Whether a guest exists on its Proxmox host.
package enum GuestPresence: Equatable, Sendable {
    case exists
    case missing
}

package enum Guests {
    /// The Proxmox config file of a guest on this node.
    package static func configPath(kind: Inventory.Kind, vmid: Int) -> String {
        kind == .lxc ? "/etc/pve/lxc/\(vmid).conf" : "/etc/pve/qemu-server/\(vmid).conf"
    }

    /// The exact commands that create `guest` (argv each, in order). Pure.
    package static func createCommands(_ guest: Inventory.Host, _ s: GuestSpec) -> [[String]] {
        let id = String(guest.vmid!)
        var startup: [String] = []
        if let order = s.startup { startup = ["--startup", "order=\(order)"] }
        switch guest.kind! {
        case .lxc:
            var argv = ["pct", "create", id, s.source,
                        "--hostname", guest.name,
                        "--unprivileged", "1",
                        "--features", "nesting=1,keyctl=1",
                        "--cores", String(s.cores),
                        "--memory", String(s.memory),
                        "--swap", String(s.swap),
                        "--rootfs", "\(s.diskStorage):\(s.disk)",
                        "--net0", "name=eth0,bridge=\(s.bridge),ip=dhcp",
                        "--onboot", s.onboot ? "1" : "0"] + startup
            if let k = s.sshKeys { argv += ["--ssh-public-keys", k] }
            return [argv]
        case .vm:
            var argv = ["qm", "create", id,
                        "--name", guest.name,
                        "--ostype", "l26",
                        "--cpu", "host",
                        "--cores", String(s.cores),
                        "--memory", String(s.memory),
                        "--scsihw", "virtio-scsi-single",
                        "--scsi0", "\(s.diskStorage):0,import-from=\(s.source),discard=on",
                        "--ide2", "\(s.diskStorage):cloudinit",
                        "--boot", "order=scsi0",
                        "--serial0", "socket",
                        "--vga", "serial0",
                        "--agent", "enabled=1",
                        "--net0", "virtio,bridge=\(s.bridge)",
                        "--ipconfig0", "ip=dhcp",
                        "--onboot", s.onboot ? "1" : "0"] + startup
            if let k = s.sshKeys { argv += ["--sshkeys", k] }
            return [argv, ["qm", "disk", "resize", id, "scsi0", "\(s.disk)G"]]
        }
    }

    /// Whether `guest` exists, from the Proxmox config files and (live) `pct/qm status`.
    /// - Throws: `ProvisionError` when the vmid belongs to another kind of guest or to a
    ///   guest on another cluster node (creating it would fail or hit the wrong guest).
    package static func presence(_ m: Machine, _ guest: Inventory.Host) throws -> GuestPresence {
        let kind = guest.kind!, vmid = guest.vmid!
        if m.exists(configPath(kind: kind, vmid: vmid)) { return .exists }
        let otherKind: Inventory.Kind = kind == .lxc ? .vm : .lxc
        let other = configPath(kind: otherKind, vmid: vmid)
        if m.exists(other) {
            throw ProvisionError("vmid \(vmid) of guest '\(guest.name)' (kind \(kind.rawValue)) is already a \(otherKind == .vm ? "VM" : "container") on this Proxmox host (\(NameEscape.escape(m.path(other)))): change 'vmid' or 'kind' in the inventory")
        }
        let nodes = (try? FileManager.default.contentsOfDirectory(atPath: m.path("/etc/pve/nodes"))) ?? []
        for node in nodes.sorted() {
            for dir in ["lxc", "qemu-server"] where m.exists("/etc/pve/nodes/\(node)/\(dir)/\(vmid).conf") {
                let shown = NameEscape.escape(node)   // a directory name under /etc/pve/nodes
                throw ProvisionError("vmid \(vmid) of guest '\(guest.name)' is already used on cluster node \(shown) (\(NameEscape.escape(m.path("/etc/pve/nodes/\(node)/\(dir)/\(vmid).conf")))): hs-provision creates guests on the host it runs on; change 'vmid' or run it on \(shown)")
            }
        }
        let tool = kind == .lxc ? "pct" : "qm"
        if m.mode == .live, let r = m.query([tool, "status", String(vmid)]), r.succeeded { return .exists }
        return .missing
    }

    /// `guest:<name>` for every guest of this Proxmox host that the inventory says how to create.
    static func createSteps(_ c: ProvisionContext) -> [Step] {
        creatable(c).map { g in
            Step("guest:\(g.name)") { m in
                guard try presence(m, g) == .missing else { return StepPlan() }
                var notes: [String] = []
                if g.kind == .vm {
                    notes.append("VM \(g.vmid!) (\(g.name)) boots its image with cloud-init: log in as the image's default user (debian on Debian cloud images)\(g.create!.sshKeys.map { " with a key from \(NameEscape.escape($0))" } ?? ": set ssh_keys to log in")")
                }
                return StepPlan(actions: createCommands(g, g.create!).map { .command($0) }, notes: notes)
            }
        }
    }

    /// `start:<name>` for created guests with `onboot`: starts a stopped guest.
    static func startSteps(_ c: ProvisionContext) -> [Step] {
        creatable(c).filter { $0.create!.onboot }.map { g in
            Step("start:\(g.name)") { m in
                let tool = g.kind == .lxc ? "pct" : "qm", id = String(g.vmid!)
                if let r = m.query([tool, "status", id]), r.succeeded {
                    return r.stdout.contains("status: running") ? StepPlan() : StepPlan(actions: [.command([tool, "start", id])])
                }
                // Status unknown (--root, or no pct/qm here): start exactly when this run creates it.
                return try presence(m, g) == .missing ? StepPlan(actions: [.command([tool, "start", id])]) : StepPlan()
            }
        }
    }

    /// The `lxc:<name>` step of a guest that hs-provision creates: until the container exists
    /// there is no config to edit, so it plans nothing and says why (apply creates the
    /// container in `guest:<name>` first, then this step edits the new config).
    static func configuredAfterCreation(_ step: Step, guest: Inventory.Host) -> Step {
        guard guest.create != nil else { return step }
        return Step(step.name) { m in
            if m.exists(configPath(kind: .lxc, vmid: guest.vmid!)) { return try step.plan(m) }
            return StepPlan(notes: ["container \(guest.vmid!) (\(guest.name)) does not exist yet: step guest:\(guest.name) creates it, then this step edits its config (plan again after apply to see it)"])
        }
    }

    /// Guests of this Proxmox host with creation settings, in inventory order.
    static func creatable(_ c: ProvisionContext) -> [Inventory.Host] {
        c.inventory.hosts.filter { $0.role == .guest && $0.proxmox == c.host.name && $0.create != nil }
    }
}
