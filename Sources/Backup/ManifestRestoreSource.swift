import Archive
import Crypto
import Restore
import Storage
import FoundationEssentials
import Glibc
import Dispatch
import Gzip
import Support
import Synchronization

/// One backup as a source of planned entries for the restore executor: the ONE place that
/// reads a manifest for a restore (when the manifest format changes, only this file changes).
///
/// Entries come in manifest order (a directory before what is in it), hardlinks last: a link
/// whose target is restored links to it; among links whose target `--only` leaves out, the
/// first becomes a file with the target's content and the others link to it (one inode, as
/// in the backup). A file's content is read with `TarReader` from its archive at the
/// manifest's place (one reader per archive, reading on while the next file lies ahead); the
/// archive must hold the path and size the manifest names there, and the content must have
/// the manifest's SHA-256 (checked by the executor's writer), or the restore stops: a backup
/// set altered on the NAS is as hostile as any archive.
///
/// The manifest is read and planned on a thread of its own (`hs-plan`: entries decoded,
/// selected, their paths checked, their `TarEntry` built), at most `queueBytes` of steps
/// ahead; the calling thread only reads each file's header from its archive and hands the
/// entry on. An error of the planning thread comes out of `next` where it was met, after the
/// entries before it, as it did when the manifest was read on the calling thread.
///
/// Browse (issue 26) reuses the same planning: `ManifestRestoreSource(set:id:selection:)` and
/// `next(content:)` give each entry with its content located, `readContent` its bytes.
package final class ManifestRestoreSource: RestoreSource {
    package let name: String
    package let id: String
    private let set: BackupSet
    private let selection: PathSelection
    /// The planning thread (started at the first `next`) and what it has planned ahead.
    private var planning: (pool: WorkPool, queue: BoundedQueue<[Step]>)?
    /// The batch being handed out, and the next of its steps (each is read in place and its
    /// entry swapped out: no copy of a step per entry).
    private var pending: [Step] = []
    private var pendingIndex = 0
    private var phase = Phase.entries
    private var links: [ManifestItem] = []
    private var linkTargets: [[UInt8]: ManifestItem] = [:]
    private var firstLinkOf: [[UInt8]: [UInt8]] = [:]
    private var linkIndex = 0
    private var wantedXattrs = Set<[UInt8]>()
    private var dirXattrs: [[UInt8]: [(name: [UInt8], value: [UInt8])]]?
    private var archivesNewestFirst: [String] = []
    private var archives: [String: TarReader] = [:]
    /// The reader of the last file's archive (most files are in the one before's: no
    /// dictionary lookup by the archive id per file).
    private var lastReader: (archive: String, reader: TarReader)?
    private var current: TarReader?
    private var lastLabel: (archive: String, label: String)?
    /// The identities given cannot decrypt the set's newest backup (see `BackupSet.identityWarning`).
    private let keyWarning: String?

    private enum Phase { case entries, links, done }

    /// Reads the whole manifest once before anything is written: a damaged or altered one
    /// (member checksum, order, archive references) is refused up front, and so is an `--only`
    /// path that matches nothing (`RestoreError.onlyMatchedNothing`, nothing written).
    package init(set: BackupSet, id: String, selection: PathSelection) throws {
        self.set = set
        self.id = id
        self.selection = selection
        name = "backup \(id) in \(set.location)"
        keyWarning = set.identityWarning()
        let plan = try Self.checkedPlan(set: set, id: id, selection: selection)
        archivesNewestFirst = plan.archives.reversed()
        wantedXattrs = plan.wantedXattrs
        links = plan.links
        if !plan.missing.isEmpty {
            throw RestoreError.onlyMatchedNothing(patterns: plan.missing.sorted().map { selection.shown[$0] }, source: name, restoredOthers: false)
        }
    }

    /// What the plan needs from a first read of the whole manifest.
    private struct Plan {
        var archives: [String] = []
        var wantedXattrs = Set<[UInt8]>()
        var links: [ManifestItem] = []
        var missing = Set<Int>()
    }

    /// What one member of the manifest gives the plan, with its first and last paths (to check
    /// the order across members) and its entry count.
    private struct MemberPlan: Sendable {
        var first: [UInt8]?
        var last: [UInt8] = []
        var entries = 0
        var wantedXattrs: [[UInt8]] = []
        var links: [ManifestItem] = []
        var matched = Set<Int>()
    }

    /// Reads the whole manifest once, its members on every core (each checked as the restore's
    /// own pass checks it: its SHA-256, its length, its entries well formed, in path order and
    /// naming listed archives; then the order across members and the header's entry count).
    /// Before anything is written, this read is all a restore does: on one thread it was ~2 s
    /// of a million-file restore's wall time.
    private static func checkedPlan(set: BackupSet, id: String, selection: PathSelection) throws -> Plan {
        let members = try set.manifestMembers(id)
        let header = members.header
        let n = members.count
        let results = Mutex<[Int: Result<MemberPlan, any Error>]>([:])
        let nextIndex = Atomic<Int>(0)
        let failed = Atomic<Bool>(false)
        let threads = max(1, min(Sys.processorCount, n, 8))
        DispatchQueue.concurrentPerform(iterations: threads) { _ in
            let decoder = GzipMemberDecoder(maxOutput: 4 << 20)
            while !failed.load(ordering: .relaxed) {
                let i = nextIndex.add(1, ordering: .relaxed).oldValue
                guard i < n else { return }
                let r = Result<MemberPlan, any Error>(catching: { try memberPlan(members, i, header: header, selection: selection, decoder: decoder) })
                if case .failure = r { failed.store(true, ordering: .relaxed) }
                results.withLock { $0[i] = r }
            }
        }
        var plan = Plan()
        plan.archives = header.archives
        plan.missing = Set(selection.patterns.indices)
        var previousLast: [UInt8]?
        var entries = 0
        let all = results.withLock { $0 }
        for i in 0 ..< n {
            // A failed read stops the others: the first member in order whose result is
            // missing or failed is the one reported (the members before it were all read).
            guard let r = all[i] else { break }
            let m = try r.get()
            if let first = m.first {
                if let p = previousLast, (p.withUnsafeBytes { a in first.withUnsafeBytes { comparePaths(a, $0) } }) >= 0 {
                    throw Manifest.damaged(members.name, "entries out of order at \(displayPath(first))")
                }
                previousLast = m.last
            }
            entries += m.entries
            plan.wantedXattrs.formUnion(m.wantedXattrs)
            plan.links += m.links
            if !plan.missing.isEmpty { plan.missing.subtract(m.matched) }
        }
        if failed.load(ordering: .relaxed) {
            // (Not reached: a failure is thrown above, in member order.)
            throw Manifest.damaged(members.name, "a member could not be read")
        }
        if let expected = header.entries, expected != entries {
            throw Manifest.damaged(members.name, "\(entries) entries, the header says \(expected)")
        }
        return plan
    }

    private static func memberPlan(_ members: ManifestMembers, _ i: Int, header: ManifestHeader, selection: PathSelection,
                                   decoder: GzipMemberDecoder) throws -> MemberPlan {
        var m = MemberPlan()
        let everything = selection.isEmpty
        m.last = try members.forEachEntry(i, decoder: decoder) { e, path, link in
            if m.first == nil { m.first = Array(path) }
            m.entries += 1
            let isDir = e.type == .directory
            let wantsXattrs = (isDir || e.type == .symlink) && e.xattrHash != 0
            guard !everything || wantsXattrs || e.type == .hardlink else { return }
            let p = Array(path)
            if !everything { for k in selection.matches(p) { m.matched.insert(k) } }
            if wantsXattrs && selection.selects(p, isDirectory: isDir) { m.wantedXattrs.append(p) }
            if e.type == .hardlink && selection.selects(p, isDirectory: false) {
                m.links.append(ManifestItem(path: p, link: Array(link), type: e.type, flags: e.flags, mode: e.mode, uid: e.uid, gid: e.gid,
                                            size: e.size, mtime: e.mtime, ctime: e.ctime, archive: header.archiveID(e.archive),
                                            memberOffset: e.memberOffset, memberSkip: e.memberSkip, hash: e.hash, xattrHash: e.xattrHash))
            }
        }
        return m
    }

    deinit {
        stopPlanning()
        for r in archives.values { r.close() }
    }

    /// Stops the planning thread (its `put` fails once the queue is cancelled) and waits for it
    /// (it closes the manifest).
    private func stopPlanning() {
        guard let p = planning else { return }
        p.queue.cancel()
        p.pool.close()
        planning = nil
    }

    package var position: UInt64 { .max }
    package var verifiedUpTo: UInt64 { .max }
    package var warnings: [String] { keyWarning.map { [$0] } ?? [] }
    package func finish() throws {}

    package func revisit(_ paths: Set<[UInt8]>, _ body: (PlannedEntry) throws -> Void) throws {
        // The plan restores a link whose target is left out as a file: never asked.
        throw RestoreError.inconsistentPlan("backup \(id): a hardlink target was not planned; the manifest is damaged. Run `hs-backup verify`.")
    }

    package func readContent(_ body: (UInt64, UnsafeRawBufferPointer) throws -> Void) throws {
        try current?.readContent(body)
    }

    package func next(content: Bool) throws -> PlannedEntry? {
        current = nil
        while true {
            switch phase {
            case .entries:
                guard try nextStep() else { stopPlanning(); phase = .links; continue }
                pendingIndex += 1
                return try planned(&pending[pendingIndex - 1], content: content)
            case .links:
                guard let step = try nextLink() else { phase = .done; continue }
                return try planned(step.item, as: step.entry, contentFrom: step.contentFrom, content: content)
            case .done:
                return nil
            }
        }
    }

    /// One selected entry of the manifest's first phase (not a hardlink), planned on the
    /// planning thread: all but what its archive holds (xattrs, the header check).
    private struct Step: Sendable {
        /// The entry from the manifest; its path passed `RestorePath.check`.
        var entry: TarEntry
        /// A file's SHA-256 (nil for other types).
        var expectedSHA256: [UInt8]?
        /// The archive holding a file's content (nil: none, the file is empty).
        var archive: String?
        var memberOffset: UInt64 = 0
        var memberSkip: UInt64 = 0
        /// A directory or symlink whose xattrs/ACLs are in an archive's pax header.
        var wantsXattrs = false
    }

    /// Entries per batch handed from the planning thread, and the bytes the queue may hold
    /// (about 4,000 entries: the planning thread runs that far ahead at most).
    private static let batchEntries = 256
    private static let queueBytes = 1 << 20

    /// Makes `pending[pendingIndex]` the next planned entry of the first phase, in manifest
    /// order; false after the last.
    /// - Throws: what planning it threw (a damaged manifest, a refused path, a file without an
    ///   archive), after the entries before it were handed out.
    private func nextStep() throws -> Bool {
        if pendingIndex < pending.count { return true }
        if planning == nil { try startPlanning() }
        pending = []
        pendingIndex = 0
        guard let batch = try planning!.queue.take() else { return false }
        pending = batch
        return !pending.isEmpty
    }

    /// Opens the manifest (here: its errors come from the first `next`, as before) and starts
    /// reading and planning it on a thread of its own, ahead of the archive reading.
    private func startPlanning() throws {
        let reader = try set.openManifest(id)
        let pool = WorkPool(threads: 1, name: "hs-plan")
        let queue = BoundedQueue<[Step]>(capacityBytes: Self.queueBytes, wakeBytes: Self.queueBytes / 8)
        planning = (pool, queue)
        let (selection, id) = (self.selection, self.id)
        do {
            _ = try pool.submit { Self.plan(reader, selection: selection, id: id, into: queue) }
        } catch {
            reader.close()
            throw error
        }
    }

    /// The planning thread: the manifest's entries in order, selected and planned, in batches;
    /// the first error ends the stream after the entries before it.
    private static func plan(_ reader: ManifestReader, selection: PathSelection, id: String, into queue: BoundedQueue<[Step]>) {
        defer { reader.close() }
        var batch: [Step] = []
        var bytes = 0
        batch.reserveCapacity(batchEntries)
        do {
            while try reader.advance() {
                let step = try reader.withCurrent { e, path, link -> Step? in
                    guard e.type != .hardlink else { return nil }
                    let p = Array(path)
                    guard selection.selects(p, isDirectory: e.type == .directory) else { return nil }
                    // The manifest may be altered: its path is checked before anything is read for it.
                    try RestorePath.check(p)
                    return try makeStep(e, path: p, link: link, archive: reader.archiveID(e), id: id)
                }
                guard let step else { continue }
                bytes += MemoryLayout<Step>.stride + step.entry.path.count + step.entry.linkTarget.count + 64
                batch.append(step)
                if batch.count == batchEntries {
                    guard queue.put(batch, bytes: bytes) else { return }   // the restore stopped
                    batch = []
                    batch.reserveCapacity(batchEntries)
                    bytes = 0
                }
            }
            if !batch.isEmpty { guard queue.put(batch, bytes: bytes) else { return } }
            queue.finish()
        } catch {
            if !batch.isEmpty { guard queue.put(batch, bytes: bytes) else { return } }
            queue.finish(throwing: error)
        }
    }

    /// One manifest entry (not a hardlink) as a step: its entry and where its content is.
    private static func makeStep(_ e: ManifestEntry, path: [UInt8], link: UnsafeRawBufferPointer, archive: String?, id: String) throws -> Step {
        var t = TarEntry(path: path, type: e.type.entryType)
        t.mode = e.mode; t.uid = e.uid; t.gid = e.gid
        t.size = e.type == .file ? e.size : 0
        t.mtime = e.mtime
        if e.type == .symlink { t.linkTarget = Array(link) }
        guard e.type == .file else {
            return Step(entry: t, wantsXattrs: e.xattrHash != 0)
        }
        if archive == nil && e.size != 0 {
            throw RestoreError.inconsistentPlan("backup \(id) has no archive for \(NameEscape.escape(path)); the manifest is damaged. Run `hs-backup verify`.")
        }
        return Step(entry: t, expectedSHA256: bytes(e.hash), archive: archive, memberOffset: e.memberOffset, memberSkip: e.memberSkip)
    }

    /// A planned step with its content located (and, when `content`, the archive read up to
    /// it and its header checked against the manifest).
    private func planned(_ step: inout Step, content: Bool) throws -> PlannedEntry {
        var entry = TarEntry(path: [], type: .file)
        swap(&entry, &step.entry)
        if step.wantsXattrs {
            if content {
                if dirXattrs == nil { dirXattrs = try directoryXattrs() }
                if let x = dirXattrs?[entry.path] { entry.xattrs = x }
            }
            return PlannedEntry(entry: entry)
        }
        guard entry.type == .file else { return PlannedEntry(entry: entry) }
        guard let archive = step.archive else { return PlannedEntry(entry: entry, expectedSHA256: step.expectedSHA256) }
        let (path, size) = (entry.path, entry.size)
        return try located(entry, in: archive, member: step.memberOffset, skip: step.memberSkip, path: path, size: size,
                           expectedSHA256: step.expectedSHA256, content: content)
    }

    /// A file's planned entry, its content in `archive` at `member`/`skip`; when `content`, the
    /// archive is read up to it and its header checked against the manifest's `path` and `size`
    /// (the xattrs, ACLs and sparse map come from that header).
    private func located(_ entry: consuming TarEntry, in archive: String, member: UInt64, skip: UInt64, path: [UInt8], size: UInt64,
                         expectedSHA256: [UInt8]?, content: Bool) throws -> PlannedEntry {
        let label = archiveLabel(archive)
        guard content else { return PlannedEntry(entry: entry, expectedSHA256: expectedSHA256, origin: label) }
        let reader = try archiveReader(archive, label: label)
        try reader.seek(member: member, skip: skip)
        guard let h = try reader.next() else {
            throw ArchiveError(.malformed, entry: NameEscape.escape(entry.path), "archive \(label) ends where backup \(id) expects the file")
        }
        // (Our archives hold the manifest's path as is; others are normalised first.)
        guard Self.same(h.path, path) || RestorePath.normalised(h.path) == path, h.type == .file, h.size == size else {
            throw ArchiveError(.malformed, entry: NameEscape.escape(entry.path),
                               "archive \(label) does not hold \(NameEscape.escape(path)) where the manifest says (found \(NameEscape.escape(h.path))); the backup is damaged. Run `hs-backup verify`.")
        }
        entry.xattrs = h.xattrs   // xattrs and ACLs live in the archive's pax headers
        entry.sparse = h.sparse   // a sparse member: its holes stay holes, its hash is the `SparseHash`
        current = reader
        return PlannedEntry(entry: entry, expectedSHA256: expectedSHA256, origin: label)
    }

    /// The next selected hardlink: a link, or (for a target `--only` left out) the first link
    /// of that target as a file with the target's content.
    private func nextLink() throws -> (item: ManifestItem, entry: TarEntry, contentFrom: ManifestItem?)? {
        if linkIndex == 0 && !links.isEmpty {
            let wanted = Set(links.map(\.link))
            let r = try set.openManifest(id)
            defer { r.close() }
            while let e = try r.nextItem() { if wanted.contains(e.path) { linkTargets[e.path] = e } }
        }
        guard linkIndex < links.count else { return nil }
        let e = links[linkIndex]
        linkIndex += 1
        guard let src = linkTargets[e.link], src.type == .file else {
            throw RestoreError.inconsistentPlan("backup \(id) is inconsistent: hardlink \(NameEscape.escape(e.path)) points to \(NameEscape.escape(e.link)), which is not a file in the manifest")
        }
        var link = entry(e)
        if selection.selects(e.link, isDirectory: false) { return (e, link, nil) }
        if let first = firstLinkOf[e.link] {
            link.linkTarget = first
            return (e, link, nil)
        }
        firstLinkOf[e.link] = e.path
        var file = entry(src)
        file.path = e.path
        file.mode = e.mode; file.uid = e.uid; file.gid = e.gid; file.mtime = e.mtime
        return (e, file, src)
    }

    /// The planned entry, with its content located (and, when `content`, the archive read up
    /// to it and its header checked against the manifest).
    private func planned(_ item: ManifestItem, as entry: consuming TarEntry, contentFrom src: ManifestItem?, content: Bool) throws -> PlannedEntry {
        // The manifest may be altered: its path is checked before anything is read for it.
        try RestorePath.check(entry.path)
        if content && (item.type == .directory || item.type == .symlink) && item.xattrHash != 0 {
            if dirXattrs == nil { dirXattrs = try directoryXattrs() }
            if let x = dirXattrs?[item.path] { entry.xattrs = x }
        }
        guard let src, entry.type == .file else { return PlannedEntry(entry: entry) }
        guard let archive = src.archive else {
            guard src.size == 0 else { throw RestoreError.inconsistentPlan("backup \(id) has no archive for \(NameEscape.escape(src.path)); the manifest is damaged. Run `hs-backup verify`.") }
            return PlannedEntry(entry: entry, expectedSHA256: Self.bytes(src.hash))
        }
        return try located(entry, in: archive, member: src.memberOffset, skip: src.memberSkip, path: src.path, size: src.size,
                           expectedSHA256: Self.bytes(src.hash), content: content)
    }

    /// `d.bytes`, copied from the stack into the array (`Digest.bytes` allocates through the
    /// standard library's unspecialized `Array(repeating:count:)`, ~600 instructions per file).
    private static func bytes(_ d: Digest) -> [UInt8] {
        var w = (d.w0, d.w1, d.w2, d.w3)
        return withUnsafeBytes(of: &w) { Array($0) }
    }

    /// Byte equality by memcmp (Array's `==` compares element by element, per file).
    private static func same(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.count == b.count && a.withUnsafeBytes { x in b.withUnsafeBytes { y in x.isEmpty || memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0 } }
    }

    /// "LOCATION/ARCHIVE.tar.gz", made once per archive rather than once per file.
    private func archiveLabel(_ archive: String) -> String {
        if let l = lastLabel, l.archive == archive { return l.label }
        let label = "\(set.location)/\(archive).tar.gz"
        lastLabel = (archive, label)
        return label
    }

    private func archiveReader(_ archive: String, label: String) throws -> TarReader {
        if let l = lastReader, l.archive == archive { return l.reader }
        if let r = archives[archive] { lastReader = (archive, r); return r }
        let rd = try set.openArchive(archive)   // an age file is decrypted by chunk
        let r = try TarReader(source: ArchiveSource(size: rd.size, displayName: label) { try rd.read(at: $0, count: $1) })
        archives[archive] = r
        lastReader = (archive, r)
        return r
    }

    /// The xattrs/ACLs of directories and symlinks that have some, from the newest archive
    /// whose pax header carries them (read only when the backup has such entries).
    private func directoryXattrs() throws -> [[UInt8]: [(name: [UInt8], value: [UInt8])]] {
        var wanted = wantedXattrs
        var found: [[UInt8]: [(name: [UInt8], value: [UInt8])]] = [:]
        for a in archivesNewestFirst where !wanted.isEmpty {
            let rd = try set.openArchive(a)
            let reader = try TarReader(source: ArchiveSource(size: rd.size, displayName: "\(set.location)/\(a).tar.gz") { try rd.read(at: $0, count: $1) })
            defer { reader.close() }
            while let h = try reader.next() {
                guard h.type == .directory || h.type == .symlink, !h.xattrs.isEmpty else { continue }
                let p = RestorePath.normalised(h.path)
                if wanted.remove(p) != nil { found[p] = h.xattrs }
            }
        }
        return found
    }

    private func entry(_ e: ManifestItem) -> TarEntry {
        var t = TarEntry(path: e.path, type: e.type.entryType)
        t.mode = e.mode; t.uid = e.uid; t.gid = e.gid
        t.size = e.type == .file ? e.size : 0
        t.mtime = e.mtime
        if e.type == .symlink || e.type == .hardlink { t.linkTarget = e.link }
        return t
    }
}

/// `hs-restore --from DEST`: one backup of a set through the restore executor.
package enum BackupRestore {
    /// Resolves `backup` ("latest" or an id) in the set and plans it.
    /// - Throws: as `BackupSet.resolve`, `ManifestRestoreSource.init`.
    /// - Parameter identities: `--identity` keys, for an encrypted set.
    package static func source(destination: any Destination, set: String, backup: String, selection: PathSelection,
                               identities: [AgeIdentity] = []) throws -> ManifestRestoreSource {
        let s = BackupSet(destination: destination, name: set, keys: SetKeys(identities: identities))
        return try ManifestRestoreSource(set: s, id: try s.resolve(backup), selection: selection)
    }
}
