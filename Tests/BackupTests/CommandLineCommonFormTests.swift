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
}
