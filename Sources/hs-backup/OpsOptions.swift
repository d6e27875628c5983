import ArgumentParser
import Backup
import BackupOps

/// `--notify`, `--notify-success`, `--ping` (run, verify, prune).
struct NotifyOptions: ParsableArguments {
    @Option(name: .customLong("notify"), help: ArgumentHelp("Post to this ntfy topic URL when the run fails (https://ntfy.example.net/backups; user:pass@ or $HS_NTFY_TOKEN for auth).", valueName: "URL"))
    var ntfy: String?

    @Flag(name: .customLong("notify-success"), help: "Also post to the --notify topic when the run succeeds.")
    var notifySuccess = false

    @Option(name: .customLong("ping"), help: ArgumentHelp("Uptime Kuma push URL (https://kuma.example.net/api/push/TOKEN): called with status=up or status=down after every run.", valueName: "URL"))
    var ping: String?

    var notifier: Notifier { Notifier(ntfyURL: ntfy, notifySuccess: notifySuccess, pingURL: ping) }
}

/// `--stop-stacks` and notifications of `hs-backup run`.
struct OpsRunOptions: ParsableArguments {
    @Option(name: .customLong("stop-stacks"), parsing: .upToNextOption,
            help: ArgumentHelp("Compose projects (stacks) on this host to stop during the backup and start again afterwards, also when it fails.", valueName: "STACK"))
    var stopStacks: [String] = []

    @OptionGroup var notify: NotifyOptions

    var settings: OpsSettings {
        OpsSettings(stopStacks: stopStacks.flatMap { $0.split(separator: ",").map(String.init) }, notifier: notify.notifier)
    }
}
