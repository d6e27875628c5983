// The package as Debian expects it: units (checked by systemd-analyze verify inside a fresh
// debootstrap root after the .deb is installed), the conffile, man pages, completions,
// copyright and changelog, lintian without errors, and the installed tools reading
// /etc/default/home-server-tools.
import Foundation
import Support
import Testing
import TestSupport

@Suite("Debian-native package: units, conffile, man pages, completions, lintian", .serialized)
struct DebianNativeTests {
    static let timers = ["hs-backup", "hs-backup-verify", "hs-backup-prune", "hs-backup-copy", "hs-deploy-check", "hs-deploy-pull"]
    static let services = timers + ["hs-save-env", "hs-backup@", "hs-notify-failure@"]

    @Test(.timeLimit(.minutes(45))) func lintianReportsNoError() throws {
        let built = try ReleasePackage.built()
        let r = try Subprocess.run(["lintian", "--fail-on", "error", "--tag-display-limit", "0", built.deb])
        let errors = r.stdout.split(separator: "\n").filter { $0.hasPrefix("E: ") }
        #expect(r.succeeded && errors.isEmpty, "lintian exit \(r.status):\n\(r.stdout)\(r.stderr)")
        // hs-provision asks dpkg-query instead of reading dpkg's database (policy 2.5).
        #expect(!r.stdout.contains("uses-dpkg-database-directly"), "\(r.stdout)")
    }

    @Test(.timeLimit(.minutes(45))) func installedIntoFreshDebianTheUnitsVerifyAndTheFilesAreWhereDebianPutsThem() throws {
        let built = try ReleasePackage.built()
        let debian = try DebianRoot(prefix: "hs-debian-native")
        defer { debian.close() }
        let root = debian.root
        let debName = (built.deb as NSString).lastPathComponent
        try Subprocess.checked(["install", "-D", "-m", "0644", built.deb, root + "/tmp/" + debName])
        try debian.checked(["apt-get", "update", "-qq"])
        let install = try debian.run(["apt-get", "install", "-y", "-q", "/tmp/" + debName, "systemd", "man-db"],
                                     environment: ["DEBIAN_FRONTEND": "noninteractive"])
        try #require(install.succeeded, "apt-get install:\n\(install.stdout.suffix(3000))\n\(install.stderr.suffix(3000))")

        // Units: present, and systemd-analyze verify (systemd 252 of the root) finds nothing.
        var units: [String] = []
        for t in Self.timers { units.append("/lib/systemd/system/\(t).timer") }
        for s in Self.services { units.append("/lib/systemd/system/\(s).service") }
        units.append("/lib/systemd/system/hs-backup@.timer")
        for u in units { #expect(FileManager.default.fileExists(atPath: root + u), "\(u) missing") }
        // Templates are verified as instances.
        let verifiable = units.filter { !$0.contains("@.") } + ["hs-backup@media.service", "hs-backup@media.timer",
                                                                "hs-notify-failure@hs-backup.service.service"]
        let verify = try debian.run(["systemd-analyze", "verify"] + verifiable)
        #expect(verify.succeeded && verify.stderr.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty,
                "systemd-analyze verify: exit \(verify.status)\n\(verify.stdout)\(verify.stderr)")
        // Installed disabled.
        for t in Self.timers {
            let enabled = try debian.run(["systemctl", "is-enabled", "\(t).timer"])
            #expect(enabled.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "disabled", "\(t).timer: \(enabled.stdout)")
        }

        // The conffile: 0600, registered with dpkg, every key commented out.
        var st = stat()
        #expect(stat(root + "/etc/default/home-server-tools", &st) == 0 && st.st_mode & 0o777 == 0o600)
        let conffiles = try String(contentsOfFile: root + "/var/lib/dpkg/info/home-server-tools.conffiles", encoding: .utf8)
        #expect(conffiles.contains("/etc/default/home-server-tools"))
        #expect(stat(root + "/var/lib/home-server-tools", &st) == 0 && st.st_mode & 0o777 == 0o700)

        // Man pages and completions, where Debian puts them.
        for t in PackageTests.tools {
            #expect(FileManager.default.fileExists(atPath: root + "/usr/share/man/man1/\(t).1.gz"), "\(t).1.gz")
            #expect(FileManager.default.fileExists(atPath: root + "/usr/share/bash-completion/completions/\(t)"), "bash \(t)")
            #expect(FileManager.default.fileExists(atPath: root + "/usr/share/zsh/vendor-completions/_\(t)"), "zsh \(t)")
            #expect(FileManager.default.fileExists(atPath: root + "/usr/share/fish/vendor_completions.d/\(t).fish"), "fish \(t)")
            let page = try Subprocess.run(["sh", "-c", "zcat \(root)/usr/share/man/man1/\(t).1.gz | groff -man -Tutf8 -ww -z 2>&1"])
            #expect(page.stdout.isEmpty, "groff warnings in \(t).1: \(page.stdout)")
            let bash = try Subprocess.run(["bash", "-n", root + "/usr/share/bash-completion/completions/\(t)"])
            #expect(bash.succeeded, "bash -n \(t): \(bash.stderr)")
        }
        let seven = try Subprocess.run(["sh", "-c", "zcat \(root)/usr/share/man/man7/home-server-tools.7.gz | groff -man -Tutf8 2>/dev/null"])
        #expect(seven.stdout.contains("HS_BACKUP_DEST"), "home-server-tools(7) lacks docs/configuration.md")
        let sevenSource = try Subprocess.run(["sh", "-c", "zcat \(root)/usr/share/man/man7/home-server-tools.7.gz"])
        #expect(sevenSource.stdout.contains("Persistent=true") && sevenSource.stdout.contains(".SH Scheduling"),
                "home-server-tools(7) lacks docs/scheduling.md")
        let manual = try Subprocess.run(["sh", "-c", "zcat \(root)/usr/share/man/man1/hs-backup.1.gz"])
        #expect(manual.stdout.contains("--keep-within") && manual.stdout.contains("--healthchecks"), "hs-backup.1 lacks the subcommands' options")
        #expect(FileManager.default.fileExists(atPath: root + "/usr/share/doc/home-server-tools/copyright"))
        let changelog = try Subprocess.run(["sh", "-c", "zcat \(root)/usr/share/doc/home-server-tools/changelog.gz | head -1"])
        #expect(changelog.stdout.hasPrefix("home-server-tools (\(homeServerVersion)) "), "\(changelog.stdout)")

        // The installed tools read /etc/default/home-server-tools: a backup with no flags.
        try PackageTests.makeTree(root + "/srv/appdata")
        try "HS_BACKUP_DEST=/srv/backups\nHS_APPDATA=/srv/appdata\nHS_BACKUP_NAME=io\n"
            .write(toFile: root + "/etc/default/home-server-tools", atomically: false, encoding: .utf8)
        let run = try debian.run(["hs-backup", "run", "-q"])
        #expect(run.succeeded, "hs-backup run with the conffile only: \(run.stdout)\(run.stderr)")
        #expect(FileManager.default.fileExists(atPath: root + "/srv/backups/io"))
        let config = try debian.run(["hs-backup", "config"])
        #expect(config.stdout.contains("/etc/default/home-server-tools (the default; read)"), "\(config.stdout)")

        try provisionedTimersAreEnabledByTheRootsSystemctl(debian)
    }

    /// The installed hs-provision, run inside the root as Ansible runs it (steps tools-config
    /// and timers), with the root's own systemctl: the timers the host needs get enabled,
    /// the crontab lines of the same jobs are flagged, and `schedule: cron` undoes both.
    func provisionedTimersAreEnabledByTheRootsSystemctl(_ debian: DebianRoot) throws {
        let root = debian.root
        try FileManager.default.createDirectory(atPath: root + "/etc/home-server/stacks/hera", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: root + "/etc/home-server/provisioning", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: ReleasePackage.repoRoot + "/stacks/hera/docker-compose.yml",
                                         toPath: root + "/etc/home-server/stacks/hera/docker-compose.yml")
        let inventory = "/etc/home-server/provisioning/inventory.yml"
        func writeInventory(_ extra: String) throws {
            try """
                truenas: {server: truenas, media_export: /mnt/tank/media}
                hosts:
                  pve: {role: proxmox}
                  io: {role: guest, kind: lxc, vmid: 101, proxmox: pve, stack: hera, tailscale: false\(extra)}

                """.write(toFile: root + inventory, atomically: true, encoding: .utf8)
        }
        try writeInventory("")
        try FileManager.default.createDirectory(atPath: root + "/opt/stacks/home-server/common", withIntermediateDirectories: true)
        try "PUID=1000\nHS_BACKUP_DEST=/srv/backups\nHS_NTFY_URL=https://ntfy.example.net/SECRET-TOPIC\n"
            .write(toFile: root + "/opt/stacks/home-server/common/.env", atomically: true, encoding: .utf8)
        let crontab = "MAILTO=root\n30 2 * * * hs-deploy --check -q\n0 3 * * * hs-backup run -q\n0 5 * * 0 hs-backup verify -q\n15 1 * * * certbot renew\n"
        try FileManager.default.createDirectory(atPath: root + "/var/spool/cron/crontabs", withIntermediateDirectories: true)
        try Subprocess.checked(["install", "-m", "0600", "/dev/null", root + "/var/spool/cron/crontabs/root"])
        try crontab.write(toFile: root + "/var/spool/cron/crontabs/root", atomically: false, encoding: .utf8)
        func text(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
        let apply = ["hs-provision", "apply", "--inventory", inventory, "--host", "io", "--only", "tools-config", "--only", "timers"]
        func enabled(_ timer: String) throws -> String {
            try debian.run(["systemctl", "is-enabled", timer]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }

        let first = try debian.run(apply)
        #expect(first.succeeded && first.stdout.hasSuffix("ok=0 changed=2 failed=0\n"), "\(first.stdout)\(first.stderr)")
        #expect(!(first.stdout + first.stderr).contains("SECRET-TOPIC"))
        for t in ["hs-backup", "hs-backup-verify", "hs-backup-prune", "hs-deploy-check", "hs-deploy-pull"] {
            #expect(try enabled("\(t).timer") == "enabled", "\(t).timer")
        }
        #expect(try enabled("hs-backup-copy.timer") == "disabled", "no HS_COPY_DEST: the copy timer stays off")
        let flagged = text(root + "/var/spool/cron/crontabs/root")
        #expect(flagged == "MAILTO=root\n#[hs-provision: hs-deploy-check.timer runs this] 30 2 * * * hs-deploy --check -q\n"
                + "#[hs-provision: hs-backup.timer runs this] 0 3 * * * hs-backup run -q\n"
                + "#[hs-provision: hs-backup-verify.timer runs this] 0 5 * * 0 hs-backup verify -q\n15 1 * * * certbot renew\n", "\(flagged)")
        var st = stat()
        #expect(stat(root + "/etc/default/home-server-tools", &st) == 0 && st.st_mode & 0o777 == 0o600)
        #expect(text(root + "/etc/default/home-server-tools").contains("\nHS_BACKUP_NAME=io\n"))
        let config = try debian.run(["hs-backup", "config"])
        #expect(config.stdout.contains("/srv/backups") && !config.stdout.contains("SECRET-TOPIC"), "\(config.stdout)")

        let second = try debian.run(apply)
        #expect(second.succeeded && second.stdout.hasSuffix("ok=2 changed=0 failed=0\n"), "\(second.stdout)\(second.stderr)")

        try writeInventory(", schedule: cron")
        let cron = try debian.run(apply)
        #expect(cron.succeeded, "\(cron.stdout)\(cron.stderr)")
        for t in Self.timers { #expect(try enabled("\(t).timer") == "disabled", "\(t).timer") }
        #expect(text(root + "/var/spool/cron/crontabs/root") == crontab)
    }
}
