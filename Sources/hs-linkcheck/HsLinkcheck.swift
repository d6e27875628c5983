import ArgumentParser
import CommandLineSupport
import Foundation
import LinkCheck
import Support

@main
struct HsLinkcheck: ToolCommand, UsageChecks {
    static let configuration = CommandConfiguration(
        commandName: "hs-linkcheck",
        abstract: "Prove hardlinks work between downloads/ and library/, explain why not, reclaim wasted copies.",
        discussion: """
        Exit codes: 0 all good, 1 a problem found, 2 bad usage. \(ExitStatus.onlyBackupRun)

        Examples:
          hs-linkcheck /mnt/storage
          hs-linkcheck nfs://truenas/mnt/tank/media --json
          hs-linkcheck /mnt/storage --audit
          hs-linkcheck /mnt/storage --reclaim --yes
        """,
        version: homeServerVersion)

    @Argument(help: ArgumentHelp("Media root: a local path or nfs://server/export/path.", valueName: "root"))
    var root: String = "/mnt/storage"

    @Option(help: ArgumentHelp("Downloads directory, relative to the root.", valueName: "rel"))
    var downloads: String = "downloads"

    @Option(help: ArgumentHelp("Library directory, relative to the root.", valueName: "rel"))
    var library: String = "library"

    @Flag(help: "Fail (exit 1) when the root is not a mount point, instead of warning.")
    var requireMount = false

    @Flag(name: .customLong("init"), help: "Create the plan's media tree owned by PUID:PGID with mode 775.")
    var initialize = false

    @Option(help: ArgumentHelp("Owner uid for --init (default: $PUID or 1000).", valueName: "uid"))
    var puid: UInt32?

    @Option(help: ArgumentHelp("Owner gid for --init (default: $PGID or 1000).", valueName: "gid"))
    var pgid: UInt32?

    @Option(help: ArgumentHelp("Repository root whose stacks/*/docker-compose.yml are checked for consistent media volumes (default: . when ./stacks exists).", valueName: "dir"))
    var compose: String?

    @Flag(help: "Find library files that are copies of downloads instead of hardlinks (exit 1 if any).")
    var audit = false

    @Flag(help: "Replace confirmed copies with hardlinks (shows the plan unless --yes).")
    var reclaim = false

    @Flag(help: "With --reclaim: really replace the copies.")
    var yes = false

    @Flag(help: "Print one JSON object on stdout instead of text.")
    var json = false

    @OptionGroup var verbosity: VerbosityOptions

    func checkUsage() throws {
        if yes && !reclaim { throw ValidationError("--yes only goes with --reclaim.") }
    }

    func run() throws {
        let env = ProcessInfo.processInfo.environment
        var o = LinkCheckOptions()
        o.root = root
        o.downloads = downloads
        o.library = library
        o.requireMount = requireMount
        o.initialize = initialize
        o.puid = puid ?? env["PUID"].flatMap(UInt32.init) ?? 1000
        o.pgid = pgid ?? env["PGID"].flatMap(UInt32.init) ?? 1000
        var isDir: ObjCBool = false
        o.composeDirectory = compose ?? (FileManager.default.fileExists(atPath: "stacks", isDirectory: &isDir) && isDir.boolValue ? "." : nil)
        o.audit = audit
        o.reclaim = reclaim
        o.yes = yes
        let reporter = Reporter(mode: OutputMode.detect(json: json))
        let code = toolMain { try LinkCheck.run(o, reporter: reporter) }
        if code != 0 { throw ExitCode(code) }
    }
}
