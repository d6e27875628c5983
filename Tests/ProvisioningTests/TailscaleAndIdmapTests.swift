import Foundation
import Testing
@testable import Provisioning
import Support
import TestSupport

/// Tailscale's command line comes from the inventory (tags, SSH only on request, DNS the way
/// an LXC expects), the auth key file is removed after a successful enrolment only, and an
/// idmap added to an existing container says what will be re-owned and how.
@Suite struct TailscaleAndIdmapTests {
    static func inventory(_ extraDefaults: String = "", io: String = "", apollo: String = "") -> String {
        """
        truenas: {server: truenas, media_export: /mnt/tank/media}
        defaults: {puid: 1000, pgid: 1000, tailscale_authkey_file: /root/ts.key\(extraDefaults)}
        hosts:
          pve: {role: proxmox}
          io: {role: guest, kind: lxc, vmid: 101, proxmox: pve, stack: io\(io)}
          apollo: {role: guest, kind: vm, vmid: 103, proxmox: pve, stack: apollo\(apollo)}

        """
    }

    func context(_ yaml: String, host: String) throws -> ProvisionContext {
        let inv = try Inventory.parse(yaml, path: "inv.yml").resolvingStacks(stacksDir: Fixture.repoRoot + "/stacks")
        return ProvisionContext(inventory: inv, host: inv.host(host)!, templatesDir: Fixture.templates,
                                stacksDir: Fixture.repoRoot + "/stacks", usePct: false, probe: ["hs-linkcheck", "--require-mount"])
    }

    func commands(_ c: ProvisionContext, step name: String, root: String) throws -> [[String]] {
        let step = try #require(Steps.forHost(c).first { $0.name == name })
        return try step.plan(Machine(mode: .root(root))).actions.compactMap { a -> [String]? in
            if case .command(let c) = a { return c } else { return nil }
        }
    }

    @Test func tagsFromTheInventoryNoSSHByDefaultNoDNSInLXC() throws {
        let root = try TempDir("hs-ts")
        let c = try context(Self.inventory(", tailscale_tags: [tag:server, tag:media]"), host: "io")
        let cmds = try commands(c, step: "tailscale", root: root.path)
        let up = try #require(cmds.first { $0.starts(with: ["tailscale", "up"]) })
        #expect(up.contains("--advertise-tags=tag:server,tag:media"))
        #expect(!up.contains { $0.hasPrefix("--ssh") }, "Tailscale SSH only when the inventory asks: \(up)")
        #expect(up.contains("--accept-dns=false"), "LXC: Proxmox manages resolv.conf: \(up)")
        #expect(up.contains("--auth-key=file:/root/ts.key") && up.contains("--hostname=io"))
        // The key file is removed right after the enrolment (a failed `up` stops the step first).
        let i = try #require(cmds.firstIndex(of: up))
        #expect(cmds.dropFirst(i + 1).first == ["rm", "-f", "/root/ts.key"])
    }

    @Test func sshAndDNSOnRequestPerHost() throws {
        let root = try TempDir("hs-ts")
        let c = try context(Self.inventory(", tailscale_tags: [tag:server]", apollo: ", tailscale_ssh: true, tailscale_tags: [tag:media]"), host: "apollo")
        let up = try #require(try commands(c, step: "tailscale", root: root.path).first { $0.starts(with: ["tailscale", "up"]) })
        #expect(up.contains("--ssh"))
        #expect(up.contains("--advertise-tags=tag:media"), "host tags replace the defaults: \(up)")
        #expect(up.contains("--accept-dns=true"), "a VM manages its own resolv.conf: \(up)")
    }

    @Test func badTagIsAnInventoryError() {
        do {
            _ = try Inventory.parse(Self.inventory(", tailscale_tags: [server]"), path: "inv.yml")
            Issue.record("accepted a tag without the tag: prefix")
        } catch {
            #expect("\(error)".contains("tailscale_tags") && "\(error)".contains("tag:"))
        }
    }

    /// A throwaway root with a static busybox and a fake `tailscale` that records its
    /// arguments; `up` fails when /fail-up exists. Real chroot, real commands.
    func chrootWithFakeTailscale() throws -> TempDir {
        let root = try TempDir("hs-ts-chroot")
        let fm = FileManager.default
        for d in ["bin", "usr/bin", "root", "var/lib/dpkg", "etc", "tmp"] {
            try fm.createDirectory(atPath: root.sub(d), withIntermediateDirectories: true)
        }
        let file = try Subprocess.run(["file", "-L", "/bin/busybox"])
        try #require(!file.stdout.contains("dynamically linked"), "busybox-static is needed (scripts/bootstrap.sh installs it)")
        // Executables are written by child processes (as GuestTests does): a write fd of this
        // process could leak into a child that another test spawns concurrently, and exec of the
        // file would then fail with ETXTBSY ("Text file busy", seen once in CI on 6b466e4).
        try Subprocess.checked(["cp", "/bin/busybox", root.sub("bin/busybox")])
        for tool in ["sh", "rm", "cat", "echo", "test", "["] {
            try fm.createSymbolicLink(atPath: root.sub("bin/\(tool)"), withDestinationPath: "busybox")
        }
        try "Package: tailscale\nStatus: install ok installed\nVersion: 1.0\n\n".write(toFile: root.sub("var/lib/dpkg/status"), atomically: true, encoding: .utf8)
        try "ID=debian\nVERSION_CODENAME=bookworm\n".write(toFile: root.sub("etc/os-release"), atomically: true, encoding: .utf8)
        let fake = """
            #!/bin/sh
            case "$1" in
              status) if [ -f /tmp/enrolled ]; then echo '{"BackendState":"Running","TUN":true,"Self":{"HostName":"io"}}'; else echo '{"BackendState":"NeedsLogin"}'; fi ;;
              up) echo "$@" > /tmp/up-args; if [ -f /fail-up ]; then echo "backend error: invalid key" >&2; exit 1; fi; : > /tmp/enrolled ;;
              *) exit 0 ;;
            esac

            """
        try Subprocess.checked(["sh", "-c", "cat > \"$1\" && chmod 0755 \"$1\"", "sh", root.sub("usr/bin/tailscale")],
                               input: Data(fake.utf8))
        try "tskey-auth-secret\n".write(toFile: root.sub("root/ts.key"), atomically: true, encoding: .utf8)
        return root
    }

    func writeInventory(_ dir: TempDir, _ yaml: String) throws -> String {
        let p = dir.sub("inv.yml")
        try yaml.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    @Test func keyFileRemovedAfterSuccessfulEnrolmentOnly() throws {
        let work = try TempDir("hs-ts-inv")
        let inv = try writeInventory(work, Self.inventory(", tailscale_tags: [tag:server]"))
        let args = ["apply", "--inventory", inv, "--host", "io", "--only", "tailscale", "--templates", Fixture.templates]

        // `up` fails: the step fails and the key stays for the next try.
        let failing = try chrootWithFakeTailscale()
        try "".write(toFile: failing.sub("fail-up"), atomically: true, encoding: .utf8)
        let bad = try Fixture.provision(args + ["--chroot", failing.path])
        #expect(bad.status == 1, "\(bad.stdout)\n\(bad.stderr)")
        #expect(FileManager.default.fileExists(atPath: failing.sub("root/ts.key")), "key removed although enrolment failed")

        // `up` succeeds: enrolled with the inventory's flags, the key is gone.
        let ok = try chrootWithFakeTailscale()
        let good = try Fixture.provision(args + ["--chroot", ok.path])
        #expect(good.status == 0, "\(good.stdout)\n\(good.stderr)")
        let upArgs = Fixture.text(ok.sub("tmp/up-args"))
        #expect(upArgs.contains("--advertise-tags=tag:server") && upArgs.contains("--accept-dns=false") && !upArgs.contains("--ssh"), "\(upArgs)")
        #expect(!FileManager.default.fileExists(atPath: ok.sub("root/ts.key")), "auth key file left on the guest")
        #expect(!good.stdout.contains("tskey-auth-secret") && !good.stderr.contains("tskey-auth-secret"))
        // A second apply: running under its name, nothing to do, no key needed.
        let again = try Fixture.provision(args + ["--chroot", ok.path])
        #expect(again.status == 0 && again.stdout.contains("changed=0"), "\(again.stdout)\n\(again.stderr)")
    }

    @Test func idmapOnAnExistingContainerSaysWhatIsReownedAndHow() throws {
        let root = try TempDir("hs-idmap")
        try FileManager.default.createDirectory(atPath: root.sub("etc/pve/lxc"), withIntermediateDirectories: true)
        try "arch: amd64\nhostname: io\nrootfs: local-lvm:vm-101-disk-0,size=8G\nunprivileged: 1\n"
            .write(toFile: root.sub("etc/pve/lxc/101.conf"), atomically: true, encoding: .utf8)
        let c = try context(Self.inventory(), host: "pve")
        let step = try #require(Steps.forHost(c).first { $0.name == "lxc:io" })
        let plan = try step.plan(Machine(mode: .root(root.path)))
        let note = plan.notes.joined(separator: "\n")
        // What changes: uid/gid 1000 inside now map to host 1000, not 101000.
        #expect(note.contains("uid 1000") && note.contains("101000") && note.contains("gid 1000"), "\(note)")
        #expect(note.contains("nobody"), "\(note)")
        // Exactly the command that re-owns the container's own files, with the container stopped.
        #expect(note.contains("pct stop 101"), "\(note)")
        #expect(note.contains("pct mount 101"), "\(note)")
        #expect(note.contains("find /var/lib/lxc/101/rootfs -xdev -uid 101000 -exec chown -h 1000 {} +"), "\(note)")
        #expect(note.contains("find /var/lib/lxc/101/rootfs -xdev -gid 101000 -exec chgrp -h 1000 {} +"), "\(note)")
        #expect(note.contains("pct unmount 101 && pct start 101"), "\(note)")

        // Once the idmap is in place, no warning.
        let merged = try #require(plan.actions.compactMap { a -> String? in if case .writeFile(_, _, let n) = a { return n } else { return nil } }.first)
        try merged.write(toFile: root.sub("etc/pve/lxc/101.conf"), atomically: true, encoding: .utf8)
        let again = try step.plan(Machine(mode: .root(root.path)))
        #expect(!again.notes.joined().contains("chown"), "\(again.notes)")
    }

    // MARK: inventory fields

    @Test func unknownStackIsAnErrorListingTheStacks() throws {
        let work = try TempDir("hs-inv")
        let inv = try writeInventory(work, Self.inventory().replacingOccurrences(of: "stack: io", with: "stack: iio"))
        let r = try Fixture.provision(["plan", "--inventory", inv, "--host", "io", "--root", work.path, "--templates", Fixture.templates])
        #expect(r.status == 2, "\(r.stdout)\n\(r.stderr)")
        #expect(r.stderr.contains("host 'io'") && r.stderr.contains("'iio'"))
        #expect(r.stderr.contains("aeos, apollo, asteria, atlas, helios, hera, io"), "\(r.stderr)")
    }

    @Test func removedFieldsSayWhereTheValueLivesNow() {
        for (field, hint) in [("tz: Europe/Berlin", "TZ in common/.env"), ("backup_export: /mnt/tank/backups", "HS_BACKUP_DEST")] {
            let yaml = field.hasPrefix("tz")
                ? Self.inventory(", " + field)
                : Self.inventory().replacingOccurrences(of: "media_export: /mnt/tank/media", with: "media_export: /mnt/tank/media, " + field)
            do {
                _ = try Inventory.parse(yaml, path: "inv.yml")
                Issue.record("\(field) accepted but never used")
            } catch {
                #expect("\(error)".contains(hint), "\(error)")
            }
        }
    }

    @Test func puidMustMatchCommonEnv() throws {
        let repo = try TempDir("hs-ids")
        try Subprocess.checked(["cp", "-r", Fixture.repoRoot + "/stacks", repo.path + "/"])
        try FileManager.default.createDirectory(atPath: repo.sub("common"), withIntermediateDirectories: true)
        let inv = try Inventory.parse(Self.inventory(), path: "inv.yml")
        try "PUID=1000\nPGID=1000\n".write(toFile: repo.sub("common/.env"), atomically: true, encoding: .utf8)
        _ = try inv.resolvingStacks(stacksDir: repo.sub("stacks"))
        try "PUID=1001\nPGID=1000\n".write(toFile: repo.sub("common/.env"), atomically: true, encoding: .utf8)
        do {
            _ = try inv.resolvingStacks(stacksDir: repo.sub("stacks"))
            Issue.record("puid 1000 accepted with PUID=1001 in common/.env")
        } catch {
            #expect("\(error)".contains("'puid' is 1000") && "\(error)".contains("PUID=1001"), "\(error)")
        }
    }

    @Test func storageAndTunAreDerivedFromTheComposeFiles() throws {
        let work = try TempDir("hs-inv")
        // aeos (FileBrowser mounts /mnt/storage) declared without storage: contradiction.
        let inv = try writeInventory(work, Self.inventory() + "  aeos: {role: guest, kind: lxc, vmid: 105, proxmox: pve, stack: aeos, storage: false}\n")
        let r = try Fixture.provision(["plan", "--inventory", inv, "--host", "aeos", "--root", work.path, "--templates", Fixture.templates])
        #expect(r.status == 2, "\(r.stdout)\n\(r.stderr)")
        #expect(r.stderr.contains("storage") && r.stderr.contains("filebrowser") && r.stderr.contains("stacks/aeos/docker-compose.yml"), "\(r.stderr)")
        // Without the field: derived (io needs storage and TUN for Gluetun).
        let ok = try writeInventory(work, Self.inventory())
        let (ctx, _) = try Provisioner.prepare(ProvisionRequest(inventoryPath: ok, hostName: "pve", mode: .root(work.path),
                                                                 apply: false, templatesDir: Fixture.templates))
        let io = try #require(ctx.inventory.host("io"))
        #expect(io.storage && io.tun)
        #expect(ctx.inventory.host("apollo")?.storage == true)
    }
}
