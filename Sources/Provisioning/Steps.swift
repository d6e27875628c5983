import Foundation
import Support

/// Everything a step needs besides the target machine.
package struct ProvisionContext: Sendable {
    package var inventory: Inventory
    package var host: Inventory.Host
    /// Directory holding `fstab.template` and `lxc-config.template`.
    package var templatesDir: String
    /// Directory holding `<stack>/docker-compose.yml` (to find appdata directories).
    package var stacksDir: String?
    /// Use `pct set` for mount points and features (live mode on a host that has `pct`).
    package var usePct: Bool
    /// The mount probe, shared with hs-linkcheck.
    package var probe: [String]

    package static let mountPoint = "/mnt/storage"
    package static let stacksRoot = "/opt/stacks"
    package static let appdataRoot = "/opt/appdata"
    package static let checkout = "/opt/stacks/home-server"
}

/// The steps for one host, in the order they run.
package enum Steps {
    package static func forHost(_ c: ProvisionContext) -> [Step] {
        switch c.host.role {
        case .proxmox:
            var steps = [packages(["nfs-common"]), storageMount(c), subids(c)]
            steps += Guests.createSteps(c)
            steps += c.inventory.lxcGuests(of: c.host.name).map { Guests.configuredAfterCreation(lxc(c, guest: $0), guest: $0) }
            steps += Guests.startSteps(c)
            return steps
        case .guest:
            var pk = ["ca-certificates", "curl", "git"]
            if c.host.kind == .vm && c.host.storage { pk.append("nfs-common") }
            var steps = [packages(pk)]
            if c.inventory.defaults.dockerSource == .docker { steps.append(dockerRepo()) }
            steps += [docker(c), dockerService(), dockerGroup(c), directories(c)]
            if c.host.kind == .vm && c.host.storage { steps.append(storageMount(c)) }
            if c.host.tailscale { steps += [tailscaleRepo(), tailscale(c)] }
            if c.inventory.defaults.repo != nil { steps.append(repo(c)) }
            steps += [ToolsConfig.step(c), Timers.step(c)]
            return steps
        }
    }

    /// Every step name a host can have (for `--only` validation and `--help`).
    package static let allNames = ["packages", "storage-mount", "subids", "lxc", "docker-repo", "docker",
                                   "docker-service", "docker-group", "directories", "tailscale-repo",
                                   "tailscale", "repo", "tools-config", "timers", "guest", "start"]

    // MARK: shared pieces

    static func aptInstall(_ missing: [String]) -> [Action] {
        missing.isEmpty ? [] : [.command(["apt-get", "update"]), .command(["apt-get", "install", "-y"] + missing)]
    }

    static func fileAction(_ m: Machine, _ path: String, _ new: String) -> [Action] {
        let old = m.read(path)
        return old == new ? [] : [.writeFile(path: path, old: old, new: new)]
    }

    static func template(_ c: ProvisionContext, _ name: String) throws -> String {
        let p = c.templatesDir + "/" + name
        guard let d = FileManager.default.contents(atPath: p) else {
            throw ProvisionError("template \(NameEscape.escape(p)) not found: run from the repository checkout or pass --templates DIR")
        }
        return String(decoding: d, as: UTF8.self)
    }

    // MARK: steps

    /// Installs missing packages.
    static func packages(_ names: [String]) -> Step {
        Step("packages") { m in
            let have = try m.installedPackages(names)
            return StepPlan(actions: aptInstall(names.filter { !have.contains($0) }))
        }
    }

    /// NFS fstab entry for the media export, the mount point, mount and probe.
    static func storageMount(_ c: ProvisionContext) -> Step {
        Step("storage-mount") { m in
            let tpl = try template(c, "fstab.template")
            let body = try Template.render(tpl, values: ["nfs_server": c.inventory.truenas.server,
                                                         "nfs_export": ManagedEdits.fstabField(c.inventory.truenas.mediaExport),
                                                         "mount_point": ProvisionContext.mountPoint,
                                                         "nfs_version": "4.2"],
                                           name: c.templatesDir + "/fstab.template")
            let current = m.read("/etc/fstab") ?? ""
            let foreign = ManagedEdits.foreignMounts(fstab: current, mountPoint: ProvisionContext.mountPoint)
            if let f = foreign.first {
                throw ProvisionError("\(NameEscape.escape(m.path("/etc/fstab"))):\(f.line) already mounts \(ProvisionContext.mountPoint) outside the home-server block (`\(NameEscape.escape(f.text))`); comment it out or remove it, then re-run")
            }
            let desired = try ManagedEdits.managedBlock(in: current, name: "storage", body: body, file: m.path("/etc/fstab"))
            var p = StepPlan()
            if desired != current { p.actions.append(.writeFile(path: "/etc/fstab", old: m.read("/etc/fstab"), new: desired)) }
            if m.owner(ProvisionContext.mountPoint) == nil {
                p.actions.append(.directory(path: ProvisionContext.mountPoint, uid: 0, gid: 0, create: true))
            }
            if desired != current { p.actions.append(.command(["systemctl", "daemon-reload"])) }
            if m.isMounted(ProvisionContext.mountPoint) != true {
                p.actions.append(.command(["mount", ProvisionContext.mountPoint]))
            }
            p.checks.append(c.probe + [ProvisionContext.mountPoint])
            return p
        }
    }

    /// `root:<id>:1` in /etc/subuid and /etc/subgid so the idmap may map PUID/PGID through.
    static func subids(_ c: ProvisionContext) -> Step {
        Step("subids") { m in
            guard c.inventory.lxcGuests(of: c.host.name).contains(where: { $0.storage }) else { return StepPlan() }
            var p = StepPlan()
            for (file, id) in [("/etc/subuid", c.inventory.defaults.puid), ("/etc/subgid", c.inventory.defaults.pgid)] {
                p.actions += fileAction(m, file, ManagedEdits.ensureLine(in: m.read(file) ?? "", "root:\(id):1"))
            }
            return p
        }
    }

    /// Bind mount, features, TUN and idmap in one LXC guest's config.
    static func lxc(_ c: ProvisionContext, guest: Inventory.Host) -> Step {
        Step("lxc:\(guest.name)") { m in
            let vmid = guest.vmid!
            let path = "/etc/pve/lxc/\(vmid).conf"
            guard let current = m.read(path) else {
                throw ProvisionError("\(NameEscape.escape(m.path(path))) does not exist: create container \(vmid) (\(guest.name)) first (pct create \(vmid) ...) or add 'template:' to its inventory entry so hs-provision creates it, then re-run")
            }
            var notes: [String] = []
            let mp = LXCConfig.mountIndex(config: current, hostPath: ProvisionContext.mountPoint, mountPoint: ProvisionContext.mountPoint)
            let unprivileged = LXCConfig.isUnprivileged(current)
            var tun = guest.tun || guest.tailscale
            if tun && LXCConfig.hasTunDevice(current) { tun = false }
            var values = LXCConfig.idmapValues(puid: c.inventory.defaults.puid, pgid: c.inventory.defaults.pgid)
            values["vmid"] = String(vmid)
            values["mount_point"] = ProvisionContext.mountPoint
            values["guest_mount"] = ProvisionContext.mountPoint
            let rendered = try Template.render(try template(c, "lxc-config.template"), values: values,
                                               name: c.templatesDir + "/lxc-config.template")
            let lines = LXCConfig.select(rendered, mountIndex: mp.index, storage: guest.storage, tun: tun,
                                         idmap: guest.storage && unprivileged)
            let merged = LXCConfig.merge(config: current, desired: lines, vmid: vmid, usePct: c.usePct)
            var p = StepPlan()
            if merged.content != current { p.actions.append(.writeFile(path: path, old: current, new: merged.content)) }
            p.actions += merged.pctCommands.map { .command($0) }
            if !p.actions.isEmpty {
                notes.append("container \(vmid) (\(guest.name)) needs a restart for config changes: pct reboot \(vmid)")
            }
            if guest.storage && unprivileged,
               let reown = LXCConfig.idmapChange(current: current, merged: merged.content, vmid: vmid, guest: guest.name,
                                                 proxmox: c.host.name, puid: c.inventory.defaults.puid, pgid: c.inventory.defaults.pgid) {
                notes.append(reown)
            }
            if current.contains("rootfs:") && current.range(of: "rootfs: *[^,]*zfs", options: .regularExpression) != nil {
                notes.append("container \(vmid) has a ZFS-backed rootfs: check that Docker does not fall back to the vfs storage driver (docker info | grep Storage)")
            }
            p.notes = notes
            return p
        }
    }

    /// Docker's official deb822 repository and keyring; removes the legacy docker.list.
    static func dockerRepo() -> Step {
        Step("docker-repo") { m in
            try thirdPartyRepository(m, name: "docker", label: "Docker", keyFile: "docker.asc",
                                     useUbuntuCodename: true, components: "stable", withArchitecture: true,
                                     keyURL: { id, _ in "https://download.docker.com/linux/\(id)/gpg" },
                                     uri: { id in "https://download.docker.com/linux/\(id)" })
        }
    }

    /// One third-party apt repository in deb822 form (`/etc/apt/sources.list.d/NAME.sources`
    /// signed by `/etc/apt/keyrings/KEYFILE`), after removing a legacy one-line `NAME.list`:
    /// two entries with different Signed-By make apt fail.
    static func thirdPartyRepository(_ m: Machine, name: String, label: String, keyFile: String,
                                     useUbuntuCodename: Bool, components: String, withArchitecture: Bool,
                                     keyURL: (_ id: String, _ suite: String) -> String,
                                     uri: (_ id: String) -> String) throws -> StepPlan {
        let os = m.osRelease()
        let id = os["ID"] == "ubuntu" ? "ubuntu" : "debian"
        guard let suite = (useUbuntuCodename && id == "ubuntu" ? os["UBUNTU_CODENAME"] : nil) ?? os["VERSION_CODENAME"],
              !suite.isEmpty else {
            throw ProvisionError("\(NameEscape.escape(m.path("/etc/os-release"))) has no VERSION_CODENAME: cannot choose \(label)'s repository suite")
        }
        var p = StepPlan()
        if let legacy = m.read("/etc/apt/sources.list.d/\(name).list") {
            p.actions.append(.removeFile(path: "/etc/apt/sources.list.d/\(name).list", old: legacy))
        }
        let key = "/etc/apt/keyrings/\(keyFile)"
        if !m.exists(key) {
            p.actions.append(.command(["install", "-m", "0755", "-d", "/etc/apt/keyrings"]))
            p.actions.append(.command(["curl", "-fsSL", keyURL(id, suite), "-o", key]))
            p.actions.append(.command(["chmod", "0644", key]))
        }
        let architectures = withArchitecture ? "Architectures: \(m.architecture())\n" : ""
        let sources = "Types: deb\nURIs: \(uri(id))\nSuites: \(suite)\nComponents: \(components)\n"
            + architectures + "Signed-By: \(key)\n"
        p.actions += fileAction(m, "/etc/apt/sources.list.d/\(name).sources", sources)
        return p
    }

    static let officialDocker = ["docker-ce", "docker-ce-cli", "containerd.io", "docker-buildx-plugin", "docker-compose-plugin"]
    static let conflicting = ["docker.io", "docker-doc", "docker-compose", "podman-docker", "containerd", "runc"]

    /// Docker packages with the compose plugin; conflicting packages removed first.
    static func docker(_ c: ProvisionContext) -> Step {
        Step("docker") { m in
            var p = StepPlan()
            switch c.inventory.defaults.dockerSource {
            case .docker:
                let conflicts = try m.installedPackages(conflicting)
                if !conflicts.isEmpty { p.actions.append(.command(["apt-get", "remove", "-y"] + conflicting.filter(conflicts.contains))) }
                let have = try m.installedPackages(officialDocker)
                p.actions += aptInstall(officialDocker.filter { !have.contains($0) })
            case .debian:
                var want = ["docker.io"]
                let codename = m.osRelease()["VERSION_CODENAME"] ?? ""
                if ["buster", "bullseye", "bookworm"].contains(codename) {
                    p.notes.append("Debian \(NameEscape.escape(codename)) packages Compose v1 only: for `docker compose` (v2) use docker_source: docker, or install the Compose v2 CLI plugin by hand")
                } else {
                    want.append("docker-compose")   // Compose v2 as a CLI plugin from trixie on
                }
                let have = try m.installedPackages(want)
                p.actions += aptInstall(want.filter { !have.contains($0) })
            }
            return p
        }
    }

    /// `systemctl enable --now docker` when not enabled.
    static func dockerService() -> Step {
        Step("docker-service") { m in
            let enabled = m.unitEnabled("docker")
            if enabled == true { return StepPlan() }
            if enabled == nil && m.mode.runsCommands {
                throw ProvisionError("cannot ask systemd whether docker is enabled (no systemctl on the target): enable the docker service by hand")
            }
            if case .chroot = m.mode { return StepPlan(actions: [.command(["systemctl", "enable", "docker"])]) }
            return StepPlan(actions: [.command(["systemctl", "enable", "--now", "docker"])])
        }
    }

    /// The PUID user exists (created as `defaults.user` when missing) and is in group docker.
    static func dockerGroup(_ c: ProvisionContext) -> Step {
        Step("docker-group") { m in
            let d = c.inventory.defaults
            var p = StepPlan()
            var user = m.lookup("passwd", String(d.puid))?.first
            if user == nil {
                if m.lookup("group", String(d.pgid)) == nil {
                    p.actions.append(.command(["groupadd", "-g", String(d.pgid), d.user]))
                }
                p.actions.append(.command(["useradd", "-u", String(d.puid), "-g", String(d.pgid), "-m", "-s", "/bin/bash", d.user]))
                user = d.user
            }
            guard let group = m.lookup("group", "docker") else {
                // Created by the docker package (the docker step runs first).
                p.actions.append(.command(["usermod", "-aG", "docker", user!]))
                return p
            }
            let members = group.count >= 4 ? group[3].split(separator: ",").map(String.init) : []
            if !members.contains(user!) { p.actions.append(.command(["usermod", "-aG", "docker", user!])) }
            return p
        }
    }

    /// The appdata directories of a guest's stack (every /opt/appdata bind source of its
    /// compose file and their parents), with their owners.
    /// - Throws: `ProvisionError` when the compose file cannot be read.
    package static func appdataDirectories(_ c: ProvisionContext) throws -> [StackRequirements.Directory] {
        guard let stack = c.host.stack else { return [] }
        guard let dir = c.stacksDir else {
            throw ProvisionError("cannot find stacks/\(NameEscape.escape(stack))/docker-compose.yml (no stacks/ directory next to the templates or the inventory): run hs-provision from the repository checkout")
        }
        return try StackRequirements.load(stacksDir: dir, stack: stack, puid: c.inventory.defaults.puid,
                                          pgid: c.inventory.defaults.pgid).appdata
    }

    /// /opt/stacks and /opt/appdata owned by PUID:PGID, and every appdata directory the
    /// stack's compose file mounts (nested ones too: Docker would create them root-owned and a
    /// container running as PUID could not write there), owned by PUID:PGID or the service's
    /// `x-appdata-owner`. Never recursive: only these directories are chowned.
    static func directories(_ c: ProvisionContext) -> Step {
        Step("directories") { m in
            let d = c.inventory.defaults
            var p = StepPlan()
            let wanted = [(ProvisionContext.stacksRoot, d.puid, d.pgid), (ProvisionContext.appdataRoot, d.puid, d.pgid)]
                + (try appdataDirectories(c)).map { ($0.path, $0.uid, $0.gid) }
            for (dir, uid, gid) in wanted {
                let o = m.owner(dir)
                if let o, !o.isDir {
                    throw ProvisionError("\(NameEscape.escape(m.path(dir))) exists but is not a directory: the stack mounts it as one; move it away and re-run")
                }
                if o == nil || o!.uid != uid || o!.gid != gid {
                    p.actions.append(.directory(path: dir, uid: uid, gid: gid, create: o == nil))
                }
            }
            return p
        }
    }

    /// Tailscale's apt repository (deb822 with the key in /etc/apt/keyrings); removes a
    /// legacy tailscale.list so the two layouts never mix.
    static func tailscaleRepo() -> Step {
        Step("tailscale-repo") { m in
            try thirdPartyRepository(m, name: "tailscale", label: "Tailscale", keyFile: "tailscale.gpg",
                                     useUbuntuCodename: false, components: "main", withArchitecture: false,
                                     keyURL: { id, suite in "https://pkgs.tailscale.com/stable/\(id)/\(suite).noarmor.gpg" },
                                     uri: { id in "https://pkgs.tailscale.com/stable/\(id)" })
        }
    }

    /// `tailscale up` for a guest, from the inventory: `--advertise-tags` (tagged nodes' keys
    /// do not expire, so the cross-stack addresses do not all break after 180 days),
    /// `--ssh` only when asked for, `--accept-dns=false` in an LXC (Proxmox writes the
    /// container's resolv.conf at every start) and true in a VM.
    package static func tailscaleUp(_ c: ProvisionContext) -> [String] {
        let h = c.host, d = c.inventory.defaults
        var argv = ["tailscale", "up", "--auth-key=file:\(d.tailscaleAuthkeyFile)", "--hostname=\(h.name)"]
        let tags = h.tailscaleTags ?? d.tailscaleTags
        if !tags.isEmpty { argv.append("--advertise-tags=" + tags.joined(separator: ",")) }
        if h.tailscaleSSH ?? d.tailscaleSSH { argv.append("--ssh") }
        argv.append("--accept-dns=\(h.tailscaleAcceptDNS ?? (h.kind != .lxc))")
        argv.append("--timeout=60s")
        return argv
    }

    /// The tailscale package and enrolment under the host's name (skipped when already
    /// running under that name; `tailscale set` to rename). The auth key file is removed once
    /// the node runs: after a successful `up` (a failed one stops the step first) or when
    /// found on an enrolled node.
    static func tailscale(_ c: ProvisionContext) -> Step {
        Step("tailscale") { m in
            var p = StepPlan()
            let installed = try !m.installedPackages(["tailscale"]).isEmpty
            if !installed { p.actions += aptInstall(["tailscale"]) }
            let name = c.host.name
            let key = c.inventory.defaults.tailscaleAuthkeyFile
            let (decision, tunMissing) = TailscaleDecision.decide(statusJSON: installed ? m.tailscaleStatus() : nil, hostname: name)
            if tunMissing { p.notes.append("tailscale reports TUN: false: /dev/net/tun is missing (LXC: apply hs-provision on the Proxmox host, which adds the TUN lines for guests running Tailscale, and restart the container)") }
            if (c.host.tailscaleTags ?? c.inventory.defaults.tailscaleTags).isEmpty {
                p.notes.append("no tailscale_tags for \(name): an untagged node's key expires (180 days by default) and every address like \(name):PORT stops answering; set defaults.tailscale_tags (e.g. [tag:server], owned in the tailnet policy's tagOwners)")
            }
            switch decision {
            case .running:
                if m.exists(key) { p.actions.append(.command(["rm", "-f", key])) }
            case .rename:
                p.actions.append(.command(["tailscale", "set", "--hostname=\(name)"]))
                if m.exists(key) { p.actions.append(.command(["rm", "-f", key])) }
            case .enroll:
                if m.mode.runsCommands && !m.exists(key) {
                    throw ProvisionError("Tailscale auth key file \(NameEscape.escape(m.path(key))) does not exist: put a key there (mode 0600) or set defaults.tailscale_authkey_file; it is removed after the enrolment")
                }
                p.actions.append(.command(tailscaleUp(c)))
                p.actions.append(.command(["rm", "-f", key]))
            }
            return p
        }
    }

    /// The repository cloned or fast-forwarded in /opt/stacks/home-server.
    static func repo(_ c: ProvisionContext) -> Step {
        Step("repo") { m in
            let url = c.inventory.defaults.repo!
            let dir = ProvisionContext.checkout
            guard m.exists(dir + "/.git") else {
                return StepPlan(actions: [.command(["git", "clone", url, dir])])
            }
            guard m.mode.runsCommands else { return StepPlan(actions: [.command(["git", "-C", dir, "pull", "--ff-only"])]) }
            _ = m.query(["git", "-C", dir, "fetch", "--quiet"])
            let head = m.query(["git", "-C", dir, "rev-parse", "HEAD"])?.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            guard let up = m.query(["git", "-C", dir, "rev-parse", "@{u}"]), up.succeeded else {
                throw ProvisionError("\(NameEscape.escape(m.path(dir))) has no upstream branch: set one (git -C \(dir) branch -u origin/main) and re-run")
            }
            if head == up.stdout.trimmingCharacters(in: .whitespacesAndNewlines) { return StepPlan() }
            return StepPlan(actions: [.command(["git", "-C", dir, "merge", "--ff-only", "@{u}"])])
        }
    }
}
