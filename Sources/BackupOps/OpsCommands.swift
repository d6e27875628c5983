// Entry points that hs-backup's subcommands call for the operational features: SQLite
// capture and --stop-stacks around a run, ntfy/Uptime Kuma reports after run/verify/prune,
// and the prune subcommand.
import Backup
import FoundationEssentials
import Glibc
import Storage
import Support

/// Operational settings of `hs-backup run` (besides `BackupOptions`).
package struct OpsSettings: Sendable {
    /// Compose projects to stop during the backup (`--stop-stacks`).
    package var stopStacks: [String] = []
    /// Grace period for `docker stop`.
    package var stopTimeout = 60
    package var notifier = Notifier()
    /// Capture SQLite databases through the online backup API (on by default;
    /// `HS_BACKUP_SQLITE_CAPTURE=0`, in the environment or the configuration file, turns it off
    /// as an escape hatch).
    package var sqliteCapture = (try? ToolConfiguration.get())?.value(.sqliteCapture)?.value != "0"
    /// How long a capture retries while a database stays locked ($HS_BACKUP_SQLITE_BUSY_TIMEOUT
    /// seconds, default 60).
    package var sqliteBusyTimeout: TimeInterval =
        (try? ToolConfiguration.get())?.value(.sqliteBusyTimeout).flatMap { TimeInterval($0.value) } ?? 60

    package init(stopStacks: [String] = [], notifier: Notifier = Notifier()) {
        self.stopStacks = stopStacks
        self.notifier = notifier
    }

    /// Usage checks (exit 2) before anything runs.
    package func validate() throws {
        try Quiesce.validate(stopStacks)
        do { try notifier.validate() } catch { throw ToolError.usage(error.description) }
    }
}

package enum OpsCommands {
    /// Makes `guardian` report a run of `operation` that a signal stops to the monitors (ntfy,
    /// Uptime Kuma, Healthchecks, the metrics file) as failed with 128 + the signal: they hear
    /// at once, not when the next heartbeat is missed. With the notifier the run's own end
    /// would report with.
    package static func reportSignal(_ guardian: SignalGuard, notifier: Notifier, operation: String, set: String) {
        let started = Date()
        guardian.onSignal { sig in
            let report = RunReport(success: false, operation: operation, set: set,
                                   message: "interrupted by signal \(sig)", duration: Date().timeIntervalSince(started), exitCode: 128 + sig)
            for w in notifier.report(report) { Reporter.writeStderr("warning: \(w)\n") }
        }
    }

    /// `hs-backup run`: a backup with SQLite capture, optional quiescing, then notifications.
    /// - Parameter guardian: the run's signal guard, made by the caller before it opened the
    ///   destination (`reportSignal` done); the backup adds its cleanups.
    /// - Returns: the summary (with capture/restart warnings added).
    /// - Throws: the backup's error (after notifying), or a `ToolError` when the backup was
    ///   written but stopped stacks could not be started again.
    package static func backup(_ options: BackupOptions, ops: OpsSettings, reporter: Reporter, guardian: SignalGuard) throws -> BackupSummary {
        try ops.validate()
        var attention: [String] = []
        let summary = try notifying(ops.notifier, operation: "hs-backup run", set: options.set, reporter: reporter,
                                    attention: { _ in !attention.isEmpty }, status: { $0.exitStatus }) {
            var options = options
            var snapshots: SQLiteSnapshot?
            var provider: SQLiteCaptureProvider?
            if ops.sqliteCapture && options.contentProvider == nil {
                let s = SQLiteSnapshot(busyTimeout: ops.sqliteBusyTimeout)
                snapshots = s
                guardian.onSignal { _ in s.cleanup() }
                provider = SQLiteCaptureProvider(snapshots: s, warn: { reporter.warning($0) })
                options.contentProvider = provider
            }
            defer { snapshots?.cleanup() }
            var hook: QuiesceHook?
            if !ops.stopStacks.isEmpty {
                let q = Quiesce(stacks: ops.stopStacks, stopTimeout: ops.stopTimeout, handleSignals: false)
                guardian.onSignal { _ in for p in q.startAfterSignal() { Reporter.writeStderr("error: \(p)\n") } }
                let h = QuiesceHook(quiesce: q, warn: { reporter.warning($0) })
                hook = h
                options.hooks.append(h)
            }
            var summary = try BackupRunner(options: options, reporter: reporter).run()
            attention = provider?.warnings ?? []
            summary.warnings += attention
            if let hook, !hook.restartProblems.isEmpty {
                throw ToolError("backup \(summary.id) was written, but stopped stacks did not start again: "
                    + hook.restartProblems.joined(separator: "; "))
            }
            var line = summary.line
            if let n = provider?.capturedCount, n > 0 { line += ", \(n) SQLite database\(n == 1 ? "" : "s") captured" }
            if let first = attention.first { line += ". " + first }
            return (summary, line)
        } metrics: { summary in
            var m = summary.metrics
            // Only the metrics file reports it: no listing of the set without one.
            guard ops.notifier.metricsFile != nil else { return m }
            m.backupsKept = try? BackupSet(destination: options.destination, name: options.set).committedIDs().count
            return m
        }
        return summary
    }

    /// Runs `body`, then reports to ntfy/Kuma/Healthchecks and the metrics file: a thrown error as
    /// failure (and rethrown, its exit code reported), else `ok` decides (exit 0 or 1). Delivery
    /// problems are printed as warnings and never change the result. The run's start (Healthchecks
    /// `/start`) is sent first unless `reportingFailure` already did.
    /// - Parameters:
    ///   - body: returns the value and a one-line message for the notification.
    ///   - metrics: what the run measured (default: the value's own `MetricsReporting.metrics`).
    package static func notifying<T>(_ notifier: Notifier, operation: String, set: String, reporter: Reporter,
                                     ok: (T) -> Bool = { _ in true }, attention: (T) -> Bool = { _ in false },
                                     status: (T) -> ExitStatus? = { _ in nil },
                                     _ body: () throws -> (T, String),
                                     metrics: (T) -> RunMetrics? = { ($0 as? any MetricsReporting)?.metrics }) throws -> T {
        do { try notifier.validate() } catch { throw ToolError.usage(error.description) }
        for w in notifier.start() { reporter.warning(w) }
        let started = notifier.session.started ?? Date()
        do {
            let (value, message) = try body()
            let code = status(value)
            var report = RunReport(success: code.map { $0.monitor != .failed } ?? ok(value), operation: operation, set: set,
                                   message: HumanError.scrub(message), duration: Date().timeIntervalSince(started), exitCode: code?.rawValue)
            report.attention = report.attention || attention(value)
            if let m = metrics(value) { report.metrics = m }
            for w in notifier.report(report) { reporter.warning(w) }
            return value
        } catch {
            let report = RunReport(success: false, operation: operation, set: set, message: HumanError.describe(error),
                                   duration: Date().timeIntervalSince(started), exitCode: (error as? ToolError)?.exitCode ?? 1)
            for w in notifier.report(report) { reporter.warning(w) }
            throw error
        }
    }

    /// Runs `body` (e.g. opening the destination) and reports only a thrown error, as a failure
    /// of `operation`: a NAS that is down at 3 a.m. or an empty HS_BACKUP_DEST reaches ntfy and
    /// Uptime Kuma like any other failure. An invalid notifier setting is a usage error first.
    package static func reportingFailure<T>(_ notifier: Notifier, operation: String, set: String, reporter: Reporter,
                                            _ body: () throws -> T) throws -> T {
        do { try notifier.validate() } catch { throw ToolError.usage(error.description) }
        for w in notifier.start() { reporter.warning(w) }
        let started = notifier.session.started ?? Date()
        do {
            return try body()
        } catch {
            let report = RunReport(success: false, operation: operation, set: set, message: HumanError.describe(error),
                                   duration: Date().timeIntervalSince(started), exitCode: (error as? ToolError)?.exitCode ?? 1)
            for w in notifier.report(report) { reporter.warning(w) }
            throw error
        }
    }

    /// `hs-backup prune`: applies the policy and prints what was (or would be) removed.
    package static func prune(destination spec: String, set name: String?, policy: RetentionPolicy, dryRun: Bool,
                              nfsTimeoutSeconds: Int? = nil, notifier: Notifier, reporter: Reporter) throws -> PruneReport {
        for (flag, n) in [("--keep-last", policy.keepLast), ("--keep-hourly", policy.keepHourly), ("--keep-daily", policy.keepDaily),
                          ("--keep-weekly", policy.keepWeekly), ("--keep-monthly", policy.keepMonthly),
                          ("--keep-yearly", policy.keepYearly)] where n < 0 {
            throw ToolError.usage("\(flag) \(n): give a count of 0 or more")
        }
        do { try notifier.validate() } catch { throw ToolError.usage(error.description) }
        let setName = try BackupTool.setName(name)
        let monitors = dryRun ? notifier.forDryRun() : notifier
        let operation = dryRun ? "hs-backup prune --dry-run" : "hs-backup prune"
        // Ctrl-C/SIGTERM while removing: the lock goes too (see InterruptCleanup); before the
        // destination is opened (up to the NFS timeout on a NAS that does not answer) the
        // monitors hear of it too.
        reportSignal(.shared, notifier: monitors, operation: operation, set: setName)
        return try notifying(monitors, operation: operation, set: setName, reporter: reporter) {
            let dest = try BackupTool.destination(spec, nfsTimeoutSeconds: nfsTimeoutSeconds)
            try BackupSets.requireSet(dest, setName)
            let set = BackupSet(destination: dest, name: setName)
            let report = try Pruner.prune(set: set, policy: policy, dryRun: dryRun, reporter: reporter)
            for w in report.warnings { reporter.warning(w) }
            if reporter.mode == .json {
                reporter.emitJSON(report)
            } else {
                for k in report.kept { reporter.info("keep    \(NameEscape.escape(k.id))  \(k.kind)  (\(k.reasons.joined(separator: ", ")))") }
                for r in report.removed { reporter.info("\(dryRun ? "would remove" : "removed")  \(NameEscape.escape(r.id))  \(r.kind)  \(Format.bytes(r.bytes))") }
                reporter.info(report.line)
            }
            return (report, report.line)
        }
    }
}

extension BackupSummary: MetricsReporting {
    package var metrics: RunMetrics { RunMetrics(files: files, bytesRead: bytesIn, bytesWritten: bytesOut) }
}

extension VerifyReport: MetricsReporting {
    package var metrics: RunMetrics { RunMetrics(files: filesChecked, backupsKept: backups.count) }
}

extension PruneReport: MetricsReporting {
    package var metrics: RunMetrics { RunMetrics(backupsKept: kept.count) }
}
