import Foundation
import Testing
@testable import Provisioning
import Support
import TestSupport

/// The example inventory applied for every guest to sandbox roots, checked against the
/// compose files as `docker compose config` renders them: every /opt/appdata bind source
/// exists with the right owner, every stack that mounts /mnt/storage runs on a guest that
/// gets it, and a container started as PUID:PGID on the real dockerd can write into every
/// appdata directory hs-provision made.
@Suite(.serialized) struct StackProvisioningTests {
    static let inventory = Fixture.repoRoot + "/provisioning/inventory.example.yml"

    /// One bind mount of a rendered service.
    struct Bind { var source: String; var target: String; var readOnly: Bool }
    struct Service { var name: String; var user: String?; var binds: [Bind]; var owner: String? }

    /// `docker compose config --format json` of a stack, with the committed templates as the
    /// env files (PUID/PGID/TZ have defaults there; secrets are empty, which compose accepts).
    static func render(_ stack: String) throws -> [Service] {
        let r = try Subprocess.run(["docker", "compose", "--env-file", Fixture.repoRoot + "/common/.env.template",
                                    "--env-file", Fixture.repoRoot + "/stacks/\(stack)/.env.template",
                                    "-f", Fixture.repoRoot + "/stacks/\(stack)/docker-compose.yml", "config", "--format", "json"])
        try #require(r.succeeded, "docker compose config \(stack): \(r.stderr)")
        let top = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let services = try #require(top["services"] as? [String: [String: Any]])
        return services.map { name, s in
            let binds = ((s["volumes"] as? [[String: Any]]) ?? []).filter { ($0["type"] as? String) == "bind" }.map {
                Bind(source: $0["source"] as? String ?? "", target: $0["target"] as? String ?? "", readOnly: ($0["read_only"] as? Bool) ?? false)
            }
            return Service(name: name, user: s["user"] as? String, binds: binds, owner: s["x-appdata-owner"] as? String)
        }.sorted { $0.name < $1.name }
    }

    static func common(_ key: String) throws -> String {
        try #require(try EnvFileLines.value(key, in: Fixture.repoRoot + "/common/.env.template"))
    }

    func ownerOf(_ path: String) -> (uid: UInt32, gid: UInt32)? {
        var st = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { return nil }
        return (st.st_uid, st.st_gid)
    }

    /// Applies `--only directories` for one guest into a fresh sandbox root.
    func provisionDirectories(_ host: String) throws -> TempDir {
        let root = try TempDir("hs-prov-\(host)")
        let r = try Fixture.provision(["apply", "--inventory", Self.inventory, "--host", host, "--root", root.path,
                                       "--only", "directories"])
        #expect(r.status == 0, "hs-provision apply \(host): \(r.stdout)\n\(r.stderr)")
        return root
    }

    @Test func everyAppdataBindSourceExistsWithTheRightOwner() throws {
        let inv = try Inventory.load(path: Self.inventory)
        let puid = UInt32(try Self.common("PUID"))!, pgid = UInt32(try Self.common("PGID"))!
        let guests = inv.hosts.filter { $0.role == .guest && $0.stack != nil }
        #expect(Set(guests.compactMap(\.stack)) == ["io", "asteria", "apollo", "helios", "aeos", "hera", "atlas"])
        for guest in guests {
            let root = try provisionDirectories(guest.name)
            var checked = 0
            for s in try Self.render(guest.stack!) {
                for b in s.binds where b.source.hasPrefix("/opt/appdata/") {
                    let want: (UInt32, UInt32)
                    if let o = s.owner {
                        let parts = o.split(separator: ":").compactMap { UInt32($0) }
                        try #require(parts.count == 2, "\(guest.name)/\(s.name): x-appdata-owner '\(o)' is not UID:GID")
                        want = (parts[0], parts[1])
                    } else {
                        want = (puid, pgid)
                    }
                    let got = ownerOf(root.path + b.source)
                    #expect(got != nil, "\(guest.name)/\(s.name): \(b.source) was not created by hs-provision")
                    if let got { #expect(got.uid == want.0 && got.gid == want.1, "\(guest.name)/\(s.name): \(b.source) owned \(got.uid):\(got.gid), want \(want.0):\(want.1)") }
                    // Every parent up to /opt/appdata too (Docker would create missing ones as root).
                    var parent = (b.source as NSString).deletingLastPathComponent
                    while parent.count > "/opt/appdata".count {
                        #expect(ownerOf(root.path + parent)?.uid == want.0, "\(guest.name): parent \(parent) of \(b.source)")
                        parent = (parent as NSString).deletingLastPathComponent
                    }
                    checked += 1
                }
            }
            #expect(checked > 0, "\(guest.name): no appdata bind mounts checked")
        }
    }

    /// Every stack that bind-mounts /mnt/storage runs on a guest that gets it: an LXC guest's
    /// config gets the mount point from the Proxmox host's apply; a VM guest mounts it itself.
    @Test func everyStackMountingStorageRunsOnAGuestWithStorage() throws {
        let inv = try Inventory.load(path: Self.inventory)
        let host = try TempDir("hs-prov-pve")
        try FileManager.default.createDirectory(atPath: host.sub("etc/pve/lxc"), withIntermediateDirectories: true)
        for g in inv.lxcGuests(of: "pve") {
            try "arch: amd64\nhostname: \(g.name)\nrootfs: local-lvm:vm-\(g.vmid!)-disk-0,size=8G\nunprivileged: 1\n"
                .write(toFile: host.sub("etc/pve/lxc/\(g.vmid!).conf"), atomically: true, encoding: .utf8)
        }
        try "".write(toFile: host.sub("etc/fstab"), atomically: true, encoding: .utf8)
        try "".write(toFile: host.sub("etc/subuid"), atomically: true, encoding: .utf8)
        try "".write(toFile: host.sub("etc/subgid"), atomically: true, encoding: .utf8)
        let r = try Fixture.provision(["apply", "--inventory", Self.inventory, "--host", "pve", "--root", host.path])
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        var mounting: [String] = []
        for g in inv.hosts where g.role == .guest {
            guard let stack = g.stack else { continue }
            let mounts = try Self.render(stack).contains { s in s.binds.contains { $0.source == "/mnt/storage" || $0.source.hasPrefix("/mnt/storage/") } }
            guard mounts else { continue }
            mounting.append(stack)
            if g.kind == .lxc {
                let conf = Fixture.text(host.sub("etc/pve/lxc/\(g.vmid!).conf"))
                #expect(conf.contains("mp0: /mnt/storage,mp=/mnt/storage\n"), "\(g.name) runs \(stack), which mounts /mnt/storage, but its LXC config has no mount point:\n\(conf)")
                #expect(conf.contains("lxc.idmap: u 1000 1000 1"), "\(g.name): PUID idmap for the storage mount")
            } else {
                let guest = try TempDir("hs-prov-\(g.name)")
                let p = try Fixture.provision(["plan", "--inventory", Self.inventory, "--host", g.name, "--root", guest.path,
                                               "--only", "storage-mount", "--templates", Fixture.templates])
                #expect(p.status == 0 && p.stdout.contains("/mnt/storage nfs"), "\(g.name) (VM) must mount /mnt/storage itself: \(p.stdout) \(p.stderr)")
            }
        }
        #expect(Set(mounting) == ["io", "asteria", "apollo", "aeos"])
    }

    // MARK: the real engine

    /// Imports a one-binary image: /bin/busybox (static).
    func importBusybox(tag: String, dir: TempDir) throws {
        let file = try Subprocess.run(["file", "-L", "/bin/busybox"])
        try #require(!file.stdout.contains("dynamically linked"), "busybox-static is needed (scripts/bootstrap.sh installs it)")
        let rootfs = dir.sub("rootfs")
        try FileManager.default.createDirectory(atPath: rootfs + "/bin", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "/bin/busybox", toPath: rootfs + "/bin/busybox")
        try FileManager.default.createSymbolicLink(atPath: rootfs + "/bin/sh", withDestinationPath: "busybox")
        try Subprocess.checked(["tar", "-C", rootfs, "-cf", dir.sub("rootfs.tar"), "."])
        try Subprocess.checked(["docker", "import", dir.sub("rootfs.tar"), tag])
    }

    /// For every service of every stack: a container running as PUID:PGID (or the service's
    /// own `user:` / `x-appdata-owner`) with the service's appdata binds creates a file and a
    /// directory in each, against the directories hs-provision made. No Permission denied.
    @Test func servicesStartAsPUIDAgainstProvisionedDirectories() throws {
        let info = try Subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"])
        try #require(info.succeeded, "dockerd must be running (scripts/services.sh starts it): \(info.stderr)")
        let dir = try TempDir("hs-prov-docker")
        let tag = "hs-test-busybox:prov\(String(UUID().uuidString.prefix(8)).lowercased())"
        try importBusybox(tag: tag, dir: dir)
        defer { _ = try? Subprocess.run(["docker", "rmi", "-f", tag]) }
        let puid = try Self.common("PUID"), pgid = try Self.common("PGID")
        let inv = try Inventory.load(path: Self.inventory)
        var started = 0
        var failures: [String] = []
        for guest in inv.hosts where guest.role == .guest && guest.stack != nil {
            let root = try provisionDirectories(guest.name)
            for s in try Self.render(guest.stack!) {
                let appdata = s.binds.filter { $0.source.hasPrefix("/opt/appdata/") && !$0.readOnly }
                guard !appdata.isEmpty else { continue }
                let user = s.owner ?? s.user ?? "\(puid):\(pgid)"
                var args = ["docker", "run", "--rm", "--user", user]
                for b in appdata { args += ["-v", "\(root.path + b.source):\(b.target)"] }
                let script = appdata.map { "touch '\($0.target)/.hs-probe' && mkdir -p '\($0.target)/.hs-probe-dir' && rm -r '\($0.target)/.hs-probe' '\($0.target)/.hs-probe-dir'" }
                    .joined(separator: " && ")
                args += [tag, "/bin/sh", "-c", script]
                let r = try Subprocess.run(args)
                started += 1
                if !r.succeeded { failures.append("\(guest.name)/\(s.name) as \(user): \(r.stderr.trimmingCharacters(in: .whitespacesAndNewlines))") }
            }
        }
        #expect(failures.isEmpty, "containers could not write their appdata:\n\(failures.joined(separator: "\n"))")
        #expect(started >= 30, "only \(started) services started")
    }
}

/// Reads one value from a dotenv template (the provisioning tests do not link the Stacks module).
enum EnvFileLines {
    static func value(_ key: String, in path: String) throws -> String? {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        for line in text.split(separator: "\n") where line.hasPrefix(key + "=") {
            return String(line.dropFirst(key.count + 1)).trimmingCharacters(in: .whitespaces)
        }
        return nil
    }
}
