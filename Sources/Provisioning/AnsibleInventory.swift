// AnsibleInventory: the inventory as Ansible's JSON inventory (the "script" format that
// `ansible-playbook -i provisioning/ansible/inventory.sh` reads: groups with `hosts`, and
// every host's variables under `_meta.hostvars`, so Ansible never calls `--host`).
//
// Groups: `proxmox` and `guests` (the roles; provisioning/site.yml brings up proxmox first),
// `lxc` and `vm` (guest kinds). Host variables: `hs_role`, and for guests `hs_kind`,
// `hs_vmid`, `hs_proxmox`, `hs_stack`, `hs_created_by_proxmox` (the guest has creation
// settings); for Proxmox hosts `hs_guests`. The host's `ansible:` mapping becomes
// `ansible_<key>` (e.g. `ansible_connection`, `ansible_host`, `ansible_user`).
// `all.vars.hs_inventory_file` is the absolute path of the inventory file and
// `all.vars.hs_stacks` every guest's stack: the playbook copies the file and those stacks'
// compose files to every host (hs-provision checks every guest's stack).
import Foundation
import Support

package enum AnsibleInventory {
    /// Variables of one host. Pure.
    package static func hostVars(_ inv: Inventory, _ h: Inventory.Host) -> [String: Any] {
        var v: [String: Any] = ["hs_role": h.role.rawValue]
        switch h.role {
        case .proxmox:
            v["hs_guests"] = inv.hosts.filter { $0.role == .guest && $0.proxmox == h.name }.map(\.name)
        case .guest:
            if let k = h.kind { v["hs_kind"] = k.rawValue }
            if let id = h.vmid { v["hs_vmid"] = id }
            if let p = h.proxmox { v["hs_proxmox"] = p }
            if let s = h.stack { v["hs_stack"] = s }
            v["hs_created_by_proxmox"] = h.create != nil
        }
        for (k, value) in h.ansible { v["ansible_" + k] = value }
        return v
    }

    /// The whole inventory as a JSON object. Pure.
    /// - Parameter inventoryFile: absolute path of the inventory (for `hs_inventory_file`).
    package static func object(_ inv: Inventory, inventoryFile: String) -> [String: Any] {
        func names(_ f: (Inventory.Host) -> Bool) -> [String] { inv.hosts.filter(f).map(\.name) }
        var stacks: [String] = []
        for h in inv.hosts { if let s = h.stack, !stacks.contains(s) { stacks.append(s) } }
        var hostvars: [String: Any] = [:]
        for h in inv.hosts { hostvars[h.name] = hostVars(inv, h) }
        return [
            "_meta": ["hostvars": hostvars],
            "all": ["children": ["proxmox", "guests", "ungrouped"],
                    "vars": ["hs_inventory_file": inventoryFile, "hs_stacks": stacks]],
            "proxmox": ["hosts": names { $0.role == .proxmox }],
            "guests": ["hosts": names { $0.role == .guest }, "children": ["lxc", "vm"]],
            "lxc": ["hosts": names { $0.role == .guest && $0.kind == .lxc }],
            "vm": ["hosts": names { $0.role == .guest && $0.kind == .vm }],
        ]
    }

    /// Pretty, key-sorted JSON text (stable for golden tests) ending in a newline.
    package static func render(_ value: Any) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: value, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self) + "\n"
    }
}

/// `hs-provision inventory --ansible`: loads, validates and prints.
package enum InventoryExport {
    /// Prints the JSON inventory (or one host's variables) on stdout.
    /// - Throws: `ToolError.usage` for a bad inventory or an unknown host.
    package static func run(inventoryPath: String, host: String?) throws -> Int32 {
        let inv: Inventory
        do { inv = try Inventory.load(path: inventoryPath) } catch let e as InventoryError {
            throw ToolError.usage(e.message)
        }
        let absolute = URL(fileURLWithPath: inventoryPath).standardizedFileURL.path
        if let name = host {
            guard let h = inv.host(name) else {
                throw ToolError.usage("host '\(NameEscape.escape(name))' is not in \(NameEscape.escape(inventoryPath)) (hosts: \(inv.hosts.map(\.name).joined(separator: ", ")))")
            }
            Reporter.writeStdout(AnsibleInventory.render(AnsibleInventory.hostVars(inv, h)))
        } else {
            Reporter.writeStdout(AnsibleInventory.render(AnsibleInventory.object(inv, inventoryFile: absolute)))
        }
        return 0
    }
}
