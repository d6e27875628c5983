import ArgumentParser
import Backup
import BackupOps
import CommandLineSupport
import FoundationEssentials
import Glibc
import Storage
import Support

@main
struct HsBackup: ToolCommand {
    static let configuration = CommandConfiguration(
        commandName: "hs-backup",
        abstract: "Back up /opt/appdata as tar+gzip to a directory, an nfs:// export or an rclone remote, incrementally.",
        discussion: """
        DEST is an absolute directory or an nfs://SERVER/EXPORT/PATH URL (NFSv3 through libnfs; URL \
        arguments: nfsport=, mountport=, uid=, gid=, timeout=SECONDS), or rclone:REMOTE:PATH: any remote of the \
        rclone program (S3, B2, SFTP, WebDAV, ...; rclone's own RCLONE_* variables reach it; network timeouts \
        default to RCLONE_CONTIMEOUT=10s, RCLONE_TIMEOUT=30s; locks there are best-effort). An empty or \
        misspelled DEST (NFS://, nfs:/x, nfs//x, Rclone:) or, outside a terminal, a relative path is refused with exit 2.
        Backups of SET live in DEST/SET/ as ordinary tar.gz archives plus one manifest and one keyless index each. \
        Without --recipient they are NOT encrypted: anyone who can read the files can read every API key and password \
        in appdata. With --recipient age1... (the public key `age-keygen -y KEYFILE` prints) every archive and manifest \
        is an age file that only the identity (kept off the guests) decrypts: `hs-restore --identity KEYFILE`, \
        `age -d -i KEYFILE ARCHIVE | tar -xz`. hs-backup creates files 0600 and directories 0700 (whatever the umask); \
        keep the NFS share itself restricted to this host.
        Times are shown in UTC, marked Z. An NFS call waits at most 60 s (timeout= or --nfs-timeout); \
        while it waits, a line on stderr every 15 s says the server is not responding.
        --json prints exactly one JSON object on stdout, also on failure: {"error": "...", "exit_code": N}.
        Defaults (DEST, the source, the set, notification URLs per job) come from the environment or \
        /etc/default/home-server-tools (HS_CONFIG or --config names another file); a flag beats both. \
        'hs-backup config' shows the effective values.
        Exit codes: 0 success, 1 the backup or check failed, 2 bad usage, 3 (run) a backup was committed but files that \
        exist are missing from it (unreadable, or swapped while read): they are named, and --json lists them.

        Examples:
          hs-backup run --source /opt/appdata --to nfs://truenas/mnt/tank/backups
          hs-backup run --source /opt/appdata --to nfs://truenas/mnt/tank/backups --recipient age1...
          hs-backup run -q --source /opt/appdata --to /mnt/backups --stop-stacks io --ping https://kuma.example.net/api/push/TOKEN
          hs-backup list --to nfs://truenas/mnt/tank/backups
          hs-backup list --to nfs://truenas/mnt/tank/backups --name io
          hs-backup verify --to nfs://truenas/mnt/tank/backups --backup latest
          hs-backup prune --to nfs://truenas/mnt/tank/backups --keep-daily 7 --keep-weekly 4 --keep-monthly 6
        """,
        version: homeServerVersion,
        subcommands: [Run.self, List.self, Verify.self, Prune.self, Copy.self, Ls.self, Find.self, Diff.self, Dump.self, Mount.self, Config.self, NotifyFailure.self],
        defaultSubcommand: Run.self)
}

/// `--to`, `--name`, `--nfs-timeout`, `--json`, `-q`, `-v` (every subcommand).
struct DestinationOptions: ParsableArguments, UsageChecks {
    @Option(name: .customLong("to"),
            help: ArgumentHelp("Backup destination: an absolute directory, nfs://SERVER/EXPORT/PATH or rclone:REMOTE:PATH "
                               + "(default: HS_BACKUP_DEST from the environment or the configuration file).", valueName: "DEST"))
    var to: String?

    @Option(name: .customLong("name"),
            help: ArgumentHelp("Backup set name (default: HS_BACKUP_NAME, else this host's short hostname).", valueName: "SET"))
    var name: String?

    @Option(name: .customLong("nfs-timeout"),
            help: ArgumentHelp("Seconds one NFS call may wait for the server before the run fails (default: 60; the URL's timeout= wins).",
                               valueName: "SECONDS"))
    var nfsTimeout: Int?

    @Flag(help: "Print one JSON object on stdout instead of text (also on failure: {\"error\": ...}).")
    var json = false

    @OptionGroup var verbosity: VerbosityOptions

    func checkUsage() throws {
        if let t = nfsTimeout, t < 1 || t > 86_400 {
            throw ValidationError("--nfs-timeout \(t): give a number of seconds from 1 to 86400, e.g. --nfs-timeout 60.")
        }
    }

    /// The options as plain values (what `hs-backup run` consumes: `RunValues`).
    var values: DestinationValues {
        DestinationValues(to: to, name: name, nfsTimeout: nfsTimeout, json: json,
                          verbosity: VerbosityValues(config: verbosity.config, quiet: verbosity.quiet, verbose: verbosity.verbose))
    }

    /// DEST: `--to`, else HS_BACKUP_DEST from the environment or the configuration file.
    func destination() throws -> String { try values.destination() }

    /// The set name: `--name`, else HS_BACKUP_NAME, else nil (the caller's default: the hostname).
    var set: String? { get throws { try values.set } }

    /// Parses and opens DEST (usage errors exit 2; see `DestinationSpec`).
    func open() throws -> any Destination { try values.open() }

    var reporter: Reporter { values.reporter }
}

/// `DestinationOptions` as plain values.
struct DestinationValues {
    var to: String?
    var name: String?
    var nfsTimeout: Int?
    var json: Bool
    var verbosity: VerbosityValues

    /// DEST: `--to`, else HS_BACKUP_DEST from the environment or the configuration file.
    func destination() throws -> String {
        try ToolConfiguration.get().require(.backupDest, flag: to, flagName: "--to", example: "DEST")
    }

    /// The set name: `--name`, else HS_BACKUP_NAME, else nil (the caller's default: the hostname).
    var set: String? { get throws { try ToolConfiguration.get().value(.backupName, flag: name, flagName: "--name")?.value } }

    /// Parses and opens DEST (usage errors exit 2; see `DestinationSpec`).
    func open() throws -> any Destination {
        try BackupTool.destination(destination(), nfsTimeoutSeconds: nfsTimeout)
    }

    var reporter: Reporter { Reporter(mode: .detect(json: json)) }
}

/// `VerbosityOptions` (`--config`, `-q`, `-v`) as plain values (`ToolCommand.main` and
/// `ToolConfiguration` act on them from the command line itself).
struct VerbosityValues {
    var config: String?
    var quiet: Bool
    var verbose: Bool
}

extension HsBackup {
    struct Run: ParsableCommand, UsageChecks {
        static let configuration = CommandConfiguration(
            commandName: "run",  // explicit: the default goes through String(describing:) at every start
            abstract: "Take a backup (incremental unless a full one is due). Alias: backup.",
            discussion: """
            --json prints the summary: {"id", "set", "destination", "kind", "parent", "files", "directories", \
            "symlinks", "files_archived", "tree_bytes", "bytes_in", "bytes_out", "seconds", "warnings", \
            "missing": {"count", "first": [{"path", "reason"}...]}, "exit_code"}.
            A file that vanishes between the scan and its read is a warning (exit 0). A file that exists but \
            cannot be read (permission denied), or that was replaced (by a symlink, a directory, another file) \
            while the run read it, is named and left out; the backup is committed and the run exits 3. \
            --ping reports exit 3 as up with a WARNING message; --notify posts it even without --notify-success.

            Examples:
              hs-backup run --source /opt/appdata --to nfs://truenas/mnt/tank/backups
              hs-backup run --source /opt/appdata --to nfs://truenas/mnt/tank/backups?timeout=120 --name io --full
              hs-backup run -q --source /opt/appdata --to /mnt/backups --exclude '*/cache/*' --notify https://ntfy.example.net/backups
            """,
            aliases: ["backup"])

        @Option(name: .customLong("source"),
                help: ArgumentHelp("Directory to back up, e.g. /opt/appdata (default: HS_APPDATA from the environment or the "
                                   + "configuration file). Exactly one --source per run: several are refused "
                                   + "(exit 2); back up each directory as its own set with --name.", valueName: "DIR"))
        var sources: [String] = []

        @OptionGroup var destination: DestinationOptions

        @Flag(help: "Force a full backup instead of an incremental one.")
        var full = false

        @Option(name: .customLong("exclude"), help: ArgumentHelp("Glob of paths to skip (repeatable); adds to the default cache excludes.", valueName: "GLOB"))
        var excludes: [String] = []

        @Option(help: ArgumentHelp("Take a full backup automatically after this many incrementals.", valueName: "N"))
        var maxIncrementals: Int = Self.defaultMaxIncrementals

        @Option(help: ArgumentHelp("Take a full backup automatically when the last one is older than this many days.", valueName: "DAYS"))
        var fullEveryDays: Double = Self.defaultFullEveryDays

        @OptionGroup var ops: OpsRunOptions

        @OptionGroup var engine: EngineRunOptions

        @OptionGroup var encryption: EncryptionRunOptions

        static let defaultMaxIncrementals = RunValues.defaultMaxIncrementals
        static let defaultFullEveryDays = RunValues.defaultFullEveryDays

        func checkUsage() throws {
            if let problem = values.problem { throw ValidationError(problem) }
        }

        /// The options as plain values: what the run consumes (`RunValues.run`), as
        /// `parseCommonForm` gives them for the nightly command line.
        var values: RunValues {
            RunValues(sources: sources, destination: destination.values, full: full, excludes: excludes, maxIncrementals: maxIncrementals,
                      fullEveryDays: fullEveryDays, stopStacks: ops.stopStacks, notify: ops.notify.values, engine: engine.values,
                      encryption: encryption.values)
        }

        func run() throws {
            let code = values.run()
            if code != 0 { throw ExitCode(code) }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list",  // explicit: the default goes through String(describing:) at every start
            abstract: "List the backup sets of a destination, or the backups of one set (--name). Alias: snapshots.",
            discussion: """
            Without --name: the sets in DEST. --json: {"destination", "sets": [{"name", "backups", "latest", \
            "latest_time", "locked"}]}.
            With --name: the backups of that set, oldest first. --json: {"destination", "set", "backups": \
            [{"id", "time", "kind", "parent", "files", "tree_bytes", "bytes_out", "seconds", "warnings"}], "damage": [...]}.
            Damage (an archive no manifest accounts for, a manifest that holds another backup than its name says) \
            is listed too, and the exit code is then 1.
            Times are UTC (ISO 8601, marked Z). A missing destination or set is an error (exit 1).

            Examples:
              hs-backup list --to nfs://truenas/mnt/tank/backups
              hs-backup list --to nfs://truenas/mnt/tank/backups --name io --json
            """,
            aliases: ["snapshots"])
        @OptionGroup var destination: DestinationOptions
        @OptionGroup var keys: IdentityOptions

        struct SetsJSON: Encodable { var destination: String; var sets: [SetSummary] }
        struct BackupsJSON: Encodable { var destination: String; var set: String; var backups: [BackupListing]; var damage: [String] }

        func run() throws {
            let code = toolMain {
                let reporter = destination.reporter
                let setName = try destination.set.map { try BackupTool.setName($0) }
                let dest = try destination.open()
                func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count) }
                guard let setName else {
                    let sets = try BackupSets.list(dest)
                    if reporter.mode == .json { reporter.emitJSON(SetsJSON(destination: dest.displayName, sets: sets)); return 0 }
                    if sets.isEmpty { reporter.info("no backup sets in \(NameEscape.escape(dest.displayName))"); return 0 }
                    reporter.info(pad("SET", 16) + pad("BACKUPS", 9) + pad("LATEST", 20) + "TIME (UTC)")
                    for s in sets {
                        reporter.info(pad(NameEscape.escape(s.name), 16) + pad(String(s.backups), 9) + pad(s.latest.map(NameEscape.escape) ?? "-", 20) + (s.latestTime ?? "-")
                                      + (s.locked ? "  (locked)" : ""))
                    }
                    return 0
                }
                try BackupSets.requireSet(dest, setName)
                let (rows, damage) = try SetInspector.list(destination: dest, set: setName, identities: SetKeys.identities(files: keys.identityFiles))
                if reporter.mode == .json {
                    reporter.emitJSON(BackupsJSON(destination: dest.displayName, set: setName, backups: rows, damage: damage))
                    return damage.isEmpty ? 0 : 1
                }
                for d in damage { reporter.error("damaged: \(d)") }
                if rows.isEmpty {
                    reporter.info("no backups in \(NameEscape.escape("\(dest.displayName)/\(setName)"))")
                } else {
                    reporter.info(pad("ID", 20) + pad("TIME (UTC)", 22) + pad("KIND", 13) + pad("FILES", 9) + pad("TREE", 11) + pad("WRITTEN", 11) + "DURATION")
                    for r in rows {
                        reporter.info(pad(NameEscape.escape(r.id), 20) + pad(r.time, 22) + pad(r.kind, 13) + pad(r.files.map { String($0) } ?? "-", 9)
                                      + pad(r.treeBytes.map { Format.bytes($0) } ?? "-", 11) + pad(Format.bytes(r.bytesOut), 11)
                                      + (r.seconds.map { Format.seconds($0) } ?? "-") + (r.encrypted ? "  encrypted" : ""))
                    }
                }
                return damage.isEmpty ? 0 : 1
            }
            if code != 0 { throw ExitCode(code) }
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "verify",  // explicit: the default goes through String(describing:) at every start
            abstract: "Check that archives decompress and every file's hash matches (exit 1 on damage). Alias: check.",
            discussion: """
            --json: {"backups": [ID...], "archives_checked", "files_checked", "damaged": ["archive: path: what"...]}.

            Examples:
              hs-backup verify --to nfs://truenas/mnt/tank/backups --backup latest
              hs-backup verify --to /mnt/backups --name io --notify https://ntfy.example.net/backups
              hs-backup verify --to /mnt/backups --name io --identity /root/hs-backup-key.txt

            An encrypted set without --identity is checked by its keyless index only (archives and manifests \
            present, sizes, SHA-256 of the stored bytes) and the summary says it was not decrypted.
            """,
            aliases: ["check"])
        @OptionGroup var destination: DestinationOptions
        @Option(help: ArgumentHelp("Backup to verify: an ID or 'latest' (default: all).", valueName: "ID"))
        var backup: String?
        @OptionGroup var keys: IdentityOptions
        @OptionGroup var notify: NotifyOptions
        func run() throws {
            let code = toolMain {
                let reporter = destination.reporter
                let set = try BackupTool.setName(destination.set)
                let notifier = try notify.notifier(.verify, set: set)
                // Before the destination is opened: a verify stopped then, or by its unit's
                // timeout mid-way, reaches the monitors too.
                OpsCommands.reportSignal(.shared, notifier: notifier, operation: "hs-backup verify", set: set)
                let dest = try OpsCommands.reportingFailure(notifier, operation: "hs-backup verify", set: set, reporter: reporter) {
                    try destination.open()
                }
                let report = try OpsCommands.notifying(notifier, operation: "hs-backup verify", set: set, reporter: reporter,
                                                       ok: { $0.ok }) {
                    try BackupSets.requireSet(dest, set)
                    let r = try SetInspector.verify(destination: dest, set: set, backup: backup,
                                                    identities: SetKeys.identities(files: keys.identityFiles), reporter: reporter)
                    return (r, "\(r.backups.count) backups, \(r.damaged.count) problems" + (r.damaged.first.map { ": \($0)" } ?? ""))
                }
                if reporter.mode == .json {
                    reporter.emitJSON(report)
                } else {
                    for d in report.damaged { reporter.error("damaged: \(d)") }
                    let line = (report.ok ? "ok: " : "DAMAGED: ") + "\(report.backups.count) backups, \(report.archivesChecked) archives, "
                        + "\(report.filesChecked) files checked, \(report.damaged.count) problems"
                        + (report.notDecrypted.isEmpty ? "" : "; \(report.notDecrypted.count) encrypted backups checked by their index only "
                           + "(presence, sizes, SHA-256 of the stored bytes), NOT decrypted: give --identity to check their contents")
                    if report.ok { reporter.info(line) } else { Reporter.writeStdout(line + "\n") }
                }
                return report.ok ? 0 : 1
            }
            if code != 0 { throw ExitCode(code) }
        }
    }

    struct Prune: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "prune",  // explicit: the default goes through String(describing:) at every start
            abstract: "Remove old backups by a retention policy, never breaking a kept chain. Alias: forget.",
            discussion: """
            Days, weeks and months are counted in this host's local time zone (as restic does); ids and \
            times are shown in UTC. --json: {"set", "destination", "dry_run", "kept": [...], "removed": [...], \
            "bytes_freed", "warnings"}, each backup as {"id", "time", "kind", "reasons", "bytes"}.

            Examples:
              hs-backup prune --to nfs://truenas/mnt/tank/backups --keep-daily 7 --keep-weekly 4 --keep-monthly 6
              hs-backup prune --to /mnt/backups --name io --keep-last 10 --dry-run
              hs-backup forget --keep-within 30d --keep-monthly 12 --keep-yearly 5
            """,
            aliases: ["forget"])
        @OptionGroup var destination: DestinationOptions
        @Option(help: ArgumentHelp("Keep the N most recent backups.", valueName: "N")) var keepLast: Int?
        @Option(help: ArgumentHelp("Keep the last backup of each of the N most recent hours.", valueName: "N")) var keepHourly: Int?
        @Option(help: ArgumentHelp("Keep the last backup of each of the N most recent days.", valueName: "N")) var keepDaily: Int?
        @Option(help: ArgumentHelp("Keep the last backup of each of the N most recent weeks.", valueName: "N")) var keepWeekly: Int?
        @Option(help: ArgumentHelp("Keep the last backup of each of the N most recent months.", valueName: "N")) var keepMonthly: Int?
        @Option(help: ArgumentHelp("Keep the last backup of each of the N most recent years.", valueName: "N")) var keepYearly: Int?
        @Option(help: ArgumentHelp("Keep every backup made within DURATION before the newest backup (not before now), "
                                   + "restic's syntax: years, months, days, hours, e.g. 1y6m, 14d, 2d12h.", valueName: "DURATION"))
        var keepWithin: String?
        @Flag(help: "List what would be removed without removing anything.") var dryRun = false
        @OptionGroup var notify: NotifyOptions
        func run() throws {
            let code = toolMain {
                var within: RetentionSpan?
                if let keepWithin {
                    do { within = try RetentionSpan(parsing: keepWithin) } catch { throw ToolError.usage("--keep-within \(error)") }
                }
                let policy = RetentionPolicy(keepLast: keepLast ?? 0, keepDaily: keepDaily ?? 0, keepWeekly: keepWeekly ?? 0,
                                             keepMonthly: keepMonthly ?? 0, keepYearly: keepYearly ?? 0, keepHourly: keepHourly ?? 0,
                                             keepWithin: within)
                let set = try destination.set
                let notifier = try notify.notifier(.prune, set: BackupTool.setName(set))
                let spec = try OpsCommands.reportingFailure(dryRun ? notifier.forDryRun() : notifier, operation: "hs-backup prune",
                                                            set: BackupTool.setName(set), reporter: destination.reporter) {
                    try destination.destination()
                }
                _ = try OpsCommands.prune(destination: spec, set: set, policy: policy, dryRun: dryRun,
                                          nfsTimeoutSeconds: destination.nfsTimeout, notifier: notifier, reporter: destination.reporter)
                return 0
            }
            if code != 0 { throw ExitCode(code) }
        }
    }

    struct Config: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "config",  // explicit: the default goes through String(describing:) at every start
            abstract: "Print the effective configuration: every key, its value and where it came from (secrets hidden).",
            discussion: """
            Values come from the flag, else the environment variable of the key's name, else the \
            configuration file (\(ToolConfiguration.defaultPath), or the file named by HS_CONFIG or \
            --config). An empty value counts as not set. Flags given to a command beat everything shown \
            here. URLs show only scheme://host/…, tokens are hidden, credentials in a destination URL \
            are replaced by ***. --json: {"file", "keys": [{"key", "value", "source", "fills"}]}.

            Examples:
              hs-backup config
              HS_CONFIG=/etc/home-server-tools/media.conf hs-backup config --json
            """)
        @Flag(help: "Print one JSON object on stdout instead of text.")
        var json = false
        @OptionGroup var verbosity: VerbosityOptions

        struct ConfigJSON: Encodable { var file: String; var keys: [ToolConfiguration.Effective] }

        func run() throws {
            let json = json
            let code = toolMain {
                let config = try ToolConfiguration.get()
                let rows = config.effective
                if json {
                    Reporter(mode: .detect(json: true)).emitJSON(ConfigJSON(file: config.fileDescription, keys: rows))
                    return 0
                }
                // Text for a person: the path and the values escaped (a value may hold a newline
                // or ESC); --json above keeps them as they are.
                var out = "configuration file: \(NameEscape.escape(config.fileDescription))\n"
                let values = rows.map { $0.value.map(NameEscape.escape) ?? "-" }
                let width = (rows.map(\.key.count).max() ?? 0) + 2
                let valueWidth = min(48, (values.map(\.count).max() ?? 0) + 2)
                for (r, v) in zip(rows, values) {
                    out += r.key.padded(toLength: width)
                        + (v.count >= valueWidth ? v + "  " : v.padded(toLength: valueWidth))
                        + NameEscape.escape(r.source) + "\n"
                }
                Reporter.writeStdout(out)
                return 0
            }
            if code != 0 { throw ExitCode(code) }
        }
    }

    struct NotifyFailure: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "notify-failure",
            abstract: "Post a failed systemd unit to ntfy (what OnFailure=hs-notify-failure@%n.service runs).",
            discussion: """
            Reads how UNIT ended (systemctl show) and its last 20 journal lines and posts them to the \
            ntfy topic (--notify, else HS_NTFY_URL). A failure an hs-backup unit reported itself (exit 1) \
            is not posted twice. Nothing configured: nothing is sent, exit 0.

            Example:
              hs-backup notify-failure hs-deploy-pull.service
            """)
        @Argument(help: "The unit that failed, e.g. hs-backup.service.")
        var unit: String
        @Option(name: .customLong("notify"), help: ArgumentHelp("ntfy topic URL (default: HS_NTFY_URL).", valueName: "URL"))
        var ntfy: String?
        @OptionGroup var verbosity: VerbosityOptions

        func run() throws {
            let unit = unit, ntfy = ntfy
            let code = toolMain {
                let config = try ToolConfiguration.get()
                let url = config.value(.ntfyURL, flag: ntfy, flagName: "--notify")
                var notifier = Notifier(ntfyURL: url?.value)
                notifier.ntfyName = NotifyOptions.name(url, key: .ntfyURL, flag: "--notify")
                do { try notifier.validate() } catch let e as NotifierUsageError { throw ToolError.usage(e.description) }
                let reporter = Reporter(mode: .detect(json: false))
                reporter.info(try UnitFailure.report(unit: unit, notifier: notifier, reporter: reporter))
                return 0
            }
            if code != 0 { throw ExitCode(code) }
        }
    }
}
