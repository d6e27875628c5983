import Foundation
import Support
import Yams

extension Inventory {
    /// Parses and validates inventory YAML text. Pure.
    /// - Throws: `InventoryError` naming file:line, host and field.
    package static func parse(_ text: String, path: String = "inventory") throws -> Inventory {
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch {
            throw InventoryError(message: "\(NameEscape.escape(path)): not valid YAML: \(NameEscape.escape("\(error)"))")
        }
        let p = Parser(path: path)
        guard let root, let top = root.mapping else {
            throw p.fail(root, "expected a mapping with truenas, defaults and hosts")
        }
        for key in top.keys where !["truenas", "defaults", "hosts"].contains(key.string ?? "") {
            throw p.fail(key, "unknown top-level field '\(NameEscape.escape(key.string ?? "?"))' (expected truenas, defaults, hosts)")
        }
        let truenas = try p.trueNAS(top, root: root)
        let defaults = try p.defaults(top)
        guard let hn = top["hosts"], let hm = hn.mapping, !hm.isEmpty else {
            throw p.fail(top["hosts"] ?? root, "missing or empty mapping 'hosts' (name: {role: proxmox|guest, ...})")
        }
        var hosts: [Host] = []
        for (k, v) in hm {
            guard let h = try p.host(k, v) else { continue }
            if hosts.contains(where: { $0.name == h.name }) { throw p.fail(k, "host '\(h.name)': defined twice") }
            hosts.append(h)
        }
        try p.crossCheck(hosts, hm)
        return Inventory(truenas: truenas, defaults: defaults, hosts: hosts, path: path)
    }
}

extension Inventory {
/// The steps of `Inventory.parse`, one per part of the file, and the field readers they share.
/// Every message shows what the file holds escaped (NameEscape): keys, values, host names.
fileprivate struct Parser {
    let path: String
    static let hostFields = ["role", "kind", "vmid", "proxmox", "stack", "storage", "tun", "tailscale",
                             "tailscale_tags", "tailscale_ssh", "tailscale_accept_dns", "schedule", "config"] + Inventory.fleetFields

    func fail(_ node: Node?, _ msg: String) -> InventoryError {
        let line = node?.mark.map { ":\($0.line)" } ?? ""
        return InventoryError(message: "\(NameEscape.escape(path))\(line): \(msg)")
    }

    // MARK: fields

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
        guard let v = n.int, v >= 0 else { throw fail(n, "\(ctx): field '\(key)' must be a non-negative integer, got '\(NameEscape.escape(n.string ?? "?"))'") }
        return v
    }

    func bool(_ m: Node.Mapping, _ key: String, _ ctx: String) throws -> Bool? {
        guard let n = m[key] else { return nil }
        guard let v = n.bool else { throw fail(n, "\(ctx): field '\(key)' must be true or false, got '\(NameEscape.escape(n.string ?? "?"))'") }
        return v
    }

    func tags(_ m: Node.Mapping, _ ctx: String) throws -> [String]? {
        guard let n = m["tailscale_tags"] else { return nil }
        guard let seq = n.sequence else { throw fail(n, "\(ctx): field 'tailscale_tags' must be a list like [tag:server]") }
        return try seq.map { t in
            guard let s = t.string, s.range(of: "^tag:[A-Za-z0-9][A-Za-z0-9-]*$", options: .regularExpression) != nil else {
                throw fail(t, "\(ctx): field 'tailscale_tags' has '\(NameEscape.escape(t.string ?? "?"))': a tag is 'tag:NAME' (letters, digits, '-') and must be listed under tagOwners in the tailnet policy")
            }
            return s
        }
    }

    func schedule(_ m: Node.Mapping, _ ctx: String) throws -> Schedule? {
        guard let v = try str(m, "schedule", ctx, required: false) else { return nil }
        guard let s = Schedule(rawValue: v) else {
            throw fail(m["schedule"], "\(ctx): field 'schedule' is '\(NameEscape.escape(v))'; expected systemd (the package's timers) or cron (root's crontab, for hosts without systemd)")
        }
        return s
    }
    func checkKeys(_ m: Node.Mapping, _ allowed: [String], _ ctx: String) throws {
        for k in m.keys where !allowed.contains(k.string ?? "") {
            throw fail(k, "\(ctx): unknown field '\(NameEscape.escape(k.string ?? "?"))' (allowed: \(allowed.joined(separator: ", ")))")
        }
    }

    // MARK: parts

    func trueNAS(_ top: Node.Mapping, root: Node) throws -> TrueNAS {
        guard let tn = top["truenas"]?.mapping else { throw fail(top["truenas"] ?? root, "missing mapping 'truenas' (server, media_export, backup_export)") }
        if let n = tn["backup_export"] {
            throw fail(n, "truenas: field 'backup_export' was removed (nothing read it): the backup destination is HS_BACKUP_DEST in common/.env (e.g. nfs://truenas/mnt/tank/backups/appdata); delete the field")
        }
        try checkKeys(tn, ["server", "media_export"], "truenas")
        let truenas = TrueNAS(server: try str(tn, "server", "truenas", required: true)!,
                              mediaExport: try str(tn, "media_export", "truenas", required: true)!)
        // Both go into /etc/fstab's first field (`server:export`): the export with its blanks and
        // backslashes written as fstab(5) escapes them (`ManagedEdits.fstabField`); a control
        // character has no place there (a newline starts another line), nor has a blank in a
        // host name.
        for (key, value) in [("server", truenas.server), ("media_export", truenas.mediaExport)]
        where ManagedEdits.holdsControlCharacter(value) || (key == "server" && value.contains(" ")) {
            throw fail(tn[key], "truenas: field '\(key)' is '\(NameEscape.escape(value))': it goes into /etc/fstab, where \(key == "server" ? "a space or " : "")a control character (a newline starts another line) cannot be; write it without")
        }
        guard truenas.mediaExport.hasPrefix("/") else { throw fail(tn["media_export"], "truenas: field 'media_export' must be an absolute path") }
        return truenas
    }

    func defaults(_ top: Node.Mapping) throws -> Defaults {
        var defaults = Defaults()
        if let dn = top["defaults"] {
            guard let d = dn.mapping else { throw fail(dn, "'defaults' must be a mapping") }
            if let n = d["tz"] {
                throw fail(n, "defaults: field 'tz' was removed (nothing read it): the containers' time zone is TZ in common/.env; delete the field")
            }
            try checkKeys(d, ["puid", "pgid", "docker_source", "tailscale_authkey_file", "tailscale_tags", "tailscale_ssh", "repo", "user", "schedule"], "defaults")
            if let v = try schedule(d, "defaults") { defaults.schedule = v }
            if let v = try int(d, "puid", "defaults") { defaults.puid = v }
            if let v = try int(d, "pgid", "defaults") { defaults.pgid = v }
            if let v = try tags(d, "defaults") { defaults.tailscaleTags = v }
            if let v = try bool(d, "tailscale_ssh", "defaults") { defaults.tailscaleSSH = v }
            if let v = try str(d, "docker_source", "defaults", required: false) {
                guard let s = DockerSource(rawValue: v) else {
                    throw fail(d["docker_source"], "defaults: field 'docker_source' is '\(NameEscape.escape(v))'; expected docker (official repository) or debian")
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
        return defaults
    }

    /// One entry of `hosts` (nil when a required field is missing in a way already reported).
    func host(_ k: Node, _ v: Node) throws -> Host? {
        guard let name = k.string, !name.isEmpty else { throw fail(k, "host names must be strings") }
        let ctx = "host '\(NameEscape.escape(name))'"
        guard name.range(of: "^[a-z0-9][a-z0-9-]*$", options: .regularExpression) != nil else {
            throw fail(k, "\(ctx): the name is also the Tailscale hostname: use lowercase letters, digits and '-'")
        }
        guard let m = v.mapping else { throw fail(v, "\(ctx): expected a mapping like {role: guest, ...}") }
        if let n = m["services"] {
            throw fail(n, "\(ctx): field 'services' was removed: the appdata directories come from stacks/<stack>/docker-compose.yml (every /opt/appdata bind source); delete the field")
        }
        try checkKeys(m, Self.hostFields, ctx)
        guard let roleName = try str(m, "role", ctx, required: true) else { return nil }
        guard let role = Role(rawValue: roleName) else {
            throw fail(m["role"], "\(ctx): field 'role' is '\(NameEscape.escape(roleName))'; expected proxmox or guest")
        }
        var h = Host(name: name, role: role, line: k.mark?.line ?? 0)
        if role == .guest {
            try guestFields(m, ctx, into: &h)
        } else {
            for f in Self.hostFields.dropFirst() where m[f] != nil && f != "ansible" {
                throw fail(m[f], "\(ctx): field '\(f)' is only valid for role guest")
            }
            h.tailscale = false
        }
        if let an = m["ansible"] {
            guard let am = an.mapping else {
                throw fail(an, "\(ctx): field 'ansible' must be a mapping like {connection: ssh, user: root} (each key becomes ansible_<key>)")
            }
            for (ak, av) in am {
                guard let key = ak.string, key.range(of: "^[a-z][a-z0-9_]*$", options: .regularExpression) != nil else {
                    throw fail(ak, "\(ctx): field 'ansible' has an invalid key '\(NameEscape.escape(ak.string ?? "?"))': use lowercase letters, digits and '_' (connection, host, user, port, ...)")
                }
                guard let value = av.scalar?.string, !value.isEmpty else {
                    throw fail(av, "\(ctx): field 'ansible' key '\(key)' must be a non-empty scalar value")
                }
                h.ansible[key] = value
            }
        }
        let creationGiven = Inventory.guestCreationFields.filter { m[$0] != nil }
        if role == .proxmox, let f = creationGiven.first {
            throw fail(m[f], "\(ctx): field '\(f)' is only valid for role guest")
        }
        if role == .guest, let kind = h.kind { h.create = try creation(m, ctx, kind: kind, given: creationGiven) }
        return h
    }

    /// How hs-provision creates the guest (`template` or `image` and sizes), if it does.
    func creation(_ m: Node.Mapping, _ ctx: String, kind: Kind, given creationGiven: [String]) throws -> GuestSpec? {
        let source = kind == .lxc ? "template" : "image"
        let other = kind == .lxc ? "image" : "template"
        if m[other] != nil {
            throw fail(m[other], "\(ctx): field '\(other)' is for kind \(kind == .lxc ? "vm" : "lxc"); a \(kind.rawValue) guest is created from '\(source)'")
        }
        if kind == .vm, m["swap"] != nil {
            throw fail(m["swap"], "\(ctx): field 'swap' is only valid for kind lxc (a VM's swap lives inside its disk)")
        }
        if let src = try str(m, source, ctx, required: false) {
            var spec = GuestSpec(source: src, disk: kind == .lxc ? 8 : 32)
            if kind == .lxc {
                guard src.range(of: "^[A-Za-z][A-Za-z0-9._-]*:vztmpl/[^/]+$", options: .regularExpression) != nil else {
                    throw fail(m["template"], "\(ctx): field 'template' must be a Proxmox container template volume like local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst (see `pveam list local`), got '\(NameEscape.escape(src))'")
                }
            } else {
                guard src.hasPrefix("/") || src.range(of: "^[A-Za-z][A-Za-z0-9._-]*:[^/]", options: .regularExpression) != nil else {
                    throw fail(m["image"], "\(ctx): field 'image' must be an absolute path on the Proxmox host or a volume like local:import/debian-12-genericcloud-amd64.qcow2, got '\(NameEscape.escape(src))'")
                }
            }
            func bounded(_ key: String, _ range: ClosedRange<Int>, _ unit: String) throws -> Int? {
                guard let v = try int(m, key, ctx) else { return nil }
                guard range.contains(v) else {
                    throw fail(m[key], "\(ctx): field '\(key)' must be between \(range.lowerBound) and \(range.upperBound)\(unit), got \(v)")
                }
                return v
            }
            if let v = try bounded("cores", 1...512, "") { spec.cores = v }
            if let v = try bounded("memory", 64...4_194_304, " (MiB)") { spec.memory = v }
            if let v = try bounded("swap", 0...4_194_304, " (MiB)") { spec.swap = v }
            if let v = try bounded("disk", 1...65_536, " (GiB)") { spec.disk = v }
            spec.startup = try bounded("startup", 0...9_999, " (boot order)")
            if let v = try bool(m, "onboot", ctx) { spec.onboot = v }
            for (key, pattern, example) in [("disk_storage", "^[A-Za-z][A-Za-z0-9._-]*$", "local-lvm"),
                                            ("bridge", "^[A-Za-z0-9][A-Za-z0-9._-]*$", "vmbr0")] {
                guard let v = try str(m, key, ctx, required: false) else { continue }
                guard v.range(of: pattern, options: .regularExpression) != nil else {
                    throw fail(m[key], "\(ctx): field '\(key)' must be a Proxmox name like \(example), got '\(NameEscape.escape(v))'")
                }
                if key == "bridge" { spec.bridge = v } else { spec.diskStorage = v }
            }
            if let v = try str(m, "ssh_keys", ctx, required: false) {
                guard v.hasPrefix("/") else {
                    throw fail(m["ssh_keys"], "\(ctx): field 'ssh_keys' must be an absolute path on the Proxmox host (a file of public keys, e.g. /root/.ssh/authorized_keys), got '\(NameEscape.escape(v))'")
                }
                spec.sshKeys = v
            }
            return spec
        } else if let f = creationGiven.first {
            throw fail(m[f], "\(ctx): field '\(f)' is only used when hs-provision creates the guest: add '\(source)' (\(kind == .lxc ? "e.g. local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst" : "e.g. /var/lib/vz/template/iso/debian-12-genericcloud-amd64.qcow2")) or remove '\(f)'")
        }
        return nil
    }

    /// The fields of a guest: kind, vmid, proxmox, stack, storage, tun, tailscale.
    func guestFields(_ m: Node.Mapping, _ ctx: String, into h: inout Host) throws {
        guard let kindName = try str(m, "kind", ctx, required: true) else { return }
        guard let kind = Kind(rawValue: kindName) else {
            throw fail(m["kind"], "\(ctx): field 'kind' is '\(NameEscape.escape(kindName))'; expected lxc or vm")
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
        h.schedule = try schedule(m, ctx)
        if let n = m["config"] {
            h.config = try Inventory.parseConfig(n, ctx: ctx, fail: fail)
        }
    }

    /// Checks across hosts: vmids unique, every guest's proxmox is a proxmox host.
    func crossCheck(_ hosts: [Host], _ hm: Node.Mapping) throws {
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
                    throw fail(node?.mapping?["proxmox"], "host '\(h.name)': field 'proxmox' names '\(NameEscape.escape(px))', which is not a host in this inventory")
                }
                guard p.role == .proxmox else {
                    throw fail(node?.mapping?["proxmox"], "host '\(h.name)': field 'proxmox' names '\(NameEscape.escape(px))', whose role is \(p.role.rawValue), not proxmox")
                }
            }
        }
    }
}
}
