import ArgumentParser
import Support

@main
struct HsBackup: AsyncParsableCommand {
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

        func run() async throws { throw ToolError("hs-backup run: not yet implemented") }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the backups of a set.")
        @OptionGroup var destination: DestinationOptions
        func run() async throws { throw ToolError("hs-backup list: not yet implemented") }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Check that archives decompress and every file's hash matches (exit 1 on damage).")
        @OptionGroup var destination: DestinationOptions
        @Option(help: "Backup to verify: an ID or 'latest' (default: all).")
        var backup: String?
        func run() async throws { throw ToolError("hs-backup verify: not yet implemented") }
    }

    struct Prune: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove old backups by a retention policy, never breaking a kept chain.")
        @OptionGroup var destination: DestinationOptions
        @Option(help: "Keep the N most recent backups.") var keepLast: Int?
        @Option(help: "Keep the last backup of each of the N most recent days.") var keepDaily: Int?
        @Option(help: "Keep the last backup of each of the N most recent weeks.") var keepWeekly: Int?
        @Option(help: "Keep the last backup of each of the N most recent months.") var keepMonthly: Int?
        @Flag(help: "List what would be removed without removing anything.") var dryRun = false
        func run() async throws { throw ToolError("hs-backup prune: not yet implemented") }
    }
}
