import ArgumentParser
import CommandLineSupport
import Backup
import Foundation
import Support

@main
struct HsBackup: ToolCommand {
    static let configuration = CommandConfiguration(
        commandName: "hs-backup",
        abstract: "Back up /opt/appdata as tar+gzip to a directory or an nfs:// export, incrementally.",
        discussion: """
        DEST is a directory or an nfs://server/export/path URL (libnfs syntax: ?version=3|4, \
        nfsport=, mountport=, uid=, gid=). Backups of SET live in DEST/SET/.
        Exit codes: 0 success, 1 the backup or check failed, 2 bad usage.
        """,
        subcommands: [Run.self, List.self, Verify.self, Prune.self],
        defaultSubcommand: Run.self)
}

struct DestinationOptions: ParsableArguments {
    @Option(name: .customLong("to"), help: "Backup destination: a directory or nfs://server/export/path.")
    var destination: String

    @Option(name: .customLong("name"), help: "Backup set name (default: this host's short hostname).")
    var set: String?

    @Flag(help: "Print one JSON object on stdout instead of text.")
    var json = false
}

extension HsBackup {
    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Take a backup (incremental unless a full one is due).")

        @Option(help: "Directory to back up, e.g. /opt/appdata.")
        var source: String

        @OptionGroup var destination: DestinationOptions

        @Flag(help: "Force a full backup instead of an incremental one.")
        var full = false

        @Option(name: .customLong("exclude"), help: "Glob of paths to skip (repeatable); adds to the default cache excludes.")
        var excludes: [String] = []

        @Option(help: "Take a full backup automatically after this many incrementals.")
        var maxIncrementals: Int = 13

        @Option(help: "Take a full backup automatically when the last one is older than this many days.")
        var fullEveryDays: Double = 14

        @OptionGroup var ops: OpsRunOptions

        @OptionGroup var engine: EngineRunOptions

        func run() async throws {
            let code = await toolMain {
                let reporter = Reporter(mode: .detect(json: destination.json))
                var options = BackupOptions(source: source, destination: try BackupTool.destination(destination.destination),
                                            set: try BackupTool.setName(destination.set))
                options.forceFull = full
                options.excludes = excludes
                guard maxIncrementals >= 0, fullEveryDays > 0 else {
                    throw ToolError.usage("--max-incrementals must be >= 0 and --full-every-days > 0")
                }
                options.maxIncrementals = maxIncrementals
                options.maxDaysBetweenFulls = fullEveryDays
                try engine.apply(to: &options)
                let summary = engine.dryRun ? try BackupRunner(options: options, reporter: reporter).run()
                    : try OpsCommands.backup(options, ops: ops.settings, reporter: reporter)
                if reporter.mode == .json { reporter.emitJSON(summary) } else { reporter.info(summary.line) }
                return 0
            }
            if code != 0 { throw ExitCode(code) }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the backups of a set.")
        @OptionGroup var destination: DestinationOptions
        func run() async throws {
            let code = await toolMain {
                let reporter = Reporter(mode: .detect(json: destination.json))
                let dest = try BackupTool.destination(destination.destination)
                let set = try BackupTool.setName(destination.set)
                let rows = try SetInspector.list(destination: dest, set: set)
                if reporter.mode == .json {
                    reporter.emitJSON(rows)
                } else if rows.isEmpty {
                    reporter.info("no backups in \(destination.destination)/\(set)")
                } else {
                    func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
                    reporter.info(pad("ID", 20) + pad("TIME", 22) + pad("KIND", 13) + pad("FILES", 9) + pad("TREE", 11) + pad("WRITTEN", 11) + "DURATION")
                    for r in rows {
                        reporter.info(pad(r.id, 20) + pad(r.time, 22) + pad(r.kind, 13) + pad(String(r.files), 9)
                                      + pad(Format.bytes(r.treeBytes), 11) + pad(Format.bytes(r.bytesOut), 11) + Format.seconds(r.seconds))
                    }
                }
                return 0
            }
            if code != 0 { throw ExitCode(code) }
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Check that archives decompress and every file's hash matches (exit 1 on damage).")
        @OptionGroup var destination: DestinationOptions
        @Option(help: "Backup to verify: an ID or 'latest' (default: all).")
        var backup: String?
        @OptionGroup var notify: NotifyOptions
        func run() async throws {
            let code = await toolMain {
                let reporter = Reporter(mode: .detect(json: destination.json))
                let set = try BackupTool.setName(destination.set)
                let report = try OpsCommands.notifying(notify.notifier, operation: "hs-backup verify", set: set, reporter: reporter,
                                                       ok: { $0.ok }) {
                    let r = try SetInspector.verify(destination: try BackupTool.destination(destination.destination), set: set,
                                                    backup: backup, reporter: reporter)
                    return (r, "\(r.backups.count) backups, \(r.damaged.count) problems" + (r.damaged.first.map { ": \($0)" } ?? ""))
                }
                if reporter.mode == .json {
                    reporter.emitJSON(report)
                } else {
                    for d in report.damaged { reporter.error("damaged: \(d)") }
                    reporter.info((report.ok ? "ok: " : "DAMAGED: ") + "\(report.backups.count) backups, \(report.archivesChecked) archives, "
                                  + "\(report.filesChecked) files checked, \(report.damaged.count) problems")
                }
                return report.ok ? 0 : 1
            }
            if code != 0 { throw ExitCode(code) }
        }
    }

    struct Prune: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove old backups by a retention policy, never breaking a kept chain.")
        @OptionGroup var destination: DestinationOptions
        @Option(help: "Keep the N most recent backups.") var keepLast: Int?
        @Option(help: "Keep the last backup of each of the N most recent days.") var keepDaily: Int?
        @Option(help: "Keep the last backup of each of the N most recent weeks.") var keepWeekly: Int?
        @Option(help: "Keep the last backup of each of the N most recent months.") var keepMonthly: Int?
        @Flag(help: "List what would be removed without removing anything.") var dryRun = false
        @OptionGroup var notify: NotifyOptions
        func run() async throws {
            let code = await toolMain {
                let policy = RetentionPolicy(keepLast: keepLast ?? 0, keepDaily: keepDaily ?? 0,
                                             keepWeekly: keepWeekly ?? 0, keepMonthly: keepMonthly ?? 0)
                _ = try OpsCommands.prune(destination: destination.destination, set: destination.set, policy: policy, dryRun: dryRun,
                                          notifier: notify.notifier, reporter: Reporter(mode: .detect(json: destination.json)))
                return 0
            }
            if code != 0 { throw ExitCode(code) }
        }
    }
}
