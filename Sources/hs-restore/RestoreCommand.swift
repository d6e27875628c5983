import Archive
import Backup
import Glibc
import Restore
import Support

/// What the command line asked for.
struct RestoreRequest {
    var from: String?
    var archive: String?
    var set: String?
    var backup: String
    var target: String
    var only: [String]
    var force: Bool
    var dryRun: Bool
    var overwriteDir: Bool
    var json: Bool
    /// `--identity` key files (an encrypted set, or an archive that is an age file).
    var identityFiles: [String] = []
}

/// `hs-restore`: both halves (a backup set, any archive) through the one executor. The only
/// place restore errors become messages and exit codes (`ToolError`).
enum RestoreCommand {
    /// The JSON of a run (`--json`).
    struct Report: Encodable {
        var source: String
        var target: String
        var dryRun: Bool
        var files: Int
        var directories: Int
        var symlinks: Int
        var hardlinks: Int
        var fifos: Int
        var skipped: Int
        var bytes: UInt64
        var seconds: Double
        var warnings: [String]
        var entries: [ListedEntry]?

        init(_ s: RestoreSummary, entries: [ListedEntry]?) {
            source = s.source; target = s.target; dryRun = s.dryRun
            files = s.counts.files; directories = s.counts.directories; symlinks = s.counts.symlinks
            hardlinks = s.counts.hardlinks; fifos = s.counts.fifos; skipped = s.counts.skipped; bytes = s.counts.bytes
            seconds = s.seconds; warnings = s.warnings; self.entries = entries
        }
    }

    static func run(_ r: RestoreRequest) throws -> Int32 {
        watchSignals()
        let reporter = Reporter(mode: .detect(json: r.json))
        var selection: [[UInt8]] = []
        for o in r.only {
            do { selection.append(try NameArgument.bytes(of: o)) } catch {
                throw ToolError.usage("--only \(o): \(error); write a name's bytes as the listing shows them (\\xNN, \\n, \\\\)")
            }
        }
        var policy = RestorePolicy()
        policy.allowNonEmptyTarget = r.force
        policy.applyTopDirectory = r.overwriteDir
        let executor = RestoreExecutor(target: r.target, policy: policy, selection: PathSelection(selection))
        do {
            let source = try makeSource(r, selection: executor.selection)
            let summary: RestoreSummary
            var listed: [ListedEntry]? = nil
            if r.dryRun {
                if reporter.mode == .json { listed = [] }
                summary = try executor.dryRun(source) { e in
                    if listed != nil { listed!.append(ListedEntry(e)) } else { reporter.info("\(e.type.rawValue)\t\(NameEscape.escape(e.path))") }
                }
            } else {
                var files = 0
                summary = try executor.run(source) { e in
                    files += 1
                    if files % 256 == 0 { reporter.progress("restoring: \(files) files, \(NameEscape.escape(e.path))") }
                }
                reporter.endProgress()
            }
            for w in summary.warnings { reporter.warning(w) }
            if reporter.mode == .json { reporter.emitJSON(Report(summary, entries: listed)) } else { reporter.info(summary.line) }
            return 0
        } catch let e as RestoreError {
            reporter.endProgress()
            throw ToolError("restoring into \(NameEscape.escape(r.target)): \(e)", exitCode: e.isUsage ? 2 : 1)
        } catch let e as ArchiveError {
            reporter.endProgress()
            throw ToolError("restoring into \(NameEscape.escape(r.target)): \(e)")
        }
    }

    /// SIGINT, SIGTERM and SIGHUP stop a restore by the signal, as with their default action (a
    /// shell script that runs it stops too), after the failure object with --json: stdout had
    /// none. Watched rather than left at the default also stops a restore whose parent's signal
    /// mask blocked them (a supervisor's worker thread): it went on to the end and exited 0.
    /// A signal that is ignored stays ignored (`nohup`, `&` in a script).
    /// First the files being written under temporary names (`.hs-restore.PID.N.part`, each
    /// registered with `InterruptCleanup` as it is made) are removed: a migration stopped
    /// halfway left them among appdata. Writer threads make and rename none after that
    /// (`InterruptCleanup.runAll`), and the run's own end waits for this one (`ToolCommand.main`).
    private static func watchSignals() {
        let signals = [SIGINT, SIGTERM, SIGHUP]
        // (No later restore removes another's temporary files.)
        InterruptCleanup.shared.leaveToUser("to be removed by hand")
        _ = SignalWatch.shared.watch(signals, keepIgnored: Set(signals)) { sig in
            Reporter.holdJSONForSignal()
            let problems = InterruptCleanup.shared.runAll(within: 10)
            let done = problems.isEmpty ? "it removed the files it was writing (.hs-restore.*.part)"
                : "removing the files it was writing (.hs-restore.*.part): " + problems.joined(separator: "; ")
            Reporter.writeStderr("hs-restore: stopped by \(Reporter.signalName(sig)) (signal \(sig)); \(done); "
                                 + "what was restored so far stays in the target\n")
            Reporter.emitStoppedBySignal(sig, "; \(done); what was restored so far stays in the target")
            fflush(nil)
            // The default action, in this thread ("hs-signals", where SignalWatch unblocked it).
            signal(sig, SIG_DFL)
            raise(sig)
        }
        // From here on this watch takes the signals, not the tools' guard (`SignalGuard`,
        // armed by `ToolCommand.main`, which exits 128 + N instead of dying of the signal).
        SignalGuard.shared.disarm()
    }

    /// The backup set's plan, or the archive (a file, or stdin for "-").
    private static func makeSource(_ r: RestoreRequest, selection: PathSelection) throws -> any RestoreSource {
        if let from = r.from {
            let destination = try BackupTool.destination(from, option: "--from")
            return try BackupRestore.source(destination: destination, set: try BackupTool.setName(r.set), backup: r.backup, selection: selection,
                                            identities: try SetKeys.identities(files: r.identityFiles))
        }
        let path = r.archive!
        if path == "-" {
            // An age stream on stdin is decrypted with --identity as it arrives; tar or tar.gz passes through.
            return try ArchiveStreamSource(DecryptingStream(StreamByteSource(fd: STDIN_FILENO, displayName: "stdin"), identityFiles: r.identityFiles))
        }
        // An age file (an encrypted set's archive) is decrypted with --identity as it is read.
        if let decrypted = try EncryptedArchive.source(path, identityFiles: r.identityFiles) { return try ArchiveStreamSource(decrypted) }
        do {
            return try ArchiveStreamSource(FileByteSource(path: path))
        } catch let e as SysError {
            throw ToolError.usage("--archive \(NameEscape.escape(path)): \(e.reason); give an existing tar or tar.gz file (or - for stdin)")
        }
    }
}
