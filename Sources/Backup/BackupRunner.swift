#if canImport(Glibc)
import Glibc
#endif
import Archive
import Foundation
import Storage
import Support

/// Options of one backup run.
package struct BackupOptions {
    package var source: String
    package var destination: any Destination
    package var set: String
    package var forceFull = false
    package var excludes: [String] = []
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

    enum CodingKeys: String, CodingKey {
        case id, set, destination, kind, parent, files, directories, symlinks
        case filesArchived = "files_archived", treeBytes = "tree_bytes", bytesIn = "bytes_in", bytesOut = "bytes_out"
        case seconds, warnings
    }

    package var line: String {
        "backup \(id) (\(kind)) of \(files) files: \(filesArchived) archived, \(Format.bytes(bytesIn)) read, "
            + "\(Format.bytes(bytesOut)) written in \(Format.seconds(seconds)), \(warnings.count) warning\(warnings.count == 1 ? "" : "s")"
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
                : "source '\(options.source)' is not a directory. Give the appdata directory with --source, e.g. /opt/appdata.")
        }
        if options.dryRun { return try dryRun(set: set, started: started) }
        do { try dest.makeDirectories(options.set) } catch {
            throw ToolError("cannot create the backup set directory \(set.location): \(error). Check that DEST exists and is writable.")
        }
        trace("start")
        let lock = SetLock(destination: dest, set: options.set)
        warnings += try lock.acquire(operation: "backup", staleAfter: options.staleLockAfter)
        defer { lock.release() }
        for w in warnings { reporter.warning(w) }
        let cleanup = try set.cleanUpReport()
        if !cleanup.removed.isEmpty { note("removed leftovers of an interrupted run: \(cleanup.removed.joined(separator: ", "))") }
        for w in cleanup.warnings { note(w) }

        trace("locked, cleaned")
        let ids = try set.committedIDs()
        try checkKeys(set, newest: ids.last)
        let id = set.newID(at: started, existing: ids)
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
                summary = try runLocked(set: set, id: id, previousIDs: ids, started: started, ignoringPrevious: true)
            }
            for h in ran.reversed() {
                do { try h.afterRun(context, outcome: .success(summary)) } catch { note("after-run hook failed: \(error)") }
            }
            summary.warnings = warnings
            return summary
        } catch {
            for h in ran.reversed() {
                do { try h.afterRun(context, outcome: .failure("\(error)")) } catch { reporter.warning("after-run hook failed: \(error)") }
            }
            throw error
        }
    }

    private let traceStart = Date()
    private let tracing = ProcessInfo.processInfo.environment["HS_BACKUP_TRACE"] != nil
    /// Phase timings on stderr when HS_BACKUP_TRACE is set (for benchmarking).
    func trace(_ what: String) {
        guard tracing else { return }
        // Resident and peak memory so far (VmRSS, VmHWM in kB).
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let mem = status.split(separator: "\n").filter { $0.hasPrefix("VmRSS") || $0.hasPrefix("VmHWM") }
            .map { $0.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.map(String.init) ?? "?" }
        Reporter.writeStderr(String(format: "[trace %.3fs] %@ (rss/peak kB: %@)\n", Date().timeIntervalSince(traceStart), what, mem.joined(separator: "/")))
    }

    func note(_ w: String) {
        warnings.append(w)
        reporter.warning(w)
    }

    /// Reads the small regular files of `items` (those `wanted` says) on all cores. Returns the
    /// contents by index. Files over 1 MiB are not prefetched.
    func prefetch(_ items: [(index: Int, path: [UInt8], size: UInt64)]) -> [Int: Result<PrefetchedContent, PrefetchError>] {
        let picked = items
        guard picked.count > 1 else { return [:] }
        // Runs of files in the same directory: the directory is opened once (O_PATH) and its
        // files relative to it, instead of one walk of the whole absolute path per file.
        var runs: [Range<Int>] = []
        var runStart = 0
        for k in 1 ... picked.count where k == picked.count || Self.parent(picked[k].path) != Self.parent(picked[runStart].path) {
            runs.append(runStart ..< k); runStart = k
        }
        let slots = ResultSlots<Result<PrefetchedContent, PrefetchError>>(count: picked.count)
        let work = picked
        let allRuns = runs
        let level = options.compressionLevel
        let root = Array(options.source.utf8)
        let parallel = min(allRuns.count, 64)
        DispatchQueue.concurrentPerform(iterations: parallel) { part in
            var r = part
            while r < allRuns.count {
                let run = allRuns[r]
                let dir = Self.parent(work[run.lowerBound].path)
                let dirPath = root + (dir.isEmpty ? [] : [0x2F] + dir) + [0]
                let dfd = dirPath.withUnsafeBufferPointer { p in
                    p.withMemoryRebound(to: CChar.self) { open($0.baseAddress!, Sys.O_PATH | O_DIRECTORY | O_CLOEXEC) }
                }
                for k in run {
                    let path = work[k].path
                    if dfd >= 0 {
                        let nameStart = dir.isEmpty ? 0 : dir.count + 1
                        let name = path[nameStart...] + [0]
                        slots.set(k, name.withUnsafeBufferPointer { p in
                            p.withMemoryRebound(to: CChar.self) {
                                ArchiveWriter.prefetch(directory: dfd, name: $0.baseAddress!, size: work[k].size, detectIncompressible: level > 0)
                            }
                        })
                    } else {
                        slots.set(k, ArchiveWriter.prefetch(path: root + [0x2F] + path + [0], size: work[k].size, detectIncompressible: level > 0))
                    }
                }
                if dfd >= 0 { close(dfd) }
                r += parallel
            }
        }
        var out: [Int: Result<PrefetchedContent, PrefetchError>] = [:]
        for (k, v) in slots.takeAll().enumerated() { if let v { out[work[k].index] = v } }
        return out
    }


    /// The directory part of a relative path ("" at the top).
    private static func parent(_ p: [UInt8]) -> ArraySlice<UInt8> { p[..<(p.lastIndex(of: 0x2F) ?? 0)] }

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
        if let local = options.destination as? LocalDestination {
            // DEST, and DEST/SET for when DEST is the source itself.
            for path in [local.root, local.root + "/" + options.set] {
                var st = stat()
                if stat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR {
                    scanner.skipDirectories.append((UInt64(st.st_dev), UInt64(st.st_ino), path))
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
            do { previous = try openPrevious(set, last) } catch { note(Manifest.fullBackupInstead(error)) }
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
                             seconds: Date().timeIntervalSince(started), warnings: warnings)
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
        // The previous manifest decides what changed; it is read as a stream alongside the
        // scan. A damaged one forces a full backup.
        var previous: ManifestReader?
        if let last = previousIDs.last, !ignoringPrevious {
            do { previous = try openPrevious(set, last) } catch { note(Manifest.fullBackupInstead(error)) }
        }
        var full = options.forceFull || previous == nil
        if !full, let p = previous?.header {
            let since = (p.sinceFull ?? 0).addingSaturated(1)
            let fullStarted = p.kind == "full" ? p.started : (p.fullStarted ?? 0)
            if since > options.maxIncrementals { full = true }
            if started.timeIntervalSince1970 - fullStarted > options.maxDaysBetweenFulls * 86400 { full = true }
            // Every archive the chain references must still exist.
            if !full {
                for a in p.archives where (try? dest.stat(set.archivePath(a))).flatMap({ $0 }) == nil {
                    note("archive \(a).tar.gz of the previous backup is missing; taking a full backup")
                    full = true
                    break
                }
            }
        }
        if full { previous = nil }
        previous?.keepsCompressedMembers = true
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
            throw nothingCommitted(set, ": cannot create \(dest.displayName)/\(manifestPartial)", error)
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

        reporter.progress("scanning \(options.source)", force: true)
        let pass = BackupPass(runner: self, previous: previous, dryRun: false)
        defer { pass.cleanup() }
        pass.id = id
        pass.set = set
        pass.archiveSlots = prevHeader.map { $0.archiveSlots ?? $0.archives } ?? []
        pass.manifest = ManifestWriter(sink: { bytes in try bytes.withUnsafeBytes { try manifestFile.write($0) } },
                                       parent: previous)
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
                throw nothingCommitted(set, " while reading the previous backup's manifest \(previousIDs.last ?? "")", readError)
            case nil:
                // The pass says where its own failures happened; anything else (writing the
                // new manifest as it goes) names the call that failed.
                if let f = error as? PassFailure { throw nothingCommitted(set, f.step, f.cause) }
                throw nothingCommitted(set, "", error, exitCode: (error as? ToolError)?.exitCode ?? 1)
            }
        }
        previous?.close()

        let seconds = Date().timeIntervalSince(started)
        var slots = pass.archiveSlots
        for i in slots.indices where !pass.usedArchives.contains(UInt32(i)) { slots[i] = "" }
        let referenced = slots.filter { !$0.isEmpty }
        let header = ManifestHeader(
            id: id, kind: full ? "full" : "incremental", parent: full ? nil : previousIDs.last,
            archives: referenced, archive: pass.archiveID, toolVersion: toolVersion, source: options.source,
            started: started.timeIntervalSince1970, seconds: seconds, files: pass.files, directories: pass.dirs, symlinks: pass.links,
            filesArchived: pass.filesArchived, treeBytes: pass.treeBytes, bytesIn: pass.bytesIn, bytesOut: pass.bytesOut, warnings: warnings,
            sinceFull: full ? 0 : (prevHeader?.sinceFull ?? 0).addingSaturated(1), fullID: full ? id : (prevHeader?.fullID ?? prevHeader?.id),
            fullStarted: full ? started.timeIntervalSince1970 : (prevHeader?.kind == "full" ? prevHeader?.started : prevHeader?.fullStarted),
            scanFlags: 1, archiveSlots: slots)
        var index: BackupIndex?
        do {
            try pass.manifest!.finish(header: header)
            try manifestFile.sync()
            try manifestFile.close()
            index = try set.indexForCommit(header: header, written: pass.storedArchive, manifest: manifestFile.stored(as: id),
                                           previous: previousIndex, recipients: set.keys.recipientFingerprint)
            try set.writeIndex(index!)
            try dest.rename(manifestPartial, to: set.manifestPath(id))
            committed = true
            try? dest.syncDirectory(options.set)
        } catch {
            if let a = pass.archiveID { try? dest.remove(set.archivePath(a)) }
            try? dest.remove(set.indexPath(id))
            throw nothingCommitted(set, " while writing the manifest", error)
        }
        if let index { keepManifestCopy(index) }
        trace("manifest written (\(pass.manifest!.copiedMembers) members copied from the previous one)")
        reporter.endProgress()
        return BackupSummary(id: id, set: options.set, destination: dest.displayName, kind: header.kind, parent: header.parent,
                             files: pass.files, directories: pass.dirs, symlinks: pass.links, filesArchived: pass.filesArchived,
                             treeBytes: pass.treeBytes, bytesIn: pass.bytesIn, bytesOut: pass.bytesOut, seconds: seconds, warnings: warnings)
    }
}


/// Creates `path` on `dest` (a `.partial` file) so that a signal removes it: registered and
/// created as one step (`InterruptCleanup.creating`). Returns the writer and the token to
/// unregister once the file is committed or removed.
func createRemovedOnSignal(_ dest: any Destination, _ path: String) throws -> (any DestinationWriter, Int) {
    try InterruptCleanup.shared.creating("\(dest.displayName)/\(path)", remove: { [dest] in
        if (try? dest.stat(path)).flatMap({ $0 }) != nil { try dest.remove(path) }
    }) { try dest.create(path) }
}

func fileExists(_ path: String) -> Bool {
    var st = stat()
    return lstat(path, &st) == 0
}

/// `path` is NUL-terminated bytes.
func fileExists(bytes path: [UInt8]) -> Bool {
    var st = stat()
    return path.withUnsafeBufferPointer { p in p.withMemoryRebound(to: CChar.self) { lstat($0.baseAddress!, &st) == 0 } }
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
