import ArgumentParser
import Backup
import BackupOps
import CommandLineSupport
import FoundationEssentials
import Glibc
import Support

extension HsBackup {
    struct Copy: ParsableCommand, UsageChecks {
        static let configuration = CommandConfiguration(
            commandName: "copy",  // explicit: the default goes through String(describing:) at every start
            abstract: "Copy backups to another destination (e.g. offsite through rclone), without any key.",
            discussion: """
            Copies the backups of each set newer than the newest one at DST, oldest first, with the archives \
            their chains need; a backup DST no longer has (pruned there) is never copied again: retention at \
            DST is its own (run prune there). Each backup is committed at DST only when every file it needs is \
            there and matches the source's index (SHA-256; at DST the remote's own hash where rclone has one, \
            else read back), its manifest last. An interrupted copy leaves no half backup visible at DST; the \
            next copy starts that backup again. Encrypted sets are copied as they are stored: no key is needed.
            Backups made before indexes existed are copied with an index built from their manifest; run \
            `hs-backup verify` at SRC first if in doubt.
            Run it where the remote's credentials are and no guest is: the Proxmox host or TrueNAS SCALE. \
            SRC defaults to HS_BACKUP_DEST, DST to HS_COPY_DEST (environment or configuration file); HS_BACKUP_DEST \
            never fills --to.
            --json: {"from", "to", "sets": [{"set", "copied", "already_there", "newest_at_destination", "skipped": \
            [{"id", "reason"}], "files_uploaded", "bytes_uploaded", "checked_by", "warnings", "dry_run"}], \
            "failed": [{"set", "error"}], "seconds", "exit_code"}.
            Exit codes: 0 copied (or nothing to copy), 1 failed, 2 bad usage, 3 copied, but backups whose source \
            does not match its index were left out (named).

            Examples:
              hs-backup copy --from nfs://truenas/mnt/tank/backups --to rclone:b2:my-bucket/home-server
              hs-backup copy --from /mnt/tank/backups --to rclone:offsite-sftp:/srv/backups --name io --transfers 8
              hs-backup copy --from nfs://truenas/mnt/tank/backups --to rclone:b2:my-bucket/home-server --dry-run
            """)

        @Option(name: .customLong("from"), help: ArgumentHelp("Where the backups are: a directory, nfs://SERVER/EXPORT/PATH or rclone:REMOTE:PATH (default: HS_BACKUP_DEST).", valueName: "SRC"))
        var from: String?

        @Option(name: .customLong("to"), help: ArgumentHelp("Where to copy them: a directory, nfs://SERVER/EXPORT/PATH or rclone:REMOTE:PATH (default: HS_COPY_DEST; never HS_BACKUP_DEST).", valueName: "DST"))
        var to: String?

        @Option(name: .customLong("name"), help: ArgumentHelp("A set to copy (repeatable; default: every set at SRC).", valueName: "SET"))
        var sets: [String] = []

        @Option(help: ArgumentHelp("Files uploaded at the same time (1-64).", valueName: "N"))
        var transfers = 4

        @Flag(help: "Check every copy by reading it back, even where the remote gives its own hash.")
        var readBack = false

        @Flag(help: "Show what would be copied without writing anything.")
        var dryRun = false

        @Option(name: .customLong("nfs-timeout"),
                help: ArgumentHelp("Seconds one NFS call may wait for the server before the copy fails (default: 60; the URL's timeout= wins).",
                                   valueName: "SECONDS"))
        var nfsTimeout: Int?

        @Flag(help: "Print one JSON object on stdout instead of text (also on failure: {\"error\": ...}).")
        var json = false

        @OptionGroup var verbosity: VerbosityOptions

        @OptionGroup var notify: NotifyOptions

        func checkUsage() throws {
            guard (1...64).contains(transfers) else { throw ValidationError("--transfers \(transfers): give a number from 1 to 64, e.g. --transfers 4.") }
            if let t = nfsTimeout, t < 1 || t > 86_400 {
                throw ValidationError("--nfs-timeout \(t): give a number of seconds from 1 to 86400, e.g. --nfs-timeout 60.")
            }
        }

        func run() throws {
            let code = toolMain {
                let reporter = Reporter(mode: .detect(json: json))
                let config = try ToolConfiguration.get()
                let source = try config.require(.backupDest, flag: from, flagName: "--from", example: "SRC")
                let target = try config.require(.copyDest, flag: to, flagName: "--to", example: "DST")
                let notifier = try notify.notifier(.copy, set: sets.count == 1 ? sets[0] : "all")
                let report = try OpsCommands.copy(from: source, to: target, sets: sets,
                                                  options: CopyOptions(transfers: transfers, readBack: readBack, dryRun: dryRun),
                                                  nfsTimeoutSeconds: nfsTimeout, notifier: notifier, reporter: reporter)
                if reporter.mode == .json {
                    reporter.emitJSON(report)
                } else if report.exitCode == 0 {
                    reporter.info(report.line)
                } else {
                    Reporter.writeStdout(report.line + "\n")
                }
                return report.exitCode
            }
            if code != 0 { throw ExitCode(code) }
        }
    }
}
