import ArgumentParser
import CommandLineSupport
import Support

@main
struct HsRestore: ToolCommand, UsageChecks {
    static let configuration = CommandConfiguration(
        commandName: "hs-restore",
        abstract: "Restore a backup set (or any tar or tar.gz) into a directory, safely.",
        discussion: """
        Either --from DEST (a backup destination written by hs-backup) or --archive FILE \
        (any POSIX/GNU tar or tar.gz, extracted with the same hostile-archive rules; - reads stdin, \
        e.g. `age -d -i key.txt x.tar.gz | hs-restore --archive - --to DIR`).
        DEST is an absolute directory, an nfs://SERVER/EXPORT/PATH URL or rclone:REMOTE:PATH, as for hs-backup (default: HS_BACKUP_DEST); an empty or \
        misspelled DEST exits 2. Names are shown escaped (\\n, \\xNN for bytes that are not UTF-8 and for control and \
        invisible format characters, \\\\ for a backslash); --only takes a path as its bytes or in that escaped form. \
        --json prints one object, also on failure: {"error": "...", "exit_code": N}; with --dry-run it \
        lists the entries ("entries": [{"type", "path", "size", "mode", "uid", "gid", "link"}]).
        Exit codes: 0 success, 1 the restore failed (or an --only path matches nothing), 2 bad usage. \(ExitStatus.onlyBackupRun)

        Examples:
          hs-restore --from nfs://truenas/mnt/tank/backups --name io --to /opt/appdata.new
          hs-restore --from /mnt/backups --name io --backup 20261127T030000Z --to /tmp/r --only plex/Preferences.xml
          hs-restore --archive /mnt/backups/io/20261127T030000Z.tar.gz --to /tmp/r --dry-run
          hs-restore --from /mnt/backups --name io --to /tmp/r --identity /root/hs-backup-key.txt   (an encrypted set)
        """,
        version: homeServerVersion)

    @Option(help: "Backup destination: a directory, nfs://server/export/path or rclone:REMOTE:PATH (default without --archive: HS_BACKUP_DEST from the environment or the configuration file).")
    var from: String?

    @Option(help: "A tar or tar.gz file to extract safely instead of a backup set; - reads it from stdin.")
    var archive: String?

    @Option(name: .customLong("name"), help: "Backup set name (default: HS_BACKUP_NAME, else this host's short hostname).")
    var set: String?

    @Option(help: "Backup to restore: an ID or 'latest'.")
    var backup: String = "latest"

    @Option(help: "Target directory; must be empty (or absent) unless --force.")
    var to: String

    @Option(name: .customLong("only"), help: "Restore only this path inside the backup or archive, and what lies below it (repeatable; bytes or the escaped form the listing shows).")
    var only: [String] = []

    @Flag(help: "Restore into a non-empty directory, replacing what is there.")
    var force = false

    @Flag(help: "Show what would be restored (one line per entry, escaped) without writing anything.")
    var dryRun = false

    @Flag(help: "Leave the target directory's own mode and mtime alone (by default an archive's '.' entry sets them, as GNU tar does).")
    var noOverwriteDir = false

    @Flag(help: "Print one JSON object on stdout instead of text.")
    var json = false

    @OptionGroup var keys: IdentityOptions

    @OptionGroup var verbosity: VerbosityOptions

    func checkUsage() throws {
        if from != nil && archive != nil { throw ValidationError("Give exactly one of --from DEST or --archive FILE.") }
        if from == nil, archive == nil, let config = try? ToolConfiguration.get(), config.value(.backupDest) == nil {
            throw ValidationError("Give --from DEST or --archive FILE (HS_BACKUP_DEST, the default of --from, is not set: "
                                  + "\(config.whereLooked(.backupDest))).")
        }
        for (option, value) in [("--to", to), ("--from", from), ("--archive", archive)] where value?.isEmpty == true {
            throw ValidationError("\(option) is empty: give \(option == "--to" ? "the directory to restore into, e.g. --to /opt/appdata.new" : option == "--from" ? "the backup destination, e.g. --from /mnt/backups" : "the tar or tar.gz file to extract (- for stdin), e.g. --archive /mnt/backups/io/20261127T030000Z.tar.gz").")
        }
    }

    func run() throws {
        let code = toolMain {
            var request = RestoreRequest(from: nil, archive: archive, set: set, backup: backup, target: to, only: only,
                                         force: force, dryRun: dryRun, overwriteDir: !noOverwriteDir, json: json,
                                         identityFiles: keys.identityFiles)
            if archive == nil {
                let config = try ToolConfiguration.get()
                request.from = try config.require(.backupDest, flag: from, flagName: "--from", example: "DEST")
                request.set = config.value(.backupName, flag: set, flagName: "--name")?.value
            }
            return try RestoreCommand.run(request)
        }
        if code != 0 { throw ExitCode(code) }
    }
}
