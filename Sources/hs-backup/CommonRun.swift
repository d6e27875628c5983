import ArgumentParser
import CommandLineSupport

extension HsBackup {
    /// The nightly command line, `hs-backup [run|backup] --source DIR --to DEST [--name SET]
    /// [--full] [--exclude GLOB]... [--json] [-q|-v]` (options in any order), parsed without
    /// ArgumentParser (`ToolCommand.parseCommonForm`: its parse is ~2 ms of CPU per start).
    /// Anything else - another option or subcommand, `--opt=value`, a value that starts with
    /// '-', an option given twice, a flag repeated, `--help` - returns nil and goes to
    /// ArgumentParser, as does a line that fails a `validate()`: every error and every message
    /// still comes from there. `CommonFormTests` compares both parses option by option.
    static func parseCommonForm(_ arguments: [String]) -> (any ParsableCommand)? {
        var rest = arguments[...]
        if let first = rest.first, first == "run" || first == "backup" { rest = rest.dropFirst() }
        var values: [String: String] = [:]
        var excludes: [String] = []
        var flags: Set<String> = []
        while let token = rest.popFirst() {
            switch token {
            case "--source", "--to", "--name", "--exclude":
                guard let value = rest.popFirst(), !value.hasPrefix("-") else { return nil }
                if token == "--exclude" { excludes.append(value); continue }
                guard values.updateValue(value, forKey: token) == nil else { return nil }
            case "--full", "--json", "-q", "--quiet", "-v", "--verbose":
                let flag = token == "-q" ? "--quiet" : token == "-v" ? "--verbose" : token
                guard flags.insert(flag).inserted else { return nil }
            default:
                return nil
            }
        }
        var verbosity = VerbosityOptions()
        verbosity.config = nil
        verbosity.quiet = flags.contains("--quiet")
        verbosity.verbose = flags.contains("--verbose")
        var destination = DestinationOptions()
        destination.to = values["--to"]
        destination.name = values["--name"]
        destination.nfsTimeout = nil
        destination.json = flags.contains("--json")
        destination.verbosity = verbosity
        var notify = NotifyOptions()
        notify.ntfy = nil
        notify.notifySuccess = false
        notify.ping = nil
        notify.healthchecks = nil
        notify.metricsFile = nil
        var ops = OpsRunOptions()
        ops.stopStacks = []
        ops.notify = notify
        var engine = EngineRunOptions()
        engine.oneFileSystem = false
        engine.excludeFiles = []
        engine.excludeCaches = false
        engine.excludeIfPresent = []
        engine.dryRun = false
        var encryption = EncryptionRunOptions()
        encryption.recipients = []
        encryption.recipientsFiles = []
        encryption.rotateKeys = false
        encryption.stateDir = nil
        var run = Run()
        run.sources = values["--source"].map { [$0] } ?? []
        run.destination = destination
        run.full = flags.contains("--full")
        run.excludes = excludes
        run.maxIncrementals = Run.defaultMaxIncrementals
        run.fullEveryDays = Run.defaultFullEveryDays
        run.ops = ops
        run.engine = engine
        run.encryption = encryption
        do {
            try verbosity.validate()
            try destination.validate()
            try run.validate()
        } catch {
            return nil
        }
        return run
    }
}
