import ArgumentParser
import CommandLineSupport
import Backup
import Archive
import Support

@main
struct HsRestore: ToolCommand {
    static let configuration = CommandConfiguration(
        commandName: "hs-restore",
        abstract: "Restore a backup set (or any tar.gz) into a directory, safely.",
        discussion: """
        Either --from DEST (a backup destination written by hs-backup) or --archive FILE \
        (any POSIX/GNU tar.gz, extracted with the same hostile-archive rules).
        DEST is an absolute directory, an nfs://SERVER/EXPORT/PATH URL or rclone:REMOTE:PATH, as for hs-backup; an empty or \
        misspelled DEST exits 2. --json prints one object, also on failure: {"error": "...", "exit_code": N}.
        Exit codes: 0 success, 1 the restore failed, 2 bad usage. \(ExitStatus.onlyBackupRun)

        Examples:
          hs-restore --from nfs://truenas/mnt/tank/backups --name io --to /opt/appdata.new
          hs-restore --from /mnt/backups --name io --backup 20261127T030000Z --to /tmp/r --only plex/Preferences.xml
          hs-restore --archive /mnt/backups/io/20261127T030000Z.tar.gz --to /tmp/r
          hs-restore --from /mnt/backups --name io --to /tmp/r --identity /root/hs-backup-key.txt   (an encrypted set)
        """,
        version: homeServerVersion)

    @Option(help: "Backup destination: a directory, nfs://server/export/path or rclone:REMOTE:PATH (default without --archive: HS_BACKUP_DEST from the environment or the configuration file).")
    var from: String?

    @Option(help: "A single tar.gz file to extract safely instead of a backup set.")
    var archive: String?

    @Option(name: .customLong("name"), help: "Backup set name (default: HS_BACKUP_NAME, else this host's short hostname).")
    var set: String?

    @Option(help: "Backup to restore: an ID or 'latest'.")
    var backup: String = "latest"

    @Option(help: "Target directory; must be empty unless --force.")
    var to: String

    @Option(name: .customLong("only"), help: "Restore only this path inside the backup (repeatable).")
    var only: [String] = []

    @Flag(help: "Restore into a non-empty directory, replacing what is there.")
    var force = false

    @Flag(help: "Show what would be restored without writing anything.")
    var dryRun = false

    @Flag(help: "Print one JSON object on stdout instead of text.")
    var json = false

    @OptionGroup var keys: IdentityOptions

    @OptionGroup var verbosity: VerbosityOptions

    func validate() throws {
        if from != nil && archive != nil { throw ValidationError("Give exactly one of --from DEST or --archive FILE.") }
        if from == nil, archive == nil, let config = try? ToolConfiguration.get(), config.value(.backupDest) == nil {
            throw ValidationError("Give --from DEST or --archive FILE (HS_BACKUP_DEST, the default of --from, is not set: "
                                  + "\(config.whereLooked(.backupDest))).")
        }
        for (option, value) in [("--to", to), ("--from", from), ("--archive", archive)] where value?.isEmpty == true {
            throw ValidationError("\(option) is empty: give \(option == "--to" ? "the directory to restore into, e.g. --to /opt/appdata.new" : option == "--from" ? "the backup destination, e.g. --from /mnt/backups" : "the tar.gz file to extract, e.g. --archive /mnt/backups/io/20261127T030000Z.tar.gz").")
        }
    }

    func run() async throws {
        let code = await toolMain {
            if let archive {
                // An age file (an encrypted set's archive) is decrypted with --identity as it is read.
                let source = try EncryptedArchive.source(archive, identityFiles: keys.identityFiles)
                return try ArchiveRestore.run(archive: archive, source: source, to: to, only: only, force: force, dryRun: dryRun, json: json)
            }
            let config = try ToolConfiguration.get()
            let from = try config.require(.backupDest, flag: from, flagName: "--from", example: "DEST")
            let set = config.value(.backupName, flag: set, flagName: "--name")?.value
            return try BackupRestoreCommand.run(from: from, set: set, backup: backup, to: to, only: only,
                                                force: force, dryRun: dryRun, json: json, identityFiles: keys.identityFiles)
        }
        if code != 0 { throw ExitCode(code) }
    }
}
