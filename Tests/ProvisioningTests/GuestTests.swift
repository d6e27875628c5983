import Foundation
import Testing
@testable import Provisioning
import Support
import TestSupport

/// Guests created from the inventory (`guest:<name>` / `start:<name>` on the Proxmox host):
/// the exact `pct create` / `qm create` commands, golden plans, and that an existing guest
/// is never created again.
@Suite struct GuestTests {
    static let inventory = Fixture.dir + "/inventory-guests.yml"
    static let template = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
    static let image = "/var/lib/vz/template/iso/debian-12-genericcloud-amd64.qcow2"

    func host(_ yaml: String, _ name: String) throws -> Inventory.Host {
        let inv = try Inventory.parse("""
            truenas: {server: t, media_export: /mnt/tank/media}
            hosts:
              pve: {role: proxmox}
            \(yaml)
            """, path: "inv.yml")
        return try #require(inv.host(name))
    }

    // MARK: the exact commands (a table: inventory entry -> argv)

    @Test func createCommandsAreExact() throws {
        let cases: [(yaml: String, name: String, expected: [[String]])] = [
            // LXC with only the template: every default spelled out.
            ("  io: {role: guest, kind: lxc, vmid: 101, proxmox: pve, template: \"\(Self.template)\"}", "io",
             [["pct", "create", "101", Self.template, "--hostname", "io", "--unprivileged", "1",
               "--features", "nesting=1,keyctl=1", "--cores", "2", "--memory", "2048", "--swap", "512",
               "--rootfs", "local-lvm:8", "--net0", "name=eth0,bridge=vmbr0,ip=dhcp", "--onboot", "1"]]),
            // LXC with every field.
            ("  nyx: {role: guest, kind: lxc, vmid: 108, proxmox: pve, template: \"\(Self.template)\", cores: 3, memory: 1024, swap: 0, disk: 12, onboot: false, startup: 2, disk_storage: local-zfs, bridge: vmbr1, ssh_keys: /root/keys.pub}", "nyx",
             [["pct", "create", "108", Self.template, "--hostname", "nyx", "--unprivileged", "1",
               "--features", "nesting=1,keyctl=1", "--cores", "3", "--memory", "1024", "--swap", "0",
               "--rootfs", "local-zfs:12", "--net0", "name=eth0,bridge=vmbr1,ip=dhcp", "--onboot", "0",
               "--startup", "order=2", "--ssh-public-keys", "/root/keys.pub"]]),
            // VM from a cloud image: one qm create (disk imported, cloud-init drive, DHCP), then the resize.
            ("  apollo: {role: guest, kind: vm, vmid: 103, proxmox: pve, image: \(Self.image), cores: 4, memory: 8192, disk: 64, startup: 3, ssh_keys: /root/.ssh/authorized_keys}", "apollo",
             [["qm", "create", "103", "--name", "apollo", "--ostype", "l26", "--cpu", "host", "--cores", "4",
               "--memory", "8192", "--scsihw", "virtio-scsi-single",
               "--scsi0", "local-lvm:0,import-from=\(Self.image),discard=on", "--ide2", "local-lvm:cloudinit",
               "--boot", "order=scsi0", "--serial0", "socket", "--vga", "serial0", "--agent", "enabled=1",
               "--net0", "virtio,bridge=vmbr0", "--ipconfig0", "ip=dhcp", "--onboot", "1", "--startup", "order=3",
               "--sshkeys", "/root/.ssh/authorized_keys"],
              ["qm", "disk", "resize", "103", "scsi0", "64G"]]),
            // VM defaults (a storage volume as the image source).
            ("  vm2: {role: guest, kind: vm, vmid: 120, proxmox: pve, image: \"local:import/debian.qcow2\"}", "vm2",
             [["qm", "create", "120", "--name", "vm2", "--ostype", "l26", "--cpu", "host", "--cores", "2",
               "--memory", "2048", "--scsihw", "virtio-scsi-single",
               "--scsi0", "local-lvm:0,import-from=local:import/debian.qcow2,discard=on", "--ide2", "local-lvm:cloudinit",
               "--boot", "order=scsi0", "--serial0", "socket", "--vga", "serial0", "--agent", "enabled=1",
               "--net0", "virtio,bridge=vmbr0", "--ipconfig0", "ip=dhcp", "--onboot", "1"],
              ["qm", "disk", "resize", "120", "scsi0", "32G"]]),
        ]
        for c in cases {
            let h = try host(c.yaml, c.name)
            let spec = try #require(h.create, "\(c.name) has creation settings")
            #expect(Guests.createCommands(h, spec) == c.expected, "\(c.name)")
        }
        // A guest without template/image is made by hand: no creation settings.
        #expect(try host("  hera: {role: guest, kind: lxc, vmid: 106, proxmox: pve}", "hera").create == nil)
    }

    // MARK: plan on the Proxmox host (golden) and existing guests

    func args(_ action: String, root: String) -> [String] {
        [action, "--inventory", Self.inventory, "--host", "pve", "--root", root, "--templates", Fixture.templates]
    }

    /// host-root has containers 101 (io), 102 and 106 (hera); apollo (VM 103) and nyx (CT 108)
    /// are missing. The plan creates exactly those two, configures nyx after creating it and
    /// starts both; io, whose inventory settings differ from its config, is left alone.
    @Test func planCreatesOnlyMissingGuestsGolden() throws {
        let root = try Fixture.sandbox("host-root")
        let plan = try Fixture.provision(args("plan", root: root.path))
        #expect(plan.status == 0, "\(plan.stderr)")
        let text = plan.stdout.replacingOccurrences(of: root.path, with: "ROOT")
        #expect(text == Fixture.golden("plan-pve-guests.txt", text))
        #expect(text.contains("== guest:io: ok\n"))
        #expect(!text.contains("create 101") && !text.contains("create 106") && !text.contains("guest:hera"))
        #expect(text.contains("$ pct create 108 "))
        #expect(text.contains("$ qm create 103 "))
        #expect(text.contains("== start:io: ok\n"))   // status unknown in --root: an existing guest is not started
        #expect(plan.stderr.contains("lxc:nyx: container 108 (nyx) does not exist yet: step guest:nyx creates it"))
        #expect(Fixture.files(root.path) == Fixture.files(Fixture.dir + "/host-root"), "plan must not change files")

        // Once their configs exist (as after apply), nothing is created or started any more.
        try FileManager.default.createDirectory(atPath: root.sub("etc/pve/qemu-server"), withIntermediateDirectories: true)
        try "name: apollo\n".write(toFile: root.sub("etc/pve/qemu-server/103.conf"), atomically: true, encoding: .utf8)
        try "hostname: nyx\nunprivileged: 1\n".write(toFile: root.sub("etc/pve/lxc/108.conf"), atomically: true, encoding: .utf8)
        let again = try Fixture.provision(args("plan", root: root.path) + ["--only", "guest", "--only", "start"])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(again.stdout.hasSuffix("plan: 0 step(s) would change, 6 ok, 0 failed\n"), "\(again.stdout)")
        #expect(!again.stdout.contains("$ "))
    }

    @Test func vmidOfTheOtherKindOrOnAnotherNodeIsAnError() throws {
        let root = try Fixture.sandbox("host-root")
        // 103 is a container here, but apollo is a VM.
        try "hostname: other\n".write(toFile: root.sub("etc/pve/lxc/103.conf"), atomically: true, encoding: .utf8)
        let r = try Fixture.provision(args("plan", root: root.path) + ["--only", "guest:apollo"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("vmid 103 of guest 'apollo' (kind vm) is already a container on this Proxmox host (\(root.path)/etc/pve/lxc/103.conf): change 'vmid' or 'kind' in the inventory"), "\(r.stderr)")
        // 108 exists on another cluster node.
        try FileManager.default.createDirectory(atPath: root.sub("etc/pve/nodes/pve2/lxc"), withIntermediateDirectories: true)
        try "hostname: x\n".write(toFile: root.sub("etc/pve/nodes/pve2/lxc/108.conf"), atomically: true, encoding: .utf8)
        let n = try Fixture.provision(args("plan", root: root.path) + ["--only", "guest:nyx"])
        #expect(n.status == 1)
        #expect(n.stderr.contains("vmid 108 of guest 'nyx' is already used on cluster node pve2"), "\(n.stderr)")
    }

    // MARK: apply runs the commands, once

    /// `apply --chroot` into a tiny root (static busybox as /bin/sh) whose `pct` and `qm` are
    /// stand-ins for Proxmox's tools (which need a Proxmox host): they log every call, `create`
    /// writes the guest's config file the way Proxmox does, `status`/`start` keep a running flag.
    /// The first apply creates nyx and apollo, edits nyx's new config, starts the guests; the
    /// second apply runs no create or start at all, and io/hera are never created.
    @Test func applyCreatesMissingGuestsOnceAndNeverRecreates() throws {
        try #require(getuid() == 0, "needs root (chroot)")
        let busybox = try #require(["/bin/busybox", "/usr/bin/busybox"].first { FileManager.default.isExecutableFile(atPath: $0) },
                                   "static busybox is missing: apt-get install busybox-static (scripts/bootstrap.sh)")
        let root = try Fixture.sandbox("host-root")
        for d in ["bin", "usr/sbin", "run", "var/log", "etc/pve/qemu-server"] {
            try FileManager.default.createDirectory(atPath: root.sub(d), withIntermediateDirectories: true)
        }
        try Subprocess.checked(["cp", busybox, root.sub("bin/busybox")])
        try FileManager.default.createSymbolicLink(atPath: root.sub("bin/sh"), withDestinationPath: "busybox")
        func tool(_ name: String, _ confDir: String) throws {
            let script = """
                #!/bin/sh
                # Stand-in for Proxmox's \(name): logs the call, keeps the state Proxmox keeps.
                echo "\(name) $*" >> /var/log/pve-calls
                case "$1" in
                  create) printf 'hostname: created-by-\(name)\\nunprivileged: 1\\n' > /etc/pve/\(confDir)/$2.conf ;;
                  status) [ -f /etc/pve/\(confDir)/$2.conf ] || { echo "Configuration file 'nodes/pve/\(confDir)/$2.conf' does not exist" >&2; exit 2; }
                          if [ -f /run/running-$2 ]; then echo "status: running"; else echo "status: stopped"; fi ;;
                  start) : > /run/running-$2 ;;
                esac
                exit 0

                """
            // Written by a child process: a write fd of this process could leak into a child that
            // another test spawns concurrently, and exec of the script would fail with ETXTBSY.
            try Subprocess.checked(["sh", "-c", "cat > \"$1\" && chmod 0755 \"$1\"", "sh", root.sub("usr/sbin/\(name)")],
                                   input: Data(script.utf8))
        }
        try tool("pct", "lxc")
        try tool("qm", "qemu-server")
        let conf101 = Fixture.text(root.sub("etc/pve/lxc/101.conf"))
        let run = ["apply", "--inventory", Self.inventory, "--host", "pve", "--chroot", root.path, "--templates", Fixture.templates,
                   "--only", "guest", "--only", "lxc:nyx", "--only", "start"]
        func changes() -> [String] {
            Fixture.text(root.sub("var/log/pve-calls")).split(separator: "\n").map(String.init).filter { !$0.contains(" status ") }
        }

        let first = try Fixture.provision(run)
        #expect(first.status == 0, "stdout:\n\(first.stdout)\nstderr:\n\(first.stderr)")
        let h = try host("""
              apollo: {role: guest, kind: vm, vmid: 103, proxmox: pve, image: \(Self.image), cores: 4, memory: 8192, disk: 64, startup: 3, ssh_keys: /root/.ssh/authorized_keys}
              nyx: {role: guest, kind: lxc, vmid: 108, proxmox: pve, template: "\(Self.template)", cores: 2, memory: 1024, swap: 256, disk: 12, onboot: true, startup: 2, disk_storage: local-zfs, bridge: vmbr1, ssh_keys: /root/.ssh/authorized_keys}
            """, "apollo")
        let apolloCreate = Guests.createCommands(h, h.create!).map { $0.joined(separator: " ") }
        let nyxCreate = try #require(changes().first { $0.hasPrefix("pct create") })
        #expect(changes() == apolloCreate + [nyxCreate, "pct start 101", "qm start 103", "pct start 108"], "\(changes())")
        #expect(nyxCreate.hasPrefix("pct create 108 \(Self.template) --hostname nyx "))
        // nyx's config: what pct create wrote, then the lxc step's lines (bind mount, TUN, idmap).
        let conf108 = Fixture.text(root.sub("etc/pve/lxc/108.conf"))
        #expect(conf108.hasPrefix("hostname: created-by-pct\nunprivileged: 1\n"))
        #expect(conf108.contains("mp0: /mnt/storage,mp=/mnt/storage\n") && conf108.contains("lxc.idmap: u 1000 1000 1\n"), "\(conf108)")
        #expect(Fixture.text(root.sub("etc/pve/lxc/101.conf")) == conf101, "an existing guest's config is not touched by guest:/start:")

        // Second apply: everything exists and runs; no create, no start.
        let before = changes()
        let second = try Fixture.provision(run)
        #expect(second.status == 0, "\(second.stderr)")
        #expect(second.stdout.hasSuffix("ok=7 changed=0 failed=0\n"), "\(second.stdout)")
        #expect(changes() == before)
        #expect(!before.contains { $0.hasPrefix("pct create 101") || $0.hasPrefix("pct create 106") || $0.hasPrefix("pct create 102") })
    }
}
