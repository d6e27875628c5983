import Storage
import Support

/// The keyless index of a set's backups (BackupIndex.swift): where it lives, how it is read and
/// written. Everything here works without a key: it never opens an archive or a manifest's body.
extension BackupSet {
    package func indexPath(_ id: String) -> String { "\(name)/\(id).index" }

    /// The index of backup `id`; nil when the backup has none (made before indexes existed).
    /// - Throws: `IndexError` when the file exists but cannot be read or is not a valid index
    ///   of `id`.
    package func readIndex(_ id: String) throws(IndexError) -> BackupIndex? {
        let where_ = "\(location)/\(id).index"
        let bytes: [UInt8]
        do {
            guard let st = try destination.stat(indexPath(id)) else { return nil }
            guard st.kind == .file, st.size <= UInt64(BackupIndex.maxSize) else {
                throw IndexError(where_, st.kind == .file ? .tooLarge(Int(clamping: st.size)) : .notAnIndex)
            }
            bytes = try destination.readAll(indexPath(id))
        } catch let e as IndexError {
            throw e
        } catch {
            throw IndexError(where_, .unreadable(HumanError.describe(error)))
        }
        return try BackupIndex.decode(bytes, name: where_, expectedID: id)
    }

    /// Writes backup `index.id`'s index atomically. Call at commit: after the archive and the
    /// manifest are complete and synced, just before the manifest's rename.
    package func writeIndex(_ index: BackupIndex) throws {
        // Under `.partial` until its manifest is committed: the runner renames it then, and
        // `cleanUpReport` completes or removes it (a provable leftover, as the archive's).
        try destination.writeAtomically(indexPath(index.id) + ".partial", contents: index.encoded())
    }

    /// What the index of a backup being committed lists: `header.archives` (the archives its
    /// entries use) with what was recorded as they were written: `written` for the archive this
    /// run wrote, the previous backup's index for the rest, and for archives of backups made
    /// before indexes existed, their size on the destination and no hash.
    /// - Parameters:
    ///   - header: the manifest header about to be committed.
    ///   - written: this run's archive as its `HashingWriter` recorded it (nil: none written).
    ///   - manifest: the manifest as its `HashingWriter` recorded it.
    ///   - previous: the parent's index, when it has one.
    ///   - recipients: the fingerprint of the recipient set (encrypted sets).
    ///   - clock: the real clock at start, when the id rule records it apart from `started`.
    package func indexForCommit(header: ManifestHeader, written: StoredFile?, manifest: StoredFile, previous: BackupIndex?,
                                recipients: Digest? = nil, clock: Double? = nil) throws -> BackupIndex {
        var archives: [StoredFile] = []
        for a in header.archives {
            if let w = written, w.id == a { archives.append(w); continue }
            if let p = previous?.archives.first(where: { $0.id == a }) { archives.append(p); continue }
            guard let st = try destination.stat(archivePath(a)) else {
                throw ToolError("archive \(location)/\(a).tar.gz, which backup \(header.id) needs, is missing")
            }
            archives.append(StoredFile(id: a, size: st.size, sha256: nil))
        }
        return BackupIndex(id: header.id, kind: header.kind == "full" ? .full : .incremental, parent: header.parent,
                           started: header.started, clock: clock, recipients: recipients, archives: archives, manifest: manifest)
    }
}

extension HashingWriter {
    /// What this writer stored, under the id `id`.
    package func stored(as id: String) -> StoredFile { StoredFile(id: id, size: size, sha256: Digest(sha256)) }
}
