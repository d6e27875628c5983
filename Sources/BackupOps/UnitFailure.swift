// UnitFailure: what `OnFailure=hs-notify-failure@%n.service` runs (`hs-backup notify-failure
// UNIT`): posts "systemd unit UNIT FAILED on HOST" with how it ended and its last journal lines
// to the ntfy topic (HS_NTFY_URL). It covers what a tool cannot report itself: a unit killed
// (OOM, timeout), a configuration error before the notifier exists, hs-deploy's jobs. A unit of
// hs-backup that exited 1 has already posted its own failure: that one is not posted twice.
import Backup
import FoundationEssentials
import Glibc
import Support

package enum UnitFailure {
    /// How the unit's main process ended (`systemctl show`).
    package struct Ending: Sendable, Equatable {
        /// `Result=`: exit-code, signal, timeout, core-dump, ...
        package var result: String
        /// `ExecMainCode=`: 1 exited, 2 killed, 3 dumped.
        package var code: Int
        /// `ExecMainStatus=`: the exit status or the signal number.
        package var status: Int

        /// Parses `systemctl show --property=Result,ExecMainCode,ExecMainStatus` output.
        package init(systemctlShow text: String) {
            var values: [String: String] = [:]
            for line in text.split(separator: "\n") {
                guard let eq = line.firstIndex(of: "=") else { continue }
                values[String(line[..<eq])] = String(line[line.index(after: eq)...])
            }
            result = values["Result"] ?? "unknown"
            code = values["ExecMainCode"].flatMap { Int($0) } ?? 0
            status = values["ExecMainStatus"].flatMap { Int($0) } ?? 0
        }

        package init(result: String, code: Int, status: Int) { self.result = result; self.code = code; self.status = status }

        /// In words: "exit status 2", "killed by signal 9", "timeout".
        package var words: String {
            switch code {
            case 1: return result == "exit-code" || result == "success" ? "exit status \(status)" : "\(result), exit status \(status)"
            case 2, 3: return "\(result == "timeout" ? "timeout, " : "")killed by signal \(status)"
            default: return result
            }
        }
    }

    /// True when the tool already reported this failure itself: an hs-backup unit whose
    /// process exited with status 1 (the tool's own failure, sent to ntfy/Kuma/Healthchecks).
    package static func reportedByTheTool(unit: String, _ ending: Ending) -> Bool {
        unit.hasPrefix("hs-backup") && ending.code == 1 && ending.status == 1
    }

    /// A systemd unit name (the argument comes from `%i`).
    package static func validate(unit: String) throws(ToolError) {
        let ok = !unit.isEmpty && unit.count <= 256 && unit.unicodeScalars.allSatisfy {
            $0.isASCIIAlphanumeric || ":-_.@\\".unicodeScalars.contains($0)
        }
        guard ok else { throw .usage("'\(NameEscape.escape(Array(unit.utf8)))' is not a systemd unit name (e.g. hs-backup.service)") }
    }

    /// Posts the failure of `unit` (unless the tool reported it) and returns the line printed.
    package static func report(unit: String, notifier: Notifier, reporter: Reporter) throws -> String {
        try validate(unit: unit)
        let show = try Subprocess.run(["systemctl", "show", unit, "--property=Result,ExecMainCode,ExecMainStatus"])
        guard show.succeeded else { throw ToolError("systemctl show \(unit) failed: \(show.stderr.trimmingWhitespaceAndNewlines())") }
        let ending = Ending(systemctlShow: show.stdout)
        if reportedByTheTool(unit: unit, ending) {
            return "\(unit): \(ending.words); hs-backup reported this failure itself"
        }
        guard notifier.ntfyURL != nil else {
            return "\(unit): \(ending.words); no ntfy topic configured (HS_NTFY_URL), nothing sent"
        }
        let journal = try? Subprocess.run(["journalctl", "--unit", unit, "--lines", "20", "--no-pager", "--output", "cat"])
        var message = "\(ending.words). journalctl -u \(unit):\n"
        message += (journal?.succeeded == true ? journal!.stdout : "(journal not readable)\n")
        let report = RunReport(success: false, operation: "systemd unit \(unit)", set: SetLock.hostName, message: message, exitCode: 1)
        for w in notifier.report(report) { reporter.warning(w) }
        return "\(unit): \(ending.words); posted to \(Notifier.redact(notifier.ntfyURL!))"
    }
}
