import ArgumentParser
import Support

@main
struct HsLinkcheck: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hs-linkcheck",
        abstract: "Prove hardlinks work between downloads/ and library/, explain why not, reclaim wasted copies.",
        discussion: "Exit codes: 0 all good, 1 a problem found, 2 bad usage.")

    @Argument(help: "Media root: a local path or nfs://server/export/path (default: /mnt/storage).")
    var root: String = "/mnt/storage"

    @Option(help: "Downloads directory, relative to the root.")
    var downloads: String = "downloads"

    @Option(help: "Library directory, relative to the root.")
    var library: String = "library"

    @Flag(help: "Fail (exit 1) when the root is not a mount point, instead of warning.")
    var requireMount = false

    @Flag(help: "Create the plan's media tree owned by PUID:PGID with mode 775.")
    var initialize = false

    @Flag(help: "Find library files that are copies of downloads instead of hardlinks (exit 1 if any).")
    var audit = false

    @Flag(help: "Replace confirmed copies with hardlinks (shows the plan unless --yes).")
    var reclaim = false

    @Flag(help: "With --reclaim: really replace the copies.")
    var yes = false

    @Flag(help: "Print one JSON object on stdout instead of text.")
    var json = false

    func run() async throws { throw ToolError("hs-linkcheck: not yet implemented") }
}
