import Foundation
import Testing
@testable import Provisioning
import Support
import TestSupport

@Suite struct InventoryTests {
    static let base = """
        truenas: {server: truenas, media_export: /mnt/tank/media}
        defaults: {puid: 1000, pgid: 1000}
        hosts:
          pve: {role: proxmox}

        """

    func error(_ yaml: String) -> String {
        do { _ = try Inventory.parse(yaml, path: "inv.yml"); return "no error" } catch { return "\(error)" }
    }

    @Test func exampleInventoryParses() throws {
        let inv = try Inventory.load(path: Fixture.repoRoot + "/provisioning/inventory.example.yml")
            .resolvingStacks(stacksDir: Fixture.repoRoot + "/stacks")
        #expect(inv.truenas.server == "truenas")
        #expect(inv.truenas.mediaExport == "/mnt/tank/media")
        #expect(inv.defaults.dockerSource == .docker)
        #expect(inv.hosts.map(\.name) == ["pve", "io", "asteria", "apollo", "helios", "aeos", "hera", "atlas"])
        let io = try #require(inv.host("io"))
        #expect(io.kind == .lxc && io.vmid == 101 && io.proxmox == "pve" && io.storage && io.tun && io.tailscale)
        // Derived from the compose files: aeos (FileBrowser) needs storage, only io needs TUN.
        #expect(inv.hosts.filter(\.storage).map(\.name) == ["io", "asteria", "apollo", "aeos"])
        #expect(inv.hosts.filter(\.tun).map(\.name) == ["io"])
        #expect(inv.defaults.tailscaleTags == ["tag:server"] && !inv.defaults.tailscaleSSH)
        #expect(inv.host("apollo")?.kind == .vm)
        #expect(inv.lxcGuests(of: "pve").map(\.name) == ["io", "asteria", "helios", "aeos", "hera", "atlas"])
        #expect(Set(inv.hosts.compactMap(\.stack)) == ["io", "asteria", "apollo", "helios", "aeos", "hera", "atlas"])
    }

    @Test func unknownRoleNamesHostAndField() {
        let e = error(Self.base + "  io: {role: nas, kind: lxc, vmid: 101, proxmox: pve}\n")
        #expect(e == "inv.yml:5: host 'io': field 'role' is 'nas'; expected proxmox or guest")
    }

    @Test func missingVmid() {
        let e = error(Self.base + "  io: {role: guest, kind: lxc, proxmox: pve}\n")
        #expect(e.hasPrefix("inv.yml:5:") && e.contains("host 'io': missing field 'vmid'"))
    }

    @Test func duplicateVmid() {
        let e = error(Self.base + "  io: {role: guest, kind: lxc, vmid: 101, proxmox: pve}\n  hera: {role: guest, kind: lxc, vmid: 101, proxmox: pve}\n")
        #expect(e == "inv.yml:6: host 'hera': field 'vmid' 101 is already used by host 'io'")
    }

    @Test func guestWithoutProxmoxHost() {
        let missing = error(Self.base + "  io: {role: guest, kind: lxc, vmid: 101}\n")
        #expect(missing.hasPrefix("inv.yml:5:") && missing.contains("host 'io': missing field 'proxmox'"))
        let unknown = error(Self.base + "  io: {role: guest, kind: lxc, vmid: 101, proxmox: pve2}\n")
        #expect(unknown == "inv.yml:5: host 'io': field 'proxmox' names 'pve2', which is not a host in this inventory")
        let notProxmox = error(Self.base + "  io: {role: guest, kind: lxc, vmid: 101, proxmox: pve}\n  x: {role: guest, kind: vm, vmid: 102, proxmox: io}\n")
        #expect(notProxmox.contains("host 'x': field 'proxmox' names 'io', whose role is guest, not proxmox"))
    }

    @Test func typosAndBadValuesAreRejected() {
        #expect(error(Self.base + "  io: {role: guest, kind: lxc, vmid: 101, proxmox: pve, storgae: true}\n")
            .contains("host 'io': unknown field 'storgae'"))
        #expect(error(Self.base + "  io: {role: guest, kind: ct, vmid: 101, proxmox: pve}\n")
            .contains("host 'io': field 'kind' is 'ct'; expected lxc or vm"))
        #expect(error(Self.base + "  io: {role: guest, kind: lxc, vmid: abc, proxmox: pve}\n")
            .contains("host 'io': field 'vmid' must be a non-negative integer, got 'abc'"))
        #expect(error(Self.base + "  io: {role: guest, kind: lxc, vmid: 101, proxmox: pve, storage: maybe}\n")
            .contains("host 'io': field 'storage' must be true or false"))
        #expect(error(Self.base.replacingOccurrences(of: "pgid: 1000", with: "pgid: 1000, docker_source: snap"))
            .contains("defaults: field 'docker_source' is 'snap'"))
        #expect(error(Self.base + "  pve2: {role: proxmox, vmid: 5}\n").contains("host 'pve2': field 'vmid' is only valid for role guest"))
        #expect(error("truenas: {server: t}\nhosts: {}\n").contains("truenas: missing field 'media_export'"))
    }

    @Test func cliRejectsBadInventoryWithExit2() throws {
        let t = try TempDir()
        let inv = t.sub("inv.yml")
        try (Self.base + "  io: {role: guest, kind: lxc, proxmox: pve}\n").write(toFile: inv, atomically: true, encoding: .utf8)
        let r = try Fixture.provision(["plan", "--inventory", inv, "--host", "io", "--root", t.path])
        #expect(r.status == 2)
        #expect(r.stderr.contains("error: \(inv):5: host 'io': missing field 'vmid'"))
        let unknownHost = try Fixture.provision(["plan", "--inventory", Fixture.inventory, "--host", "nope", "--root", t.path])
        #expect(unknownHost.status == 2 && unknownHost.stderr.contains("host 'nope' is not in"))
        let badStep = try Fixture.provision(["plan", "--inventory", Fixture.inventory, "--host", "pve", "--root", t.path, "--only", "dokcer"])
        #expect(badStep.status == 2 && badStep.stderr.contains("unknown step 'dokcer'"))
    }
}
