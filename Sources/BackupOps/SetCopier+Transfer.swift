import Backup
import Foundation
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

    /// An item's archives as uploaded under `.partial` names, or why the source let it down.
    struct Uploaded: Sendable {
        var item: CopyPlan.Item
        var files: [StoredFile] = []
        var damage: String?
    }

    func run(_ plan: CopyPlan, transfers: Int, report: inout SetCopyReport) throws {
        let pool = WorkPool(threads: transfers, name: "hs-copy")
        defer { pool.close() }
        var lost = Set<String>()
        var outcome = report
        defer { report = outcome }
        try OrderedStage<Uploaded>.map(plan.items, pool: pool, window: max(2, 2 * transfers)) { item in
            do { return try upload(item) } catch { stop.set(); throw error }
        } consume: { up in
            do { try commit(up, lost: &lost, report: &outcome) } catch { stop.set(); throw error }
        }
    }

    /// Uploads the archives `item` is the first to need (pool thread).
    func upload(_ item: CopyPlan.Item) throws -> Uploaded {
        var out = Uploaded(item: item)
        for a in item.uploads {
            do {
                out.files.append(try copyFile(a, from: try source.storedArchivePath(a.id), to: target.archivePath(a.id) + ".partial"))
            } catch let d as SourceDamage {
                out.damage = d.description
                break
            }
        }
        return out
    }

    /// Commits one backup at the target, in plan order (calling thread), by the backup engine's
    /// protocol: the manifest uploaded as `.partial`; archives of earlier backups (its chain)
    /// renamed to their final names; the index written as `<id>.index.partial` and read back;
    /// the manifest renamed (the commit); then the backup's own archive and its index get their
    /// final names (a copy stopped between the two is completed by the next cleanup at the
    /// target, as a backup run's is; until the commit every `.partial` is provably a leftover).
    func commit(_ up: Uploaded, lost: inout Set<String>, report: inout SetCopyReport) throws {
        let id = up.item.index.id
        func leaveOut(_ why: String) {
            lost.formUnion(up.item.uploads.map(\.id))
            for f in up.files { try? target.destination.remove(target.archivePath(f.id) + ".partial") }
            report.skipped.append(.init(id: id, reason: why))
        }
        if let damage = up.damage { return leaveOut(damage) }
        if let gone = up.item.index.archives.first(where: { lost.contains($0.id) }) {
            return leaveOut("it needs archive \(gone.id), which could not be copied")
        }
        let manifestPartial = target.manifestPath(id) + ".partial"
        let manifest: StoredFile
        do {
            manifest = try copyFile(up.item.index.manifest, from: source.manifestPath(id), to: manifestPartial)
        } catch let d as SourceDamage {
            return leaveOut(d.description)
        }
        var index = up.item.index
        index.manifest = manifest
        for f in up.files {
            if let i = index.archives.firstIndex(where: { $0.id == f.id }) { index.archives[i] = f }
            // An archive of another backup (its chain) is not this commit's to complete.
            if f.id != id { try target.destination.rename(target.archivePath(f.id) + ".partial", to: target.archivePath(f.id)) }
        }
        try target.writeIndex(index)
        guard try target.readIndex(id, partial: true) == index else {
            throw ToolError("the index written to \(target.location)/\(id).index.partial reads back different; nothing of \(id) is committed there")
        }
        try target.destination.rename(manifestPartial, to: target.manifestPath(id))
        for path in (up.files.contains { $0.id == id } ? [target.archivePath(id)] : []) + [target.indexPath(id)] {
            do { try target.destination.rename(path + ".partial", to: path) } catch {
                report.warnings.append("backup \(id) is committed at \(target.location), but \(path).partial could not be renamed (\(error)); "
                                       + "the next hs-backup command there completes it")
            }
        }
        try target.destination.syncDirectory(target.name)
        report.copied.append(id)
        report.filesUploaded += up.files.count + 2
        report.bytesUploaded += up.files.reduce(manifest.size) { $0 + $1.size }
        progress.committed()
    }

    /// Copies one file, checking its SHA-256 against `expected` (when recorded) as it is read
    /// and the copy at the target as `check` says.
    /// - Returns: the file as stored (size and SHA-256 measured).
    /// - Throws: `SourceDamage` when the source does not match `expected`; anything else when
    ///   reading, writing or the check at the target fails.
    func copyFile(_ expected: StoredFile, from path: String, to partial: String) throws -> StoredFile {
        let src = source.destination, dst = target.destination
        let shown = "\(src.displayName)/\(path)"
        let reader: any DestinationReader
        do { reader = try src.open(path) } catch {
            if (try? src.stat(path)) == .some(nil) { throw SourceDamage(description: "\(shown) is missing") }
            throw error
        }
        defer { try? reader.close() }
        guard reader.size == expected.size else {
            throw SourceDamage(description: "\(shown) is \(reader.size) bytes where the index says \(expected.size)")
        }
        let (writer, token) = try InterruptCleanup.shared.creating("\(dst.displayName)/\(partial)", remove: { try dst.remove(partial) }) {
            try dst.create(partial, size: expected.size)
        }
        defer { InterruptCleanup.shared.unregister(token) }
        var sha = SHA256Hasher()
        var remote: DigestHasher? = nil
        if case .remoteHash(let kind) = check, kind != .sha256 { remote = DigestHasher(kind) }
        do {
            var offset: UInt64 = 0
            while offset < expected.size {
                if stop.isSet { throw CancellationError() }
                let bytes = try reader.read(at: offset, count: Self.chunk)
                if bytes.isEmpty { throw SourceDamage(description: "\(shown) ended at \(offset) of \(expected.size) bytes") }
                try bytes.withUnsafeBytes { raw in
                    sha.update(raw)
                    remote?.update(raw)
                    try writer.write(raw)
                }
                offset += UInt64(bytes.count)
                progress.add(bytes: bytes.count)
            }
            let digest = Digest(sha.finalize())
            if let want = expected.sha256, want != digest {
                throw SourceDamage(description: "\(shown) does not match its index (SHA-256 \(digest.hex), recorded \(want.hex))")
            }
            try writer.sync()
            try writer.close()
            try verify(partial, sha256: digest, remote: remote?.finalizeHex())
            return StoredFile(id: expected.id, size: expected.size, sha256: digest)
        } catch {
            try? writer.close()
            try? dst.remove(partial)
            throw error
        }
    }

    /// Checks the copy at the target: its own hash, or read back.
    func verify(_ path: String, sha256: Digest, remote: String?) throws {
        let dst = target.destination
        let shown = "\(dst.displayName)/\(path)"
        if case .remoteHash(let kind) = check, let r = dst as? RcloneDestination, let theirs = try r.hash(of: path, type: kind.rawValue) {
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

/// A flag set once, read by many threads.
final class StopFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    func set() { flag.store(true, ordering: .relaxed) }
    var isSet: Bool { flag.load(ordering: .relaxed) }
}
