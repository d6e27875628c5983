import ArgumentParser
import Support

@main
struct HsProvision: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hs-provision",
        abstract: "Bring a host up from one inventory: Docker, NFS fstab, LXC bind mounts, Tailscale, directories.",
        discussion: "Exit codes: 0 success, 1 a step failed, 2 bad usage.",
        subcommands: [Plan.self, Apply.self])
}

struct ProvisionOptions: ParsableArguments {
    @Option(help: "Inventory file (see provisioning/inventory.example.yml).")
    var inventory: String

    @Option(help: "Host name from the inventory to provision.")
    var host: String

    @Option(help: "Edit files under DIR instead of / and print host commands instead of running them.")
    var root: String?

    @Option(name: .customLong("only"), help: "Run only this step (repeatable).")
    var only: [String] = []

    @Flag(help: "Print one JSON object on stdout instead of text.")
    var json = false
}

extension HsProvision {
    struct Plan: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the commands and file diffs apply would make.")
        @OptionGroup var options: ProvisionOptions
        func run() async throws { throw ToolError("hs-provision plan: not yet implemented") }
    }

    struct Apply: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make the host match the inventory; idempotent.")
        @OptionGroup var options: ProvisionOptions
        func run() async throws { throw ToolError("hs-provision apply: not yet implemented") }
    }
}
