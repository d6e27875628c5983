import ArgumentParser
import Backup
import BackupOps
import Support

/// `--notify`, `--notify-success`, `--ping`, `--healthchecks`, `--metrics-file` (run, verify,
/// prune, copy). A flag not given falls back to the job's key in the environment or the
/// configuration file (HS_NTFY_URL, HS_KUMA_<JOB>, HS_HEALTHCHECKS_<JOB>, HS_METRICS_DIR).
struct NotifyOptions: ParsableArguments {
    @Option(name: .customLong("notify"), help: ArgumentHelp("Post to this ntfy topic URL when the run fails (https://ntfy.example.net/backups; user:pass@ or $HS_NTFY_TOKEN for auth; default: HS_NTFY_URL).", valueName: "URL"))
    var ntfy: String?

    @Flag(name: .customLong("notify-success"), help: "Also post to the --notify topic when the run succeeds.")
    var notifySuccess = false

    @Option(name: .customLong("ping"), help: ArgumentHelp("Uptime Kuma push URL (https://kuma.example.net/api/push/TOKEN): called with status=up or status=down after every run (default: HS_KUMA_BACKUP, _VERIFY, _PRUNE, _COPY). A Healthchecks URL is refused: use --healthchecks.", valueName: "URL"))
    var ping: String?

    @Option(name: .customLong("healthchecks"), help: ArgumentHelp("Healthchecks ping URL (https://hc-ping.com/UUID, or a self-hosted .../ping/UUID): /start when the run starts, success or /EXIT-CODE with the log's last lines when it ends; exit 3 counts as success with the missing files in the log (default: HS_HEALTHCHECKS_BACKUP, _VERIFY, _PRUNE, _COPY).", valueName: "URL"))
    var healthchecks: String?

    @Option(name: .customLong("metrics-file"), help: ArgumentHelp("Write a Prometheus text file for node_exporter's textfile collector after the run (atomically; last success time kept across failures). Default with HS_METRICS_DIR: DIR/hs_backup_SET_COMMAND.prom.", valueName: "PATH"))
    var metricsFile: String?

    /// The notifier of `job` on `set`: flags, else the configuration.
    func notifier(_ job: MonitoredJob, set: String) throws -> Notifier { try values.notifier(job, set: set) }

    /// The options as plain values (what `hs-backup run` consumes: `RunValues`).
    var values: NotifyValues {
        NotifyValues(ntfy: ntfy, notifySuccess: notifySuccess, ping: ping, healthchecks: healthchecks, metricsFile: metricsFile)
    }

    /// How a value was given, for messages: the flag, or the key and where it was set.
    static func name(_ value: ConfigValue?, key: ConfigKey, flag: String) -> String { NotifyValues.name(value, key: key, flag: flag) }
}

/// `NotifyOptions` as plain values.
struct NotifyValues {
    var ntfy: String?
    var notifySuccess: Bool
    var ping: String?
    var healthchecks: String?
    var metricsFile: String?

    /// The notifier of `job` on `set`: flags, else the configuration.
    func notifier(_ job: MonitoredJob, set: String) throws -> Notifier {
        let config = try ToolConfiguration.get()
        let ntfy = config.value(.ntfyURL, flag: ntfy, flagName: "--notify")
        let ping = config.value(job.kumaKey, flag: ping, flagName: "--ping")
        let hc = config.value(job.healthchecksKey, flag: healthchecks, flagName: "--healthchecks")
        var metrics = metricsFile
        if metrics == nil, let dir = config.value(.metricsDir) {
            metrics = MetricsFile.path(directory: dir.value, set: set, command: job.rawValue)
        }
        var n = Notifier(ntfyURL: ntfy?.value, notifySuccess: notifySuccess, pingURL: ping?.value,
                         healthchecksURL: hc?.value, metricsFile: metrics)
        n.metricsCommand = job.rawValue
        n.ntfyName = Self.name(ntfy, key: .ntfyURL, flag: "--notify")
        n.pingName = Self.name(ping, key: job.kumaKey, flag: "--ping")
        n.healthchecksName = Self.name(hc, key: job.healthchecksKey, flag: "--healthchecks")
        return n
    }

    /// How a value was given, for messages: the flag, or the key and where it was set.
    static func name(_ value: ConfigValue?, key: ConfigKey, flag: String) -> String {
        guard let value else { return flag }
        switch value.source {
        case .flag: return flag
        case .environment: return "\(key.name) (environment)"
        case .file: return "\(key.name) (\(NameEscape.escape(value.source.description)))"   // FILE:LINE
        }
    }
}

/// `--stop-stacks` and notifications of `hs-backup run`.
struct OpsRunOptions: ParsableArguments {
    @Option(name: .customLong("stop-stacks"), parsing: .upToNextOption,
            help: ArgumentHelp("Compose projects (stacks) on this host to stop during the backup and start again afterwards, also when it fails.", valueName: "STACK"))
    var stopStacks: [String] = []

    @OptionGroup var notify: NotifyOptions
}

extension RunValues {
    /// `--stop-stacks` (comma lists split) and the notifier of the run.
    func settings(set: String) throws -> OpsSettings {
        OpsSettings(stopStacks: stopStacks.flatMap { $0.split(separator: ",").map(String.init) }, notifier: try notify.notifier(.run, set: set))
    }
}
