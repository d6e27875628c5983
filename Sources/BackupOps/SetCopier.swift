// Copying backups to another destination (`hs-backup copy`), e.g. from the NAS to an offsite
// rclone remote. Keyless: it reads each backup's index (BackupIndex.swift) and moves the stored
// bytes as they are (ciphertext for an encrypted set); it never opens an archive's content.
//
// What it copies: the backups of a set newer than the destination's newest, oldest first,
// plus the archives their chains need that the destination lacks. A backup the destination
// no longer has (pruned there) is never copied again: retention at the destination is its own.
//
// How a backup is committed at the destination: every archive it needs is there (uploaded
// under `<id>.tar.gz.partial`, its SHA-256 checked against the source's index as it is read,
// and the copy checked at the destination: the remote's own SHA-256 where it has one, else the
// remote's MD5/SHA-1 compared with that of the very bytes sent, else read back), then its
// manifest (`.partial`, checked the same way) and its index (`.index.partial`, read back);
// these uploads run in parallel for several backups. The commits then go in order: the
// archives of earlier backups it uploaded are renamed to their names, its manifest is renamed
// (the commit record), then its own archive and index. A copy that is interrupted leaves only
// `.partial` files of uncommitted backups and, in the short commit window, chain archives
// already renamed or a committed backup whose own archive or index is still `.partial`: the
// cleanup every command runs removes or completes them, and the next copy starts the
// uncommitted backups again. The set directory at the destination is made, and kept durable
// before the set's first commit there, as a backup run does it (SetDirectory.swift).
//
// Backups made before indexes existed (0.4.x, never encrypted) are copied with an index built
// from their manifest's plaintext header: their archives' sizes as listed at the source and
// the SHA-256 of the bytes read there (nothing recorded them before, so a source that was
// damaged before the copy is copied as it is: run `hs-backup verify` there first).
//
// Not guaranteed: a consistent view of a source that a concurrent `prune` changes (a file
// that vanishes fails the copy; the next one resumes).
import Backup
import FoundationEssentials
import Glibc
import Storage
import Support
import Synchronization

/// How copies are checked at the destination.
package enum CopyCheck: Sendable, Equatable {
    /// The remote's own hash of this type (`sha256`: compared with the index; `md5`/`sha1`:
    /// compared with the hash of the bytes sent, whose SHA-256 matched the index).
    case remoteHash(DigestHasher.Kind)
    /// Read back and hash here.
    case readBack

    /// The check for `destination` (`readBack` forces reading back).
    package static func choose(for destination: any Destination, readBack: Bool) -> CopyCheck {
        guard !readBack, let r = destination as? RcloneDestination else { return .readBack }
        for kind in [DigestHasher.Kind.sha256, .md5, .sha1] where r.hashTypes.contains(kind.rawValue) {
            if DigestHasher(kind) != nil { return .remoteHash(kind) }
        }
        return .readBack
    }

    package var description: String {
        switch self {
        case .remoteHash(.sha256): "the remote's SHA-256"
        case .remoteHash(let k): "the remote's \(k.rawValue.uppercased()) of the bytes sent"
        case .readBack: "reading back"
        }
    }
}

package struct CopyOptions: Sendable {
    /// Files uploaded at the same time.
    package var transfers = 4
    /// Check every copy by reading it back, even where the remote has its own hash.
    package var readBack = false
    /// Plan only.
    package var dryRun = false

    package init(transfers: Int = 4, readBack: Bool = false, dryRun: Bool = false) {
        self.transfers = transfers
        self.readBack = readBack
        self.dryRun = dryRun
    }
}

/// What `copy` did for one set.
package struct SetCopyReport: Encodable, Sendable {
    package struct Skipped: Encodable, Sendable, Equatable {
        package var id: String
        package var reason: String
    }

    package var set: String
    /// Backups committed at the destination, oldest first (with --dry-run: would be).
    package var copied: [String] = []
    /// Backups the destination had before.
    package var alreadyThere = 0
    package var newestAtDestination: String?
    /// Backups left out: the source does not match its index (named, with why).
    package var skipped: [Skipped] = []
    package var filesUploaded = 0
    package var bytesUploaded: UInt64 = 0
    package var checkedBy = ""
    package var warnings: [String] = []
    package var dryRun = false

    enum CodingKeys: String, CodingKey {
        case set, copied, skipped, warnings
        case alreadyThere = "already_there", newestAtDestination = "newest_at_destination", filesUploaded = "files_uploaded"
        case bytesUploaded = "bytes_uploaded", checkedBy = "checked_by", dryRun = "dry_run"
    }

    package var line: String {
        if dryRun {
            return copied.isEmpty ? "\(set): up to date, nothing to copy" : "\(set): would copy \(copied.count) backups (\(copied.first!) ... \(copied.last!))"
        }
        if copied.isEmpty && skipped.isEmpty {
            return "\(set): up to date (\(alreadyThere) backups there, newest \(newestAtDestination ?? "-")), nothing copied"
        }
        var s = "\(NameEscape.escape(set)): copied \(copied.count) backups (\(filesUploaded) files, \(Format.bytes(bytesUploaded))), checked by \(checkedBy)"
        if !skipped.isEmpty { s += "; LEFT OUT \(skipped.count): " + skipped.map { "\($0.id) (\($0.reason))" }.joined(separator: "; ") }
        return s
    }
}

/// A source file that does not match what its index recorded (or cannot be found): the
/// backups that need it are left out, the others are copied.
struct SourceDamage: Error, CustomStringConvertible {
    var description: String
}

package enum SetCopier {
    /// Copies the backups of set `name` from `source` to `target` (see the file's overview).
    /// - Throws: what stops the whole copy (the destination or the network failing, the lock
    ///   held by another run); damage at the source only leaves backups out (the report).
    package static func copy(set name: String, from source: any Destination, to target: any Destination,
                             options: CopyOptions, reporter: Reporter) throws -> SetCopyReport {
        let src = BackupSet(destination: source, name: name), dst = BackupSet(destination: target, name: name)
        var report = SetCopyReport(set: name)
        report.dryRun = options.dryRun
        report.checkedBy = CopyCheck.choose(for: target, readBack: options.readBack).description
        // Planned without the lock first: a copy with nothing to do writes nothing.
        CopyTrace.note("copy \(name): start")
        var plan = try CopyPlan.make(source: src, target: dst)
        CopyTrace.note("copy \(name): planned")
        report.alreadyThere = plan.alreadyThere
        report.newestAtDestination = plan.newest
        if plan.items.isEmpty || options.dryRun {
            report.copied = plan.items.map(\.index.id)
            report.skipped = plan.skipped
            return report
        }
        // Every file copy uploads is checked here (CopyCheck; the index and the lock read back).
        (target as? RcloneDestination)?.leaveUploadChecksToCaller()
        try dst.makeDirectory(for: .copy)
        let lock = SetLock(destination: target, set: name)
        report.warnings += try lock.acquire(operation: "copy from \(NameEscape.escape(source.displayName))")
        defer { lock.release() }
        let cleanup = try dst.cleanUpReport()
        if !cleanup.removed.isEmpty {
            report.warnings.append("removed leftovers of an interrupted run at \(dst.location): \(cleanup.removed.joined(separator: ", "))")
        }
        if !cleanup.completed.isEmpty {
            report.warnings.append("completed the commit of \(cleanup.completed.joined(separator: ", ")) at \(dst.location) (an interrupted copy or run)")
        }
        report.warnings += cleanup.warnings
        CopyTrace.note("copy \(name): locked and cleaned up")
        plan = try CopyPlan.make(source: src, target: dst)
        CopyTrace.note("copy \(name): planned again")
        report.alreadyThere = plan.alreadyThere
        report.newestAtDestination = plan.newest
        report.skipped = plan.skipped
        // Commits in the set as a backup run does: its first needs the set directory durable.
        try dst.makeDurableBeforeCommit(backupsThere: plan.alreadyThere, by: .copy)
        let copier = Transfer(source: src, target: dst, check: CopyCheck.choose(for: target, readBack: options.readBack),
                              progress: CopyProgress(set: name, total: plan.bytesToUpload, backups: plan.items.count, reporter: reporter))
        try copier.run(plan, transfers: options.transfers, report: &report)
        CopyTrace.note("copy \(name): transferred and committed")
        reporter.endProgress()
        return report
    }
}

/// What one copy does: the backups to commit, in order, and the archives each uploads.
struct CopyPlan {
    struct Item: Sendable {
        var index: BackupIndex
        /// The archives this item uploads (the first backup in the plan that needs an archive
        /// the target lacks uploads it).
        var uploads: [StoredFile]
    }

    var items: [Item] = []
    var skipped: [SetCopyReport.Skipped] = []
    var newest: String?
    var alreadyThere = 0

    var bytesToUpload: UInt64 {
        items.reduce(0) { $0 + $1.uploads.reduce(0) { $0 + $1.size } + $1.index.manifest.size }
    }

    static func make(source: BackupSet, target: BackupSet) throws -> CopyPlan {
        var plan = CopyPlan()
        let theirs = try target.committedIDs()
        plan.newest = theirs.last
        plan.alreadyThere = theirs.count
        let wanted = try source.committedIDs().filter { id in plan.newest.map { id > $0 } ?? true }
        guard !wanted.isEmpty else { return plan }
        let sourceSizes = try sizes(in: source)
        let targetSizes = try sizes(in: target)
        var targetHashes = TargetArchiveHashes(target: target, committed: Set(theirs), newest: plan.newest)
        var assigned = Set<String>()
        for id in wanted {
            let index: BackupIndex
            do {
                // A commit stopped after the manifest's rename leaves its index (complete, and
                // fsynced before that rename) under the .partial name, as its archive.
                index = try source.readIndex(id) ?? source.readIndex(id, partial: true) ?? legacyIndex(source, id, sourceSizes)
            } catch let e as SourceDamage {
                plan.skipped.append(.init(id: id, reason: e.description))
                continue
            } catch {
                plan.skipped.append(.init(id: id, reason: "its index cannot be used: \(HumanError.describe(error))"))
                continue
            }
            var uploads: [StoredFile] = []
            var problem: String?
            for a in index.archives where !assigned.contains(a.id) {
                if let there = targetSizes["\(a.id).tar.gz"] {
                    if there != a.size {
                        problem = "\(target.location)/\(a.id).tar.gz is \(there) bytes where the index says \(a.size): the destination holds another file under that name (run `hs-backup verify` there)"
                    } else if let want = a.sha256, let got = targetHashes.sha256(of: a.id), got != want {
                        problem = "\(target.location)/\(a.id).tar.gz is not the archive the index names (SHA-256 \(got.hex.prefix(16)) there, \(want.hex.prefix(16)) at the source): the destination holds another backup under that id (run `hs-backup verify` there)"
                    }
                    continue
                }
                uploads.append(a)
            }
            if let problem {
                plan.skipped.append(.init(id: id, reason: problem))
                continue
            }
            assigned.formUnion(uploads.map(\.id))
            plan.items.append(Item(index: index, uploads: uploads))
        }
        return plan
    }

    static func sizes(in set: BackupSet) throws -> [String: UInt64] {
        guard let st = try set.destination.stat(set.name), st.kind == .directory else { return [:] }
        return Dictionary(try set.destination.list(set.name).filter { $0.kind == .file }.map { ($0.name, $0.size) },
                          uniquingKeysWith: { a, _ in a })
    }

    /// The index of a backup made before indexes existed, built from its manifest's plaintext
    /// header and the sizes listed at the source; its hashes are measured as it is copied.
    static func legacyIndex(_ set: BackupSet, _ id: String, _ sizes: [String: UInt64]) throws -> BackupIndex {
        let header: ManifestHeader
        do { header = try set.peekHeader(id) } catch {
            throw SourceDamage(description: "it has no index and its manifest's header cannot be read (\(HumanError.describe(error)))")
        }
        guard let manifestSize = sizes["\(id).manifest"] else { throw SourceDamage(description: "its manifest is gone") }
        var archives: [StoredFile] = []
        for a in header.archives {
            guard let size = sizes["\(a).tar.gz"] ?? sizes["\(a).tar.gz.partial"] else {   // as `storedArchivePath` finds it
                throw SourceDamage(description: "archive \(set.location)/\(a).tar.gz, which it needs, is missing")
            }
            archives.append(StoredFile(id: a, size: size, sha256: nil))
        }
        return BackupIndex(id: id, kind: header.kind == "full" ? .full : .incremental, parent: header.parent, started: header.started,
                           archives: archives, manifest: StoredFile(id: id, size: manifestSize, sha256: nil))
    }
}

/// The SHA-256 the target's own indexes record for an archive it holds: one of the same size
/// may still be another backup's (two sets copied under one name, ids being seconds), and
/// committing a backup whose chain needs it would leave a backup there that cannot be restored.
/// Read from the index of the newest backup there (it lists its chain's archives: one small
/// read covers an incremental copy's chain), else of the backup that wrote the archive; nil
/// where no index there says (then the size alone decides).
struct TargetArchiveHashes {
    let target: BackupSet
    let committed: Set<String>
    let newest: String?
    private var known: [String: Digest] = [:]
    private var read: Set<String> = []

    init(target: BackupSet, committed: Set<String>, newest: String?) {
        self.target = target; self.committed = committed; self.newest = newest
    }

    mutating func sha256(of archive: String) -> Digest? {
        for id in [newest, archive].compactMap({ $0 }) where known[archive] == nil && committed.contains(id) && !read.contains(id) {
            read.insert(id)
            // An index that cannot be read there is left to `verify`; the size was checked.
            guard let index = try? target.readIndex(id) else { continue }
            for a in index.archives { if let h = a.sha256, known[a.id] == nil { known[a.id] = h } }
        }
        return known[archive]
    }
}

/// Bytes copied so far, shown on a terminal.
final class CopyProgress: Sendable {
    let set: String
    let total: UInt64
    let backups: Int
    let reporter: Reporter
    private let state = Mutex<(bytes: UInt64, committed: Int)>((0, 0))
    private let started = Date()

    init(set: String, total: UInt64, backups: Int, reporter: Reporter) {
        self.set = set
        self.total = total
        self.backups = backups
        self.reporter = reporter
    }

    func add(bytes n: Int) {
        let (b, c) = state.withLock { s -> (UInt64, Int) in s.bytes += UInt64(n); return (s.bytes, s.committed) }
        show(b, c)
    }

    func committed() {
        let (b, c) = state.withLock { s -> (UInt64, Int) in s.committed += 1; return (s.bytes, s.committed) }
        show(b, c)
    }

    private func show(_ bytes: UInt64, _ committed: Int) {
        let rate = Double(bytes) / max(Date().timeIntervalSince(started), 0.001)
        reporter.progress("copy \(set): \(committed)/\(backups) backups, \(Format.bytes(bytes)) of \(Format.bytes(total)) "
                          + "(\(Format.bytes(UInt64(rate)))/s)")
    }
}
