// MetricsFile: a Prometheus text file for node_exporter's textfile collector, one per backup
// set and command (run, verify, prune, copy).
//
// Written atomically: the text goes to `PATH.tmp-<pid>` (a name the collector ignores, as it
// reads only `*.prom`), is fsynced and renamed over PATH. No sample carries a timestamp (the
// collector rejects them). Every file has the same metric families with the same HELP and TYPE
// lines, so the collector never sees two texts for one family; the set and the command are
// labels. The last success time is carried over from the previous file when a run fails, so
// "time since the last good backup" can be alerted on. Exit 3 (committed, files missing)
// counts as a success for that time and shows as `last_exit_code 3` and `files_missing`.
import FoundationEssentials
import Glibc
import Support

/// What a finished run measured (nil: not measured by this command).
package struct RunMetrics: Sendable, Equatable {
    package var files: Int?
    package var bytesRead: UInt64?
    package var bytesWritten: UInt64?
    package var backupsKept: Int?
    package var filesMissing: Int?

    package init(files: Int? = nil, bytesRead: UInt64? = nil, bytesWritten: UInt64? = nil,
                 backupsKept: Int? = nil, filesMissing: Int? = nil) {
        self.files = files; self.bytesRead = bytesRead; self.bytesWritten = bytesWritten
        self.backupsKept = backupsKept; self.filesMissing = filesMissing
    }
}

/// A result that knows its metrics (hs-backup's summaries and reports).
package protocol MetricsReporting {
    var metrics: RunMetrics { get }
}

package enum MetricsFile {
    /// One metric family: name, HELP text, TYPE.
    struct Family {
        var name: String
        var help: String
        var type = "gauge"
    }

    static let lastSuccess = Family(name: "hs_backup_last_success_timestamp_seconds",
                                    help: "Unix time the last successful run of this command ended (exit 0 or 3; kept across failed runs; 0: never).")
    static let lastRun = Family(name: "hs_backup_last_run_timestamp_seconds", help: "Unix time the last run of this command ended.")
    static let exitCode = Family(name: "hs_backup_last_exit_code",
                                 help: "Exit code of the last run: 0 ok, 1 failed, 2 bad usage, 3 committed with files missing, 128+N killed by signal N.")
    static let duration = Family(name: "hs_backup_last_duration_seconds", help: "Wall time of the last run in seconds.")
    static let files = Family(name: "hs_backup_last_files", help: "Files in the backup (run), files checked (verify) or copied (copy) by the last run.")
    static let bytesRead = Family(name: "hs_backup_last_read_bytes", help: "Bytes read by the last run.")
    static let bytesWritten = Family(name: "hs_backup_last_written_bytes", help: "Bytes written by the last run.")
    static let backups = Family(name: "hs_backup_backups", help: "Backups in the set after the last run (run, prune: kept; verify: checked).")
    static let missing = Family(name: "hs_backup_last_files_missing", help: "Files left out of the last backup because they could not be read (exit 3).")
    static let families = [lastSuccess, lastRun, exitCode, duration, files, bytesRead, bytesWritten, backups, missing]

    /// The file name for `set` and `command` inside `directory` (HS_METRICS_DIR).
    package static func path(directory: String, set: String, command: String) -> String {
        let safe = { (s: String) in String(s.unicodeScalars.map { $0.isASCIIAlphanumeric || $0 == "_" ? Character($0) : "_" }) }
        return (directory.hasSuffix("/") ? directory : directory + "/") + "hs_backup_\(safe(set))_\(safe(command)).prom"
    }

    /// The text of the file.
    /// - Parameters:
    ///   - previous: the values of the file being replaced: the last success time (0 when none)
    ///     and the backups in the set (kept when this run did not count them, e.g. it failed).
    package static func text(set: String, command: String, exitCode code: Int32, endedAt: Double, duration seconds: Double,
                             metrics m: RunMetrics, previous: (success: Double, backups: Int)) -> String {
        let labels = "{set=\"\(escape(set))\",command=\"\(escape(command))\"}"
        let succeeded = code == 0 || code == ExitStatus.filesMissing.rawValue
        let values: [(Family, String)] = [
            (lastSuccess, number(succeeded ? endedAt : previous.success)),
            (lastRun, number(endedAt)),
            (exitCode, String(code)),
            (duration, number(seconds)),
            (files, String(m.files ?? 0)),
            (bytesRead, String(m.bytesRead ?? 0)),
            (bytesWritten, String(m.bytesWritten ?? 0)),
            (backups, String(m.backupsKept ?? previous.backups)),
            (missing, String(m.filesMissing ?? 0)),
        ]
        var out = ""
        for (family, value) in values {
            out += "# HELP \(family.name) \(family.help)\n# TYPE \(family.name) \(family.type)\n\(family.name)\(labels) \(value)\n"
        }
        return out
    }

    /// The last success time recorded in the file at `path` (0 when there is none).
    package static func previousSuccess(at path: String) -> Double { previousValue(of: lastSuccess, at: path) ?? 0 }

    /// The value of `family`'s sample in the file at `path`, if any.
    static func previousValue(of family: Family, at path: String) -> Double? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") where line.hasPrefix(family.name + "{") {
            if let v = line.split(separator: " ").last, let d = Double(v) { return d }
        }
        return nil
    }

    /// Writes the file atomically (mode 0644: node_exporter reads it as its own user).
    /// - Returns: a warning when it could not be written (never a failure of the run).
    package static func write(path: String, set: String, command: String, exitCode: Int32, endedAt: Date,
                              duration: Double, metrics: RunMetrics) -> String? {
        let text = text(set: set, command: command, exitCode: exitCode, endedAt: endedAt.timeIntervalSince1970,
                        duration: duration, metrics: metrics,
                        previous: (previousSuccess(at: path), previousValue(of: backups, at: path).map { Int($0) } ?? 0))
        do {
            try AtomicFile.replace(path, with: Array(text.utf8), temporary: path + ".tmp-\(getpid())", mode: 0o644)
            return nil
        } catch {
            return "metrics file \(NameEscape.escape(path)): \(error.call) failed: \(error.reason)"
        }
    }

    /// Label values escape backslash, double quote and newline.
    static func escape(_ s: String) -> String {
        s.replacingScalars("\\", with: "\\\\").replacingScalars("\"", with: "\\\"").replacingScalars("\n", with: "\\n")
    }

    /// A number as Prometheus reads it, without an exponent for whole seconds.
    static func number(_ d: Double) -> String {
        if d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) }
        return Format.fixed(d, decimals: 3)
    }
}
