import Foundation
import Testing
@testable import Provisioning
import Support
import TestSupport

/// `ansible-playbook provisioning/site.yml` for real, against a fresh debootstrap Debian 12
/// root reached with Ansible's `community.general.chroot` connection (the root has no Swift
/// toolchain and, at first, no python3). The inventory comes from
/// `provisioning/ansible/inventory.sh` (`hs-provision inventory --ansible`); one guest,
/// `testguest`, with `ansible: {connection: community.general.chroot, host: <root>}`.
///
/// What runs: the guests play of site.yml: python3 + python3-apt (raw apt-get), the package
/// (TestSupport's `ReleasePackage`: scripts/package.sh, once per test run, or HS_PACKAGE_DEB)
/// copied and installed with Ansible's apt module, the inventory and templates copied to
/// /etc/home-server/, and `hs-provision apply --host testguest` inside the root.
/// What is skipped, and how:
/// - the Proxmox play (there is no Proxmox here): `--limit guests`;
/// - hs-provision steps docker-repo, docker, docker-service, docker-group (Docker's repository
///   and a running systemd), by `hs_only: [packages, directories, tools-config, timers]`
///   (timers with `schedule: cron`: the minbase root has no systemd; DebianNativeTests runs
///   the timers step against a root with systemd);
/// - tailscale-repo, tailscale (the internet, an auth key): inventory `tailscale: false`;
/// - repo (the internet): no `defaults.repo` in the inventory.
/// The packages step still runs apt for real (ca-certificates, curl, git from the Debian mirror).
/// Fails, never skips, when ansible-playbook, debootstrap or the mirror is missing.
@Suite struct AnsibleFleetTests {
    @Test(.timeLimit(.minutes(30))) func sitePlaybookBringsUpAGuestInADebianChroot() throws {
        let playbook = try #require(Subprocess.which("ansible-playbook"), "ansible is not installed: apt-get install ansible (scripts/bootstrap.sh)")
        let deb = try ReleasePackage.built().deb
        let debian = try DebianRoot(prefix: "hs-ansible-chroot")
        defer { debian.close() }
        let root = debian.root
        #expect(!FileManager.default.fileExists(atPath: root + "/usr/bin/python3"), "the fresh root must not have python3 yet")

        let inventory = debian.workPath + "/inventory.yml"
        try """
            truenas: {server: truenas, media_export: /mnt/tank/media}
            defaults: {puid: 1000, pgid: 1000, docker_source: debian}
            hosts:
              pve: {role: proxmox}
              testguest: {role: guest, kind: lxc, vmid: 900, proxmox: pve, stack: hera, tailscale: false, schedule: cron,
                          ansible: {connection: community.general.chroot, host: "\(root)"}}

            """.write(toFile: inventory, atomically: true, encoding: .utf8)
        let ansibleHome = debian.workPath + "/ansible-home"
        let env = ["HS_PROVISION": Tools.path("hs-provision"), "HS_INVENTORY": inventory,
                   "ANSIBLE_HOME": ansibleHome, "ANSIBLE_LOCAL_TEMP": ansibleHome + "/tmp",
                   "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_RETRY_FILES_ENABLED": "0",
                   "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true"]
        let vars = "{\"hs_package\": \"\(deb)\", \"hs_only\": [\"packages\", \"directories\", \"tools-config\", \"timers\"]}"
        let argv = [playbook, "-i", Fixture.repoRoot + "/provisioning/ansible/inventory.sh",
                    Fixture.repoRoot + "/provisioning/site.yml", "--limit", "guests", "-e", vars]
        func recap(_ out: String) -> String {
            out.split(separator: "\n").last { $0.hasPrefix("testguest ") }.map(String.init) ?? "(no recap for testguest)"
        }

        // 1. First run: everything is installed and hs-provision applies.
        let first = try Subprocess.run(argv, environment: env, directory: debian.workPath)
        #expect(first.status == 0, "ansible-playbook failed:\n\(first.stdout.suffix(6000))\n\(first.stderr.suffix(2000))")
        #expect(recap(first.stdout).contains("failed=0") && recap(first.stdout).contains("unreachable=0"), "\(recap(first.stdout))")
        let proxmoxPlay = first.stdout.components(separatedBy: "PLAY [Proxmox hosts").dropFirst().first ?? ""
        #expect(proxmoxPlay.components(separatedBy: "PLAY [").first?.contains("skipping: no hosts matched") == true,
                "the Proxmox play is skipped by --limit guests:\n\(first.stdout.prefix(3000))")

        // The package is installed in the root by apt, and its hs-provision runs there.
        let status = Fixture.text(root + "/var/lib/dpkg/status")
        #expect(DpkgStatus.installed(in: status).contains("home-server-tools"))
        let version = try Subprocess.run(["chroot", root, "hs-provision", "--version"])
        #expect(version.succeeded && version.stdout.contains(homeServerVersion), "\(version.stdout) \(version.stderr)")
        #expect(!FileManager.default.fileExists(atPath: root + "/opt/swift") && !FileManager.default.fileExists(atPath: root + "/usr/bin/swift"),
                "the root has no Swift toolchain")
        // hs-provision apply --host testguest ran: its packages and directories exist.
        #expect(DpkgStatus.installed(in: status).isSuperset(of: ["ca-certificates", "curl", "git", "python3", "python3-apt"]))
        for d in ["/opt/stacks", "/opt/appdata", "/opt/appdata/ntfy", "/opt/appdata/ntfy/cache", "/opt/appdata/ntfy/etc"] {
            var st = stat()
            #expect(stat(root + d, &st) == 0 && st.st_uid == 1000 && st.st_gid == 1000, "\(d)")
        }
        #expect(Fixture.text(root + "/etc/home-server/provisioning/inventory.yml") == Fixture.text(inventory))
        #expect(Fixture.text(root + "/etc/home-server/provisioning/fstab.template") == Fixture.text(Fixture.templates + "/fstab.template"))
        #expect(Fixture.text(root + "/etc/home-server/stacks/hera/docker-compose.yml") == Fixture.text(Fixture.repoRoot + "/stacks/hera/docker-compose.yml"))
        #expect(first.stdout.contains("ok=1 changed=3 failed=0"), "hs-provision's summary in the playbook output:\n\(first.stdout.suffix(4000))")
        // tools-config wrote the package's conffile (0600) from the inventory; timers, with
        // schedule: cron and no systemd in the root, enabled nothing.
        var conf = stat()
        #expect(stat(root + "/etc/default/home-server-tools", &conf) == 0 && conf.st_mode & 0o777 == 0o600)
        #expect(Fixture.text(root + "/etc/default/home-server-tools").contains("\nHS_BACKUP_NAME=testguest\n"))
        #expect(FileManager.default.fileExists(atPath: root + "/var/cache/home-server/" + (deb as NSString).lastPathComponent))

        // 2. Second run: nothing changes (package, files and hs-provision all report ok).
        let second = try Subprocess.run(argv, environment: env, directory: debian.workPath)
        #expect(second.status == 0, "\(second.stdout.suffix(4000))\n\(second.stderr.suffix(2000))")
        #expect(recap(second.stdout).contains("changed=0") && recap(second.stdout).contains("failed=0"), "\(recap(second.stdout))")
        #expect(second.stdout.contains("ok=4 changed=0 failed=0"), "\(second.stdout.suffix(4000))")
    }
}
