// CommandLineSupport: what every hs-* entry point shares on top of ArgumentParser.
import ArgumentParser
import FoundationEssentials
import Glibc
import Support

/// A root command of the toolkit. Adopting it changes ArgumentParser's default `main()` to
/// the toolkit's conventions (the ones restic and borg users know):
/// - bad usage exits 2 (not ArgumentParser's 64), after the error, the usage of the command
///   that failed and the hint to its `--help`;
/// - `--version` prints `homeServerVersion` (the one version of the package);
/// - a first word that is not one of the tool's subcommands exits 2 naming the valid ones
///   (instead of falling through to the default subcommand);
/// - `-q/--quiet` and `-v/--verbose` set `Reporter.verbosity`;
/// - with `--json`, a usage error also prints `{"error": ..., "exit_code": 2}` on stdout;
/// - a single-value option given more than once is a usage error naming it and its values
///   (ArgumentParser would silently keep the last one: `--to /a --to /b` must not back up to /b).
/// - the configuration file (`ToolConfiguration`: /etc/default/home-server-tools, `HS_CONFIG`
///   or `--config`) is read before the command runs: a file that cannot be used exits 2.
///
/// Synchronous, as every command's work is: an `async` main (AsyncParsableCommand) moved each
/// run from the main thread onto the concurrency runtime's thread pool - 3 more threads and the
/// runtime's start, ~0.6 ms of every start (issue 23's sparse row).
package protocol ToolCommand: ParsableCommand {
    /// The tool's most common command line, parsed without ArgumentParser into the plain values
    /// its run consumes; nil for any other (ArgumentParser then parses it as always, and reports
    /// every error and `--help`). ArgumentParser's parse of one command is ~2 ms of CPU
    /// (reflection over every option and the Swift runtime's protocol-conformance scans), a
    /// seventh of a one-file backup (issue 23), and building its command type instantiates its
    /// property wrappers' generic types. An implementation must give exactly what ArgumentParser
    /// gives for the forms it accepts: `HS_DEBUG_PARSE` (see `main`) prints both for the tests to
    /// compare, ArgumentParser's through `commonForm(of:)`.
    static func parseCommonForm(_ arguments: [String]) -> (any CommonForm)?

    /// `command` (ArgumentParser's parse) as the plain values `parseCommonForm` gives for the
    /// same line; nil for a command that has none.
    static func commonForm(of command: any ParsableCommand) -> (any CommonForm)?
}

/// A command line's plain values (`ToolCommand.parseCommonForm`), which run the command.
package protocol CommonForm {
    /// Runs the command; returns its exit code (it reports its own errors).
    func run() -> Int32
}

extension ToolCommand {
    package static func parseCommonForm(_ arguments: [String]) -> (any CommonForm)? { nil }
    package static func commonForm(of command: any ParsableCommand) -> (any CommonForm)? { nil }

    package static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        // Only where a message needs it: `configuration` builds the whole command tree's
        // description (~0.2 ms of a one-file backup, issue 23).
        var name: String { configuration.commandName ?? "tool" }
        if arguments == ["--version"] {
            Reporter.writeStdout(homeServerVersion + "\n")
            Glibc.exit(0)
        }
        // (Subcommand names only when a first word needs them: `defaultName` goes through
        // `String(describing:)` of a type, a runtime lookup that cost ~2 ms at every start.)
        if let first = arguments.first, !first.hasPrefix("-"), first != "help", !configuration.subcommands.isEmpty {
            let subcommands = configuration.subcommands.compactMap { $0.configuration.commandName ?? defaultName($0) }
            let aliases = configuration.subcommands.flatMap { $0.configuration.aliases }
            if !subcommands.contains(first), !aliases.contains(first) {
                reportFailure("\(name): unknown command '\(first)'. The commands are: \(subcommands.joined(separator: ", ")). "
                              + "See '\(name) --help'.", exitCode: 2)
                Glibc.exit(2)
            }
        }
        if RepeatedOptions.possible(in: arguments),
           let r = RepeatedOptions.first(in: arguments, help: _dumpHelp(), defaultSubcommand: defaultSubcommandName) {
            let message = "\(name): \(r.option) was given \(r.values.count == 2 ? "twice" : "\(r.values.count) times") "
                + "(\(r.values.map { "'\($0)'" }.joined(separator: ", "))); it takes one value: give it once."
            Reporter.writeStderr("error: " + message + "\n")
            if Reporter.jsonRequested { Reporter.emitJSONError(message, exitCode: 2) }
            Glibc.exit(2)
        }
        if arguments.contains("-q") || arguments.contains("--quiet") { Reporter.verbosity = .quiet }
        if arguments.contains("-v") || arguments.contains("--verbose") { Reporter.verbosity = .verbose }
        do {
            // HS_DEBUG_PARSE=fast|full|argumentparser (tests only): print how the command line was
            // parsed - by `parseCommonForm` or by ArgumentParser ("full" skips the former) - and
            // every value the run gets (`commonForm(of:)`; "argumentparser": ArgumentParser's
            // own options instead), then exit 0 without running anything.
            let debugParse = Sys.environment("HS_DEBUG_PARSE")
            let rawOptions = debugParse == "argumentparser"
            let common = debugParse == "full" || rawOptions ? nil : parseCommonForm(arguments)
            var command = try common == nil ? parseAsRoot() : nil
            if let debugParse {
                var parsed: Any = ()
                if let values = common ?? (rawOptions ? nil : command.flatMap({ commonForm(of: $0) })) {
                    parsed = values
                } else if let command {
                    parsed = command
                }
                Reporter.writeStdout("parsed by \(common != nil ? "parseCommonForm" : "ArgumentParser") (HS_DEBUG_PARSE=\(debugParse))\n"
                                     + ParsedOptions.describe(parsed))
                Glibc.exit(0)
            }
            if case .failure(let error) = ToolConfiguration.current {
                reportFailure(error.message, exitCode: error.exitCode)
                Glibc.exit(error.exitCode)
            }
            if let common {
                let code = guarded { common.run() }
                if code != 0 { Glibc.exit(code) }
            } else {
                try guarded { try command?.run() }
            }
        } catch {
            InterruptCleanup.shared.waitIfStopping()
            if exitCode(for: error) == .validationFailure {
                let error = firstUsageError(arguments, error)
                // The full message has the usage of the (sub)command that failed and the hint to its
                // --help; nothing after it (the root's usage once more was a bare `hs-backup <subcommand>`).
                let message = shownUsageMessage(HumanError.scrub(fullMessage(for: error)), arguments: arguments)
                Reporter.writeStderr(message + "\n")
                if Reporter.jsonRequested { Reporter.emitJSONError(message, exitCode: 2) }
                Glibc.exit(2)
            }
            exit(withError: error)
        }
    }

    /// ArgumentParser's usage error as a person sees it: it quotes what was typed as it was
    /// typed ("Unknown option '...'", "The value '...' is invalid"), so an argument holding an
    /// escape sequence, a bidi override or a newline is shown escaped (`NameEscape`), and so is
    /// a line that still holds such a character (a fragment of one); the message's own line
    /// breaks stay. The commands' own checks word their messages escaped already: a backslash
    /// alone is no reason to escape (it would be escaped twice), nor is a line without them.
    static func shownUsageMessage(_ text: String, arguments: [String]) -> String {
        func needsEscape(_ t: some StringProtocol) -> Bool {
            t.unicodeScalars.contains { c in c.value < 0x20 || c.value == 0x7F || NameEscape.escapedScalars.contains { $0.contains(c.value) } }
        }
        var pieces: Set<String> = []
        for a in arguments where needsEscape(a) {
            pieces.insert(a)
            if let eq = a.firstIndex(of: "=") { pieces.insert(String(a[..<eq])); pieces.insert(String(a[a.index(after: eq)...])) }
        }
        // Each piece becomes a private-use character first (which the escaping leaves alone),
        // the lines that need it are escaped, then the pieces' escaped forms go in: a newline
        // inside one breaks no line.
        var s = text
        var shown: [(token: String, text: String)] = []
        for p in pieces.sorted(by: { $0.utf8.count > $1.utf8.count }) where needsEscape(p) {
            guard shown.count < 6400, let token = Unicode.Scalar(0xE000 + UInt32(shown.count)).map(String.init) else { break }
            s = s.replacing(p, with: token)
            shown.append((token, NameEscape.escape(p)))
        }
        s = s.split(separator: "\n", omittingEmptySubsequences: false).map { needsEscape($0) ? NameEscape.escape(String($0)) : String($0) }
            .joined(separator: "\n")
        for (token, text) in shown { s = s.replacing(token, with: text) }
        return s
    }

    /// Runs the command with `SignalGuard.shared` armed, before it can wait on anything (a
    /// destination that does not answer, `docker compose`, apt): a signal then (systemd's
    /// TimeoutStopSec, a shutdown, Ctrl-C) ends every command of the five tools the same way -
    /// its cleanup, the --json failure object, exit 128 + N - and none has to remember it.
    static func guarded<T>(_ run: () throws -> T) rethrows -> T {
        SignalGuard.shared.arm()
        defer {
            SignalGuard.shared.disarm()
            // A signal's handler is ending the process (128 + N, after its cleanup): the run's
            // own exit must not come first.
            InterruptCleanup.shared.waitIfStopping()
        }
        return try run()
    }

    /// ArgumentParser runs the commands' `validate()` before it looks for words no command takes:
    /// `hs-backup run --bogus` said "Missing --source" and never named the typo. So a usage error
    /// is checked by parsing the line once more without those checks (`CommandChecks`): what
    /// that parse finds (an unknown option, a stray argument) is reported first.
    static func firstUsageError(_ arguments: [String], _ error: any Error) -> any Error {
        CommandChecks.enabled = false
        defer { CommandChecks.enabled = true }
        do {
            _ = try parseAsRoot(arguments)
            return error
        } catch let found {
            guard exitCode(for: found) == .validationFailure else { return error }
            return unknownOption(in: arguments) ?? found
        }
    }

    /// A required option or argument that is missing hides the words no command takes too:
    /// ArgumentParser decodes a command before it looks for them (`hs-restore --too /x` said
    /// "Missing expected argument '--to <to>'"). So the line is parsed with every required value
    /// given (a placeholder: nothing runs), with and without the first option word the command
    /// does not know: when only the former fails, its error is that word, in ArgumentParser's
    /// words and with the usage of the command. Nil when there is no such word (or it is not
    /// what fails).
    static func unknownOption(in arguments: [String]) -> (any Error)? {
        guard let (command, rest) = HelpDump.command(arguments, help: _dumpHelp(), defaultSubcommand: defaultSubcommandName),
              let at = HelpDump.firstUnknownOption(in: rest, of: command) else { return nil }
        // Options before a `--` (after it every word is an argument), arguments last, after one.
        var options: [String] = [], positionals: [String] = []
        for a in command["arguments"] as? [[String: Any]] ?? [] where a["isOptional"] as? Bool == false {
            let value = (a["allValues"] as? [String])?.first ?? "1"
            if a["kind"] as? String == "positional" {
                positionals.append(value)
            } else if a["kind"] as? String == "option", let n = a["preferredName"] as? [String: Any], let name = n["name"] as? String {
                options += [(n["kind"] as? String == "short" ? "-" : "--") + name, value]
            }
        }
        let end = arguments.firstIndex(of: "--") ?? arguments.endIndex
        var filled = Array(arguments[..<end]) + options
        if !positionals.isEmpty { filled += (end < arguments.endIndex ? Array(arguments[end...]) : ["--"]) + positionals }
        else { filled += arguments[end...] }
        func failure(_ line: [String]) -> (any Error)? {
            do { _ = try parseAsRoot(line); return nil } catch { return error }
        }
        guard let found = failure(filled), exitCode(for: found) == .validationFailure else { return nil }
        var without = filled
        without.remove(at: at)
        if let other = failure(without), fullMessage(for: other) == fullMessage(for: found) { return nil }
        return found
    }

    /// The name of the tool's default subcommand (`run` for hs-backup), if it has one.
    static var defaultSubcommandName: String? {
        configuration.defaultSubcommand.map { $0.configuration.commandName ?? defaultName($0) }
    }

    /// ArgumentParser's default name of a subcommand type (`Run` -> `run`).
    static func defaultName(_ type: any ParsableCommand.Type) -> String {
        String(describing: type).split(separator: ".").last.map { $0.lowercased() } ?? ""
    }
}

/// A command or option group with usage checks of its own (exit 2 with the command's usage: a
/// value out of range, options that exclude each other, what is missing). It writes them as
/// `checkUsage()`; ArgumentParser calls them through the `validate()` here, which skips them
/// while `ToolCommand.firstUsageError` looks for what the parser itself finds (an unknown
/// option is reported first). A `validate()` of a command's own would run its checks then too
/// (`unknownOptionFirstEverywhere` in CommandLineCommonFormTests catches it).
package protocol UsageChecks: ParsableArguments {
    func checkUsage() throws
}

extension UsageChecks {
    package func validate() throws {
        guard CommandChecks.enabled else { return }
        try checkUsage()
    }
}

/// Whether the commands' own usage checks run (`UsageChecks`). Off only while
/// `ToolCommand.main` parses a line that failed once more, to find what ArgumentParser reports
/// after the checks (main thread, before the command runs).
package enum CommandChecks {
    nonisolated(unsafe) package static var enabled = true
}

/// The options every command has: `-q/--quiet`, `-v/--verbose` and `--config FILE` (read by
/// `ToolCommand.main` and `ToolConfiguration`; declared here so parsing and `--help` know them).
package struct VerbosityOptions: ParsableArguments, UsageChecks {
    @Option(name: .customLong("config"),
            help: ArgumentHelp("Read defaults from FILE instead of \(ToolConfiguration.defaultPath) (also $HS_CONFIG). "
                               + "A flag beats the environment, the environment beats the file.", valueName: "FILE"))
    package var config: String?

    @Flag(name: [.customShort("q"), .customLong("quiet")], help: "Print nothing on success (errors and warnings still go to stderr).")
    package var quiet = false

    @Flag(name: [.customShort("v"), .customLong("verbose")], help: "Print more detail on stderr (e.g. what is being done).")
    package var verbose = false

    package init() {}

    package func checkUsage() throws {
        if quiet && verbose { throw ValidationError("--quiet and --verbose exclude each other.") }
    }
}

/// Finds a single-value option given more than once, from the command's own description
/// (ArgumentParser's help dump: every option with its names and whether it repeats).
enum RepeatedOptions {
    /// Whether `arguments` can give one option twice at all: two option words with the same
    /// spelling (`--to a --to=b`), or any short one (`-t`, `-qv`: it may be the short name of a
    /// long one given too). Every option has at most one long name (`optionsHaveOneLongName`
    /// in HardeningTests checks all five tools), so distinct long spellings are distinct
    /// options. Only then is the help dump read (`first`): building and parsing it was ~12 ms
    /// of CPU at every start of every tool, more than a whole backup of a small directory.
    /// `-q`, `-v` and `-qv`/`-vq` alone do not send the check there: they are the flags of
    /// `VerbosityOptions` in every command (`shortFlagsAreVerbosityOnly` in HardeningTests
    /// checks all five tools), and a flag given twice is no conflict.
    /// (An array and string comparisons, no Set: a command line has a few words, and a Set of
    /// Substrings cost generic-metadata and conformance lookups at every start, issue 23.)
    static func possible(in arguments: [String]) -> Bool {
        var spellings: [Substring] = []
        for token in arguments {
            if token == "--" { break }
            guard token.hasPrefix("-"), token != "-" else { continue }
            if !token.hasPrefix("--") {
                if token == "-q" || token == "-v" || token == "-qv" || token == "-vq" { continue }  // verbosityFlags
                return true
            }
            let spelling = token.prefix { $0 != "=" }
            if spellings.contains(spelling) { return true }
            spellings.append(spelling)
        }
        return false
    }

    /// The short spellings that are `VerbosityOptions`' flags (`possible` compares with them).
    static let verbosityFlags: Set<String> = ["-q", "-v", "-qv", "-vq"]

    /// The first single-value option that `arguments` give more than once, with its values,
    /// for the (sub)command the arguments select (`defaultSubcommand` when none is named).
    static func first(in arguments: [String], help: String, defaultSubcommand: String?) -> (option: String, values: [String])? {
        guard let (command, rest) = HelpDump.command(arguments, help: help, defaultSubcommand: defaultSubcommand) else { return nil }
        let options = HelpDump.options(of: command)
        var seen: [String: [String]] = [:]
        var order: [String] = []
        var i = rest.startIndex
        while i < rest.endIndex {
            let token = rest[i]
            i += 1
            if token == "--" { break }
            guard token.hasPrefix("-") else { continue }
            let (spelling, inline) = token.firstIndex(of: "=").map { (String(token[..<$0]), String(token[token.index(after: $0)...])) }
                ?? (token, nil)
            guard let o = options[spelling] else { continue }
            var value = inline ?? ""
            if o.value && inline == nil && i < rest.endIndex { value = rest[i]; i += 1 }
            guard o.value && !o.repeats else { continue }
            if seen[o.display] == nil { order.append(o.display) }
            seen[o.display, default: []].append(value)
        }
        for o in order where seen[o]!.count > 1 { return (o, seen[o]!) }
        return nil
    }
}

/// The tool's description by ArgumentParser (`_dumpHelp()`, JSON), read for a command line.
enum HelpDump {
    /// The (sub)command `arguments` select (`defaultSubcommand` when they name none) and the
    /// words after its name (indices as in `arguments`).
    static func command(_ arguments: [String], help: String, defaultSubcommand: String?) -> (command: [String: Any], rest: ArraySlice<String>)? {
        guard let object = JSONAny.parse(Array(help.utf8)) as? [String: Any],
              var command = object["command"] as? [String: Any] else { return nil }
        var rest = arguments[...]
        // Descend into the named subcommands (or the default one).
        while let subs = command["subcommands"] as? [[String: Any]], !subs.isEmpty {
            if let word = rest.first, let sub = subs.first(where: { $0["commandName"] as? String == word || ($0["aliases"] as? [String] ?? []).contains(word) }) {
                command = sub
                rest = rest.dropFirst()
            } else if let d = defaultSubcommand, let sub = subs.first(where: { $0["commandName"] as? String == d }) {
                command = sub
            } else {
                break
            }
        }
        return (command, rest)
    }

    /// The option spellings of `command`: "--name" / "-n" -> (display name, takes a value, repeats).
    static func options(of command: [String: Any]) -> [String: (display: String, value: Bool, repeats: Bool)] {
        var options: [String: (display: String, value: Bool, repeats: Bool)] = [:]
        for a in command["arguments"] as? [[String: Any]] ?? [] {
            let kind = a["kind"] as? String
            guard kind == "option" || kind == "flag" else { continue }
            let names = (a["names"] as? [[String: Any]] ?? []).compactMap { n -> String? in
                guard let name = n["name"] as? String else { return nil }
                return (n["kind"] as? String == "long" ? "--" : "-") + name
            }
            guard let display = names.first(where: { $0.hasPrefix("--") }) ?? names.first else { continue }
            for n in names { options[n] = (display, kind == "option", a["isRepeating"] as? Bool ?? false) }
        }
        return options
    }

    /// The index of the first word of `rest` that looks like an option `command` does not have
    /// (before a `--`; the value after an option of its own is skipped, and short flags of its
    /// own may stand together, `-qv`).
    static func firstUnknownOption(in rest: ArraySlice<String>, of command: [String: Any]) -> Int? {
        let options = options(of: command)
        var i = rest.startIndex
        while i < rest.endIndex {
            let token = rest[i]
            i += 1
            if token == "--" { return nil }
            guard token.hasPrefix("-"), token != "-" else { continue }
            if let o = options[String(token.prefix { $0 != "=" })] {
                if o.value && !token.contains("=") && i < rest.endIndex && !rest[i].hasPrefix("-") { i += 1 }
            } else if token.hasPrefix("--") || !token.dropFirst().allSatisfy({ options["-\($0)"].map { !$0.value } ?? false }) {
                return i - 1
            }
        }
        return nil
    }
}

/// Every option of a parsed command, or every field of its plain values (`CommonForm`), as
/// `path = value` lines (an option that was never set shows as `UNSET`), for `HS_DEBUG_PARSE`:
/// reads the property wrappers' parsed state, or the fields, by reflection, so that a value
/// `parseCommonForm` forgets, or sets to another default, shows.
enum ParsedOptions {
    static func describe(_ value: Any, path: String = "") -> String {
        var out = ""
        for child in Mirror(reflecting: value).children {
            let name = path + (child.label.map { $0.hasPrefix("_") ? String($0.dropFirst()) : $0 } ?? "?")
            let mirror = Mirror(reflecting: child.value)
            guard let parsed = mirror.children.first(where: { $0.label == "_parsedValue" })?.value else {
                // A plain value's field (an ArgumentParser command has only options, flags and groups).
                out += mirror.displayStyle == .struct ? describe(child.value, path: name + ".")
                    : "\(name) = \(String(reflecting: child.value))\n"
                continue
            }
            guard let state = Mirror(reflecting: parsed).children.first, state.label == "value" else {
                out += "\(name) = UNSET\n"
                continue
            }
            if state.value is any ParsableArguments {
                out += describe(state.value, path: name + ".")
            } else {
                out += "\(name) = \(String(reflecting: state.value))\n"
            }
        }
        return out
    }
}
