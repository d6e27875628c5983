// Timers: the `timers` step, which starts a guest's nightly jobs one way only.
//
// `schedule: systemd` (the default): the package's timers a host needs are enabled
// (`systemctl enable --now`, without --now in --chroot, printed in --root), and the lines of
// root's crontab that start the same jobs are commented out with a flag saying which timer
// runs them now, so nothing runs twice. `schedule: cron` (hosts without systemd): every timer
// of the list is disabled and the flagged lines are restored. Which timers a host needs comes
// from the configuration file the `tools-config` step writes (computed, not read back, so the
// plan is right before the file exists): the backup, verify and prune timers with
// HS_BACKUP_DEST, the offsite copy's with HS_COPY_DEST, the hs-deploy ones with a `stack`.
// The six timers are managed here: one the host no longer needs is disabled and its crontab
// lines get their flag removed. Template instances (hs-backup@NAME.timer) are never touched.
//
// What it does not do: edit /etc/crontab or /etc/cron.d (a note names a line there that starts
// one of these jobs), or install the units (the .deb does; without them the step fails).
import Foundation
import Support

/// One nightly job: its timer and how a crontab line that starts it looks.
package struct ScheduledJob: Sendable, Equatable {
    package var timer: String
    /// `hs-backup` subcommands (with aliases) or `hs-deploy` options that start this job.
    package var backupCommands: [String] = []
    package var deployOptions: [String] = []

    package static let backup = ScheduledJob(timer: "hs-backup.timer", backupCommands: ["run", "backup"],
                                             deployOptions: ["--save-env", "--save-env-to-appdata"])
    package static let verify = ScheduledJob(timer: "hs-backup-verify.timer", backupCommands: ["verify", "check"])
    package static let prune = ScheduledJob(timer: "hs-backup-prune.timer", backupCommands: ["prune", "forget"])
    package static let copy = ScheduledJob(timer: "hs-backup-copy.timer", backupCommands: ["copy"])
    package static let deployCheck = ScheduledJob(timer: "hs-deploy-check.timer", deployOptions: ["--check"])
    package static let deployPull = ScheduledJob(timer: "hs-deploy-pull.timer", deployOptions: ["--pull"])
    package static let all = [backup, verify, prune, copy, deployCheck, deployPull]

    /// True when one simple command (argv) starts this job.
    func starts(_ argv: [String]) -> Bool {
        guard let i = argv.firstIndex(where: { ["hs-backup", "hs-deploy"].contains(($0 as NSString).lastPathComponent) }) else {
            return false
        }
        let rest = argv[(i + 1)...]
        if (argv[i] as NSString).lastPathComponent == "hs-backup" {
            return rest.first { !$0.hasPrefix("-") }.map(backupCommands.contains) ?? false
        }
        return rest.contains { word in deployOptions.contains { word == $0 || word.hasPrefix($0 + "=") } }
    }
}

/// Pure edits of a crontab's text.
package enum CrontabEdits {
    package static let spoolDirectory = "/var/spool/cron/crontabs"
    package static let rootCrontab = spoolDirectory + "/root"
    static let flagStart = "#[hs-provision: "
    static let flagEnd = " runs this] "

    /// The job a crontab line starts (nil: a comment, a variable, or none of ours).
    package static func job(of line: Substring) -> ScheduledJob? {
        let t = line.trimmingCharacters(in: .whitespaces)
        if t.isEmpty || t.hasPrefix("#") || t.wholeMatch(of: /[A-Za-z_][A-Za-z0-9_]*\s*=.*/) != nil { return nil }
        let words = t.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        let command = t.hasPrefix("@") ? words.dropFirst(1) : words.dropFirst(5)
        var simple: [[String]] = [[]]
        for w in command {
            if ["&&", "||", ";", "|"].contains(w) { simple.append([]); continue }
            simple[simple.count - 1].append(w.hasSuffix(";") ? String(w.dropLast()) : w)
            if w.hasSuffix(";") { simple.append([]) }
        }
        return ScheduledJob.all.first { job in simple.contains(where: job.starts) }
    }

    /// `text` with every line flagged for its timer exactly when that timer is in `enabled`:
    /// an unflagged line of an enabled timer's job gets `#[hs-provision: TIMER runs this] `
    /// in front; a flagged line whose timer is not enabled gets its line back. Other lines
    /// stay byte for byte.
    package static func reconciled(_ text: String, enabled: Set<String>) -> String {
        var l = ManagedEdits.Lines(text)
        for (i, line) in l.lines.enumerated() {
            if let (timer, original) = flagged(line) {
                if !enabled.contains(timer) { l.lines[i] = original }
            } else if let job = job(of: Substring(line)), enabled.contains(job.timer) {
                l.lines[i] = flagStart + job.timer + flagEnd + line
            }
        }
        return l.text
    }

    /// A line this step commented out: its timer and the original line.
    static func flagged(_ line: String) -> (String, String)? {
        guard line.hasPrefix(flagStart), let end = line.range(of: flagEnd) else { return nil }
        return (String(line[line.index(line.startIndex, offsetBy: flagStart.count)..<end.lowerBound]), String(line[end.upperBound...]))
    }
}

package enum Timers {
    static let unitDirectories = ["/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system"]
    /// Where `systemctl enable` records an enabled timer (its `WantedBy=timers.target`).
    static func wantsLink(_ timer: String) -> String { "/etc/systemd/system/timers.target.wants/" + timer }

    /// The timers this host needs, and notes on the ones it does not get.
    package static func wanted(_ c: ProvisionContext, config: [String: String]) -> (timers: [ScheduledJob], notes: [String]) {
        guard (c.host.schedule ?? c.inventory.defaults.schedule) == .systemd else { return ([], []) }
        var jobs: [ScheduledJob] = []
        var notes: [String] = []
        if config[ConfigKey.backupDest.name] != nil {
            jobs += [.backup, .verify, .prune]
        } else {
            notes.append("HS_BACKUP_DEST is not set for \(c.host.name) (common/.env, or config: in the inventory): the backup, verify and prune timers stay off")
        }
        if config[ConfigKey.copyDest.name] != nil { jobs.append(.copy) }
        if c.host.stack != nil { jobs += [.deployCheck, .deployPull] }
        return (jobs, notes)
    }

    /// The `timers` step.
    static func step(_ c: ProvisionContext) -> Step {
        Step("timers") { m in
            let file = try ToolsConfig.desiredFile(c, current: m.read(ToolsConfig.path), commonEnv: m.read(ToolsConfig.commonEnv))
            let (jobs, notes) = wanted(c, config: ToolsConfig.effective(file))
            let want = Set(jobs.map(\.timer))
            var p = StepPlan(notes: notes)
            if !want.isEmpty && m.mode.runsCommands && !m.hasProgram("systemctl") {
                throw ProvisionError("\(c.host.name) has no systemctl: set `schedule: cron` for it in the inventory and install crontab.example as root's crontab (docs/scheduling.md)")
            }
            for job in jobs where !unitDirectories.contains(where: { m.exists($0 + "/" + job.timer) }) {
                throw ProvisionError("\(job.timer) is not installed on \(c.host.name) (looked in \(unitDirectories.joined(separator: ", "))): install the home-server-tools .deb, which ships the units (the tarball does not), or set `schedule: cron` for this host")
            }
            let enabled = Set(ScheduledJob.all.map(\.timer).filter { m.isSymlink(wantsLink($0)) })
            // Started too only on a live system whose systemd runs (sd_booted: /run/systemd/system
            // exists); in a chroot, or under Ansible's chroot connection, enabling is all there is.
            let running = m.mode == .live && m.exists("/run/systemd/system")
            let now = running ? ["--now"] : []
            let enable = ScheduledJob.all.map(\.timer).filter { want.contains($0) && !enabled.contains($0) }
            let disable = ScheduledJob.all.map(\.timer).filter { !want.contains($0) && enabled.contains($0) }
            if !disable.isEmpty { p.actions.append(.command(["systemctl", "disable"] + now + disable)) }
            if !enable.isEmpty { p.actions.append(.command(["systemctl", "enable"] + now + enable)) }
            if running {
                let idle = want.subtracting(enable).sorted().filter { m.query(["systemctl", "is-active", $0])?.stdout.hasPrefix("active") == false }
                if !idle.isEmpty { p.actions.append(.command(["systemctl", "start"] + idle)) }
            }
            if let crontab = m.read(CrontabEdits.rootCrontab) {
                let new = CrontabEdits.reconciled(crontab, enabled: want)
                if new != crontab {
                    // A crontab may hold notification URLs: written 0600, shown with them hidden.
                    p.actions.append(.writePrivateFile(path: CrontabEdits.rootCrontab, old: crontab, new: new,
                                                       shownOld: ToolsConfig.redacted(crontab, comparedWith: new),
                                                       shownNew: ToolsConfig.redacted(new, comparedWith: crontab)!))
                }
            }
            p.notes += systemCrontabNotes(m, timers: want)
            return p
        }
    }

    /// Lines of /etc/crontab and /etc/cron.d/* that start a job a timer now runs (not edited).
    static func systemCrontabNotes(_ m: Machine, timers: Set<String>) -> [String] {
        let cronD = ((try? FileManager.default.contentsOfDirectory(atPath: m.path("/etc/cron.d"))) ?? []).sorted().map { "/etc/cron.d/" + $0 }
        var notes: [String] = []
        for file in ["/etc/crontab"] + cronD {
            for (i, line) in (m.read(file) ?? "").split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                guard let job = CrontabEdits.job(of: line), timers.contains(job.timer) else { continue }
                notes.append("\(NameEscape.escape(m.path(file))):\(i + 1) starts the job of \(job.timer) too: remove that line, or it runs twice")
            }
        }
        return notes
    }
}
