import Backup
import FoundationEssentials
import Glibc
import Storage
import Support
import Synchronization

/// Uploads the archives of a plan's backups in parallel and commits the backups in order
/// (see SetCopier.swift for the rules).
struct Transfer: Sendable {
    let source: BackupSet
    let target: BackupSet
    let check: CopyCheck
    let progress: CopyProgress
    /// Set when the copy fails: uploads in flight stop at their next chunk.
    let stop = StopFlag()

    /// Bytes read and written per call.
    static let chunk = 4 << 20

    /// An item's files as uploaded under `.partial` names, or why the source let it down.
    struct Uploaded: Sendable {
        var item: CopyPlan.Item
        var files: [StoredFile] = []
        /// Its manifest as uploaded (nil when the source let it down).
        var manifest: StoredFile?
        var damage: String?
    }

    func run(_ plan: CopyPlan, transfers: Int, report: inout SetCopyReport) throws {
        let pool = WorkPool(threads: transfers, name: "hs-copy")
        defer { pool.close() }
        var lost = Set<String>()
        var outcome = report
        defer { report = outcome }
        // An upload stopped by a later one's failure (a full disk, a dead remote) throws
        // CancellationError; `map` reports that failure instead.
        try OrderedStage<Uploaded>.map(plan.items, pool: pool, window: max(2, 2 * transfers)) { item in
            do { return try upload(item) } catch { stop.set(); throw error }
        } consume: { up in
            do { try commit(up, lost: &lost, report: &outcome) } catch { stop.set(); throw error }
        }
    }

    /// Uploads what `item` commits (pool thread), all under `.partial` names: the archives it
    /// is the first to need, its manifest, then its index (recording the files as measured),
    /// read back. Done in parallel for the backups in the window, so the commits in order on
    /// the calling thread are only renames.
    func upload(_ item: CopyPlan.Item) throws -> Uploaded {
        var out = Uploaded(item: item)
        let id = item.index.id
        do {
            for a in item.uploads {
                out.files.append(try copyFile(a, from: try source.storedArchivePath(a.id), to: target.archivePath(a.id) + ".partial"))
            }
            var index = item.index
            index.manifest = try copyFile(item.index.manifest, from: source.manifestPath(id), to: target.manifestPath(id) + ".partial")
            out.manifest = index.manifest
            for f in out.files {
                if let i = index.archives.firstIndex(where: { $0.id == f.id }) { index.archives[i] = f }
            }
            try CopyTrace.time("upload \(id): index write") { try target.writeIndex(index) }
            guard try target.readIndex(id, partial: true) == index else {
                throw ToolError("the index written to \(target.location)/\(id).index.partial reads back different; nothing of \(id) is committed there")
            }
        } catch let d as SourceDamage {
            out.damage = d.description
        }
        return out
    }

    /// Commits one backup at the target, in plan order (calling thread), by the backup engine's
    /// protocol; its archives, manifest and index are uploaded (`upload`) as `.partial`:
    /// archives of earlier backups (its chain) are renamed to their final names; the manifest
    /// is renamed (the commit); then the backup's own archive and its index get their final
    /// names (a copy stopped between the two is completed by the next cleanup at the target, as
    /// a backup run's is; until the commit every `.partial` is provably a leftover).
    func commit(_ up: Uploaded, lost: inout Set<String>, report: inout SetCopyReport) throws {
        let id = up.item.index.id
        func leaveOut(_ why: String) {
            lost.formUnion(up.item.uploads.map(\.id))
            for path in up.files.map({ target.archivePath($0.id) }) + [target.manifestPath(id), target.indexPath(id)] {
                try? target.destination.remove(path + ".partial")
            }
            report.skipped.append(.init(id: id, reason: why))
        }
        if let damage = up.damage { return leaveOut(damage) }
        if let gone = up.item.index.archives.first(where: { lost.contains($0.id) }) {
            return leaveOut("it needs archive \(gone.id), which could not be copied")
        }
        guard let manifest = up.manifest else { return leaveOut("its manifest was not copied") }
        // An archive of another backup (its chain) is not this commit's to complete.
        for f in up.files where f.id != id {
            try target.destination.rename(target.archivePath(f.id) + ".partial", to: target.archivePath(f.id))
        }
        try CopyTrace.time("commit \(id): manifest rename") {
            try target.destination.rename(target.manifestPath(id) + ".partial", to: target.manifestPath(id))
        }
        for path in (up.files.contains { $0.id == id } ? [target.archivePath(id)] : []) + [target.indexPath(id)] {
            do { try target.destination.rename(path + ".partial", to: path) } catch {
                report.warnings.append("backup \(id) is committed at \(target.location), but \(path).partial could not be renamed (\(error)); "
                                       + "the next hs-backup command there completes it")
            }
        }
        try CopyTrace.time("commit \(id): sync directory") { try target.destination.syncDirectory(target.name) }
        report.copied.append(id)
        report.filesUploaded += up.files.count + 2
        report.bytesUploaded += up.files.reduce(manifest.size) { $0 + $1.size }
        progress.committed()
    }

    /// Copies one file, checking its SHA-256 against `expected` (when recorded) as it is read
    /// and the copy at the target as `check` says. From a directory to an rclone remote, rclone
    /// uploads the file itself (`RcloneDestination.upload(localFile:to:)`, as `rclone copy`
    /// does) while this process reads and hashes it (a source that does not match its index
    /// stops the upload); the check at the target then compares the copy with the bytes read
    /// here. Otherwise the bytes read here are written to the target.
    /// - Returns: the file as stored (size and SHA-256 measured).
    /// - Throws: `SourceDamage` when the source does not match `expected`; anything else when
    ///   reading, writing or the check at the target fails.
    func copyFile(_ expected: StoredFile, from path: String, to partial: String) throws -> StoredFile {
        let src = source.destination, dst = target.destination
        let shown = NameEscape.escape("\(src.displayName)/\(path)")
        let reader: any DestinationReader
        do { reader = try src.open(path) } catch {
            if (try? src.stat(path)) == .some(nil) { throw SourceDamage(description: "\(shown) is missing") }
            throw error
        }
        defer { try? reader.close() }
        guard reader.size == expected.size else {
            throw SourceDamage(description: "\(shown) is \(reader.size) bytes where the index says \(expected.size)")
        }
        CopyTrace.note("file \(path): start (\(expected.size) bytes)")
        let (upload, token) = try InterruptCleanup.shared.creating(NameEscape.escape("\(dst.displayName)/\(partial)"), remove: { try dst.remove(partial) }) {
            () throws -> Upload in
            if let rclone = dst as? RcloneDestination, let local = src as? LocalDestination {
                return .byRclone(rclone, try rclone.upload(localFile: local.absolutePath(path), to: partial))
            }
            return .written(try dst.create(partial, size: expected.size))
        }
        defer { InterruptCleanup.shared.unregister(token) }
        do {
            let sent: Sent
            switch upload {
            case .byRclone(let rclone, let job):
                // rclone uploads while this reads and hashes the same file.
                do { sent = try read(reader, expected, shown, into: nil) } catch {
                    try? rclone.wait(job, cancelled: { true })
                    throw error
                }
                try CopyTrace.time("file \(path): upload by rclone (after the read)") { try rclone.wait(job, cancelled: { stop.isSet }) }
                progress.add(bytes: Int(expected.size))
            case .written(let writer):
                do {
                    sent = try read(reader, expected, shown, into: writer)
                    try CopyTrace.time("file \(path): finish upload") {
                        try writer.sync()
                        try writer.close()
                    }
                } catch {
                    try? writer.close()
                    throw error
                }
            }
            try CopyTrace.time("file \(path): check at target") { try verify(partial, size: expected.size, sha256: sent.sha256, remote: sent.remote) }
            return StoredFile(id: expected.id, size: expected.size, sha256: sent.sha256)
        } catch {
            try? dst.remove(partial)
            throw error
        }
    }

    /// How a file goes to the target.
    enum Upload {
        /// rclone reads the source file itself (a directory to an rclone remote).
        case byRclone(RcloneDestination, RcloneDestination.UploadJob)
        /// The bytes read here are written.
        case written(any DestinationWriter)
    }

    /// The hashes of the bytes read from the source.
    struct Sent {
        var sha256: Digest
        /// The hash of `check`'s type (MD5/SHA-1) when the target's own hash is not SHA-256.
        var remote: String?
    }

    /// Reads the whole source file, hashing it (SHA-256, checked against `expected`; and the
    /// remote's hash type for the check) and writing it to `writer` when there is one.
    func read(_ reader: any DestinationReader, _ expected: StoredFile, _ shown: String, into writer: (any DestinationWriter)?) throws -> Sent {
        var readTime = 0.0, hashTime = 0.0, writeTime = 0.0
        var sha = SHA256Hasher()
        var remote: DigestHasher? = nil
        if case .remoteHash(let kind) = check, kind != .sha256 { remote = DigestHasher(kind) }
        var offset: UInt64 = 0
        while offset < expected.size {
            if stop.isSet { throw CancellationError() }
            var t0 = Date()
            let bytes = try reader.read(at: offset, count: Self.chunk)
            if bytes.isEmpty { throw SourceDamage(description: "\(shown) ended at \(offset) of \(expected.size) bytes") }
            try bytes.withUnsafeBytes { raw in
                var t1 = Date(); readTime += t1.timeIntervalSince(t0); t0 = t1
                sha.update(raw)
                remote?.update(raw)
                t1 = Date(); hashTime += t1.timeIntervalSince(t0); t0 = t1
                try writer?.write(raw)
                writeTime += Date().timeIntervalSince(t0)
            }
            offset += UInt64(bytes.count)
            if writer != nil { progress.add(bytes: bytes.count) }
        }
        let digest = Digest(sha.finalize())
        if let want = expected.sha256, want != digest {
            throw SourceDamage(description: "\(shown) does not match its index (SHA-256 \(digest.hex), recorded \(want.hex))")
        }
        CopyTrace.note("file \(shown): read (read \(Format.fixed(readTime, decimals: 3))s, hash \(Format.fixed(hashTime, decimals: 3))s, write \(Format.fixed(writeTime, decimals: 3))s)")
        return Sent(sha256: digest, remote: try remote?.finalizeHex())
    }

    /// Checks the copy at the target: its own hash, or read back. A file of at most one chunk
    /// (manifests, mostly) is always read back: one request, where asking an SFTP server for
    /// its hash runs a command there.
    func verify(_ path: String, size: UInt64, sha256: Digest, remote: String?) throws {
        let dst = target.destination
        let shown = NameEscape.escape("\(dst.displayName)/\(path)")
        if case .remoteHash(let kind) = check, size > UInt64(Self.chunk), let r = dst as? RcloneDestination,
           let theirs = try r.hash(of: path, type: kind.rawValue) {
            let ours = kind == .sha256 ? sha256.hex : remote
            guard theirs == ours else {
                throw ToolError("the copy \(shown) differs from what was sent (\(kind.rawValue) \(theirs), sent \(ours ?? "?")); it is removed. Run the copy again; if it repeats, check the remote.")
            }
            return
        }
        let reader = try dst.open(path)
        defer { try? reader.close() }
        var h = SHA256Hasher()
        var offset: UInt64 = 0
        while true {
            if stop.isSet { throw CancellationError() }
            let bytes = try reader.read(at: offset, count: Self.chunk)
            if bytes.isEmpty { break }
            h.update(bytes)
            offset += UInt64(bytes.count)
        }
        let got = Digest(h.finalize())
        guard got == sha256 else {
            throw ToolError("the copy \(shown) reads back different (\(offset) bytes, SHA-256 \(got.hex), sent \(sha256.hex)); it is removed. Run the copy again; if it repeats, check the destination.")
        }
    }
}

/// Phase timings on stderr when HS_BACKUP_TRACE is set (for benchmarking `copy`).
enum CopyTrace {
    static let enabled = ProcessInfo.processInfo.environment["HS_BACKUP_TRACE"] != nil
    static let start = Date()

    static func note(_ what: @autoclosure () -> String) {
        guard enabled else { return }
        Reporter.writeStderr("[trace \(Format.fixed(Date().timeIntervalSince(start), decimals: 3))s] \(what())\n")
    }

    /// Runs `body`, noting how long it took.
    static func time<T>(_ what: @autoclosure () -> String, _ body: () throws -> T) rethrows -> T {
        guard enabled else { return try body() }
        let t0 = Date()
        defer { note("\(what()) \(Format.fixed(Date().timeIntervalSince(t0), decimals: 3))s") }
        return try body()
    }
}

/// A flag set once, read by many threads.
final class StopFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    func set() { flag.store(true, ordering: .relaxed) }
    var isSet: Bool { flag.load(ordering: .relaxed) }
}
