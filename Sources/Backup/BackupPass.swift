#if canImport(Glibc)
import Glibc
#endif
import Archive
import FoundationEssentials
import Storage
import Support

/// One walk of the source for a backup (or a `--dry-run`), in constant memory: the scan (a
/// stream in path order), the previous manifest (a stream in the same order), the archive and
/// the new manifest all advance together. Per entry: compare with the previous backup; carry
/// an unchanged entry's place in an older archive, or archive it now. Entries wait in a
/// bounded queue until the archive member holding them is written (the manifest records its
/// compressed offset), then go to the manifest in order.
final class BackupPass {
    private let runner: BackupRunner
    private var options: BackupOptions { runner.options }
    private let previous: ManifestReader?
    private let dryRun: Bool
    /// Entries whose content or metadata goes into this backup's archive, waiting for their
    /// batch (read ahead on all cores), and entries queued behind them.
    private struct Pending {
        var record: ManifestRecord
        var archive: Bool
        var substitute: SubstitutedContent?
        var multiLink: Bool
        /// Where to read it (entries archived now).
        var source: SourceFile?
        /// The provider plans this file only if its content starts with these bytes (looked
        /// at when the file is read for the archive).
        var planIfContentStarts: [UInt8]? = nil
        /// Archive member and tar offset of its header once archived (-1: not archived now).
        var member = -1
        var headerOffset: UInt64 = 0
        var dropped = false
        /// A regular file archived now whose xattrs the scan did not read: they are read from
        /// the descriptor its content is read through (`flistxattr`/`fgetxattr`), so they are
        /// the archived inode's, and no name is looked up for them.
        var xattrsAtRead = false
        /// Its content as the scan's walker read it (`Scanner.readsSmallFiles`), or why not.
        var ahead: Result<PrefetchedContent, LeftOutError>? = nil
    }
    private var batch: [Pending] = []
    /// The batch before `batch`, its small files being read ahead.
    private var reading: (batch: [Pending], job: PrefetchJob?)?
    private var batchesSinceTrim = 0
    /// Threads reading small files ahead (`BackupRunner.prefetch`), started at the first batch.
    private var readers: WorkPool?
    private var batchArchived = 0
    private var batchBytes: UInt64 = 0
    private var awaiting: [Pending] = []
    private var awaitingHead = 0
    /// The previous manifest's current entry is not matched yet (it sorts after the last scanned).
    private var previousHeld = false
    private var previousDone = false
    /// Paths archived now of files with several links (a hardlink to one is archived as a link).
    private var archivedHere = Set<[UInt8]>()

    // Set by the runner for a real run.
    var id = ""
    var set: BackupSet?
    var manifest: ManifestWriter?
    /// What entries' archive indexes name: the previous manifest's slots, then this backup's.
    var archiveSlots: [String] = []
    /// The archive slots entries name (a few: an array, as a Set's storage type was looked up
    /// at run time at its first insert, ~0.2 ms of a one-file backup, issue 23).
    private(set) var usedArchives: [UInt32] = []
    private var lastUsedArchive = ManifestEntry.noArchive
    private(set) var archiveID: String?
    private var archiveWriter: ArchiveWriter?
    private var archiveFile: StoredWriter?
    /// The archive as stored (size and SHA-256, recorded as written), once it is finished.
    private(set) var storedArchive: StoredFile?
    private var archiveCleanup: Int?
    private var myIndex: UInt32 = 0

    // Counts.
    var files = 0, dirs = 0, links = 0, filesArchived = 0
    var treeBytes: UInt64 = 0, bytesIn: UInt64 = 0, bytesOut: UInt64 = 0
    private var done = 0

    init(runner: BackupRunner, previous: ManifestReader?, dryRun: Bool) {
        self.runner = runner
        self.previous = previous
        self.dryRun = dryRun
    }

    private func prefetchPool() -> WorkPool {
        if let readers { return readers }
        let pool = WorkPool(threads: BackupRunner.prefetchThreads, name: "hs-prefetch")
        readers = pool
        return pool
    }

    deinit { readers?.close() }

    /// Removes substituted content not yet archived (on failure).
    func cleanup() {
        if let r = reading {
            _ = r.job?.wait()
            for p in r.batch { p.substitute?.cleanup() }
            reading = nil
        }
        for p in batch { p.substitute?.cleanup() }
        batch = []
    }

    func run() throws {
        let scanner = runner.makeScanner()
        let xattrsComparable = previous?.header.hasXattrHashes ?? false
        // In an incremental, the xattrs of a file whose ctime did not change since the previous
        // backup did not change either (setxattr and ACL changes update the ctime): its hash is
        // carried, and only the others are read (here, below).
        scanner.xattrsLeftToReader = xattrsComparable
        scanner.fileXattrsLeftToReader = true
        // A full backup reads every file: the walkers read the small ones as they find them
        // (one name lookup per file). A provider's substitute replaces what they read.
        scanner.readsSmallFiles = previous == nil && !dryRun
        scanner.detectIncompressible = options.compressionLevel > 0
        let reporter = runner.reporter
        let stream = try scanner.start { n in reporter.progress("scanning: \(n) entries") }
        defer { stream.close() }
        let providerKnowsPrevious = (previous?.header.scanFlags ?? 0) >= 1
        // Each entry is read in place (`advance`/`withCurrent`): one that is carried whole from
        // the previous backup goes to the manifest without a copy; `stream.current()` makes a
        // `ScannedEntry` of one that is read (xattrs, content, provider) or queued.
        while try stream.advance() {
            var e = stream.currentEntry
            let p = try stream.withCurrent { path, _ in try previousEntry(path) }
            var xattrsAtRead = false
            if e.flags & ManifestEntry.flagXattrsUnread != 0 {
                e.flags &= ~ManifestEntry.flagXattrsUnread
                if xattrsComparable, let p, p.entry.ctime == e.ctime, p.entry.type == e.type {
                    e.xattrHash = p.entry.xattrHash
                } else if p == nil && e.type == .file {
                    // New: archived now (nothing to carry), its xattrs read with its content.
                    xattrsAtRead = true
                } else {
                    e.xattrHash = SourceFile(stream.current()).xattrDigest()
                }
            }
            var substitute: SubstitutedContent?
            var planLater: [UInt8]?
            if e.type == .file, let provider = options.contentProvider {
                // A file unchanged since the previous backup that the provider left alone then
                // is not shown to it again (which would open it), and its `ScannedEntry` is not
                // built (`stream.current()` copies its path: most of a no-change run's files).
                let skip = providerKnowsPrevious && p.map {
                    $0.entry.type == .file && $0.entry.flags & ManifestEntry.flagAskProvider == 0 && $0.entry.size == e.size
                        && $0.entry.mtime == e.mtime && $0.entry.ctime == e.ctime && $0.entry.mode == e.mode
                        && $0.entry.uid == e.uid && $0.entry.gid == e.gid
                } ?? false
                var ask = false
                if !skip {
                    let s = stream.current()
                    switch provider.interest(relativePath: s.path, size: e.size) {
                    case .none: break
                    case .always: ask = true
                    case .ifContentStarts(let prefix):
                        // A file archived now whatever the plan (new, or its metadata changed)
                        // is looked at when it is read for the archive; one that may be carried
                        // (only its ctime changed) is planned now, as its content is compared.
                        if !dryRun && (p.map { BackupRunner.changed(e, $0.entry, xattrsComparable: xattrsComparable) } ?? true) {
                            planLater = prefix
                        } else {
                            ask = true
                        }
                    }
                }
                if ask, case let s = stream.current(), let rel = Self.utf8(s.path) {
                    guard try Self.apply(plan(provider, rel, source: SourceFile(s), size: e.size), to: &e, substitute: &substitute) else { continue }
                }
            }
            switch e.type {
            case .file, .hardlink: files += 1; treeBytes = treeBytes.addingSaturated(e.size)
            case .directory: dirs += 1
            case .symlink: links += 1
            }
            if let p, stream.withCurrent({ _, link in carry(&e, link: link, from: p, stream: stream, substitute: substitute,
                                                              xattrsComparable: xattrsComparable) }) {
                substitute?.cleanup()
                if dryRun { continue }
                if batch.isEmpty && reading == nil && awaitingHead == awaiting.count, manifest != nil {
                    // Nothing queued ahead of it: straight to the manifest, from the scan's buffers.
                    try stream.withCurrent { path, link in try appendToManifest(e, path: path, link: link) }
                } else {
                    let s = stream.takeCurrent()
                    try enqueue(Pending(record: ManifestRecord(entry: e, path: s.path, link: s.link), archive: false, substitute: nil, multiLink: false))
                }
            } else {
                // The entry's last use: taken from the stream, its content moved (not copied) into the queue.
                var s = stream.takeCurrent()
                var ahead: Result<PrefetchedContent, LeftOutError>?
                if substitute == nil { swap(&ahead, &s.content) }
                try enqueue(Pending(record: ManifestRecord(entry: e, path: s.path, link: s.link), archive: true, substitute: substitute,
                                    multiLink: s.multiLink, source: SourceFile(s), planIfContentStarts: planLater, xattrsAtRead: xattrsAtRead,
                                    ahead: ahead))
            }
        }
        try processBatch()
        try processBatch()   // the batch still being read ahead
        for w in stream.warnings { runner.note(w) }
    }

    /// The provider's plan for the file at `relative` (its errors say which file).
    /// The provider opens the file by `absolutePath`: through the directory the scan opened
    /// (`/proc/self/fd/<dir>/<name>`), never a path from the root, so a parent directory
    /// swapped for a symlink does not lead it outside the source.
    private func plan(_ provider: any ContentProvider, _ relative: String, source: SourceFile?, size: UInt64) throws -> ContentPlan {
        let absolute = source.map { "/proc/self/fd/\($0.parent.fd)/" + String(decoding: $0.name.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self) }
            ?? options.source + "/" + relative
        do {
            return try provider.plan(relativePath: relative, absolutePath: absolute, size: size)
        } catch {
            throw PassFailure(step: " while deciding how to archive \(NameEscape.escape(relative))", cause: error)
        }
    }

    /// The plan of a file the provider wants only if its content starts with `prefix`, now
    /// that the file is read for the archive: a file read ahead that does not start with it is
    /// archived as is without asking; otherwise (a large file, or one the read-ahead did not
    /// take) the provider is asked and looks itself. Returns false when the file is left out.
    private func planAtRead(_ p: inout Pending, prefix: [UInt8], ahead: inout Result<PrefetchedContent, LeftOutError>?) throws -> Bool {
        if case .success(let c)? = ahead, !c.bytes.starts(with: prefix) { return true }
        guard let provider = options.contentProvider, let rel = Self.utf8(p.record.path) else { return true }
        let size = p.record.entry.size
        guard try Self.apply(plan(provider, rel, source: p.source, size: size), to: &p.record.entry, substitute: &p.substitute) else {
            leaveOut(&p, size: size)
            return false
        }
        if let sub = p.substitute {
            treeBytes = (treeBytes - min(treeBytes, size)).addingSaturated(sub.size)
            ahead = nil
        }
        return true
    }

    /// What `plan` does to `e` (the flag to ask again; a substitute's size, and the
    /// substitute itself in `substitute`). Returns false when the file is left out.
    private static func apply(_ plan: ContentPlan, to e: inout ManifestEntry, substitute: inout SubstitutedContent?) -> Bool {
        switch plan {
        case .asIs: break
        case .asIsAskAgain: e.flags |= ManifestEntry.flagAskProvider
        case .omit: return false
        case .substitute(let sub):
            e.size = sub.size
            e.flags |= ManifestEntry.flagAskProvider
            substitute = sub
        }
        return true
    }

    /// A relative path as a String, when it is valid UTF-8 (the provider sees only those).
    private static func utf8(_ path: [UInt8]) -> String? {
        path.withUnsafeBufferPointer { String(validating: $0, as: UTF8.self) }
    }

    /// Leaves a counted file out of this backup (vanished, or the provider omitted it).
    private func leaveOut(_ p: inout Pending, size: UInt64) {
        p.dropped = true
        files -= 1
        treeBytes -= min(treeBytes, size)
    }

    /// The previous backup's entry with exactly this path, if any (paths come in order; its
    /// `path` is left empty: it is this one). Read in place: only a match is copied.
    private func previousEntry(_ path: UnsafeRawBufferPointer) throws -> ManifestRecord? {
        guard let previous else { return nil }
        while !previousDone {
            if !previousHeld {
                guard try previous.advance() else { previousDone = true; return nil }
                previousHeld = true
            }
            let c = previous.withCurrent { _, a, _ in comparePaths(a, path) }
            if c < 0 { previousHeld = false; continue }
            if c > 0 { return nil }
            previousHeld = false
            return previous.withCurrent { e, _, link in ManifestRecord(entry: e, path: [], link: link.isEmpty ? [] : Array(link)) }
        }
        return nil
    }

    /// True (with `e` completed from `p`) when the entry is unchanged since the previous
    /// backup and its content, if any, can be read from an older archive. `link` is the
    /// scanned entry's link (symlink target, or a hardlink's first path); `stream` gives its
    /// file when only its ctime changed (its content is compared).
    private func carry(_ e: inout ManifestEntry, link: UnsafeRawBufferPointer, from p: ManifestRecord, stream: ScanStream,
                       substitute: SubstitutedContent?, xattrsComparable: Bool) -> Bool {
        if BackupRunner.changed(e, p.entry, xattrsComparable: xattrsComparable)
            || ((e.type == .symlink || e.type == .hardlink) && !link.elementsEqual(p.link)) {
            return false
        }
        switch e.type {
        case .directory, .symlink:
            // Metadata equal. One with xattrs keeps the place of the header that holds them,
            // so that archive stays listed (restore reads them there).
            if p.entry.archive != ManifestEntry.noArchive && e.xattrHash != 0 {
                e.archive = p.entry.archive
                e.memberOffset = p.entry.memberOffset
                e.memberSkip = p.entry.memberSkip
            }
            return true
        case .hardlink:
            e.hash = p.entry.hash
            return true
        case .file:
            var same = e.ctime == p.entry.ctime && substitute == nil
            if !same {
                // ctime (or substituted content) changed alone: compare content hashes (a sparse
                // file's by the sparse hash, reading only its data).
                let sparse = p.entry.flags & ManifestEntry.flagSparse != 0
                let h = substitute.map { try? hashFile(bytes: Array($0.path.utf8)) } ?? SourceFile(stream.current()).contentHash(sparse: sparse)
                if let h, h == p.entry.hash { same = true }
            }
            guard same, p.entry.archive != ManifestEntry.noArchive else { return false }
            e.archive = p.entry.archive
            e.memberOffset = p.entry.memberOffset
            e.memberSkip = p.entry.memberSkip
            e.hash = p.entry.hash
            e.size = p.entry.size
            e.flags |= p.entry.flags & ManifestEntry.flagSparse
            return true
        }
    }

    /// Appends an entry to the manifest (and notes the archive it names as used).
    private func appendToManifest(_ e: ManifestEntry, path: UnsafeRawBufferPointer, link: UnsafeRawBufferPointer) throws {
        guard let manifest else { return }
        if e.archive != ManifestEntry.noArchive && e.archive != lastUsedArchive {
            if !usedArchives.contains(e.archive) { usedArchives.append(e.archive) }
            lastUsedArchive = e.archive   // runs of entries name the same archive: one insert per run
        }
        try manifest.append(e, path: path, link: link)
    }

    private func enqueue(_ p: consuming Pending) throws {
        // `p` is only read through copies of its fields before it moves into the batch (no
        // closure captures it).
        let archive = p.archive
        let e = p.record.entry
        if dryRun {
            p.substitute?.cleanup()  // a snapshot the provider took: nothing reads it in a dry run
            guard archive else { return }
            if e.type == .file { filesArchived += 1; bytesIn = bytesIn.addingSaturated(e.size) }
            let path = p.record.path
            runner.reporter.info("would archive: \(e.type.name) \(displayPath(path))")
            return
        }
        if !archive && batch.isEmpty && reading == nil && awaitingHead == awaiting.count, manifest != nil {
            // Nothing queued ahead of it: straight to the manifest.
            let r = p.record
            try r.path.withUnsafeBytes { path in try r.link.withUnsafeBytes { try appendToManifest(e, path: path, link: $0) } }
            return
        }
        let archivedFile = archive && e.type == .file
        let size = e.size
        batch.append(consume p)   // moved into the batch (a copy of every field before)
        if archivedFile {
            batchArchived += 1
            if size <= 1 << 20 { batchBytes += size }
        }
        // Bounded: 1024 files or 16 MiB of small files read ahead, or 4096 entries queued.
        if batchArchived >= 1024 || batchBytes >= 16 << 20 || batch.count >= 4096 { try processBatch() }
    }

    /// Creates `<id>.tar.gz.partial` (on the first entry to archive, or at once for a full backup).
    func openArchive() throws {
        guard archiveWriter == nil, let set else { return }
        let dest = options.destination
        let partial = set.archivePath(id) + ".partial"
        // A signal (Ctrl-C, SIGTERM) removes the partial archive before the process exits.
        // Registered before the file is created: a signal between the two used to leave it.
        let writer: StoredWriter
        do {
            let created: any DestinationWriter
            (created, archiveCleanup) = try createRemovedOnSignal(dest, partial)
            writer = try set.storedWriter(created, path: partial)
        } catch {
            throw PassFailure(step: ": cannot create \(NameEscape.escape("\(dest.displayName)/\(partial)"))", cause: error)
        }
        archiveFile = writer
        archiveWriter = ArchiveWriter(sink: { bytes in try bytes.withUnsafeBytes { try writer.write($0) } },
                                      options: ArchiveWriterOptions(level: options.compressionLevel, recordEntries: false))
        myIndex = UInt32(archiveSlots.count)
        archiveSlots.append(id)
        archiveID = id
        // Listed even when no file's content is in it (directories, symlinks and their xattrs
        // may be): restore looks for those in the listed archives, cleanup keeps listed ones.
        if !usedArchives.contains(myIndex) { usedArchives.append(myIndex) }
    }

    /// Starts reading the batch's small files ahead (on all cores, in the background), then
    /// archives the batch read ahead before and passes it on to the manifest: the reads of one
    /// batch overlap the header building and copying of the one before. Called with an empty
    /// batch, it only finishes the batch being read.
    private func processBatch() throws {
        // Every 64 batches (~64k files) the memory freed by the reads and the archive's
        // buffers goes back to the system: without it glibc's per-thread arenas kept more
        // the longer the run (peak RSS of a full backup +7.4% at 2M files over 1M, +2.9% with).
        batchesSinceTrim += 1
        if batchesSinceTrim >= 64 { batchesSinceTrim = 0; Sys.mallocTrim() }
        var next: (batch: [Pending], job: PrefetchJob?)?
        if !batch.isEmpty {
            var job: PrefetchJob?
            if batch.contains(where: \.archive) {
                try openArchive()
                var small: [BackupRunner.PrefetchItem] = []
                // Read in place (a copy of each entry per batch before).
                for k in batch.indices where batch[k].archive && batch[k].substitute == nil && batch[k].ahead == nil {
                    let e = batch[k].record.entry
                    if e.type == .file && e.size > 0 && e.size <= 1 << 20, let f = batch[k].source {
                        small.append(BackupRunner.PrefetchItem(index: k, file: f, size: e.size, xattrs: batch[k].xattrsAtRead))
                    }
                }
                if small.count > 1 { job = try runner.prefetch(small, count: batch.count, on: prefetchPool()) }
            }
            let count = batch.count
            next = (batch, job)
            // The next batch starts at this one's size (it grew from empty by doubling, each
            // step moving every entry, before).
            batch = []; batch.reserveCapacity(count); batchArchived = 0; batchBytes = 0
        }
        if var r = reading {
            reading = next   // from here on `cleanup()` owns the batch just started
            // Moved out of `r` (not copied): `current` is the batch's only reference, so the
            // entries are changed in place below (a copy of the whole batch per batch before).
            var current: [Pending] = []
            swap(&current, &r.batch)
            defer { for p in current where p.substitute != nil { p.substitute?.cleanup() } }
            var window = r.job?.wait() ?? []
            for k in current.indices where current[k].archive {
                var ahead: Result<PrefetchedContent, LeftOutError>?
                if k < window.count { swap(&ahead, &window[k]) }  // moved out: freed once archived
                if ahead == nil { swap(&ahead, &current[k].ahead) }   // read by the scan
                do {
                    try archive(&current[k], prefetched: ahead)
                } catch let failure as PassFailure {
                    throw failure
                } catch {
                    throw PassFailure(step: " while writing the archive", cause: error)
                }
                current[k].substitute?.cleanup()
                current[k].substitute = nil
            }
            if awaitingHead == awaiting.count {
                awaiting = current   // nothing waiting: the batch becomes the queue (no copy)
                awaitingHead = 0
            } else {
                awaiting.append(contentsOf: current)
            }
            current = []
            try flushAwaiting(all: false)
        } else {
            reading = next
        }
    }

    private func archive(_ p: inout Pending, prefetched: Result<PrefetchedContent, LeftOutError>?) throws {
        guard let aw = archiveWriter else { return }
        var ahead = prefetched
        if let prefix = p.planIfContentStarts {
            p.planIfContentStarts = nil
            guard try planAtRead(&p, prefix: prefix, ahead: &ahead) else { return }
        }
        var e = p.record.entry
        let pathBytes = p.record.path
        var meta = EntryMetadata(pathBytes: pathBytes, type: .file, mode: e.mode, uid: e.uid, gid: e.gid, size: 0,
                                 mtimeSeconds: e.mtime.seconds, mtimeNanoseconds: e.mtime.nanoseconds)
        switch e.type {
        case .directory, .symlink:
            if e.type == .directory { meta.type = .directory } else { meta.type = .symlink; meta.linkBytes = p.record.link }
            if e.xattrHash != 0, let source = p.source { readXattrs(of: source, into: &meta, entry: &p) }
            let added = try aw.add(meta)
            if !meta.xattrs.isEmpty {
                // Where the header with the xattrs is (see `carry`).
                p.record.entry.archive = myIndex
                p.member = added.headerMember
                p.headerOffset = added.headerOffset
            }
        case .hardlink:
            if archivedHere.contains(p.record.link) {
                meta.type = .hardlink; meta.linkBytes = p.record.link
                try aw.add(meta)
            }
        case .file:
            meta.size = e.size
            guard let added = try archiveFile(&p, meta: &meta, ahead: ahead) else { return }
            e.hash = Digest(added.sha256 ?? SHA256Hasher.hash([]))
            // What the header holds (xattrs read now, not at the scan): verify compares them.
            if e.xattrHash != 0 || p.xattrsAtRead { e.xattrHash = xattrDigest(meta.xattrs.map { (Array($0.key.utf8), $0.value) }) }
            e.archive = myIndex
            if added.sparse { e.flags |= ManifestEntry.flagSparse }
            if added.sizeChanged {
                e.flags |= ManifestEntry.flagChangedWhileRead
                runner.note("\(displayPath(pathBytes)) changed while it was read; the backup holds the bytes as read")
            }
            p.record.entry = e
            p.member = added.headerMember
            p.headerOffset = added.headerOffset
            if p.multiLink { archivedHere.insert(pathBytes) }
            bytesIn = bytesIn.addingSaturated(added.bytesRead)
            filesArchived += 1
            done += 1
            runner.reporter.progress("archiving: \(done) files, \(Format.bytes(bytesIn)) read")
        }
    }

    /// The xattrs of a directory or symlink read again now (the scan kept only their hash),
    /// relative to its directory, if it is still the entry the scan saw; otherwise it is
    /// archived without them, and its hash cleared so the next backup looks again.
    private func readXattrs(of source: SourceFile, into meta: inout EntryMetadata, entry p: inout Pending) {
        if let why = source.replacedSinceScan() {
            runner.note("\(displayPath(p.record.path)) \(why.reason); its extended attributes are not in this backup")
            p.record.entry.xattrHash = 0
            return
        }
        for a in source.xattrs() { meta.xattrs[a.name] = a.value }
        p.record.entry.xattrHash = xattrDigest(meta.xattrs.map { (Array($0.key.utf8), $0.value) })
    }

    /// Archives a regular file: its prefetched content, a provider's substitute (by path), or
    /// the file itself opened now relative to its directory (`SourceFile`), by extents when
    /// sparse. A file that cannot be opened as the scan saw it, or whose read fails, is left
    /// out by the `LeftOut` rule (nil). `sizeChanged` in the result also covers a file whose
    /// size or mtime differs from the scan after the read.
    private func archiveFile(_ p: inout Pending, meta: inout EntryMetadata, ahead: Result<PrefetchedContent, LeftOutError>?) throws -> AddResult? {
        guard let aw = archiveWriter else { return nil }
        let e = p.record.entry
        switch ahead {
        case .success(let c)?:
            if p.xattrsAtRead {
                for a in c.xattrs ?? [] { meta.xattrs[a.name] = a.value }
            } else if e.xattrHash != 0, let source = p.source {
                for a in source.xattrs() { meta.xattrs[a.name] = a.value }
            }
            var added = try aw.add(meta, prefetched: c)
            // Compared with the scan: size and mtime after the read.
            if c.sizeAfter != Int64(clamping: e.size) || c.mtimeAfter.seconds != e.mtime.seconds
                || c.mtimeAfter.nanoseconds != Int64(e.mtime.nanoseconds) {
                added.sizeChanged = true
            }
            return added
        case .failure(let f)?:
            runner.leaveOut(p.record.path, f.why)
            leaveOut(&p, size: e.size)
            return nil
        case nil:
            break
        }
        if let sub = p.substitute {
            do {
                return try aw.add(meta, contentPathBytes: Array(sub.path.utf8))
            } catch let err as ArchiveError where err.kind == .io {
                throw PassFailure(step: " while archiving the snapshot of \(displayPath(p.record.path))", cause: err)
            }
        }
        guard let source = p.source else { return try aw.add(meta, contentFD: -1) }
        let opened: (fd: Int32, stat: FileStat)
        switch source.open() {
        case .success(let o): opened = o
        case .failure(let f):
            runner.leaveOut(p.record.path, f.why)
            leaveOut(&p, size: e.size)
            return nil
        }
        defer { Sys.close(opened.fd) }
        if e.xattrHash != 0 || p.xattrsAtRead { for a in Archive.readXattrs(.fd(opened.fd)) { meta.xattrs[a.name] = a.value } }
        var added: AddResult
        if let map = SparseFile.dataRegions(opened.fd, size: e.size, allocatedBytes: opened.stat.blocks * 512) {
            added = try aw.add(meta, sparseFD: opened.fd, map: map)
        } else {
            added = try aw.add(meta, contentFD: opened.fd)
        }
        if let err = added.readErrno {
            // The archive holds zeros from there: the manifest leaves the file out.
            runner.leaveOut(p.record.path, .unreadable(errno: err))
            leaveOut(&p, size: e.size)
            return nil
        }
        let after = try? Sys.fstat(opened.fd)
        if after?.size != e.size || after?.mtime != FileStat.Stamp(seconds: e.mtime.seconds, nanoseconds: Int64(e.mtime.nanoseconds)) {
            added.sizeChanged = true
        }
        return added
    }

    /// Passes queued entries to the manifest in order, as far as their archive members are
    /// written. With `all`, or when the queue grows long, the member being filled is ended
    /// and waited for.
    private func flushAwaiting(all: Bool) throws {
        guard manifest != nil else { awaiting = []; awaitingHead = 0; return }
        while awaitingHead < awaiting.count {
            // Read in place (the entry's path and link are not copied).
            let i = awaitingHead
            let member = awaiting[i].member
            var entry = awaiting[i].record.entry
            if member >= 0, let aw = archiveWriter {
                var m = try aw.writtenMember(member)
                if m == nil {
                    guard all || awaiting.count - awaitingHead > 32768 else { break }
                    if member == aw.currentMember { try aw.endMember() }
                    try aw.waitForMember(member)
                    m = try aw.writtenMember(member)
                }
                guard let m else { throw ToolError("archive member \(member) was not written") }
                entry.memberOffset = m.compressedOffset
                entry.memberSkip = awaiting[i].headerOffset - m.uncompressedOffset
            }
            awaitingHead += 1
            if awaiting[i].dropped { continue }
            try awaiting[i].record.path.withUnsafeBytes { path in
                try awaiting[i].record.link.withUnsafeBytes { try appendToManifest(entry, path: path, link: $0) }
            }
        }
        if awaitingHead == awaiting.count {
            awaiting.removeAll(keepingCapacity: true); awaitingHead = 0
        } else if awaitingHead > 4096 && awaitingHead * 2 > awaiting.count {
            awaiting.removeFirst(awaitingHead); awaitingHead = 0
        }
    }

    /// Ends the archive (if one was written) and passes the rest of the queue to the manifest.
    /// The archive is complete (`storedArchive` final) but not synced yet: the runner syncs it
    /// with the manifest and the index (`syncForCommit`) and closes it (`closeArchive`) before
    /// the manifest's rename. It keeps its `.partial` name until the manifest is committed (the
    /// runner renames it then): until that moment it is provably a leftover.
    func finishArchive() throws {
        guard let aw = archiveWriter, let writer = archiveFile, set != nil else {
            try flushAwaiting(all: true)
            return
        }
        do {
            let index = try aw.finish()
            bytesOut = index.compressedSize
            try flushAwaiting(all: true)
            runner.trace("archive streamed")
            try writer.endStream()
            storedArchive = writer.stored(as: id)
        } catch {
            throw PassFailure(step: " while writing the archive", cause: error)
        }
    }

    /// The archive `finishArchive` ended, still open: the commit syncs it.
    var archiveToSync: StoredWriter? { archiveFile }

    /// Closes the archive after the commit synced it.
    func closeArchive() throws {
        guard let writer = archiveFile else { return }
        archiveFile = nil
        do { try writer.close() } catch { throw PassFailure(step: " while writing the archive", cause: error) }
    }

    /// Within the commit (`InterruptCleanup.committing`), after the manifest's rename: from
    /// here a signal leaves the `.partial` archive to the next run, which completes its rename.
    func keepArchiveOnSignal() {
        if let c = archiveCleanup { InterruptCleanup.shared.unregister(c); archiveCleanup = nil }
    }

    /// After a failure before the commit: removes the partial archive.
    func abandonArchive() {
        guard archiveID != nil, let set else { return }
        if let writer = archiveFile { try? writer.close() }
        try? options.destination.remove(set.archivePath(id) + ".partial")
        archiveFile = nil
        if let c = archiveCleanup { InterruptCleanup.shared.unregister(c); archiveCleanup = nil }
    }
}

/// A failure of one step of the pass: `step` says where (" while writing the archive"),
/// `BackupRunner` words the whole error once.
struct PassFailure: Error, CustomStringConvertible {
    var step: String
    var cause: any Error
    var description: String { "failed\(step): \(cause)" }
}

/// Small files of one batch being read on the pass's prefetch threads (`BackupRunner.prefetch`).
final class PrefetchJob: Sendable {
    private let pool: WorkPool
    private let tickets: [WorkPool.Ticket]
    private let slots: ResultSlots<Result<PrefetchedContent, LeftOutError>>

    init(pool: WorkPool, tickets: [WorkPool.Ticket], slots: ResultSlots<Result<PrefetchedContent, LeftOutError>>) {
        self.pool = pool
        self.tickets = tickets
        self.slots = slots
    }

    /// The contents by batch index (waits for the reads; the contents are handed out once).
    func wait() -> [Result<PrefetchedContent, LeftOutError>?] {
        for t in tickets { _ = pool.wait(for: t) }
        return slots.takeAll()
    }
}
