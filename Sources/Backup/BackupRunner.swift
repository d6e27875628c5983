#if canImport(Glibc)
import Glibc
#endif
import Archive
import FoundationEssentials
import Storage
import Support

/// Options of one backup run.
package struct BackupOptions {
    package var source: String
    package var destination: any Destination
    package var set: String
    package var forceFull = false
    package var excludes: [String] = []
    /// `--exclude-caches` / `--exclude-if-present`: marked directories keep only the marker.
    package var markers = ExcludeMarkers()
    /// A full backup is taken automatically after this many incrementals...
    package var maxIncrementals = 13
    /// ...or when the last full backup is older than this many days.
    package var maxDaysBetweenFulls = 14.0
    package var staleLockAfter: TimeInterval = 12 * 3600
    /// zlib level for compressible data (incompressible data is stored).
    package var compressionLevel: Int32 = 1
    package var contentProvider: (any ContentProvider)?
    package var hooks: [any RunHooks] = []
    /// Do not descend into mount points below the source (`--one-file-system`).
    package var oneFileSystem = false
    /// Scan and compare only: report what would be archived, write nothing anywhere
    /// (no set directory, no lock, no cleanup, no archive, no manifest).
    package var dryRun = false
    /// Recipients, key rotation, state directory (BackupRunner+Encryption.swift).
    package var encryption = EncryptionOptions()

    package init(source: String, destination: any Destination, set: String) {
        self.source = source
        self.destination = destination
        self.set = set
    }
}

/// The outcome of a backup run (also the `--json` object).
package struct BackupSummary: Codable, Sendable {
    package var id: String
    package var set: String
    package var destination: String
    package var kind: String
    package var parent: String?
    /// Regular files (and hardlinks) in the tree.
    package var files: Int
    package var directories: Int
    package var symlinks: Int
    /// Files whose content went into this backup's archive.
    package var filesArchived: Int
    package var treeBytes: UInt64
    package var bytesIn: UInt64
    package var bytesOut: UInt64
    package var seconds: Double
    package var warnings: [String]
    /// Files of the source that exist but are not in this backup (`LeftOut.isMissing`).
    package var missing = MissingFiles()

    enum CodingKeys: String, CodingKey {
        case id, set, destination, kind, parent, files, directories, symlinks
        case filesArchived = "files_archived", treeBytes = "tree_bytes", bytesIn = "bytes_in", bytesOut = "bytes_out"
        case seconds, warnings, missing
        case exitCode = "exit_code"
    }

    package init(id: String, set: String, destination: String, kind: String, parent: String?, files: Int, directories: Int,
                 symlinks: Int, filesArchived: Int, treeBytes: UInt64, bytesIn: UInt64, bytesOut: UInt64, seconds: Double,
                 warnings: [String], missing: MissingFiles = MissingFiles()) {
        self.id = id; self.set = set; self.destination = destination; self.kind = kind; self.parent = parent
        self.files = files; self.directories = directories; self.symlinks = symlinks; self.filesArchived = filesArchived
        self.treeBytes = treeBytes; self.bytesIn = bytesIn; self.bytesOut = bytesOut; self.seconds = seconds
        self.warnings = warnings; self.missing = missing
    }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(id: try c.decode(String.self, forKey: .id), set: try c.decode(String.self, forKey: .set),
                  destination: try c.decode(String.self, forKey: .destination), kind: try c.decode(String.self, forKey: .kind),
                  parent: try c.decodeIfPresent(String.self, forKey: .parent), files: try c.decode(Int.self, forKey: .files),
                  directories: try c.decode(Int.self, forKey: .directories), symlinks: try c.decode(Int.self, forKey: .symlinks),
                  filesArchived: try c.decode(Int.self, forKey: .filesArchived), treeBytes: try c.decode(UInt64.self, forKey: .treeBytes),
                  bytesIn: try c.decode(UInt64.self, forKey: .bytesIn), bytesOut: try c.decode(UInt64.self, forKey: .bytesOut),
                  seconds: try c.decode(Double.self, forKey: .seconds), warnings: try c.decode([String].self, forKey: .warnings),
                  missing: try c.decodeIfPresent(MissingFiles.self, forKey: .missing) ?? MissingFiles())
    }

    package func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id); try c.encode(set, forKey: .set); try c.encode(destination, forKey: .destination)
        try c.encode(kind, forKey: .kind); try c.encode(parent, forKey: .parent); try c.encode(files, forKey: .files)
        try c.encode(directories, forKey: .directories); try c.encode(symlinks, forKey: .symlinks)
        try c.encode(filesArchived, forKey: .filesArchived); try c.encode(treeBytes, forKey: .treeBytes)
        try c.encode(bytesIn, forKey: .bytesIn); try c.encode(bytesOut, forKey: .bytesOut); try c.encode(seconds, forKey: .seconds)
        try c.encode(warnings, forKey: .warnings); try c.encode(missing, forKey: .missing)
        try c.encode(exitStatus.rawValue, forKey: .exitCode)
    }

    /// 0, or 3 when the backup was committed without files that exist (`ExitStatus`).
    package var exitStatus: ExitStatus { missing.count > 0 ? .filesMissing : .success }

    package var line: String {
        var s = "backup \(id) (\(kind)) of \(files) files: \(filesArchived) archived, \(Format.bytes(bytesIn)) read, "
            + "\(Format.bytes(bytesOut)) written in \(Format.seconds(seconds)), \(warnings.count) warning\(warnings.count == 1 ? "" : "s")"
        if missing.count > 0 {
            s += "; committed, \(missing.count) file\(missing.count == 1 ? "" : "s") missing (left out: "
                + missing.first.prefix(3).map(\.path).joined(separator: ", ") + (missing.count > 3 ? ", ..." : "") + ")"
        }
        return s
    }
}

package let toolVersion = homeServerVersion

/// Takes one backup: lock, clean up dead runs, scan, compare with the previous manifest,
/// stream changed files into `<id>.tar.gz.partial`, fsync, rename, then write the manifest
/// (the commit record), unlock.
///
/// Guarantees: a backup is visible (listed, restorable) only once its manifest is complete;
/// a run killed at any moment leaves earlier backups intact and the next run removes its
/// leftovers. Not guaranteed: a consistent view of files that change during the run (they
/// are archived as read and reported as warnings; use a `ContentProvider` for databases).
package final class BackupRunner {
    let options: BackupOptions
    let reporter: Reporter
    var warnings: [String] = []
    let encryption = EncryptionRun()
    /// Files that exist but are not in this backup (exit 3).
    var missing = MissingFiles()

    package init(options: BackupOptions, reporter: Reporter) {
        self.options = options
        self.reporter = reporter
    }

    package func run() throws -> BackupSummary {
        let started = Date()
        let dest = options.destination
        let set = BackupSet(destination: dest, name: options.set, keys: SetKeys(recipients: options.encryption.recipients))
        var st = stat()
        guard lstat(options.source, &st) == 0, st.st_mode & S_IFMT == S_IFDIR || (stat(options.source, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR) else {
            throw ToolError.usage(options.source.isEmpty
                ? "--source is empty (in cron: is HS_APPDATA set in common/.env?). Give the appdata directory, e.g. --source /opt/appdata."
                : "source '\(NameEscape.escape(options.source))' is not a directory. Give the appdata directory with --source, e.g. /opt/appdata.")
        }
        if options.dryRun { return try dryRun(set: set, started: started) }
        try set.makeDirectory(for: .backup)
        trace("start")
        let lock = SetLock(destination: dest, set: options.set)
        warnings += try lock.acquire(operation: "backup", staleAfter: options.staleLockAfter)
        defer { lock.release() }
        for w in warnings { reporter.warning(w) }
        // One listing of the set directory for the cleanup, the committed ids and the new id
        // (the lock keeps other writers out; the cleanup's own renames and removals are applied).
        let (cleanup, listed) = try set.cleanUpListing()
        let files = listed ?? []
        if !cleanup.removed.isEmpty { note("removed leftovers of an interrupted run: \(cleanup.removed.map(NameEscape.escape).joined(separator: ", "))") }
        if !cleanup.completed.isEmpty { note("completed the commit of \(cleanup.completed.map(NameEscape.escape).joined(separator: ", ")) (a run stopped between writing its manifest and renaming its archive)") }
        for w in cleanup.warnings { note(w) }

        trace("locked, cleaned")
        let ids = BackupSet.committedIDs(files)
        try set.makeDurableBeforeCommit(backupsThere: ids.count, by: .backup)
        try checkKeys(set, newest: ids.last)
        let id = newID(set: set, committed: ids, present: BackupSet.idsPresent(files), started: started)
        let context = RunContext(source: options.source, destination: dest.displayName, set: options.set, id: id)
        var ran: [any RunHooks] = []
        do {
            for h in options.hooks { try h.beforeRun(context); ran.append(h) }
            var summary: BackupSummary
            let warningsBefore = warnings.count
            do {
                summary = try runLocked(set: set, id: id, previousIDs: ids, started: started)
            } catch let damaged as PreviousManifestDamaged {
                // Found part way through the incremental: what it wrote is gone, start again
                // (its warnings are said again if they still hold).
                warnings.removeSubrange(warningsBefore...)
                note(Manifest.fullBackupInstead(damaged.error))
                missing = MissingFiles()
                summary = try runLocked(set: set, id: id, previousIDs: ids, started: started, ignoringPrevious: true)
            }
            for h in ran.reversed() {
                do { try h.afterRun(context, outcome: .success(summary)) } catch { note("after-run hook failed: \(error)") }
            }
            summary.warnings = warnings
            summary.missing = missing
            return summary
        } catch {
            for h in ran.reversed() {
                do { try h.afterRun(context, outcome: .failure("\(error)")) } catch { reporter.warning("after-run hook failed: \(error)") }
            }
            throw error
        }
    }

    /// This run's id by the id rule (`BackupID`), with a warning when the clock is behind.
    private func newID(set: BackupSet, committed: [String], present: [String], started: Date) -> String {
        let newest = present.last
        let id = BackupID.next(clock: started, newest: newest)
        let newestStarted = committed.last.flatMap { try? set.keylessRecord($0).started }  // keyless: an encrypted set too
        if let w = BackupID.clockWarning(clock: started, newest: newest, newestStarted: newest == committed.last ? newestStarted : nil, id: id) {
            note(w)
        }
        return id
    }

    private let traceStart = Date()
    private let tracing = Sys.environment("HS_BACKUP_TRACE") != nil
    /// Phase timings on stderr when HS_BACKUP_TRACE is set (for benchmarking).
    func trace(_ what: String) {
        guard tracing else { return }
        // Resident and peak memory so far (VmRSS, VmHWM in kB).
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let mem = status.split(separator: "\n").filter { $0.hasPrefix("VmRSS") || $0.hasPrefix("VmHWM") }
            .map { $0.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.map(String.init) ?? "?" }
        Reporter.writeStderr("[trace \(Format.fixed(Date().timeIntervalSince(traceStart), decimals: 3))s] \(what) (rss/peak kB: \(mem.joined(separator: "/")))\n")
    }

    func note(_ w: String) {
        warnings.append(w)
        reporter.warning(w)
    }

    /// Leaves the entry at `path` (relative) out of this backup, by the `LeftOut` rule: a
    /// warning naming it, and counted as missing unless it vanished.
    func leaveOut(_ path: [UInt8], _ why: LeftOut) {
        let shown = displayPath(path)
        note(why.warning(shown))
        if why.isMissing { missing.add(shown, why) }
    }

    /// Starts reading the small regular files of `items` on `pool`'s threads (in the
    /// background), each opened relative to the directory the scan found it in and checked
    /// against the scan (`SourceFile`); `PrefetchJob.wait()` gives the contents by index (an
    /// array of `count`, nil where no item was), or why a file is left out. Files over 1 MiB
    /// are not prefetched.
    func prefetch(_ items: [PrefetchItem], count: Int, on pool: WorkPool) throws -> PrefetchJob {
        // Runs of files in the same directory go to one thread (its inode stays hot there).
        var runs: [Range<Int>] = []
        var runStart = 0
        for k in 1 ... items.count where k == items.count || items[k].file.parent !== items[runStart].file.parent {
            runs.append(runStart ..< k); runStart = k
        }
        let slots = ResultSlots<Result<PrefetchedContent, LeftOutError>>(count: count)
        let work = items
        let allRuns = runs
        let detect = options.compressionLevel > 0
        let parallel = min(allRuns.count, pool.threads)
        var tickets: [WorkPool.Ticket] = []
        for part in 0 ..< parallel {
            tickets.append(try pool.submit {
                var r = part
                while r < allRuns.count {
                    for k in allRuns[r] { slots.set(work[k].index, Self.prefetchOne(work[k], detectIncompressible: detect)) }
                    r += parallel
                }
            })
        }
        return PrefetchJob(pool: pool, tickets: tickets, slots: slots)
    }

    /// Reads one small file for `prefetch` (and its xattrs from the same descriptor, if asked).
    private static func prefetchOne(_ item: PrefetchItem, detectIncompressible: Bool) -> Result<PrefetchedContent, LeftOutError> {
        switch item.file.open() {
        case .failure(let f): return .failure(f)
        case .success(let (fd, _)):
            defer { Sys.close(fd) }
            var read = ArchiveWriter.read(openFile: fd, size: item.size, detectIncompressible: detectIncompressible)
            if item.xattrs, case .success(var c) = read {
                c.xattrs = Archive.readXattrs(.fd(fd))
                read = .success(c)
            }
            return read.mapError { LeftOutError(why: .unreadable(errno: $0.errno)) }
        }
    }

    /// Threads that read small files ahead (`prefetch`): two per core, 2 to 8 (their reads
    /// may wait on the disk); `HS_PREFETCH_THREADS` sets the number (for measurements). Their
    /// own threads, not the shared dispatch pool: the pass itself runs on one of that pool's
    /// few threads, and the reads were found taking turns on a single other one.
    static let prefetchThreads: Int = {
        if let v = Sys.environment("HS_PREFETCH_THREADS"), let n = Int(v), n >= 1 { return min(n, 64) }
        return min(8, max(2, 2 * Sys.processorCount))
    }()

    /// One small file for `prefetch`: its index in the batch, where to read it, its size as
    /// scanned, and whether to read its xattrs from the same descriptor.
    struct PrefetchItem: Sendable {
        var index: Int
        var file: SourceFile
        var size: UInt64
        var xattrs: Bool
    }

    /// "<source>/<relative path>" as NUL-terminated bytes.
    func sourcePath(_ relative: [UInt8]) -> [UInt8] {
        Array(options.source.utf8) + [0x2F] + relative + [0]
    }

    /// The one rule that decides whether an entry changed since the previous backup (content
    /// aside: a ctime-only change of a file is settled by its hash, link targets by bytes):
    /// type, mode, owner, mtime (seconds and nanoseconds), size of files, and the xattr/ACL
    /// hash when the previous manifest recorded one. Device numbers never count.
    static func changed(_ e: ManifestEntry, _ p: ManifestEntry, xattrsComparable: Bool) -> Bool {
        e.type != p.type || e.mode != p.mode || e.uid != p.uid || e.gid != p.gid || e.mtime != p.mtime
            || (e.type == .file && e.size != p.size)
            || (xattrsComparable && e.xattrHash != p.xattrHash)
    }

    /// The scanner for this run: excludes, the destination left out when it is inside the
    /// source, mount point handling.
    func makeScanner() -> Scanner {
        let scanner = Scanner(root: options.source, excludes: ExcludeSet(patterns: options.excludes))
        scanner.oneFileSystem = options.oneFileSystem
        scanner.markers = options.markers
        // A directory of this machine: a local DEST, or an rclone remote of the local backend
        // (its files are in that directory as a local DEST's; not a crypt remote over one:
        // another tree). DEST, and DEST/SET for when DEST is the source itself.
        let dest = options.destination
        if let root = dest.localDirectory {
            let name = NameEscape.escape(dest.displayName)
            for (path, shown) in [(root, name), (root + "/" + options.set, name + "/" + options.set)] {
                var st = stat()
                if stat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR {
                    scanner.skipDirectories.append((UInt64(st.st_dev), UInt64(st.st_ino), shown))
                }
            }
        }
        return scanner
    }

    /// `--dry-run`: scan and compare with the latest backup; list what would be archived.
    private func dryRun(set: BackupSet, started: Date, ignoringPrevious: Bool = false) throws -> BackupSummary {
        let ids = try set.committedIDs()
        if !ignoringPrevious { try checkKeys(set, newest: ids.last) }
        var previous: ManifestReader?
        if let last = ids.last, !ignoringPrevious {
            do { previous = try openPreviousManifest(set, last) } catch { note(Manifest.fullBackupInstead(error)) }
        }
        let full = options.forceFull || previous == nil
        let pass = BackupPass(runner: self, previous: full ? nil : previous, dryRun: true)
        defer { pass.cleanup() }
        do { try pass.run() } catch {
            guard case .damaged? = previous?.failure, !full else { throw error }
            note(Manifest.fullBackupInstead(error))
            return try dryRun(set: set, started: started, ignoringPrevious: true)
        }
        let kind = full ? "full" : "incremental"
        reporter.endProgress()
        reporter.info("dry run: a \(kind) backup would archive \(pass.filesArchived) of \(pass.files) files (\(Format.bytes(pass.bytesIn))); nothing was written")
        return BackupSummary(id: "dry-run", set: options.set, destination: options.destination.displayName, kind: kind,
                             parent: full ? nil : ids.last, files: pass.files, directories: pass.dirs, symlinks: pass.links,
                             filesArchived: pass.filesArchived, treeBytes: pass.treeBytes, bytesIn: pass.bytesIn, bytesOut: 0,
                             seconds: Date().timeIntervalSince(started), warnings: warnings, missing: missing)
    }

    /// The error of a run that failed before its commit (the manifest's rename, which comes
    /// last): where (`step`, e.g. " while writing the manifest"), why, and that nothing changed.
    private func nothingCommitted(_ set: BackupSet, _ step: String, _ cause: any Error, exitCode: Int32 = 1) -> ToolError {
        ToolError("backup to \(set.location) failed\(step): \(cause). Nothing was committed; earlier backups are intact and the next run cleans up.",
                  exitCode: exitCode)
    }

    /// The parent's keyless index, whose archive sizes and hashes the new index carries on;
    /// nil (with a warning when it exists but is damaged) makes those archives' hashes unknown.
    private func previousIndexForCommit(_ set: BackupSet, _ id: String) -> BackupIndex? {
        do { return try set.readIndex(id) } catch {
            note("\(error) The new backup's index records the archives it shares with \(id) without their hashes.")
            return nil
        }
    }

    /// Thrown by `runLocked` when the previous manifest turns out damaged part way through
    /// (its header was fine): `run()` starts again as a full backup.
    private struct PreviousManifestDamaged: Error { var error: any Error }

    private func runLocked(set: BackupSet, id: String, previousIDs: [String], started: Date,
                           ignoringPrevious: Bool = false) throws -> BackupSummary {
        let dest = options.destination
        let (previous, full) = openPrevious(set, previousIDs, started: started, ignoringPrevious: ignoringPrevious)
        let prevHeader = previous?.header
        let previousIndex = prevHeader.flatMap { previousIndexForCommit(set, $0.id) }
        trace("previous manifest opened")

        // The manifest is written as the tree is walked, under a temporary name; renamed
        // (the commit) only after the archive is complete and synced.
        let manifestPartial = set.manifestPath(id) + ".partial"
        let manifestFile: StoredWriter
        let manifestCleanup: Int
        do {
            let created: any DestinationWriter
            (created, manifestCleanup) = try createRemovedOnSignal(dest, manifestPartial)
            manifestFile = try set.storedWriter(created, path: manifestPartial, plaintextCopy: manifestCopyWriter())
        } catch {
            throw nothingCommitted(set, ": cannot create \(NameEscape.escape("\(dest.displayName)/\(manifestPartial)"))", error)
        }
        defer { InterruptCleanup.shared.unregister(manifestCleanup) }
        var committed = false
        defer {
            if !committed {
                try? manifestFile.close()
                try? dest.remove(manifestPartial)
                abandonManifestCopy()
            }
        }

        reporter.progress("scanning \(NameEscape.escape(options.source))", force: true)
        let pass = BackupPass(runner: self, previous: previous, dryRun: false)
        defer { pass.cleanup() }
        pass.id = id
        pass.set = set
        pass.archiveSlots = prevHeader.map { $0.archiveSlots ?? $0.archives } ?? []
        pass.manifest = ManifestWriter(sink: { bytes in try bytes.withUnsafeBytes { try manifestFile.write($0) } },
                                       parent: previous)
        try runPass(pass, full: full, previous: previous, set: set, previousID: previousIDs.last)
        previous?.close()

        let seconds = Date().timeIntervalSince(started)
        let header = manifestHeader(pass, id: id, full: full, parent: previousIDs.last, previous: prevHeader, started: started, seconds: seconds)
        let index: BackupIndex
        do {
            try pass.manifest!.finish(header: header)
            try manifestFile.endStream()
            // The keyless index, as `<id>.index.partial` until the commit (like the archive); an
            // encrypted run's records its recipients' fingerprint.
            index = try set.indexForCommit(header: header, written: pass.storedArchive, manifest: manifestFile.stored(as: id),
                                           previous: previousIndex, recipients: set.keys.recipientFingerprint)
            let (indexFile, indexCleanup) = try createRemovedOnSignal(dest, set.indexPath(id) + ".partial") { try set.createIndex(index) }
            defer { try? indexFile.close(); InterruptCleanup.shared.unregister(indexCleanup) }
            // Archive, manifest and index durable before the manifest's rename (the commit).
            try syncForCommit([(pass.archiveToSync, " while writing the archive"), (manifestFile, " while writing the manifest"),
                               (indexFile, " while writing the index")], concurrently: dest.syncsFilesConcurrently)
            try pass.closeArchive()
            try manifestFile.close()
            try indexFile.close()
            // The commit. A signal before it removes every `.partial`; one during it waits, and
            // one after it leaves the archive and index to be renamed by the next run.
            try InterruptCleanup.shared.committing {
                try dest.rename(manifestPartial, to: set.manifestPath(id))
                committed = true
                pass.keepArchiveOnSignal()
                InterruptCleanup.shared.unregister(indexCleanup)
            }
        } catch {
            pass.abandonArchive()
            try? dest.remove(set.indexPath(id) + ".partial")
            if let f = error as? PassFailure { throw nothingCommitted(set, f.step, f.cause) }
            throw nothingCommitted(set, " while writing the manifest", error)
        }
        // Committed: the archive and the index get their final names (a run stopped before this
        // is completed by the next cleanup; until then the `.partial` names mark what is
        // provably a leftover).
        for (from, to) in [pass.archiveID.map { set.archivePath($0) }, set.indexPath(id)].compactMap({ $0 }).map({ ($0 + ".partial", $0) }) {
            do { try dest.rename(from, to: to) } catch {
                note("backup \(id) is committed, but \(from) could not be renamed (\(error)); the next hs-backup run or prune completes it")
            }
        }
        // The renames are on stable storage only after this (a power loss before it can lose the
        // commit): a failure is the run's failure, though the backup is in place.
        do { try dest.syncDirectory(options.set) } catch {
            throw ToolError("backup \(id) is committed in \(set.location), but syncing that directory to stable storage failed: \(error). "
                            + "It may not survive a power loss or crash. Check the disk or NAS (dmesg, zpool status), "
                            + "then run 'hs-backup verify' on the set.")
        }
        keepManifestCopy(index)
        trace("manifest written (\(pass.manifest!.copiedMembers) members copied from the previous one)")
        reporter.endProgress()
        return BackupSummary(id: id, set: options.set, destination: dest.displayName, kind: header.kind, parent: header.parent,
                             files: pass.files, directories: pass.dirs, symlinks: pass.links, filesArchived: pass.filesArchived,
                             treeBytes: pass.treeBytes, bytesIn: pass.bytesIn, bytesOut: pass.bytesOut, seconds: seconds, warnings: warnings,
                             missing: missing)
    }

    /// The previous backup's manifest to compare with, and whether this run is a full backup:
    /// none, a damaged one, too many incrementals, an old full backup or a missing archive of
    /// its chain make it full (each said in a warning).
    private func openPrevious(_ set: BackupSet, _ previousIDs: [String], started: Date,
                              ignoringPrevious: Bool) -> (ManifestReader?, Bool) {
        var previous: ManifestReader?
        if let last = previousIDs.last, !ignoringPrevious {
            do { previous = try openPreviousManifest(set, last) } catch { note(Manifest.fullBackupInstead(error)) }
        }
        var full = options.forceFull || previous == nil
        if !full, let p = previous?.header {
            let since = (p.sinceFull ?? 0).addingSaturated(1)
            let fullStarted = p.kind == "full" ? p.started : (p.fullStarted ?? 0)
            if since > options.maxIncrementals { full = true }
            if started.timeIntervalSince1970 - fullStarted > options.maxDaysBetweenFulls * 86400 { full = true }
            // Every archive the chain references must still exist.
            if !full {
                for a in p.archives where (try? options.destination.stat(set.archivePath(a))).flatMap({ $0 }) == nil {
                    note("archive \(a).tar.gz of the previous backup is missing; taking a full backup")
                    full = true
                    break
                }
            }
        }
        if full { previous?.close(); previous = nil }
        previous?.keepsCompressedMembers = true
        return (previous, full)
    }

    /// Runs the pass and ends its archive (synced, still `.partial`); a failure is worded once
    /// here (`PreviousManifestDamaged` when the previous manifest turned out damaged).
    private func runPass(_ pass: BackupPass, full: Bool, previous: ManifestReader?, set: BackupSet, previousID: String?) throws {
        do {
            if full { try pass.openArchive() }
            try pass.run()
            try pass.finishArchive()
        } catch {
            pass.abandonArchive()
            switch previous?.failure {
            case .damaged?:
                throw PreviousManifestDamaged(error: error)
            case .unreadable(let readError)?:
                throw nothingCommitted(set, " while reading the previous backup's manifest \(NameEscape.escape(previousID ?? ""))", readError)
            case nil:
                // The pass says where its own failures happened; anything else (writing the
                // new manifest as it goes) names the call that failed.
                if let f = error as? PassFailure { throw nothingCommitted(set, f.step, f.cause) }
                throw nothingCommitted(set, "", error, exitCode: (error as? ToolError)?.exitCode ?? 1)
            }
        }
    }

    /// The header of this backup's manifest.
    private func manifestHeader(_ pass: BackupPass, id: String, full: Bool, parent: String?, previous prevHeader: ManifestHeader?,
                                started: Date, seconds: Double) -> ManifestHeader {
        var slots = pass.archiveSlots
        for i in slots.indices where !pass.usedArchives.contains(UInt32(i)) { slots[i] = "" }
        var header = ManifestHeader(
            id: id, kind: full ? "full" : "incremental", parent: full ? nil : parent,
            archives: slots.filter { !$0.isEmpty }, archive: pass.archiveID, toolVersion: toolVersion, source: options.source,
            started: started.timeIntervalSince1970, seconds: seconds, files: pass.files, directories: pass.dirs, symlinks: pass.links,
            filesArchived: pass.filesArchived, treeBytes: pass.treeBytes, bytesIn: pass.bytesIn, bytesOut: pass.bytesOut, warnings: warnings,
            sinceFull: full ? 0 : (prevHeader?.sinceFull ?? 0).addingSaturated(1), fullID: full ? id : (prevHeader?.fullID ?? prevHeader?.id),
            fullStarted: full ? started.timeIntervalSince1970 : (prevHeader?.kind == "full" ? prevHeader?.started : prevHeader?.fullStarted),
            scanFlags: 1, archiveSlots: slots)
        header.filesMissing = missing.count > 0 ? missing.count : nil
        return header
    }
}


/// Creates `path` on `dest` (a `.partial` file) so that a signal removes it: registered and
/// created as one step (`InterruptCleanup.creating`). Returns the writer and the token to
/// unregister once the file is committed or removed.
func createRemovedOnSignal(_ dest: any Destination, _ path: String,
                           create: (() throws -> any DestinationWriter)? = nil) throws -> (any DestinationWriter, Int) {
    try InterruptCleanup.shared.creating(NameEscape.escape("\(dest.displayName)/\(path)"), remove: { [dest] in
        if (try? dest.stat(path)).flatMap({ $0 }) != nil { try dest.remove(path) }
    }) { try create?() ?? dest.create(path) }
}

/// SHA-256 of a file's content; `path` as bytes (without NUL).
package func hashFile(bytes path: [UInt8]) throws -> Digest {
    let c = path.last == 0 ? path : path + [0]
    return try c.withUnsafeBufferPointer { p in try p.withMemoryRebound(to: CChar.self) { try hashFile(cPath: $0.baseAddress!) } }
}

/// SHA-256 of a file's content (reads it; never follows a final symlink).
package func hashFile(_ path: String) throws -> Digest {
    try path.withCString { try hashFile(cPath: $0) }
}

func hashFile(cPath: UnsafePointer<CChar>) throws -> Digest {
    let path = displayPath(Array(UnsafeRawBufferPointer(start: cPath, count: strlen(cPath))))
    let fd = open(cPath, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
    if fd < 0 { throw FileReadError(path: path, errno: errno) }
    defer { close(fd) }
    var h = SHA256Hasher()
    var buf = [UInt8](repeating: 0, count: 256 * 1024)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
        if n < 0 { if errno == EINTR { continue }; throw FileReadError(path: path, errno: errno) }
        if n == 0 { break }
        buf.withUnsafeBytes { h.update(UnsafeRawBufferPointer(rebasing: $0[0 ..< n])) }
    }
    return Digest(h.finalize())
}

extension FixedWidthInteger {
    /// `self + other`, stopping at the type's bounds instead of trapping (sums of sizes read
    /// from the disk or from a manifest: sparse files can claim up to 2^63 bytes each).
    func addingSaturated(_ other: Self) -> Self {
        let (v, o) = addingReportingOverflow(other)
        return o ? (other > 0 ? .max : .min) : v
    }
}
