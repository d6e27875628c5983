// CommandLineSupport: what every hs-* entry point shares on top of ArgumentParser.
import ArgumentParser
import Foundation
import Support

/// A root command of the toolkit. Adopting it changes ArgumentParser's default `main()` to
/// the toolkit's conventions (the ones restic and borg users know):
/// - bad usage exits 2 (not ArgumentParser's 64), after the error and the usage;
/// - `--version` prints `homeServerVersion` (the one version of the package);
/// - a first word that is not one of the tool's subcommands exits 2 naming the valid ones
///   (instead of falling through to the default subcommand);
/// - `-q/--quiet` and `-v/--verbose` set `Reporter.verbosity`;
/// - with `--json`, a usage error also prints `{"error": ..., "exit_code": 2}` on stdout;
/// - the configuration file (`ToolConfiguration`: /etc/default/home-server-tools, `HS_CONFIG`
///   or `--config`) is read before the command runs: a file that cannot be used exits 2.
package protocol ToolCommand: AsyncParsableCommand {}

extension ToolCommand {
    package static func main() async {
        let arguments = Array(CommandLine.arguments.dropFirst())
        let name = configuration.commandName ?? "tool"
        if arguments == ["--version"] {
            Reporter.writeStdout(homeServerVersion + "\n")
            Foundation.exit(0)
        }
        let subcommands = configuration.subcommands.compactMap { $0.configuration.commandName ?? defaultName($0) }
        let aliases = configuration.subcommands.flatMap { $0.configuration.aliases }
        if !subcommands.isEmpty, let first = arguments.first, !first.hasPrefix("-"), first != "help",
           !subcommands.contains(first), !aliases.contains(first) {
            reportFailure("\(name): unknown command '\(first)'. The commands are: \(subcommands.joined(separator: ", ")). "
                          + "See '\(name) --help'.", exitCode: 2)
            Foundation.exit(2)
        }
        if arguments.contains("-q") || arguments.contains("--quiet") { Reporter.verbosity = .quiet }
        if arguments.contains("-v") || arguments.contains("--verbose") { Reporter.verbosity = .verbose }
        do {
            var command = try parseAsRoot()
            if case .failure(let error) = ToolConfiguration.current {
                reportFailure(error.message, exitCode: error.exitCode)
                Foundation.exit(error.exitCode)
            }
            if var async = command as? any AsyncParsableCommand {
                try await async.run()
            } else {
                try command.run()
            }
        } catch {
            if exitCode(for: error) == .validationFailure {
                Reporter.writeStderr(HumanError.scrub(fullMessage(for: error)) + "\n" + usageString() + "\n")
                if Reporter.jsonRequested { Reporter.emitJSONError(HumanError.scrub(fullMessage(for: error)), exitCode: 2) }
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }

    /// ArgumentParser's default name of a subcommand type (`Run` -> `run`).
    private static func defaultName(_ type: any ParsableCommand.Type) -> String {
        String(describing: type).split(separator: ".").last.map { $0.lowercased() } ?? ""
    }
}

/// The options every command has: `-q/--quiet`, `-v/--verbose` and `--config FILE` (read by
/// `ToolCommand.main` and `ToolConfiguration`; declared here so parsing and `--help` know them).
package struct VerbosityOptions: ParsableArguments {
    @Option(name: .customLong("config"),
            help: ArgumentHelp("Read defaults from FILE instead of \(ToolConfiguration.defaultPath) (also $HS_CONFIG). "
                               + "A flag beats the environment, the environment beats the file.", valueName: "FILE"))
    package var config: String?

    @Flag(name: [.customShort("q"), .customLong("quiet")], help: "Print nothing on success (errors and warnings still go to stderr).")
    package var quiet = false

    @Flag(name: [.customShort("v"), .customLong("verbose")], help: "Print more detail on stderr (e.g. what is being done).")
    package var verbose = false

    package init() {}

    package func validate() throws {
        if quiet && verbose { throw ValidationError("--quiet and --verbose exclude each other.") }
    }
}
