import Foundation
import Testing
@testable import Provisioning
import Support
import TestSupport

/// The `tools-config` and `timers` steps (ToolsConfig.swift, Timers.swift) against the
/// guest-root fixture in `--root` mode, and the crontab rules against the real crontab.example.
@Suite struct SchedulingTests {
    static let secrets = ["FIXTURE-NFS-PASSWORD", "FIXTURE-SECRET-TOPIC", "tk_FIXTURESECRETTOKEN", "FIXTURE-KUMA-TOKEN",
                          "FIXTURE-HAND-TOKEN", "FIXTURE-INLINE-TOKEN"]

    /// A guest-root sandbox with common/.env in the guest's checkout, and an inventory whose
    /// host `apollo` has the extra fields given.
    func sandbox(apollo extra: String = "", commonEnv: Bool = true) throws -> (root: TempDir, inventory: String) {
        let root = try Fixture.sandbox("guest-root")
        if commonEnv {
            try FileManager.default.createDirectory(atPath: root.sub("opt/stacks/home-server/common"), withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: Fixture.dir + "/apollo-common.env", toPath: root.sub("opt/stacks/home-server/common/.env"))
        }
        let inventory = root.sub("test-inventory.yml")
        try """
            truenas: {server: truenas.lan, media_export: /mnt/tank/media}
            defaults: {puid: 1000, pgid: 1000, docker_source: docker}
            hosts:
              pve:    {role: proxmox}
              apollo: {role: guest, kind: vm, vmid: 103, proxmox: pve, stack: apollo, storage: true, tailscale: false\(extra)}

            """.write(toFile: inventory, atomically: true, encoding: .utf8)
        return (root, inventory)
    }

    func run(_ action: String, _ s: (root: TempDir, inventory: String), _ more: [String] = []) throws -> ProcessResult {
        try Fixture.provision([action, "--inventory", s.inventory, "--host", "apollo", "--root", s.root.path,
                               "--templates", Fixture.templates, "--only", "tools-config", "--only", "timers"] + more)
    }

    func mode(_ path: String) -> mode_t {
        var st = stat()
        return stat(path, &st) == 0 ? st.st_mode & 0o7777 : 0
    }

    @Test func crontabExampleJobsMapToTheirTimersAndTheFlagsAreUndone() throws {
        let text = Fixture.text(Fixture.repoRoot + "/crontab.example")
        var timers: [String] = []
        for line in text.split(separator: "\n") {
            let t = line.trimmingCharacters(in: .whitespaces)
            if t.isEmpty || t.hasPrefix("#") || t.contains("=") && !t.contains(" ") { continue }
            if t.range(of: #"^[A-Z_]+="#, options: .regularExpression) != nil { continue }
            let job = try #require(CrontabEdits.job(of: line), "no job for crontab.example line: \(line)")
            timers.append(job.timer)
        }
        #expect(timers.sorted() == ["hs-backup-prune.timer", "hs-backup-verify.timer", "hs-backup.timer", "hs-backup.timer",
                                    "hs-deploy-check.timer", "hs-deploy-pull.timer"])
        let flagged = CrontabEdits.reconciled(text, enabled: Set(ScheduledJob.all.map(\.timer)))
        let active = flagged.split(separator: "\n").filter { !$0.hasPrefix("#") && CrontabEdits.job(of: $0) != nil }
        #expect(active.isEmpty, "still active: \(active)")
        #expect(flagged.components(separatedBy: "\n#[hs-provision: ").count - 1 == timers.count)
        #expect(CrontabEdits.reconciled(flagged, enabled: Set(ScheduledJob.all.map(\.timer))) == flagged, "flagging twice")
        #expect(CrontabEdits.reconciled(flagged, enabled: []) == text, "restoring gives the file back byte for byte")
        // Aliases and other spellings; lines that are not ours.
        #expect(CrontabEdits.job(of: "@daily /usr/bin/hs-backup backup -q")?.timer == "hs-backup.timer")
        #expect(CrontabEdits.job(of: "0 5 * * 0 hs-backup check; echo done")?.timer == "hs-backup-verify.timer")
        #expect(CrontabEdits.job(of: "0 6 1 * * root hs-backup forget --keep-daily 7")?.timer == "hs-backup-prune.timer")
        #expect(CrontabEdits.job(of: "0 2 * * * hs-deploy --save-env-to-appdata -q")?.timer == "hs-backup.timer")
        #expect(CrontabEdits.job(of: "0 2 * * * hs-backup list") == nil)
        #expect(CrontabEdits.job(of: "HS_KUMA_BACKUP=https://x/hs-backup run") == nil)
        #expect(CrontabEdits.job(of: "# 0 3 * * * hs-backup run") == nil)
    }

    /// crontab.example's per-host delay, run by sh as cron runs it (`\%` passed as `%`) with
    /// `hostname -s` answering each guest's name: within the job's window, the same every
    /// night, and the seven guests spread out.
    @Test func crontabExampleStaggersTheNASJobsPerHost() throws {
        let text = Fixture.text(Fixture.repoRoot + "/crontab.example")
        let bin = try TempDir("hs-cron-hostname")
        let hostname = bin.sub("hostname")
        // Written by a child process (see GuestTests): no write fd of this process can leak into a
        // child another test spawns, so exec of the script cannot fail with ETXTBSY.
        try Subprocess.checked(["sh", "-c", "cat > \"$1\" && chmod 0755 \"$1\"", "sh", hostname],
                               input: Data("#!/bin/sh\necho \"$FAKE_HOST\"\n".utf8))
        let hosts = ["io", "asteria", "apollo", "helios", "aeos", "hera", "atlas"]
        var staggered: [String: Int] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let job = CrontabEdits.job(of: line), job.timer != "hs-deploy-check.timer",
                  !line.contains("--save-env") else { continue }
            let m = try #require(line.firstMatch(of: #/sleep (\$\(\( .* \\% ([0-9]+) \)\)) && cd /#), "\(job.timer): no per-host delay in: \(line)")
            staggered[job.timer] = Int(m.2)!
            var delays: [Int] = []
            for h in hosts {
                let r = try Subprocess.run(["sh", "-c", "echo " + String(m.1).replacingOccurrences(of: "\\%", with: "%")],
                                           environment: ["PATH": bin.path + ":/usr/bin:/bin", "FAKE_HOST": h])
                let d = try #require(Int(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)), "\(r.stdout)\(r.stderr)")
                #expect((0..<Int(m.2)!).contains(d))
                delays.append(d)
            }
            #expect(Set(delays).count >= 5, "\(job.timer): delays \(delays) do not spread the hosts")
        }
        #expect(staggered == ["hs-backup.timer": 3600, "hs-backup-verify.timer": 7200, "hs-backup-prune.timer": 7200,
                              "hs-deploy-pull.timer": 1800])
    }

    @Test func valuesSurviveTheRoundTripThroughTheFile() throws {
        let values = ["HS_NTFY_URL": "https://ntfy.example.net/topic?a=1&b=2 #x", "HS_BACKUP_DEST": "/srv/backups",
                      "HS_BACKUP_NAME": "apollo"]
        let block = try ToolsConfig.block(values, host: "apollo")
        let parsed = try EnvFile.parse(block.joined(separator: "\n") + "\n", path: "t")
        for (k, v) in values { #expect(parsed.value(k) == v, "\(k)") }
        #expect(throws: ProvisionError.self) { try ToolsConfig.block(["HS_NTFY_TOKEN": "it's\nsecret"], host: "x") }
        let shown = try #require(ToolsConfig.redacted("HS_NTFY_TOKEN=abc\nHS_NTFY_URL=https://n/secret\nSHELL=/bin/sh\nFOO=bar\n0 3 * * * x --ping https://k/api/push/tok",
                                                      comparedWith: "HS_NTFY_TOKEN=xyz\nHS_NTFY_URL=https://n/secret"))
        #expect(shown == "HS_NTFY_TOKEN=(set, hidden) (value changed)\nHS_NTFY_URL=https://n/…\nSHELL=/bin/sh\nFOO=(hidden)\n0 3 * * * x --ping https://k/…")
    }

    @Test func cronScheduleDisablesTheTimersAndGivesTheCrontabBack() throws {
        let s = try sandbox()
        let crontab = Fixture.text(s.root.sub("var/spool/cron/crontabs/root"))
        let first = try run("apply", s)
        #expect(first.status == 0, "\(first.stderr)")
        #expect(Fixture.text(s.root.sub("var/spool/cron/crontabs/root")) != crontab)

        try Fixture.text(s.inventory).replacingOccurrences(of: "tailscale: false", with: "tailscale: false, schedule: cron")
            .write(toFile: s.inventory, atomically: true, encoding: .utf8)
        let cronPlan = try run("plan", s)
        #expect(cronPlan.stdout.contains("$ systemctl disable hs-backup-copy.timer hs-deploy-check.timer\n"), "\(cronPlan.stdout)")
        #expect(!cronPlan.stdout.contains("systemctl enable"))
        let cron = try run("apply", s)
        #expect(cron.status == 0, "\(cron.stderr)")
        // Every flagged line back, the copy line flagged before this run too.
        let back = Fixture.text(s.root.sub("var/spool/cron/crontabs/root"))
        #expect(back == crontab.replacingOccurrences(of: "#[hs-provision: hs-backup-copy.timer runs this] ", with: ""))
        #expect(!(first.stdout + first.stderr + cron.stdout + cron.stderr).contains("FIXTURE"))
    }

    @Test func configFieldEnablesTheCopyTimerAndSecretsAreRefused() throws {
        let s = try sandbox(apollo: ", config: {HS_COPY_DEST: \"rclone:offsite:home-server\", HS_BACKUP_NAME: apollo-vm}")
        let plan = try run("plan", s)
        #expect(plan.status == 0, "\(plan.stderr)")
        #expect(plan.stdout.contains("$ systemctl enable hs-backup.timer hs-backup-verify.timer hs-backup-prune.timer hs-deploy-pull.timer\n"))
        #expect(!plan.stdout.contains("systemctl disable"), "the copy timer stays enabled: \(plan.stdout)")
        #expect(plan.stdout.contains("+HS_COPY_DEST=rclone:offsite:home-server\n") && plan.stdout.contains("+HS_BACKUP_NAME=apollo-vm\n"))
        let json = try run("plan", s, ["--json"])
        #expect(json.status == 0 && json.stdout.contains("HS_COPY_DEST"))
        for secret in Self.secrets { #expect(!(plan.stdout + plan.stderr + json.stdout + json.stderr).contains(secret), "\(secret)") }

        for (field, words) in [("{HS_NTFY_TOKEN: tk_abc}", "HS_NTFY_TOKEN, which holds a secret"),
                               ("{HS_KUMA_BACKUP: \"https://k/api/push/x\"}", "HS_KUMA_BACKUP, which holds a secret"),
                               ("{HS_COPY_DST: x}", "unknown key 'HS_COPY_DST'; did you mean HS_COPY_DEST?"),
                               ("{HS_BACKUP_DEST: \"nfs://u:pw@nas/x\"}", "holds credentials in its URL")] {
            let bad = try sandbox(apollo: ", config: \(field)")
            let r = try run("plan", bad)
            #expect(r.status == 2 && r.stderr.contains(words), "\(field): \(r.stderr)")
            #expect(!r.stderr.contains("tk_abc") && !r.stderr.contains(":pw@"))
        }
    }

    @Test func aFileThatDoesNotExistIsCreated0600FromTheInventoryAlone() throws {
        let s = try sandbox(commonEnv: false)
        try FileManager.default.removeItem(atPath: s.root.sub("etc/default/home-server-tools"))
        let plan = try run("plan", s)
        // Without HS_BACKUP_DEST only the hs-deploy timers run; the copy timer goes off.
        #expect(plan.stdout.contains("$ systemctl disable hs-backup-copy.timer\n") && plan.stdout.contains("$ systemctl enable hs-deploy-pull.timer\n"), "\(plan.stdout)")
        #expect(plan.stdout.contains("create /etc/default/home-server-tools (mode 0600, values hidden)"))
        let r = try run("apply", s)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(mode(s.root.sub("etc/default/home-server-tools")) == 0o600)
        let text = Fixture.text(s.root.sub("etc/default/home-server-tools"))
        #expect(text.contains("\nHS_BACKUP_NAME=apollo\nHS_REPO=/opt/stacks/home-server\n# END home-server tools-config\n"), "\(text)")
        #expect(r.stderr.contains("common/.env does not exist"))
        #expect(r.stderr.contains("HS_BACKUP_DEST is not set for apollo"))
        let again = try run("plan", s)
        #expect(again.stdout.contains("== tools-config: ok\n"), "\(again.stdout)")
    }

    @Test func aTimerThatIsNotInstalledFailsTheStepNamingThePackage() throws {
        let s = try sandbox()
        try FileManager.default.removeItem(atPath: s.root.sub("lib/systemd/system/hs-backup-verify.timer"))
        let crontab = Fixture.text(s.root.sub("var/spool/cron/crontabs/root"))
        let r = try run("apply", s, ["--only", "timers"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("hs-backup-verify.timer is not installed on apollo") && r.stderr.contains("install the home-server-tools .deb"), "\(r.stderr)")
        #expect(Fixture.text(s.root.sub("var/spool/cron/crontabs/root")) == crontab, "nothing flagged when the timers cannot be enabled")
    }
}
