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

    package init(options: BackupOptions, reporter: Reporter) {
        self.options = options
        self.reporter = reporter
    }

    package func run() throws -> BackupSummary {
        let started = Date()
        let dest = options.destination
        let set = BackupSet(destination: dest, name: options.set)
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
        let id = set.newID(at: started, existing: ids)
        let context = RunContext(source: options.source, destination: dest.displayName, set: options.set, id: id)
        var ran: [any RunHooks] = []
        do {
            for h in options.hooks { try h.beforeRun(context); ran.append(h) }
            var summary = try runLocked(set: set, id: id, previousIDs: ids, started: started)
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

    private func note(_ w: String) {
        warnings.append(w)
        reporter.warning(w)
    }

    /// Reads the small regular files among `toArchive[from...]` on all cores: up to 1024
    /// entries or 16 MiB of content from `from`. Returns the contents by entry index and
    /// where the window ends. Files over 1 MiB and substituted ones are not prefetched.
    private func prefetchWindow(table: ManifestTable, toArchive: [Int], from: Int,
                                substitutes: [Int: SubstitutedContent]) -> ([Int: Result<PrefetchedContent, PrefetchError>], Int) {
        // (entry, relative path, size), in path order: files of one directory are adjacent.
        var picked: [(Int, [UInt8], UInt64)] = []
        var bytes: UInt64 = 0
        var end = from
        while end < toArchive.count && picked.count < 1024 && bytes < 16 << 20 {
            let i = toArchive[end]
            let e = table.entry(i)
            if e.type == .file && e.size > 0 && e.size <= 1 << 20 && substitutes[i] == nil {
                picked.append((i, table.pathBytes(e), e.size))
                bytes += e.size
            }
            end += 1
        }
        guard picked.count > 1 else { return ([:], end) }
        // Runs of files in the same directory: the directory is opened once (O_PATH) and its
        // files relative to it, instead of one walk of the whole absolute path per file.
        var runs: [Range<Int>] = []
        var runStart = 0
        for k in 1 ... picked.count where k == picked.count || Self.parent(picked[k].1) != Self.parent(picked[runStart].1) {
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
                let dir = Self.parent(work[run.lowerBound].1)
                let dirPath = root + (dir.isEmpty ? [] : [0x2F] + dir) + [0]
                let dfd = dirPath.withUnsafeBufferPointer { p in
                    p.withMemoryRebound(to: CChar.self) { open($0.baseAddress!, Self.oPath | O_DIRECTORY | O_CLOEXEC) }
                }
                for k in run {
                    let path = work[k].1
                    if dfd >= 0 {
                        let nameStart = dir.isEmpty ? 0 : dir.count + 1
                        let name = path[nameStart...] + [0]
                        slots.set(k, name.withUnsafeBufferPointer { p in
                            p.withMemoryRebound(to: CChar.self) {
                                ArchiveWriter.prefetch(directory: dfd, name: $0.baseAddress!, size: work[k].2, detectIncompressible: level > 0)
                            }
                        })
                    } else {
                        slots.set(k, ArchiveWriter.prefetch(path: root + [0x2F] + path + [0], size: work[k].2, detectIncompressible: level > 0))
                    }
                }
                if dfd >= 0 { close(dfd) }
                r += parallel
            }
        }
        var out: [Int: Result<PrefetchedContent, PrefetchError>] = [:]
        for (k, v) in slots.takeAll().enumerated() { if let v { out[work[k].0] = v } }
        return (out, end)
    }

    /// The directory part of a relative path ("" at the top).
    private static func parent(_ p: [UInt8]) -> ArraySlice<UInt8> { p[..<(p.lastIndex(of: 0x2F) ?? 0)] }

    /// Linux `O_PATH` (not in Swift's Glibc import; the same value on x86_64 and arm64).
    private static let oPath: Int32 = 0o10000000

    /// "<source>/<relative path>" as NUL-terminated bytes.
    private func sourcePath(_ relative: [UInt8]) -> [UInt8] {
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
    private func makeScanner(previous: ManifestTable?) -> Scanner {
        let scanner = Scanner(root: options.source, excludes: ExcludeSet(patterns: options.excludes), provider: options.contentProvider,
                              previous: previous)
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
    private func dryRun(set: BackupSet, started: Date) throws -> BackupSummary {
        let ids = try set.committedIDs()
        var previous: Manifest?
        if let last = ids.last {
            do { previous = try set.loadManifest(last) } catch { note("\(error); the backup would be a full one") }
        }
        let full = options.forceFull || previous == nil
        let prev = full ? nil : previous
        let scanner = makeScanner(previous: nil)
        scanner.readXattrs = true
        let scan = try scanner.scan { [reporter] n in reporter.progress("scanning: \(n) entries") }
        defer { for s in scan.substitutes.values { s.cleanup() } }
        for w in scan.warnings { note(w) }
        let table = scan.table
        var files = 0, dirs = 0, links = 0, archived = 0
        var treeBytes: UInt64 = 0, bytesIn: UInt64 = 0
        var j = 0
        for i in 0 ..< table.count {
            let e = table.entry(i)
            switch e.type {
            case .file, .hardlink: files += 1; treeBytes = treeBytes.addingSaturated(e.size)
            case .directory: dirs += 1
            case .symlink: links += 1
            }
            var would = true
            if let prev {
                var match: ManifestEntry?
                table.withPath(e) { key in
                    while j < prev.table.count {
                        let c = prev.table.withPath(prev.table.entry(j)) { comparePaths($0, key) }
                        if c < 0 { j += 1; continue }
                        if c == 0 { match = prev.table.entry(j) }
                        break
                    }
                }
                if let p = match, !Self.changed(e, p, xattrsComparable: prev.header.hasXattrHashes),
                   !((e.type == .symlink || e.type == .hardlink) && !table.linkBytes(e).elementsEqual(prev.table.linkBytes(p))) {
                    would = e.type == .file && e.ctime != p.ctime
                        && (try? hashFile(bytes: sourcePath(table.pathBytes(e)))) != p.hash
                }
            }
            guard would else { continue }
            if e.type == .file { archived += 1; bytesIn = bytesIn.addingSaturated(e.size) }
            reporter.info("would archive: \(e.type.name) \(displayPath(table.pathBytes(e)))")
        }
        let kind = full ? "full" : "incremental"
        reporter.info("dry run: a \(kind) backup would archive \(archived) of \(files) files (\(Format.bytes(bytesIn))); nothing was written")
        return BackupSummary(id: "dry-run", set: options.set, destination: options.destination.displayName, kind: kind,
                             parent: full ? nil : ids.last, files: files, directories: dirs, symlinks: links, filesArchived: archived,
                             treeBytes: treeBytes, bytesIn: bytesIn, bytesOut: 0, seconds: Date().timeIntervalSince(started), warnings: warnings)
    }

    private func runLocked(set: BackupSet, id: String, previousIDs: [String], started: Date) throws -> BackupSummary {
        let dest = options.destination
        // The previous manifest decides what changed. A damaged one forces a full backup.
        var previous: Manifest?
        if let last = previousIDs.last {
            do { previous = try set.loadManifest(last) } catch { note("\(error); taking a full backup") }
        }
        var full = options.forceFull || previous == nil
        if !full, let p = previous {
            let since = (p.header.sinceFull ?? 0).addingSaturated(1)
            let fullStarted = p.header.kind == "full" ? p.header.started : (p.header.fullStarted ?? 0)
            if since > options.maxIncrementals { full = true }
            if started.timeIntervalSince1970 - fullStarted > options.maxDaysBetweenFulls * 86400 { full = true }
            // Every archive the chain references must still exist.
            if !full {
                for a in p.header.archives where (try? dest.stat(set.archivePath(a))).flatMap({ $0 }) == nil {
                    note("archive \(a).tar.gz of the previous backup is missing; taking a full backup")
                    full = true
                    break
                }
            }
        }
        var prev: Manifest? = full ? nil : previous
        // The new manifest copies the members of the previous one's body that did not change.
        let reuse = previous?.reusable()
        previous = nil
        let prevHeader = prev?.header
        trace("previous manifest loaded")

        // Scan.
        reporter.progress("scanning \(options.source)", force: true)
        let scanner = makeScanner(previous: (prev?.header.scanFlags ?? 0) >= 1 ? prev?.table : nil)
        var scan = try scanner.scan { [reporter] n in reporter.progress("scanning: \(n) entries") }
        defer { for s in scan.substitutes.values { s.cleanup() } }
        for w in scan.warnings { note(w) }
        var table = scan.table
        scan.table = ManifestTable()  // one owner, so updates below do not copy the records
        trace("scanned \(table.count) entries")

        // Compare with the previous manifest (merge walk of two sorted lists).
        var archives: [String] = []
        var archiveIndex: [UInt32: UInt32] = [:]
        var toArchive: [Int] = []
        var files = 0, dirs = 0, links = 0
        var treeBytes: UInt64 = 0
        let n = table.count
        var j = 0
        let prevCount = prev?.table.count ?? 0
        for i in 0 ..< n {
            var e = table.entry(i)
            switch e.type {
            case .file, .hardlink: files += 1; treeBytes = treeBytes.addingSaturated(e.size)
            case .directory: dirs += 1
            case .symlink: links += 1
            }
            guard let prev else { toArchive.append(i); continue }
            var match: ManifestEntry?
            table.withPath(e) { key in
                while j < prevCount {
                    let c = prev.table.withPath(prev.table.entry(j)) { comparePaths($0, key) }
                    if c < 0 { j += 1; continue }
                    if c == 0 { match = prev.table.entry(j) }
                    break
                }
            }
            guard let p = match else { toArchive.append(i); continue }
            if Self.changed(e, p, xattrsComparable: prev.header.hasXattrHashes)
                || ((e.type == .symlink || e.type == .hardlink) && !table.linkBytes(e).elementsEqual(prev.table.linkBytes(p))) {
                toArchive.append(i); continue
            }
            switch e.type {
            case .directory, .symlink:
                continue  // metadata equal; nothing to carry
            case .hardlink:
                e.hash = p.hash
                table.set(i, e)
                continue
            case .file:
                break
            }
            var same = e.ctime == p.ctime && scan.substitutes[i] == nil
            if !same {
                // ctime (or substituted content) changed alone: compare content hashes.
                let path = scan.substitutes[i].map { Array($0.path.utf8) } ?? sourcePath(table.pathBytes(e))
                if let h = try? hashFile(bytes: path), h == p.hash { same = true }
            }
            guard same, p.archive != ManifestEntry.noArchive else { toArchive.append(i); continue }
            let oldA = p.archive
            let newA: UInt32
            if let a = archiveIndex[oldA] { newA = a } else {
                newA = UInt32(archives.count); archives.append(prev.header.archives[Int(oldA)]); archiveIndex[oldA] = newA
            }
            e.archive = newA
            e.memberOffset = p.memberOffset
            e.memberSkip = p.memberSkip
            e.hash = p.hash
            e.size = p.size
            table.set(i, e)
        }

        prev = nil  // the previous manifest is not needed any more: free it before archiving
        trace("compared: \(toArchive.count) to archive")
        // Archive what changed.
        var bytesIn: UInt64 = 0, bytesOut: UInt64 = 0
        var filesArchived = 0
        var archiveID: String?
        let changedFiles = toArchive.filter { table.entry($0).type == .file }.count
        if !toArchive.isEmpty || full {
            archiveID = id
            let partial = set.archivePath(id) + ".partial"
            // A signal (Ctrl-C, SIGTERM) removes the partial archive before the process exits.
            // Registered before the file is created: a signal between the two used to leave it.
            let partialCleanup = InterruptCleanup.shared.register("\(dest.displayName)/\(partial)") { [dest] in
                if (try? dest.stat(partial)).flatMap({ $0 }) != nil { try dest.remove(partial) }
            }
            defer { InterruptCleanup.shared.unregister(partialCleanup) }
            let writer: any DestinationWriter
            do { writer = try dest.create(partial) } catch {
                throw ToolError("backup to \(set.location) failed: cannot create \(dest.displayName)/\(partial): \(error). Nothing was committed; earlier backups are intact and the next run cleans up.")
            }
            let aw = ArchiveWriter(sink: { bytes in try bytes.withUnsafeBytes { try writer.write($0) } },
                                   options: ArchiveWriterOptions(level: options.compressionLevel, recordEntries: false))
            let myIndex = UInt32(archives.count)
            archives.append(id)
            var locations: [(Int, Int, UInt64)] = []  // (entry, header member, header tar offset)
            locations.reserveCapacity(changedFiles)
            var inThisArchive = Set<Int>()
            do {
                var done = 0
                // Small files are read (and hashed) ahead on all cores, a window at a time;
                // the writer then only copies their bytes. Bounded: 1024 files or 16 MiB.
                var window: [Int: Result<PrefetchedContent, PrefetchError>] = [:]
                var windowEnd = 0
                for (position, i) in toArchive.enumerated() {
                    if position >= windowEnd {
                        (window, windowEnd) = prefetchWindow(table: table, toArchive: toArchive, from: position,
                                                             substitutes: scan.substitutes)
                    }
                    var e = table.entry(i)
                    let pathBytes = table.pathBytes(e)
                    let path = displayPath(pathBytes)
                    let absolute = sourcePath(pathBytes)
                    var meta = EntryMetadata(pathBytes: pathBytes, type: .file, mode: e.mode, uid: e.uid, gid: e.gid, size: 0,
                                             mtimeSeconds: e.mtime.seconds, mtimeNanoseconds: e.mtime.nanoseconds)
                    if e.xattrHash != 0 {
                        // Read again now (the scan kept only their hash); a change since is the
                        // same race as a content change and shows in the next backup.
                        let attrs = absolute.withUnsafeBufferPointer { p in
                            p.withMemoryRebound(to: CChar.self) { readXattrs(.path($0.baseAddress!)) }
                        }
                        for a in attrs { meta.xattrs[a.name] = a.value }
                    }
                    switch e.type {
                    case .directory:
                        meta.type = .directory
                        try aw.add(meta)
                    case .symlink:
                        meta.type = .symlink; meta.linkBytes = Array(table.linkBytes(e))
                        try aw.add(meta)
                    case .hardlink:
                        let target = Array(table.linkBytes(e))
                        if let t = table.find(bytes: target), inThisArchive.contains(t) {
                            meta.type = .hardlink; meta.linkBytes = target
                            try aw.add(meta)
                        }
                    case .file:
                        let substituted = scan.substitutes[i]
                        let content = substituted.map { Array($0.path.utf8) + [0] } ?? absolute
                        let contentBytes = Array(content.dropLast())
                        meta.size = e.size
                        var added: AddResult
                        let ahead = window.removeValue(forKey: i)
                        var usedPrefetch = false
                        do {
                            if case .success(let c)? = ahead {
                                added = try aw.add(meta, prefetched: c)
                                usedPrefetch = true
                                // Compared with the scan: size and mtime after the read.
                                if c.sizeAfter != Int64(clamping: e.size) || c.mtimeAfter.seconds != e.mtime.seconds
                                    || c.mtimeAfter.nanoseconds != Int64(e.mtime.nanoseconds) {
                                    added.sizeChanged = true
                                }
                            } else if case .failure(let f)? = ahead, f.errno == ENOENT {
                                throw ArchiveError(.io, entry: path, "open failed: \(String(cString: strerror(f.errno)))")
                            } else {
                                added = try aw.add(meta, contentPathBytes: contentBytes)
                            }
                        } catch let err as ArchiveError where err.kind == .io && !fileExists(bytes: content) {
                            // Vanished since the scan (nothing of it was written): leave it out.
                            note("\(path) disappeared while the backup ran; not in this backup")
                            e.flags |= 0x80
                            table.set(i, e)
                            continue
                        }
                        e.hash = Digest(added.sha256 ?? SHA256Hasher.hash([]))
                        e.archive = myIndex
                        var changed = added.sizeChanged
                        if substituted == nil && !changed && !usedPrefetch {
                            var st = stat()
                            let rc = content.withUnsafeBufferPointer { p in p.withMemoryRebound(to: CChar.self) { lstat($0.baseAddress!, &st) } }
                            if rc != 0 || UInt64(clamping: st.st_size) != e.size || FileTime(st.st_mtim) != e.mtime {
                                changed = true
                            }
                        }
                        if changed {
                            e.flags |= ManifestEntry.flagChangedWhileRead
                            note("\(path) changed while it was read; the backup holds the bytes as read")
                        }
                        table.set(i, e)
                        locations.append((i, added.headerMember, added.headerOffset))
                        inThisArchive.insert(i)
                        bytesIn = bytesIn.addingSaturated(added.bytesRead)
                        filesArchived += 1
                        done += 1
                        reporter.progress("archiving: \(done)/\(changedFiles) files, \(Format.bytes(bytesIn)) read")
                    }
                }
                let index = try aw.finish()
                bytesOut = index.compressedSize
                trace("archive streamed")
                try writer.sync()
                trace("archive fsynced")
                try writer.close()
                try dest.rename(partial, to: set.archivePath(id))
                try dest.syncDirectory(options.set)
                for (i, member, offset) in locations {
                    var e = table.entry(i)
                    let m = index.members[member]
                    e.memberOffset = m.compressedOffset
                    e.memberSkip = offset - m.uncompressedOffset
                    table.set(i, e)
                }
            } catch {
                try? writer.close()
                try? dest.remove(partial)
                throw ToolError("backup to \(set.location) failed while writing the archive: \(error). Nothing was committed; earlier backups are intact and the next run cleans up.")
            }
        }
        // Entries that vanished while archiving are left out of the manifest.
        if table.count > 0 && (0 ..< table.count).contains(where: { table.entry($0).flags & 0x80 != 0 }) {
            var kept = ManifestTable()
            for i in 0 ..< table.count {
                var e = table.entry(i)
                if e.flags & 0x80 != 0 { files -= 1; continue }
                let (po, pl) = kept.intern(table.pathBytes(e))
                let (lo, ll) = kept.intern(Array(table.linkBytes(e)))
                e.pathOffset = po; e.pathLength = pl; e.linkOffset = lo; e.linkLength = ll
                kept.append(e)
            }
            table = kept
        }

        let seconds = Date().timeIntervalSince(started)
        let header = ManifestHeader(
            id: id, kind: full ? "full" : "incremental", parent: full ? nil : previousIDs.last,
            archives: archives, archive: archiveID, toolVersion: toolVersion, source: options.source,
            started: started.timeIntervalSince1970, seconds: seconds, files: files, directories: dirs, symlinks: links,
            filesArchived: filesArchived, treeBytes: treeBytes, bytesIn: bytesIn, bytesOut: bytesOut, warnings: warnings,
            sinceFull: full ? 0 : (prevHeader?.sinceFull ?? 0).addingSaturated(1), fullID: full ? id : (prevHeader?.fullID ?? prevHeader?.id),
            fullStarted: full ? started.timeIntervalSince1970 : (prevHeader?.kind == "full" ? prevHeader?.started : prevHeader?.fullStarted),
            scanFlags: 1)
        trace("archive done")
        let manifest = Manifest(header: header, table: table)
        do {
            try dest.writeAtomically(set.manifestPath(id), contents: try manifest.encoded(reusing: reuse))
        } catch {
            if archiveID != nil { try? dest.remove(set.archivePath(id)) }
            throw ToolError("backup to \(set.location) failed while writing the manifest: \(error). Nothing was committed; earlier backups are intact and the next run cleans up.")
        }
        trace("manifest written")
        reporter.endProgress()
        return BackupSummary(id: id, set: options.set, destination: dest.displayName, kind: header.kind, parent: header.parent,
                             files: files, directories: dirs, symlinks: links, filesArchived: filesArchived, treeBytes: treeBytes,
                             bytesIn: bytesIn, bytesOut: bytesOut, seconds: seconds, warnings: warnings)
    }
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
