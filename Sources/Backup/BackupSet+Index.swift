import Storage
import Support

/// The keyless index of a set's backups (BackupIndex.swift): where it lives, how it is read and
/// written. Everything here works without a key: it never opens an archive or a manifest's body.
extension BackupSet {
    package func indexPath(_ id: String) -> String { "\(name)/\(id).index" }

    /// The index of backup `id`; nil when the backup has none (made before indexes existed).
    /// - Throws: `IndexError` when the file exists but cannot be read or is not a valid index
    ///   of `id`.
    ///   `partial`: read `<id>.index.partial` (a committed backup whose index was not renamed yet).
    package func readIndex(_ id: String, partial: Bool = false) throws(IndexError) -> BackupIndex? {
        let path = indexPath(id) + (partial ? ".partial" : "")
        let where_ = NameEscape.escape("\(destination.displayName)/\(path)")
        let bytes: [UInt8]
        do {
            guard let st = try destination.stat(path) else { return nil }
            guard st.kind == .file, st.size <= UInt64(BackupIndex.maxSize) else {
                throw IndexError(where_, st.kind == .file ? .tooLarge(Int(clamping: st.size)) : .notAnIndex)
            }
            bytes = try destination.readAll(path)
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
        // Written and synced in place, as the archive and the manifest are: a `.partial` file
        // needs no temporary name of its own (one that a crash cuts short is a leftover, since
        // the manifest's rename comes only after this sync), and the directory is synced once
        // after the commit's renames (issue 23: one rename and one directory fsync fewer per run).
        let w = try createIndex(index)
        do {
            try w.sync()
            try w.close()
        } catch {
            try? w.close()
            throw error
        }
    }

    /// `<id>.index.partial` with `index` written, not synced yet (a run's commit syncs it with
    /// its archive and manifest, `syncForCommit`, then closes it).
    package func createIndex(_ index: BackupIndex) throws -> any DestinationWriter {
        let bytes = index.encoded()
        let w = try destination.create(indexPath(index.id) + ".partial", size: UInt64(bytes.count))
        do { try w.write(bytes) } catch {
            try? w.close()
            throw error
        }
        return w
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
            guard let st = try destination.stat(storedArchivePath(a)) else {
                throw ToolError("archive \(location)/\(NameEscape.escape(a)).tar.gz, which backup \(NameEscape.escape(header.id)) needs, is missing")
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

/// What the keyless commands (list, prune, cleanup, copy) know of one backup: from its index,
/// or, for a backup made before indexes, from its manifest's plaintext header.
package struct KeylessRecord: Sendable, Equatable {
    package var id: String
    /// "full" or "incremental".
    package var kind: String
    package var parent: String?
    /// Start time, seconds since the epoch.
    package var started: Double
    /// The archives it needs (ids).
    package var archives: [String]
    /// Its index (nil for a backup made before indexes).
    package var index: BackupIndex?
    package var isEncrypted: Bool { index?.isEncrypted ?? false }
}

extension BackupSet {
    /// The keyless record of backup `id` (see `KeylessRecord`). Never needs a key for a backup
    /// with an index; an older backup's manifest header is read as before.
    /// - Throws: `IndexError` for a damaged index; the manifest reader's error otherwise.
    /// `partialIndex`: its index is still `<id>.index.partial` (`contents` completes it).
    package func keylessRecord(_ id: String, partialIndex: Bool = false) throws -> KeylessRecord {
        if let i = try readIndex(id, partial: partialIndex) {
            return KeylessRecord(id: id, kind: i.kind.rawValue, parent: i.parent, started: i.started, archives: i.archives.map(\.id), index: i)
        }
        let h = try peekHeader(id)
        return KeylessRecord(id: id, kind: h.kind, parent: h.parent, started: h.started, archives: h.archives, index: nil)
    }
}
