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
        /// How guests start their nightly jobs unless a host says otherwise.
        package var schedule = Schedule.systemd
    }

    /// How a guest's nightly jobs are started (`schedule:`).
    package enum Schedule: String, Sendable, Equatable {
        /// The package's systemd timers, enabled by the `timers` step; the crontab lines of
        /// the same jobs are commented out.
        case systemd
        /// Root's crontab (crontab.example), for hosts without systemd; the timers stay off.
        case cron
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
        /// How hs-provision creates this guest on its Proxmox host (nil: the guest is made by
        /// hand). Set by the `template` (lxc) or `image` (vm) field; see Guests.swift.
        package var create: GuestSpec?
        /// How this guest's nightly jobs start (nil: `defaults.schedule`).
        package var schedule: Schedule?
        /// Values of /etc/default/home-server-tools for this host (`config:`; keys are
        /// `ConfigKey`s that are not secrets, see `Inventory.parseConfig`).
        package var config: [String: String] = [:]
        /// Ansible host variables from the `ansible:` mapping (`connection` -> `ansible_connection`).
        package var ansible: [String: String] = [:]
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

extension Inventory {
    /// Host fields that describe how a guest is created (all optional; `template`/`image` turns creation on).
    package static let guestCreationFields = ["template", "image", "cores", "memory", "swap", "disk", "onboot",
                                              "startup", "disk_storage", "bridge", "ssh_keys"]
    /// Host fields owned by the fleet half (guest creation + Ansible), accepted for every host.
    package static let fleetFields = guestCreationFields + ["ansible"]
}

/// An inventory that cannot be used: names the file, line, host and field (escaped, NameEscape).
package struct InventoryError: Error, CustomStringConvertible, Equatable {
    package var message: String
    package var description: String { message }
}

extension Inventory {
    /// Reads and validates an inventory file.
    /// - Throws: `InventoryError` naming file:line, host and field.
    package static func load(path: String) throws -> Inventory {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw InventoryError(message: "cannot read inventory \(NameEscape.escape(path)): check the path (see provisioning/inventory.example.yml)")
        }
        return try parse(String(decoding: data, as: UTF8.self), path: path)
    }
}

extension Inventory {
    /// A host's `config:` mapping: values for /etc/default/home-server-tools. Keys must be
    /// `ConfigKey`s; secrets (URLs with tokens, the ntfy token) are refused, because the
    /// inventory is copied world-readable to every host and often committed: they belong in
    /// common/.env or below the managed block of the file itself.
    static func parseConfig(_ n: Node, ctx: String, fail: (Node?, String) -> InventoryError) throws -> [String: String] {
        guard let m = n.mapping else {
            throw fail(n, "\(ctx): field 'config' must be a mapping like {HS_COPY_DEST: \"rclone:offsite:backups\"} (keys of /etc/default/home-server-tools)")
        }
        var out: [String: String] = [:]
        for (k, v) in m {
            let name = k.string ?? "?"
            guard let key = ConfigKey.named(name) else {
                let hint = ConfigKey.suggestion(for: name).map { "did you mean \($0.name)?" }
                    ?? "the keys are \(ConfigKey.all.map(\.name).joined(separator: ", "))"
                throw fail(k, "\(ctx): field 'config' has an unknown key '\(NameEscape.escape(name))'; \(hint)")
            }
            guard key.kind == .plain || key.kind == .destination else {
                throw fail(k, "\(ctx): field 'config' sets \(name), which holds a secret (the inventory is copied world-readable to every host): put it in common/.env of the host's checkout, or in /etc/default/home-server-tools below the home-server block")
            }
            // Written into /etc/default/home-server-tools as it is: a control character has no place there.
            guard let value = v.scalar?.string, !value.isEmpty, !ManagedEdits.holdsControlCharacter(value) else {
                throw fail(v, "\(ctx): field 'config' key '\(name)' must be a non-empty one-line value without control characters (it is written into /etc/default/home-server-tools)")
            }
            if key.kind == .destination && URLRedaction.withoutCredentials(value) != value {
                throw fail(v, "\(ctx): field 'config' key '\(name)' holds credentials in its URL: put them in the rclone config or common/.env, not in the inventory")
            }
            out[name] = value
        }
        return out
    }
}
