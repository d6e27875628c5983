// Provisioning: brings one host of the inventory to its desired state (Proxmox host: NFS
// fstab entry + mount probe, LXC bind mounts/features/TUN/idmap, subuid/subgid; guests:
// Docker, PUID user in group docker, /opt/stacks + /opt/appdata, VM fstab, Tailscale, the
// repository checkout).
//
// Each step reads the current state, plans actions as data (file writes, directories,
// commands as argv), and `apply` performs them and verifies by planning again. Desired file
// contents come from pure functions (ManagedEdits, LXCConfig, Template); files are written
// only when different, atomically, with a timestamped backup. Unmanaged lines stay byte for
// byte.
//
// What it does not guarantee: commands are not transactional (a failed apt-get leaves apt's
// own state); stops at the first failed step; `--root` cannot know package/service/mount
// state that only commands reveal, so those commands are printed on every run ("pending").
import Foundation
import Support

/// Options for one run (what the executable parsed).
package struct ProvisionRequest: Sendable {
    package var inventoryPath: String
    package var hostName: String
    package var mode: ExecMode
    package var only: [String]
    package var apply: Bool
    /// Directory with fstab.template and lxc-config.template (default: found near the inventory).
    package var templatesDir: String?
    package var json: Bool

    package init(inventoryPath: String, hostName: String, mode: ExecMode, only: [String] = [], apply: Bool,
                 templatesDir: String? = nil, json: Bool = false) {
        self.inventoryPath = inventoryPath; self.hostName = hostName; self.mode = mode; self.only = only
        self.apply = apply; self.templatesDir = templatesDir; self.json = json
    }
}

/// What happened in one step (also the `--json` shape).
package struct StepReport: Codable, Sendable {
    package var step: String
    package var status: StepStatus
    /// Commands run (live/chroot) or printed (plan, --root).
    package var commands: [String] = []
    /// Files written or removed (target paths), with their backups.
    package var files: [String] = []
    package var backups: [String] = []
    package var directories: [String] = []
    package var checks: [String] = []
    /// Unified diff of the planned file changes.
    package var diff: String = ""
    package var notes: [String] = []
    package var error: String?
    /// Human-readable lines in action order (commands, directories, diffs, checks), with paths,
    /// arguments and file lines escaped (the lists above keep them as they are).
    package var display: [String] = []
}

/// The whole run (the `--json` object).
package struct RunReport: Codable, Sendable {
    package var host: String
    package var action: String
    package var mode: String
    package var steps: [StepReport] = []
    package var ok = 0
    package var changed = 0
    package var pending = 0
    package var failed = 0
    /// Steps not run because an earlier one failed.
    package var notRun: [String] = []

    /// `ok=12 changed=3 failed=0` (+ ` pending=N` in --root mode).
    package var summary: String {
        "ok=\(ok) changed=\(changed) failed=\(failed)" + (mode == "root" ? " pending=\(pending)" : "")
    }
}

/// Runs `plan` or `apply` for one host.
package enum Provisioner {
    /// Builds the context and steps for a request.
    /// - Throws: `ToolError.usage` for a bad host or step name, `ToolError` for a bad inventory.
    package static func prepare(_ r: ProvisionRequest) throws -> (ProvisionContext, [Step]) {
        let inv: Inventory
        do { inv = try Inventory.load(path: r.inventoryPath) } catch let e as InventoryError {
            throw ToolError.usage(e.message)
        }
        guard let host = inv.host(r.hostName) else {
            throw ToolError.usage("host '\(NameEscape.escape(r.hostName))' is not in \(NameEscape.escape(r.inventoryPath)) (hosts: \(inv.hosts.map(\.name).joined(separator: ", ")))")
        }
        for o in r.only where !(Steps.allNames.contains(o) || ["lxc:", "guest:", "start:"].contains(where: o.hasPrefix)) {
            throw ToolError.usage("unknown step '\(NameEscape.escape(o))' for --only (steps: \(Steps.allNames.joined(separator: ", ")), lxc:<guest>, guest:<guest>, start:<guest>)")
        }
        let invDir = (URL(fileURLWithPath: r.inventoryPath).standardizedFileURL.deletingLastPathComponent().path)
        let fm = FileManager.default
        let templates = r.templatesDir ?? [invDir, invDir + "/../provisioning", fm.currentDirectoryPath + "/provisioning"]
            .first { fm.fileExists(atPath: $0 + "/fstab.template") } ?? invDir
        let stacks = [templates + "/../stacks", invDir + "/../stacks"].first { fm.fileExists(atPath: $0) }
            .map { URL(fileURLWithPath: $0).standardizedFileURL.path }
        // storage / tun / appdata come from the compose files (one source of truth).
        let resolved: Inventory
        do { resolved = try inv.resolvingStacks(stacksDir: stacks) } catch let e as InventoryError {
            throw ToolError.usage(e.message)
        }
        let ctx = ProvisionContext(inventory: resolved, host: resolved.host(host.name) ?? host, templatesDir: templates, stacksDir: stacks,
                                   usePct: r.mode == .live && Subprocess.which("pct") != nil,
                                   probe: ["hs-linkcheck", "--require-mount"])
        let all = Steps.forHost(ctx)
        let selected = all.filter { $0.selected(by: r.only) }
        if !r.only.isEmpty && selected.isEmpty {
            throw ToolError.usage("no step of host '\(host.name)' matches --only \(r.only.map(NameEscape.escape).joined(separator: ", ")) (its steps: \(all.map(\.name).joined(separator: ", ")))")
        }
        return (ctx, selected)
    }

    /// Runs the request, printing as the output mode says.
    /// - Returns: 0 when no step failed, 1 otherwise.
    package static func run(_ r: ProvisionRequest, now: Date = Date()) throws -> Int32 {
        let (ctx, steps) = try prepare(r)
        let reporter = Reporter(mode: OutputMode.detect(json: r.json))
        let machine = Machine(mode: r.mode, now: now)
        let report = execute(steps, context: ctx, machine: machine, apply: r.apply, reporter: reporter)
        if r.json { reporter.emitJSON(report) }
        return report.failed > 0 ? 1 : 0
    }

    static func modeName(_ m: ExecMode) -> String {
        switch m { case .live: return "live"; case .root: return "root"; case .chroot: return "chroot" }
    }

    /// Plans (and with `apply`, performs and verifies) every step in order. Stops after the
    /// first failed step.
    package static func execute(_ steps: [Step], context: ProvisionContext, machine m: Machine, apply: Bool,
                                reporter: Reporter) -> RunReport {
        var report = RunReport(host: context.host.name, action: apply ? "apply" : "plan", mode: modeName(m.mode))
        let verbose = reporter.mode == .terminal || !apply
        var header = "hs-provision \(apply ? "apply" : "plan"): host \(context.host.name) (\(context.host.role.rawValue)"
        if let k = context.host.kind, let id = context.host.vmid { header += ", \(k.rawValue) \(id)" }
        header += ")"
        switch m.mode {
        case .live: break
        case .root(let d): header += ", files under \(NameEscape.escape(d)), commands printed, not run"
        case .chroot(let d): header += ", files under \(NameEscape.escape(d)), commands run via chroot \(NameEscape.escape(d))"
        }
        if verbose { reporter.info(header) }

        for (i, step) in steps.enumerated() {
            reporter.progress("\(step.name)...", force: true)
            var sr = StepReport(step: step.name, status: .ok)
            do {
                let plan = try step.plan(m)
                sr.notes = plan.notes
                describe(plan, into: &sr, machine: m)
                if !apply {
                    sr.status = plan.actions.isEmpty ? .ok : .changed
                } else {
                    try perform(plan, machine: m, report: &sr)
                    try verify(step, machine: m, report: &sr)
                    let onlyPrinted = !m.mode.runsCommands && plan.actions.allSatisfy(\.isCommand)
                    sr.status = plan.actions.isEmpty ? .ok : (onlyPrinted ? .pending : .changed)
                }
            } catch {
                sr.status = .failed
                sr.error = "\(step.name): \(ProvisionError.text(of: error))"
            }
            switch sr.status {
            case .ok: report.ok += 1
            case .changed: report.changed += 1
            case .pending: report.pending += 1
            case .failed: report.failed += 1
            }
            print(sr, apply: apply, verbose: verbose, mode: m.mode, reporter: reporter)
            report.steps.append(sr)
            if sr.status == .failed && apply {
                report.notRun = steps[(i + 1)...].map(\.name)
                if !report.notRun.isEmpty {
                    reporter.error("stopped after the failed step; not run: \(report.notRun.joined(separator: ", "))")
                }
                break
            }
        }
        reporter.endProgress()
        if apply {
            reporter.info(report.summary)
        } else {
            let would = report.steps.filter { $0.status == .changed }.count
            reporter.info("plan: \(would) step(s) would change, \(report.ok) ok, \(report.failed) failed")
        }
        return report
    }

    static func describe(_ plan: StepPlan, into sr: inout StepReport, machine m: Machine) {
        /// The diff's lines for the display, indented; a line holding a control character or a
        /// bidi override (from the file, or from a value) escaped whole.
        func lines(_ diff: String) -> [String] {
            diff.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map { line in
                "  " + (line.unicodeScalars.contains { $0 != "\t" && NameEscape.escapes($0) } ? NameEscape.escape(String(line)) : String(line))
            }
        }
        for a in plan.actions {
            switch a {
            case .command(let argv):
                sr.commands.append(shellJoin(argv))
                sr.display.append("$ " + shellJoin(argv, shown: true))
            case .writeFile(let p, let old, let new):
                sr.files.append(p)
                let d = unifiedDiff(path: p, old: old, new: new)
                sr.diff += d
                sr.display.append((old == nil ? "create " : "edit ") + NameEscape.escape(p))
                sr.display += lines(d)
            case .writePrivateFile(let p, let old, _, let shownOld, let shownNew):
                sr.files.append(p)
                let d = unifiedDiff(path: p, old: shownOld, new: shownNew)
                sr.diff += d
                sr.display.append((old == nil ? "create " : "edit ") + NameEscape.escape(p) + " (mode 0600, values hidden)")
                sr.display += lines(d)
            case .removeFile(let p, let old):
                sr.files.append(p)
                let d = unifiedDiff(path: p, old: old, new: nil)
                sr.diff += d
                sr.display.append("remove " + NameEscape.escape(p))
                sr.display += lines(d)
            case .directory(let p, let uid, let gid, let create):
                sr.directories.append("\(create ? "mkdir" : "chown") \(p) (owner \(uid):\(gid))")
                sr.display.append("\(create ? "mkdir" : "chown") \(NameEscape.escape(p)) (owner \(uid):\(gid))")
            }
        }
        sr.checks = plan.checks.map { shellJoin($0) }
        sr.display += plan.checks.map { "check: " + shellJoin($0, shown: true) }
    }

    static func perform(_ plan: StepPlan, machine m: Machine, report sr: inout StepReport) throws {
        for a in plan.actions {
            switch a {
            case .writeFile(let p, _, let new):
                if let b = try m.writeAtomically(p, content: new) { sr.backups.append(b) }
            case .writePrivateFile(let p, _, let new, _, _):
                if let b = try m.writeAtomically(p, content: new, privateFile: true) { sr.backups.append(b) }
            case .removeFile(let p, _):
                sr.backups.append(try m.removeWithBackup(p))
            case .directory(let p, let uid, let gid, _):
                try m.ensureDirectory(p, uid: uid, gid: gid)
            case .command(let argv):
                if m.mode.runsCommands { _ = try m.execute(argv) }
            }
        }
        if m.mode.runsCommands {
            for c in plan.checks {
                var argv = c
                if argv[0] == "hs-linkcheck" && Subprocess.which("hs-linkcheck") == nil {
                    let sibling = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("hs-linkcheck").path
                    if FileManager.default.isExecutableFile(atPath: sibling) { argv[0] = sibling }
                }
                _ = try m.execute(argv)
            }
        }
    }

    /// Plans the step again: anything left (except commands only printed in --root mode)
    /// means the apply did not reach the desired state.
    static func verify(_ step: Step, machine m: Machine, report sr: inout StepReport) throws {
        let again = try step.plan(m)
        let left = again.actions.filter { m.mode.runsCommands || !$0.isCommand }
        guard left.isEmpty else {
            var tmp = StepReport(step: step.name, status: .failed)
            describe(StepPlan(actions: left), into: &tmp, machine: m)
            throw ProvisionError("after apply the state still differs: \(NameEscape.escape((tmp.files + tmp.commands + tmp.directories).joined(separator: "; ")))")
        }
    }

    static func print(_ sr: StepReport, apply: Bool, verbose: Bool, mode: ExecMode, reporter: Reporter) {
        for n in sr.notes { reporter.warning("\(sr.step): \(n)") }
        if let e = sr.error { reporter.error(e) }
        guard verbose || sr.status != .ok else { return }
        let label = apply ? sr.status.rawValue : (sr.status == .changed ? "would change" : sr.status.rawValue)
        reporter.info("== \(sr.step): \(label)")
        guard verbose else { return }
        let notRun = apply && !mode.runsCommands
        for line in sr.display {
            let isCommand = line.hasPrefix("$ ") || line.hasPrefix("check: ")
            reporter.info("   " + line + (notRun && isCommand ? "   (printed, not run: --root)" : ""))
        }
        for b in sr.backups { reporter.info("   backup: \(NameEscape.escape(b))") }
    }

    /// Quotes an argv for display so it can be pasted into a shell. `shown` (for a person): an
    /// argument holding a character NameEscape escapes (a newline, ESC, a bidi override) is
    /// written `$'...'` with NameEscape's escapes, which bash reads back as the same bytes.
    package static func shellJoin(_ argv: [String], shown: Bool = false) -> String {
        argv.map { a in
            if shown && a.unicodeScalars.contains(where: NameEscape.escapes) {
                return "$'" + NameEscape.escape(a).replacingOccurrences(of: "'", with: "\\'") + "'"
            }
            if !a.isEmpty && a.allSatisfy({ $0.isLetter || $0.isNumber || "-_./=:@,+%".contains($0) }) { return a }
            return "'" + a.replacingOccurrences(of: "'", with: "'\\''") + "'"
        }.joined(separator: " ")
    }

    /// `diff -u` of old and new content with stable labels (`a/PATH`, `b/PATH`, `/dev/null`).
    package static func unifiedDiff(path: String, old: String?, new: String?) -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("hs-provision-diff-\(getpid())-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = dir.appendingPathComponent("a").path, b = dir.appendingPathComponent("b").path
        _ = FileManager.default.createFile(atPath: a, contents: Data((old ?? "").utf8))
        _ = FileManager.default.createFile(atPath: b, contents: Data((new ?? "").utf8))
        let r = try? Subprocess.run(["diff", "-u", "--label", old == nil ? "/dev/null" : "a\(path)",
                                     "--label", new == nil ? "/dev/null" : "b\(path)", a, b])
        guard let r else { return "(diff unavailable for \(path))\n" }
        return r.stdout
    }
}
