import Foundation
import Testing
@testable import Provisioning
import Support
import TestSupport

/// The inventory's fleet fields (guest creation, `ansible:`) and `hs-provision inventory --ansible`.
@Suite struct FleetInventoryTests {
    static let base = """
        truenas: {server: truenas, media_export: /mnt/tank/media}
        hosts:
          pve: {role: proxmox}

        """
    static let tpl = "template: \"local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst\""

    func error(_ hostLine: String) -> String {
        do { _ = try Inventory.parse(Self.base + hostLine + "\n", path: "inv.yml"); return "no error" } catch { return "\(error)" }
    }

    /// Every bad value names file:line, host and field, and says what to write instead.
    @Test func badCreationFieldsAreRejected() {
        let lxc = "  io: {role: guest, kind: lxc, vmid: 101, proxmox: pve, "
        let vm = "  apollo: {role: guest, kind: vm, vmid: 103, proxmox: pve, "
        let table: [(String, String)] = [
            (lxc + "\(Self.tpl), cores: 0}", "inv.yml:4: host 'io': field 'cores' must be between 1 and 512, got 0"),
            (lxc + "\(Self.tpl), memory: 32}", "inv.yml:4: host 'io': field 'memory' must be between 64 and 4194304 (MiB), got 32"),
            (lxc + "\(Self.tpl), disk: 0}", "inv.yml:4: host 'io': field 'disk' must be between 1 and 65536 (GiB), got 0"),
            (lxc + "\(Self.tpl), cores: two}", "inv.yml:4: host 'io': field 'cores' must be a non-negative integer, got 'two'"),
            (lxc + "\(Self.tpl), onboot: sometimes}", "inv.yml:4: host 'io': field 'onboot' must be true or false, got 'sometimes'"),
            (lxc + "template: debian-12.tar.zst}", "inv.yml:4: host 'io': field 'template' must be a Proxmox container template volume like local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst (see `pveam list local`), got 'debian-12.tar.zst'"),
            (lxc + "image: /var/lib/vz/x.qcow2}", "inv.yml:4: host 'io': field 'image' is for kind vm; a lxc guest is created from 'template'"),
            (lxc + "cores: 4}", "inv.yml:4: host 'io': field 'cores' is only used when hs-provision creates the guest: add 'template' (e.g. local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst) or remove 'cores'"),
            (lxc + "\(Self.tpl), bridge: \"vmbr0 x\"}", "inv.yml:4: host 'io': field 'bridge' must be a Proxmox name like vmbr0, got 'vmbr0 x'"),
            (lxc + "\(Self.tpl), disk_storage: \"local lvm\"}", "inv.yml:4: host 'io': field 'disk_storage' must be a Proxmox name like local-lvm, got 'local lvm'"),
            (lxc + "\(Self.tpl), ssh_keys: keys.pub}", "inv.yml:4: host 'io': field 'ssh_keys' must be an absolute path on the Proxmox host (a file of public keys, e.g. /root/.ssh/authorized_keys), got 'keys.pub'"),
            (vm + "\(Self.tpl)}", "inv.yml:4: host 'apollo': field 'template' is for kind lxc; a vm guest is created from 'image'"),
            (vm + "image: debian.qcow2}", "inv.yml:4: host 'apollo': field 'image' must be an absolute path on the Proxmox host or a volume like local:import/debian-12-genericcloud-amd64.qcow2, got 'debian.qcow2'"),
            (vm + "image: /i.qcow2, swap: 512}", "inv.yml:4: host 'apollo': field 'swap' is only valid for kind lxc (a VM's swap lives inside its disk)"),
            (vm + "memory: 4096}", "inv.yml:4: host 'apollo': field 'memory' is only used when hs-provision creates the guest: add 'image' (e.g. /var/lib/vz/template/iso/debian-12-genericcloud-amd64.qcow2) or remove 'memory'"),
            ("  pve2: {role: proxmox, cores: 4}", "inv.yml:4: host 'pve2': field 'cores' is only valid for role guest"),
            ("  pve2: {role: proxmox, ansible: ssh}", "inv.yml:4: host 'pve2': field 'ansible' must be a mapping like {connection: ssh, user: root} (each key becomes ansible_<key>)"),
            ("  pve2: {role: proxmox, ansible: {Connection: ssh}}", "inv.yml:4: host 'pve2': field 'ansible' has an invalid key 'Connection': use lowercase letters, digits and '_' (connection, host, user, port, ...)"),
            ("  pve2: {role: proxmox, ansible: {port: [22]}}", "inv.yml:4: host 'pve2': field 'ansible' key 'port' must be a non-empty scalar value"),
        ]
        for (line, expected) in table {
            #expect(error(line) == expected, "\(line)")
        }
    }

    @Test func creationFieldsParse() throws {
        let inv = try Inventory.load(path: GuestTests.inventory)
        let nyx = try #require(inv.host("nyx")?.create)
        var expected = GuestSpec(source: "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst", disk: 12)
        expected.cores = 2; expected.memory = 1024; expected.swap = 256; expected.onboot = true; expected.startup = 2
        expected.diskStorage = "local-zfs"; expected.bridge = "vmbr1"; expected.sshKeys = "/root/.ssh/authorized_keys"
        #expect(nyx == expected)
        #expect(inv.host("hera")?.create == nil)
        #expect(inv.host("pve")?.ansible == ["host": "pve.lan", "user": "root"])
        // The example inventory's guests (with their creation settings) parse too.
        let example = try Inventory.load(path: Fixture.repoRoot + "/provisioning/inventory.example.yml")
        #expect(example.hosts.filter { $0.role == .guest }.allSatisfy { $0.create != nil })
    }

    // MARK: hs-provision inventory --ansible

    @Test func ansibleInventoryGolden() throws {
        let r = try Fixture.provision(["inventory", "--ansible", "--inventory", GuestTests.inventory])
        #expect(r.status == 0, "\(r.stderr)")
        let text = r.stdout.replacingOccurrences(of: GuestTests.inventory, with: "INVENTORY")
        #expect(text == Fixture.golden("ansible-inventory.json", text))
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect((obj["proxmox"] as? [String: Any])?["hosts"] as? [String] == ["pve"])
        #expect((obj["guests"] as? [String: Any])?["hosts"] as? [String] == ["io", "apollo", "nyx", "hera"])
        #expect((obj["vm"] as? [String: Any])?["hosts"] as? [String] == ["apollo"])

        let one = try Fixture.provision(["inventory", "--ansible", "--inventory", GuestTests.inventory, "--host", "apollo"])
        let vars = try #require(try JSONSerialization.jsonObject(with: Data(one.stdout.utf8)) as? [String: Any])
        #expect(vars["hs_vmid"] as? Int == 103 && vars["ansible_user"] as? String == "debian" && vars["hs_kind"] as? String == "vm")

        let noFormat = try Fixture.provision(["inventory", "--inventory", GuestTests.inventory])
        #expect(noFormat.status == 2 && noFormat.stderr.contains("choose an output format: --ansible"))
        let badHost = try Fixture.provision(["inventory", "--ansible", "--inventory", GuestTests.inventory, "--host", "zeus"])
        #expect(badHost.status == 2 && badHost.stderr.contains("host 'zeus' is not in"))
    }

    /// Ansible itself reads it through provisioning/ansible/inventory.sh (fails when Ansible is missing).
    @Test func ansibleReadsTheInventoryScript() throws {
        let ai = try #require(Subprocess.which("ansible-inventory"), "ansible is not installed: apt-get install ansible (scripts/bootstrap.sh)")
        let r = try Subprocess.run([ai, "-i", Fixture.repoRoot + "/provisioning/ansible/inventory.sh", "--list"],
                                   environment: ["HS_PROVISION": Tools.path("hs-provision"), "HS_INVENTORY": GuestTests.inventory,
                                                 "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true", "ANSIBLE_NOCOLOR": "1"])
        #expect(r.status == 0, "\(r.stderr)")
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect((obj["proxmox"] as? [String: Any])?["hosts"] as? [String] == ["pve"])
        #expect(Set((obj["lxc"] as? [String: Any])?["hosts"] as? [String] ?? []) == ["io", "nyx", "hera"])
        let hostvars = try #require((obj["_meta"] as? [String: Any])?["hostvars"] as? [String: [String: Any]])
        #expect(hostvars["pve"]?["ansible_host"] as? String == "pve.lan")
        #expect(hostvars["nyx"]?["hs_proxmox"] as? String == "pve")
        #expect(hostvars["nyx"]?["hs_inventory_file"] as? String == GuestTests.inventory)
        #expect(hostvars["nyx"]?["hs_stacks"] as? [String] == ["io", "apollo", "helios", "hera"])
    }
}
