import ArgumentParser
import Support

@main
struct HsDeploy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hs-deploy",
        abstract: "Validate a stack's .env against its templates, guard the NFS storage mount, and start it.",
        discussion: "Exit codes: 0 success, 1 a check failed, 2 bad usage.")

    @Argument(help: "Stacks to check or deploy (io, asteria, apollo, helios, aeos, hera, atlas).")
    var stacks: [String] = []

    @Flag(help: "Validate only; all stacks when none are named.")
    var check = false

    @Flag(help: "Stop and remove the stack's containers instead of starting them.")
    var down = false

    @Flag(help: "Pull images before starting.")
    var pull = false

    @Option(help: "Repository root holding stacks/ and common/ (default: the current directory).")
    var repo: String = "."

    @Flag(help: "Print one JSON object on stdout instead of text.")
    var json = false

    func run() async throws { throw ToolError("hs-deploy: not yet implemented") }
}
