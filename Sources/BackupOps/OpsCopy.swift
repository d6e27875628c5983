import Backup
import FoundationEssentials
import Glibc
import Storage
import Support

/// What `hs-backup copy` did, for every set (`--json`).
package struct CopyReport: Encodable, Sendable {
    package var from: String
    package var to: String
    package var sets: [SetCopyReport] = []
    /// Sets whose copy failed, with the error.
    package var failed: [Failure] = []
    package var seconds: Double = 0
    package var exitCode: Int32 = 0

    package struct Failure: Encodable, Sendable {
        package var set: String
        package var error: String
    }

    enum CodingKeys: String, CodingKey { case from, to, sets, failed, seconds, exitCode = "exit_code" }

    /// 0: everything copied (or nothing to do); 3: backups committed but some left out (the
    /// source does not match its index); 1: a set failed, or backups were left out and none
    /// copied.
    mutating func settle() {
        let copied = sets.reduce(0) { $0 + $1.copied.count }
        let skipped = sets.reduce(0) { $0 + $1.skipped.count }
        exitCode = !failed.isEmpty ? 1 : skipped == 0 ? 0 : copied > 0 ? 3 : 1
    }

    package var line: String {
        let copied = sets.reduce(0) { $0 + $1.copied.count }
        let bytes = sets.reduce(UInt64(0)) { $0 + $1.bytesUploaded }
        var s = "copy \(NameEscape.escape(from)) -> \(NameEscape.escape(to)): \(copied) backups copied (\(Format.bytes(bytes))) in \(Format.seconds(seconds))"
        let upToDate = sets.filter { $0.copied.isEmpty && $0.skipped.isEmpty }.count
        if upToDate > 0 { s += ", \(upToDate) of \(sets.count) sets up to date" }
        let skipped = sets.flatMap { r in r.skipped.map { "\(r.set)/\($0.id)" } }
        if !skipped.isEmpty { s += "; LEFT OUT: " + skipped.joined(separator: ", ") }
        if !failed.isEmpty { s += "; FAILED: " + failed.map { "\($0.set): \($0.error)" }.joined(separator: "; ") }
        return s
    }
}

extension OpsCommands {
    /// `hs-backup copy`: copies every set given (all sets of the source when none) and
    /// reports. A set that fails does not stop the others.
    /// - Throws: usage errors (exit 2) and a source or target that cannot be opened.
    package static func copy(from: String, to: String, sets names: [String], options: CopyOptions, nfsTimeoutSeconds: Int?,
                             notifier: Notifier, reporter: Reporter) throws -> CopyReport {
        let setNames = try names.map { try BackupTool.setName($0) }
        let label = setNames.isEmpty ? "all sets" : setNames.joined(separator: ",")
        let operation = options.dryRun ? "hs-backup copy --dry-run" : "hs-backup copy"
        // Before the destinations are opened (up to the NFS timeout each on a NAS that does not
        // answer): a signal then reaches the monitors too.
        reportSignal(.shared, notifier: notifier, operation: operation, set: label)
        return try notifying(notifier, operation: operation, set: label,
                             reporter: reporter, ok: { $0.exitCode == 0 || $0.exitCode == 3 }, attention: { $0.exitCode == 3 }) {
            let started = Date()
            let source = try BackupTool.destination(from, option: "--from", nfsTimeoutSeconds: nfsTimeoutSeconds)
            let target = try BackupTool.destination(to, option: "--to", nfsTimeoutSeconds: nfsTimeoutSeconds)
            if source.isSamePlace(as: target) {
                // As shown (displayName: an rclone connection string's options may hold a password).
                let spellings = source.displayName == target.displayName ? source.displayName
                    : "--from \(source.displayName) and --to \(target.displayName)"
                throw ToolError.usage("--from and --to are the same place (\(NameEscape.escape(spellings))); copy goes from one destination to another")
            }
            var report = CopyReport(from: source.displayName, to: target.displayName)
            let all = setNames.isEmpty ? try BackupSets.list(source, option: "--from").map(\.name) : setNames
            if setNames.isEmpty && all.isEmpty { reporter.warning("no backup sets in \(NameEscape.escape(source.displayName)): nothing to copy") }
            for name in setNames { try BackupSets.requireSet(source, name, option: "--from") }
            for name in all {
                do {
                    let r = try SetCopier.copy(set: name, from: source, to: target, options: options, reporter: reporter)
                    for w in r.warnings { reporter.warning(w) }
                    reporter.info(r.line)
                    report.sets.append(r)
                } catch {
                    reporter.endProgress()
                    let text = HumanError.describe(error)
                    reporter.error("copy of set \(name) failed: \(text)")
                    report.failed.append(.init(set: name, error: text))
                }
            }
            report.seconds = Date().timeIntervalSince(started)
            report.settle()
            return (report, report.line)
        }
    }
}
