import ArgumentParser
import Backup
import BackupOps
import CommandLineSupport
import Storage
import Support

/// `hs-backup run`'s options as plain values: what a run consumes. ArgumentParser's `Run`
/// converts to it (`Run.values`); `parseCommonForm` makes it from the nightly command line
/// without ArgumentParser's types (building `Run` there instantiated the generic metadata of
/// its property wrappers: ~2% of a one-file backup's CPU, issue 23).
struct RunValues: CommonForm {
    var sources: [String]
    var destination: DestinationValues
    var full: Bool
    var excludes: [String]
    var maxIncrementals: Int
    var fullEveryDays: Double
    var stopStacks: [String]
    var notify: NotifyValues
    var engine: EngineRunValues
    var encryption: EncryptionRunValues

    static let defaultMaxIncrementals = 13
    static let defaultFullEveryDays: Double = 14

    /// What makes the options a usage error (`Run.checkUsage` throws it), or nil.
    var problem: String? {
        if sources.isEmpty, let config = try? ToolConfiguration.get(), config.value(.appdata) == nil {
            return "Missing --source DIR (the directory to back up, e.g. /opt/appdata): give --source, or set "
                + "HS_APPDATA (\(config.whereLooked(.appdata)))."
        }
        if sources.count > 1 {
            return "--source was given \(sources.count) times (\(sources.joined(separator: ", "))); hs-backup takes exactly one --source per run. "
                + "Back up each directory as its own set: hs-backup run --source DIR --name SET --to DEST."
        }
        guard maxIncrementals >= 0, fullEveryDays > 0 else {
            return "--max-incrementals must be >= 0 and --full-every-days > 0."
        }
        return nil
    }

    /// Takes the backup; returns the exit code (errors are reported by `toolMain`).
    func run() -> Int32 {
        // The process's signal guard (armed by `ToolCommand.main` before this runs): the backup
        // adds its cleanups to it.
        let guardian = SignalGuard.shared
        return toolMain {
            let reporter = destination.reporter
            let set = try BackupTool.setName(destination.set)
            let settings = try self.settings(set: set)
            try settings.validate()
            // Before the destination is opened (up to the NFS timeout, 60 s, on a NAS that does
            // not answer): a signal then reaches the monitors too.
            if !engine.dryRun { OpsCommands.reportSignal(guardian, notifier: settings.notifier, operation: "hs-backup run", set: set) }
            let dest = try OpsCommands.reportingFailure(settings.notifier, operation: "hs-backup run", set: set, reporter: reporter) {
                try destination.open()
            }
            let source = try ToolConfiguration.get().require(.appdata, flag: sources.first, flagName: "--source", example: "DIR")
            reporter.detail("backing up \(NameEscape.escape(source)) to \(NameEscape.escape("\(dest.displayName)/\(set)"))")
            var options = BackupOptions(source: source, destination: dest, set: set)
            options.forceFull = full
            options.excludes = excludes
            options.maxIncrementals = maxIncrementals
            options.maxDaysBetweenFulls = fullEveryDays
            try engine.apply(to: &options)
            try encryption.apply(to: &options)
            let summary = engine.dryRun ? try BackupRunner(options: options, reporter: reporter).run()
                : try OpsCommands.backup(options, ops: settings, reporter: reporter, guardian: guardian)
            if reporter.mode == .json { reporter.emitJSON(summary) } else if summary.exitStatus == .success {
                reporter.info(summary.line)
            } else {
                // Exit 3 (committed, files missing): the summary is printed also with -q.
                Reporter.writeStdout(summary.line + "\n")
            }
            return summary.exitStatus.rawValue
        }
    }
}

extension HsBackup {
    /// The nightly command line, `hs-backup [run|backup] --source DIR --to DEST [--name SET]
    /// [--full] [--exclude GLOB]... [--json] [-q|-v]` (options in any order), parsed without
    /// ArgumentParser (`ToolCommand.parseCommonForm`: its parse is ~2 ms of CPU per start).
    /// Anything else - another option or subcommand, `--opt=value`, a value that starts with
    /// '-', an option given twice, a flag repeated, `--help` - returns nil and goes to
    /// ArgumentParser, as does a line that fails a usage check (`UsageChecks`): every error and
    /// every message still comes from there. `CommandLineCommonFormTests` compares both parses
    /// value by value (`commonForm(of:)` gives ArgumentParser's as `RunValues`).
    /// (Plain variables, no Dictionary or Set: their storage types were looked up at run time.)
    static func parseCommonForm(_ arguments: [String]) -> (any CommonForm)? {
        var rest = arguments[...]
        if let first = rest.first, first == "run" || first == "backup" { rest = rest.dropFirst() }
        var source: String?, to: String?, name: String?
        var excludes: [String] = []
        var full = false, json = false, quiet = false, verbose = false
        while let token = rest.popFirst() {
            switch token {
            case "--source", "--to", "--name", "--exclude":
                guard let value = rest.popFirst(), !value.hasPrefix("-") else { return nil }
                if token == "--exclude" { excludes.append(value); continue }
                let given = token == "--source" ? source : token == "--to" ? to : name
                guard given == nil else { return nil }
                if token == "--source" { source = value } else if token == "--to" { to = value } else { name = value }
            case "--full", "--json", "-q", "--quiet", "-v", "--verbose":
                func once(_ flag: inout Bool) -> Bool {
                    if flag { return false }
                    flag = true
                    return true
                }
                let fresh = token == "--full" ? once(&full) : token == "--json" ? once(&json)
                    : token == "-q" || token == "--quiet" ? once(&quiet) : once(&verbose)
                guard fresh else { return nil }
            default:
                return nil
            }
        }
        // VerbosityOptions.checkUsage: ArgumentParser words the error.
        if quiet && verbose { return nil }
        let values = RunValues(
            sources: source.map { [$0] } ?? [],
            destination: DestinationValues(to: to, name: name, nfsTimeout: nil, json: json,
                                           verbosity: VerbosityValues(config: nil, quiet: quiet, verbose: verbose)),
            full: full, excludes: excludes,
            maxIncrementals: RunValues.defaultMaxIncrementals, fullEveryDays: RunValues.defaultFullEveryDays,
            stopStacks: [],
            notify: NotifyValues(ntfy: nil, notifySuccess: false, ping: nil, healthchecks: nil, metricsFile: nil),
            engine: EngineRunValues(oneFileSystem: false, excludeFiles: [], excludeCaches: false, excludeIfPresent: [], dryRun: false),
            encryption: EncryptionRunValues(recipients: [], recipientsFiles: [], rotateKeys: false, stateDir: nil))
        return values.problem == nil ? values : nil
    }

    /// ArgumentParser's parse of `run` as the plain values `parseCommonForm` gives (HS_DEBUG_PARSE).
    static func commonForm(of command: any ParsableCommand) -> (any CommonForm)? {
        (command as? Run)?.values
    }
}
