// hs-backup parses its nightly command line without ArgumentParser (`HsBackup.parseCommonForm`,
// issue 23: ArgumentParser's parse is ~2 ms of CPU per start) into the plain values the run
// consumes (`RunValues`). These tests hold that parse to ArgumentParser's, value by value:
// `HS_DEBUG_PARSE=fast|full` makes the tool print which parser took the line and every value
// the run gets (ArgumentParser's `Run` converted), then exit 0; `HS_DEBUG_PARSE=argumentparser`
// prints ArgumentParser's own options (`UNSET` for one never set), which the conversion must
// carry whole.
import Foundation
import Support
import TestSupport
import Testing

@Suite("Command line: hs-backup's common form parsed without ArgumentParser gives what ArgumentParser gives")
struct CommandLineCommonFormTests {
    /// Both parses of `arguments`: (status, first line, the rest of stdout, stderr).
    func parses(_ arguments: [String]) throws -> (fast: (Int32, String, String, String), full: (Int32, String, String, String)) {
        func one(_ mode: String) throws -> (Int32, String, String, String) {
            let r = try Tools.run("hs-backup", arguments, environment: ["HS_DEBUG_PARSE": mode])
            let lines = r.stdout.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false)
            return (r.status, lines.first.map(String.init) ?? "", lines.count > 1 ? String(lines[1]) : "", r.stderr)
        }
        return (try one("fast"), try one("full"))
    }

    @Test("the nightly forms take the fast parse and give every option exactly ArgumentParser's value", arguments: [
        ["--source", "/srv/appdata", "--to", "/mnt/backups"],
        ["run", "--to", "/mnt/backups", "--source", "/srv/appdata", "--name", "io", "--full", "--json"],
        ["backup", "-q", "--source", "/srv/appdata", "--to", "nfs://nas/tank/b", "--exclude", "*/cache/*", "--exclude", "b c"],
        ["--verbose", "--name", "é x", "--source", "", "--to", "rclone:remote:path"],
        ["-v", "--full", "--to", "/b", "--source", "/a"],
    ])
    func commonForms(_ arguments: [String]) throws {
        let (fast, full) = try parses(arguments)
        #expect(fast.0 == 0 && full.0 == 0, "exit \(fast.0) / \(full.0): \(fast.3) \(full.3)")
        #expect(fast.1 == "parsed by parseCommonForm (HS_DEBUG_PARSE=fast)", "\(arguments): \(fast.1)")
        #expect(full.1 == "parsed by ArgumentParser (HS_DEBUG_PARSE=full)", "\(arguments): \(full.1)")
        #expect(!full.2.contains("UNSET") && full.2.contains("sources = ") && full.2.contains("encryption.stateDir = nil"), "\(full.2)")
        #expect(fast.2 == full.2, "\(arguments): parseCommonForm gave\n\(fast.2)\nArgumentParser gave\n\(full.2)")
        // Every option of ArgumentParser's `Run`, with its value, reaches the run's values (its
        // `ops` group's options are plain fields there).
        let r = try Tools.run("hs-backup", arguments, environment: ["HS_DEBUG_PARSE": "argumentparser"])
        let raw = r.stdout.split(separator: "\n").dropFirst().map { $0.hasPrefix("ops.") ? String($0.dropFirst(4)) : String($0) }
        #expect(r.status == 0 && !raw.isEmpty && !raw.contains { $0.contains("UNSET") }, "\(r.stdout) \(r.stderr)")
        #expect(raw.sorted() == full.2.split(separator: "\n").map(String.init).sorted(),
                "\(arguments): ArgumentParser's options\n\(raw.joined(separator: "\n"))\nthe run's values\n\(full.2)")
    }

    @Test("any other line goes to ArgumentParser, with its exit code and messages", arguments: [
        ["--source=/srv/appdata", "--to", "/b"],                      // --opt=value
        ["--source", "/a", "--to", "/b", "--nfs-timeout", "5"],       // another option
        ["--source", "/a", "--source", "/c", "--to", "/b"],           // one --source per run (exit 2)
        ["-q", "-v", "--source", "/a", "--to", "/b"],                 // excluded flags (exit 2)
        ["--full", "--full", "--source", "/a", "--to", "/b"],         // a flag twice
        ["--to", "-x", "--source", "/a"],                             // a value like an option (exit 2)
        ["--source", "/a", "--to"],                                   // a missing value (exit 2)
        ["--to", "/b"],                                               // no --source, no HS_APPDATA (exit 2)
        ["list", "--to", "/b"],                                       // another command
        ["--help"],
        ["-qv", "--source", "/a", "--to", "/b"],
    ])
    func otherLines(_ arguments: [String]) throws {
        let (fast, full) = try parses(arguments)
        #expect(fast.0 == full.0 && fast.3 == full.3, "\(arguments): exit \(fast.0) / \(full.0):\n\(fast.3)\n\(full.3)")
        if fast.0 == 0 && full.1.hasPrefix("parsed by") {
            #expect(fast.1 == "parsed by ArgumentParser (HS_DEBUG_PARSE=fast)", "\(arguments): \(fast.1)")
            #expect(fast.2 == full.2, "\(arguments):\n\(fast.2)\n\(full.2)")
        } else {
            #expect(fast.1 == full.1 && fast.2 == full.2, "\(arguments): \(fast.1) \(fast.2) / \(full.1) \(full.2)")
        }
    }

    /// ArgumentParser reports an unknown option only after every command's `validate()`: `run
    /// --bogus` without --source said "Missing --source" and never named the typo.
    @Test("an unknown option is reported before what validate() finds missing, by both parses, with the usage and the hint",
          arguments: [["run", "--bogus"], ["--bogus"], ["run", "--bogus", "--source", "/a"], ["run", "--source", "/a", "--bogus"],
                      ["run", "--bogus", "--to", "/b"], ["run", "-q", "-v", "--bogus", "--source", "/a"], ["run", "--bogus", "--json"]])
    func unknownOptionFirst(_ arguments: [String]) throws {
        let (fast, full) = try parses(arguments)
        #expect(fast.0 == full.0 && fast.3 == full.3, "\(arguments): exit \(fast.0) / \(full.0):\n\(fast.3)\n\(full.3)")
        let lines = fast.3.split(separator: "\n").map(String.init)
        #expect(fast.0 == 2, "\(arguments): exit \(fast.0): \(fast.3)")
        #expect(lines.first == "Error: Unknown option '--bogus'", "\(arguments): \(fast.3)")
        #expect(!fast.3.contains("--source DIR") && !fast.3.contains("exclude each other"), "\(arguments): \(fast.3)")
        #expect(lines.filter { $0.hasPrefix("Usage: hs-backup run") }.count == 1, "\(arguments): \(fast.3)")
        #expect(lines.last == "  See 'hs-backup run --help' for more information.", "\(arguments): \(fast.3)")
        if arguments.contains("--json") {
            let object = (try? JSONSerialization.jsonObject(with: Data(fast.1.utf8))) as? [String: Any]
            #expect(object?["exit_code"] as? Int == 2 && (object?["error"] as? String)?.hasPrefix("Error: Unknown option '--bogus'") == true,
                    "\(arguments): stdout '\(fast.1)'")
        } else {
            #expect(fast.1.isEmpty && fast.2.isEmpty, "\(arguments): stdout '\(fast.1)\(fast.2)'")
        }
    }

    /// The rule above for every command of the five tools, whatever it misses: a required
    /// option or argument that ArgumentParser decodes before it looks for words nobody takes
    /// (`hs-restore --too /x` said "Missing expected argument '--to <to>'"), a usage check
    /// (`find` without PATTERN, `run` without --source). Each command is run with nothing it
    /// needs, and no configuration, but an unknown option: that is what is reported. Commands
    /// are found in the tools' own description, so a new one is held to it too, and a check that
    /// runs while `ToolCommand.firstUsageError` looks for the parser's own errors (a command's
    /// own `validate()` instead of `UsageChecks.checkUsage`) shows here as its check's message.
    @Test("every command of the five tools reports an unknown option first, before any required value or check it misses")
    func unknownOptionFirstEverywhere() throws {
        let dir = try TempDir("hs-usage-order")
        try Data().write(to: URL(fileURLWithPath: dir.sub("empty.conf")))
        let environment = ["HS_CONFIG": dir.sub("empty.conf"), "HS_APPDATA": "", "HS_BACKUP_DEST": "", "HS_COPY_DEST": "", "HS_BACKUP_NAME": ""]
        var commands: [(tool: String, path: [String])] = []
        func walk(_ tool: String, _ command: [String: Any], _ path: [String]) {
            let subs = (command["subcommands"] as? [[String: Any]] ?? []).filter { $0["commandName"] as? String != "help" }
            if subs.isEmpty { commands.append((tool, path)) }
            for sub in subs { walk(tool, sub, path + [sub["commandName"] as? String ?? "?"]) }
        }
        for tool in ["hs-backup", "hs-restore", "hs-linkcheck", "hs-provision", "hs-deploy"] {
            let r = try Tools.run(tool, ["--experimental-dump-help"])
            walk(tool, try #require(Hardening.json(r.stdout)["command"] as? [String: Any], "\(tool): \(r.stdout.prefix(200))"), [])
        }
        #expect(commands.count >= 18, "\(commands.map { ([$0.tool] + $0.path).joined(separator: " ") })")
        for (tool, path) in commands {
            let name = ([tool] + path).joined(separator: " ")
            for json in [false, true] {
                let r = try Tools.run(tool, path + ["--no-such-option"] + (json ? ["--json"] : []), environment: environment)
                let lines = r.stderr.split(separator: "\n").map(String.init)
                #expect(r.status == 2 && lines.first == "Error: Unknown option '--no-such-option'", "\(name): exit \(r.status): \(r.stderr)")
                #expect(lines.contains { $0.hasPrefix("Usage: \(name)") } && lines.last == "  See '\(name) --help' for more information.",
                        "\(name): \(r.stderr)")
                if json {
                    let object = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any]
                    #expect((object?["error"] as? String)?.hasPrefix("Error: Unknown option '--no-such-option'") == true, "\(name): stdout '\(r.stdout)'")
                }
            }
        }
    }

    /// ArgumentParser quotes what was typed as it was typed: an option or a value holding an
    /// escape sequence, a bidi override or a newline reached the terminal and cron mail raw.
    @Test("a usage error shows the typed option or value escaped, in all five tools, --json too")
    func usageErrorsShowArgumentsEscaped() throws {
        let bad = "--no" + HostileName.text
        let cases: [(tool: String, arguments: [String], shown: String)] = [
            ("hs-backup", ["run", bad], NameEscape.escape(bad)), ("hs-backup", [bad], NameEscape.escape(bad)),
            ("hs-restore", [bad], NameEscape.escape(bad)), ("hs-linkcheck", [bad], NameEscape.escape(bad)),
            ("hs-provision", ["plan", bad], NameEscape.escape(bad)), ("hs-deploy", ["check", bad], NameEscape.escape(bad)),
            ("hs-backup", ["list", "--nfs-timeout", HostileName.text], NameEscape.escape(HostileName.text)),
            ("hs-backup", ["list", "--nfs-timeout=" + HostileName.text], NameEscape.escape(HostileName.text)),
        ]
        var issues: [String] = []
        for c in cases {
            for json in [false, true] {
                let r = try Tools.run(c.tool, c.arguments + (json ? ["--json"] : []))
                let what = "\(c.tool) \(c.arguments.map(NameEscape.escape).joined(separator: " "))\(json ? " --json" : "")"
                if r.status != 2 { issues.append("\(what): exit \(r.status)") }
                issues += HostileName.issues(what, r, expect: [c.shown])
            }
        }
        #expect(issues.isEmpty, "\(issues.joined(separator: "\n"))")
    }

    /// The commands' own checks (`UsageChecks.checkUsage`, called by ArgumentParser through the
    /// shared `validate()`) still run and still word the error: one line per command that has them.
    @Test("every usage check of the commands still runs: exit 2 with its message", arguments: [
        ("hs-backup", ["run", "--to", "/b"], "Missing --source DIR"),
        ("hs-backup", ["list", "-q", "-v"], "--quiet and --verbose exclude each other."),
        ("hs-backup", ["list", "--nfs-timeout", "0"], "--nfs-timeout 0: give a number of seconds"),
        ("hs-backup", ["find", "--to", "/b"], "Give at least one PATTERN"),
        ("hs-backup", ["mount", "--cache-size", "1", "/mnt"], "--cache-size 1: give 8 to 65536 MiB."),
        ("hs-backup", ["dump", "--json", "x"], "dump writes the file itself to stdout; --json does not apply."),
        ("hs-backup", ["copy", "--transfers", "0"], "--transfers 0: give a number from 1 to 64"),
        ("hs-restore", ["--from", "/a", "--archive", "/b", "--to", "/c"], "Give exactly one of --from DEST or --archive FILE."),
        ("hs-linkcheck", ["--yes"], "--yes only goes with --reclaim."),
        ("hs-provision", ["plan", "--inventory", "i", "--host", "h", "--root", "/", "--chroot", "/"], "--root and --chroot exclude each other"),
        ("hs-provision", ["inventory", "--inventory", "i"], "choose an output format: --ansible"),
    ])
    func usageChecksRun(_ tool: String, _ arguments: [String], _ message: String) throws {
        let dir = try TempDir("hs-usage-order")
        try Data().write(to: URL(fileURLWithPath: dir.sub("empty.conf")))
        let r = try Tools.run(tool, arguments, environment: ["HS_CONFIG": dir.sub("empty.conf"), "HS_APPDATA": ""])
        #expect(r.status == 2 && r.stderr.hasPrefix("Error: " + message), "\(tool) \(arguments): exit \(r.status): \(r.stderr)")
    }
}
