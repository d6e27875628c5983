import Foundation
import Support

/// `hs-restore --archive FILE --to DIR`: extracts any POSIX/GNU tar(.gz) safely.
package enum ArchiveRestore {
    /// Result printed as JSON with `--json`.
    package struct Report: Codable {
        package var archive: String
        package var target: String
        package var dryRun: Bool
        package var summary: ExtractSummary
        package var seconds: Double
    }

    /// Runs the `--archive` path of hs-restore. Returns the exit code (0 on success).
    /// - Throws: `ToolError` (usage: exit 2; refused / corrupt archive: exit 1).
    /// - Parameter source: the archive's bytes when the caller opened it (an age file it
    ///   decrypts); nil: `archive` is read as it is.
    package static func run(archive: String, source given: ArchiveSource? = nil, to target: String, only: [String] = [], force: Bool,
                            dryRun: Bool, json: Bool) throws -> Int32 {
        let reporter = Reporter(mode: .detect(json: json))
        let started = Date()
        let source: ArchiveSource
        do { source = try given ?? ArchiveSource.file(archive) } catch let e as ArchiveError {
            throw ToolError.usage("\(e.detail); give an existing .tar.gz file with --archive")
        }
        let prefixes = only.map { RestorePath.join(RestorePath.split(Array($0.utf8)).filter { $0 != [UInt8(ascii: ".")] }) }
        func selected(_ path: [UInt8]) -> Bool {
            let p = RestorePath.join(RestorePath.split(path).filter { $0 != [UInt8(ascii: ".")] })
            return prefixes.contains { p == $0 || (p.count > $0.count && p.starts(with: $0) && p[$0.count] == UInt8(ascii: "/")) }
        }
        let filter: ((TarEntry) -> Bool)? = prefixes.isEmpty ? nil : { selected($0.path) }
        var summary = ExtractSummary()
        do {
            if dryRun {
                summary.warnings = try listArchive(source) { e in
                    if let filter, !filter(e) { summary.skipped += 1; return }
                    switch e.type {
                    case .file: summary.files += 1; summary.bytes += e.size
                    case .directory: summary.directories += 1
                    case .symlink: summary.symlinks += 1
                    case .hardlink: summary.hardlinks += 1
                    default: summary.fifos += 1
                    }
                    if reporter.mode != .json { reporter.info("would restore \(e.displayPath)") }
                }
            } else {
                if !force {
                    var isDir: ObjCBool = false
                    if FileManager.default.fileExists(atPath: target, isDirectory: &isDir) {
                        guard isDir.boolValue else { throw ToolError.usage("--to '\(target)' is not a directory") }
                        if let c = try? FileManager.default.contentsOfDirectory(atPath: target), !c.isEmpty {
                            throw ToolError.usage("--to '\(target)' is not empty; pick an empty directory or pass --force to replace what is there")
                        }
                    }
                }
                var options = ExtractOptions()
                options.allowNonEmptyTarget = force
                var count = 0
                summary = try extractArchive(source, to: target, options: options, filter: filter) { e in
                    count += 1
                    reporter.progress("restoring: \(count) files, \(e.displayPath)")
                }
                reporter.endProgress()
            }
        } catch let e as ArchiveError {
            reporter.endProgress()
            throw ToolError("restoring '\(archive)' into '\(target)': \(e.description)")
        }
        for w in summary.warnings { reporter.warning(w) }
        let secs = Date().timeIntervalSince(started)
        if reporter.mode == .json {
            reporter.emitJSON(Report(archive: archive, target: target, dryRun: dryRun, summary: summary, seconds: secs))
        } else {
            reporter.info("\(dryRun ? "would restore" : "restored") \(summary.files) files (\(Format.bytes(summary.bytes))), \(summary.directories) directories, \(summary.symlinks) symlinks, \(summary.hardlinks) hardlinks from \(archive) into \(target) in \(Format.seconds(secs))")
        }
        return 0
    }
}
