import Foundation
import Support
import Yams

/// The whole home server described as data (`provisioning/inventory.example.yml`).
///
/// `hosts` maps names (which are also the Tailscale hostnames) to a role. Parsing rejects
/// unknown fields, so a typo never silently turns a setting off.
package struct Inventory: Sendable, Equatable {
    package struct TrueNAS: Sendable, Equatable {
        package var server: String
        package var mediaExport: String
    }

    /// Where Docker comes from on guests.
    package enum DockerSource: String, Sendable, Equatable {
        /// Docker's official apt repository (docker-ce + compose plugin).
        case docker
        /// Debian's own `docker.io` (+ Debian's `docker-compose` where it is Compose v2).
        case debian
    }

    package struct Defaults: Sendable, Equatable {
        package var puid = 1000
        package var pgid = 1000
        package var dockerSource = DockerSource.docker
        package var tailscaleAuthkeyFile = "/root/tailscale.key"
        /// ACL tags every guest advertises (`--advertise-tags`); tagged nodes' keys do not expire.
        package var tailscaleTags: [String] = []
        /// Tailscale SSH on every guest (off unless asked for).
        package var tailscaleSSH = false
        package var repo: String?
        /// Name used when the PUID user has to be created on a guest.
        package var user = "homeserver"
    }

    package enum Role: String, Sendable, Equatable { case proxmox, guest }
    package enum Kind: String, Sendable, Equatable { case lxc, vm }

    package struct Host: Sendable, Equatable {
        package var name: String
        package var role: Role
        package var kind: Kind?
        package var vmid: Int?
        package var proxmox: String?
        package var stack: String?
        package var storage = false
        package var tun = false
        /// Tailscale runs in this guest (default true for guests).
        package var tailscale = true
        /// Tailscale settings of this host (nil: the defaults; DNS: off in an LXC, on in a VM).
        package var tailscaleTags: [String]?
        package var tailscaleSSH: Bool?
        package var tailscaleAcceptDNS: Bool?
        /// `storage` / `tun` as written in the inventory (nil: derived from the stack's compose
        /// file by `Inventory.resolvingStacks`).
        package var storageDeclared: Bool?
        package var tunDeclared: Bool?
        /// Line of the host's entry in the inventory file (for messages).
        package var line = 0
    }

    package var truenas: TrueNAS
    package var defaults: Defaults
    /// Hosts in file order.
    package var hosts: [Host]
    /// Where the inventory was read from (for messages and to find the repository).
    package var path: String

    package func host(_ name: String) -> Host? { hosts.first { $0.name == name } }

    /// LXC guests of a Proxmox host, in file order.
    package func lxcGuests(of proxmox: String) -> [Host] {
        hosts.filter { $0.role == .guest && $0.kind == .lxc && $0.proxmox == proxmox }
    }
}

/// An inventory that cannot be used: names the file, line, host and field.
package struct InventoryError: Error, CustomStringConvertible, Equatable {
    package var message: String
    package var description: String { message }
}

extension Inventory {
    /// Reads and validates an inventory file.
    /// - Throws: `InventoryError` naming file:line, host and field.
    package static func load(path: String) throws -> Inventory {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw InventoryError(message: "cannot read inventory \(path): check the path (see provisioning/inventory.example.yml)")
        }
        return try parse(String(decoding: data, as: UTF8.self), path: path)
    }

    /// Parses and validates inventory YAML text. Pure.
    package static func parse(_ text: String, path: String = "inventory") throws -> Inventory {
        func fail(_ node: Node?, _ msg: String) -> InventoryError {
            let line = node?.mark.map { ":\($0.line)" } ?? ""
            return InventoryError(message: "\(path)\(line): \(msg)")
        }
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch {
            throw InventoryError(message: "\(path): not valid YAML: \(error)")
        }
        guard let root, let top = root.mapping else {
            throw fail(root, "expected a mapping with truenas, defaults and hosts")
        }
        for key in top.keys where !["truenas", "defaults", "hosts"].contains(key.string ?? "") {
            throw fail(key, "unknown top-level field '\(key.string ?? "?")' (expected truenas, defaults, hosts)")
        }

        func str(_ m: Node.Mapping, _ key: String, _ ctx: String, required: Bool) throws -> String? {
            guard let n = m[key] else {
                if required { throw fail(.mapping(m), "\(ctx): missing field '\(key)'") }
                return nil
            }
            guard let s = n.scalar?.string, !s.isEmpty else { throw fail(n, "\(ctx): field '\(key)' must be a non-empty string") }
            return s
        }
        func int(_ m: Node.Mapping, _ key: String, _ ctx: String) throws -> Int? {
            guard let n = m[key] else { return nil }
            guard let v = n.int, v >= 0 else { throw fail(n, "\(ctx): field '\(key)' must be a non-negative integer, got '\(n.string ?? "?")'") }
            return v
        }
        func bool(_ m: Node.Mapping, _ key: String, _ ctx: String) throws -> Bool? {
            guard let n = m[key] else { return nil }
            guard let v = n.bool else { throw fail(n, "\(ctx): field '\(key)' must be true or false, got '\(n.string ?? "?")'") }
            return v
        }
        func tags(_ m: Node.Mapping, _ ctx: String) throws -> [String]? {
            guard let n = m["tailscale_tags"] else { return nil }
            guard let seq = n.sequence else { throw fail(n, "\(ctx): field 'tailscale_tags' must be a list like [tag:server]") }
            return try seq.map { t in
                guard let s = t.string, s.range(of: "^tag:[A-Za-z0-9][A-Za-z0-9-]*$", options: .regularExpression) != nil else {
                    throw fail(t, "\(ctx): field 'tailscale_tags' has '\(t.string ?? "?")': a tag is 'tag:NAME' (letters, digits, '-') and must be listed under tagOwners in the tailnet policy")
                }
                return s
            }
        }
        func checkKeys(_ m: Node.Mapping, _ allowed: [String], _ ctx: String) throws {
            for k in m.keys where !allowed.contains(k.string ?? "") {
                throw fail(k, "\(ctx): unknown field '\(k.string ?? "?")' (allowed: \(allowed.joined(separator: ", ")))")
            }
        }

        // truenas
        guard let tn = top["truenas"]?.mapping else { throw fail(top["truenas"] ?? root, "missing mapping 'truenas' (server, media_export, backup_export)") }
        if let n = tn["backup_export"] {
            throw fail(n, "truenas: field 'backup_export' was removed (nothing read it): the backup destination is HS_BACKUP_DEST in common/.env (e.g. nfs://truenas/mnt/tank/backups/appdata); delete the field")
        }
        try checkKeys(tn, ["server", "media_export"], "truenas")
        let truenas = TrueNAS(server: try str(tn, "server", "truenas", required: true)!,
                              mediaExport: try str(tn, "media_export", "truenas", required: true)!)
        guard truenas.mediaExport.hasPrefix("/") else { throw fail(tn["media_export"], "truenas: field 'media_export' must be an absolute path") }

        // defaults
        var defaults = Defaults()
        if let dn = top["defaults"] {
            guard let d = dn.mapping else { throw fail(dn, "'defaults' must be a mapping") }
            if let n = d["tz"] {
                throw fail(n, "defaults: field 'tz' was removed (nothing read it): the containers' time zone is TZ in common/.env; delete the field")
            }
            try checkKeys(d, ["puid", "pgid", "docker_source", "tailscale_authkey_file", "tailscale_tags", "tailscale_ssh", "repo", "user"], "defaults")
            if let v = try int(d, "puid", "defaults") { defaults.puid = v }
            if let v = try int(d, "pgid", "defaults") { defaults.pgid = v }
            if let v = try tags(d, "defaults") { defaults.tailscaleTags = v }
            if let v = try bool(d, "tailscale_ssh", "defaults") { defaults.tailscaleSSH = v }
            if let v = try str(d, "docker_source", "defaults", required: false) {
                guard let s = DockerSource(rawValue: v) else {
                    throw fail(d["docker_source"], "defaults: field 'docker_source' is '\(v)'; expected docker (official repository) or debian")
                }
                defaults.dockerSource = s
            }
            if let v = try str(d, "tailscale_authkey_file", "defaults", required: false) { defaults.tailscaleAuthkeyFile = v }
            defaults.repo = try str(d, "repo", "defaults", required: false)
            if let v = try str(d, "user", "defaults", required: false) { defaults.user = v }
            for (k, v) in [("puid", defaults.puid), ("pgid", defaults.pgid)] where v == 0 || v >= 65535 {
                throw fail(d[k], "defaults: field '\(k)' must be between 1 and 65534, got \(v)")
            }
        }

        // hosts
        guard let hn = top["hosts"], let hm = hn.mapping, !hm.isEmpty else {
            throw fail(top["hosts"] ?? root, "missing or empty mapping 'hosts' (name: {role: proxmox|guest, ...})")
        }
        var hosts: [Host] = []
        let allowed = ["role", "kind", "vmid", "proxmox", "stack", "storage", "tun", "tailscale",
                       "tailscale_tags", "tailscale_ssh", "tailscale_accept_dns"]
        for (k, v) in hm {
            guard let name = k.string, !name.isEmpty else { throw fail(k, "host names must be strings") }
            let ctx = "host '\(name)'"
            guard name.range(of: "^[a-z0-9][a-z0-9-]*$", options: .regularExpression) != nil else {
                throw fail(k, "\(ctx): the name is also the Tailscale hostname: use lowercase letters, digits and '-'")
            }
            guard let m = v.mapping else { throw fail(v, "\(ctx): expected a mapping like {role: guest, ...}") }
            if let n = m["services"] {
                throw fail(n, "\(ctx): field 'services' was removed: the appdata directories come from stacks/<stack>/docker-compose.yml (every /opt/appdata bind source); delete the field")
            }
            try checkKeys(m, allowed, ctx)
            guard let roleName = try str(m, "role", ctx, required: true) else { continue }
            guard let role = Role(rawValue: roleName) else {
                throw fail(m["role"], "\(ctx): field 'role' is '\(roleName)'; expected proxmox or guest")
            }
            var h = Host(name: name, role: role, line: k.mark?.line ?? 0)
            if hosts.contains(where: { $0.name == name }) { throw fail(k, "\(ctx): defined twice") }
            if role == .guest {
                guard let kindName = try str(m, "kind", ctx, required: true) else { continue }
                guard let kind = Kind(rawValue: kindName) else {
                    throw fail(m["kind"], "\(ctx): field 'kind' is '\(kindName)'; expected lxc or vm")
                }
                h.kind = kind
                guard let vmid = try int(m, "vmid", ctx) else {
                    throw fail(.mapping(m), "\(ctx): missing field 'vmid' (the Proxmox VM/CT id, e.g. 101)")
                }
                guard vmid >= 100 else { throw fail(m["vmid"], "\(ctx): field 'vmid' must be 100 or more (Proxmox ids), got \(vmid)") }
                h.vmid = vmid
                guard let px = try str(m, "proxmox", ctx, required: false) else {
                    throw fail(.mapping(m), "\(ctx): missing field 'proxmox' (the name of the Proxmox host this guest runs on)")
                }
                h.proxmox = px
                h.stack = try str(m, "stack", ctx, required: false)
                h.storageDeclared = try bool(m, "storage", ctx)
                h.tunDeclared = try bool(m, "tun", ctx)
                h.storage = h.storageDeclared ?? false
                h.tun = h.tunDeclared ?? false
                h.tailscale = try bool(m, "tailscale", ctx) ?? true
                h.tailscaleTags = try tags(m, ctx)
                h.tailscaleSSH = try bool(m, "tailscale_ssh", ctx)
                h.tailscaleAcceptDNS = try bool(m, "tailscale_accept_dns", ctx)
            } else {
                for f in allowed.dropFirst() where m[f] != nil {
                    throw fail(m[f], "\(ctx): field '\(f)' is only valid for role guest")
                }
                h.tailscale = false
            }
            hosts.append(h)
        }
        // Cross-host checks.
        var seen: [Int: String] = [:]
        for h in hosts where h.role == .guest {
            let node = hm[h.name]
            if let id = h.vmid {
                if let other = seen[id] {
                    throw fail(node?.mapping?["vmid"], "host '\(h.name)': field 'vmid' \(id) is already used by host '\(other)'")
                }
                seen[id] = h.name
            }
            if let px = h.proxmox {
                guard let p = hosts.first(where: { $0.name == px }) else {
                    throw fail(node?.mapping?["proxmox"], "host '\(h.name)': field 'proxmox' names '\(px)', which is not a host in this inventory")
                }
                guard p.role == .proxmox else {
                    throw fail(node?.mapping?["proxmox"], "host '\(h.name)': field 'proxmox' names '\(px)', whose role is \(p.role.rawValue), not proxmox")
                }
            }
        }
        return Inventory(truenas: truenas, defaults: defaults, hosts: hosts, path: path)
    }
}
