// Restore: the one restore executor of the toolkit, for `hs-restore --archive` (any tar or
// tar.gz, a file or stdin) and `hs-restore --from` (a backup set, planned from its manifest
// by the Backup module).
//
// What it does:
// - `RestoreExecutor` takes planned entries from a `RestoreSource` (`ArchiveStreamSource`
//   here; `ManifestRestoreSource` in Backup) and owns what both halves share: target
//   preparation, the one `--only` filter (`PathSelection`, on bytes), the one path normaliser
//   (`RestorePath`), dry-run counting and listing, damage reporting (files written from a
//   part of the archive whose gzip CRC failed are named), hardlinks whose target `--only`
//   left out, and the archive's own "." entry.
// - `TreeWriter` creates entries below the target without following anything, small files on
//   writer threads (`FileWriters`, a `WorkPool`); `MetadataApplier` applies owner, mode,
//   xattrs/ACLs and times to every entry type with one failure policy; `SpaceBudget` is the
//   `too-large` rule.
//
// What it does not guarantee:
// - Atomicity: a restore that fails part-way leaves the entries completed so far (inside the
//   target only; a file is never left half-written). Restore into a fresh directory for
//   all-or-nothing.
// - Ownership, setuid/setgid bits and `trusted.*`/`security.*` attributes need root; a
//   restore by another user says which it could not apply.
import Archive
import Glibc
import Support

/// The restore policy (one value for every source).
package struct RestorePolicy: Sendable {
    /// Restore into a directory that already has content (later entries replace files,
    /// symlinks are replaced, never followed). Off: the target must be empty or absent.
    package var allowNonEmptyTarget = false
    /// chown entries to the archived uid/gid (numeric). Default: when running as root.
    package var restoreOwnership = geteuid() == 0
    /// Keep setuid/setgid bits. nil: only when restoring as root into a target that was empty.
    package var preserveSpecialBits: Bool? = nil
    /// Create FIFOs (harmless: nothing opens them). Device nodes are always skipped.
    package var allowFIFOs = true
    /// Restore extended attributes (`user.*`; ACLs as root or owner; other namespaces as root).
    package var restoreXattrs = true
    /// Apply the archive's own "." entry (mode, mtime; owner as root) to the target directory,
    /// as GNU tar does (`--no-overwrite-dir` turns it off).
    package var applyTopDirectory = true
    /// Threads writing small files into a fresh target (1: none).
    package var writerThreads = RestoreThreads.fileWriters

    package init() {}
}

/// How many entries of each kind a restore made (or would make).
package struct RestoreCounts: Sendable, Equatable, Codable {
    package var files = 0
    package var directories = 0
    package var symlinks = 0
    package var hardlinks = 0
    package var fifos = 0
    /// Entries `--only` left out.
    package var skipped = 0
    /// Content bytes restored (holes included).
    package var bytes: UInt64 = 0
    package init() {}

    mutating func count(_ e: TarEntry) {
        switch e.type {
        case .file: files += 1; bytes += e.size
        case .directory: directories += 1
        case .symlink: symlinks += 1
        case .hardlink: hardlinks += 1
        case .fifo: fifos += 1
        case .charDevice, .blockDevice: break
        }
    }
}

/// One entry of a dry run's listing (`--dry-run --json`), its name escaped.
package struct ListedEntry: Sendable, Codable, Equatable {
    package var type: String
    package var path: String
    package var size: UInt64
    package var mode: String
    package var uid: UInt32
    package var gid: UInt32
    package var link: String?

    package init(_ e: TarEntry) {
        type = e.type.rawValue
        path = NameEscape.escape(e.path)
        size = e.size
        mode = String(e.mode, radix: 8)
        uid = e.uid; gid = e.gid
        link = e.type == .symlink || e.type == .hardlink ? NameEscape.escape(e.linkTarget) : nil
    }
}

/// What a restore did.
package struct RestoreSummary: Sendable, Codable {
    /// The source as shown ("archive X", "backup ID in DEST").
    package var source: String
    package var target: String
    package var dryRun: Bool
    package var counts: RestoreCounts
    package var seconds: Double = 0
    /// Non-fatal problems (device nodes skipped, metadata not applied, odd archives, ...).
    package var warnings: [String] = []

    package init(source: String, target: String, dryRun: Bool, counts: RestoreCounts = RestoreCounts()) {
        self.source = source; self.target = target; self.dryRun = dryRun; self.counts = counts
    }

    /// The one summary line (cron mail).
    package var line: String {
        let c = counts
        return (dryRun ? "would restore" : "restored") + " \(c.files) files (\(Format.bytes(c.bytes))), \(c.directories) directories, "
            + "\(c.symlinks) symlinks, \(c.hardlinks) hardlinks\(c.fifos > 0 ? ", \(c.fifos) FIFOs" : "") from \(source) into \(NameEscape.escape(target)) in \(Format.seconds(seconds))"
            + (warnings.isEmpty ? "" : ", \(warnings.count) warnings")
    }
}
