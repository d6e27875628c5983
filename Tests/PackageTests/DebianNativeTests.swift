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
    }
}
