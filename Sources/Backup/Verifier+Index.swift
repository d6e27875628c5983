import Crypto
import Storage
import Support
import Synchronization

/// `hs-backup verify` of what the keyless indexes say: every backup's archives and manifest
/// are there with the sizes and SHA-256 its index records (an archive is listed by the index of
/// every backup of its chain, and each of those records is compared with what is stored, so a
/// backup that names another file of the same name is found). For an encrypted backup checked
/// without its key the stored bytes are hashed here. With the contents readable, an archive is
/// hashed only where its records disagree (the per-file checks of every manifest that reads it
/// cover the rest), from the reads that decompress it (`ReadHash`): no archive is read twice.
extension SetInspector {
    /// Splits `ids` into those whose contents can be read with the keys held and those that
    /// can only be checked by their index (encrypted, and no identity given).
    static func keylessOnly(_ set: BackupSet, _ ids: [String]) -> Set<String> {
        guard set.keys.identities.isEmpty else { return [] }
        return Set(ids.filter { id in
            if let i = try? set.readIndex(id) { return i.isEncrypted }
            return (try? set.isEncrypted(set.manifestPath(id))) ?? false
        })
    }

    /// Every record the checked backups' indexes hold of one stored file, and its size there.
    struct StoredRecords {
        let name: String
        let path: String
        var records: [(backup: String, file: StoredFile)] = []
        /// A backup checked without its key needs it: its SHA-256 is read here.
        var hashNow = false
        var size: UInt64 = 0
        /// The archive's id, for an archive.
        var archive: String? { name.hasSuffix(".tar.gz") ? String(name.dropLast(".tar.gz".count)) : nil }
    }

    /// Checks each backup's index against the stored files: presence and size always, and the
    /// SHA-256 of each file (each read once) for a backup in `hashing`. Problems go to
    /// `report.damaged`. Returns, by archive id, the archives whose SHA-256 the indexes record
    /// and that are still to be hashed (by the pass that reads them, then `checkPending`).
    static func checkIndexes(_ set: BackupSet, _ ids: [String], hashing: Set<String>, report: inout VerifyReport,
                             reporter: Reporter) -> [String: StoredRecords] {
        var files: [StoredRecords] = [], at: [String: Int] = [:]
        for id in ids {
            let index: BackupIndex
            do {
                guard let i = try set.readIndex(id) else {
                    if hashing.contains(id) { report.damaged.append("\(id).index: missing; an encrypted backup is checked without its key by its index") }
                    continue
                }
                index = i
            } catch {
                report.damaged.append("\(id).index: \(error)")
                continue
            }
            for (name, stored) in index.archives.map({ ("\($0.id).tar.gz", $0) }) + [("\(id).manifest", index.manifest)] {
                if at[name] == nil {
                    at[name] = files.count
                    let path = name.hasSuffix(".tar.gz") ? ((try? set.storedArchivePath(stored.id)) ?? set.archivePath(stored.id)) : "\(set.name)/\(name)"
                    files.append(StoredRecords(name: name, path: path))
                }
                files[at[name]!].records.append((id, stored))
                if hashing.contains(id) { files[at[name]!].hashNow = true }
            }
        }
        var pending: [String: StoredRecords] = [:]
        for var f in files {
            reporter.progress("checking \(f.name) against the index")
            do {
                guard let st = try set.destination.stat(f.path) else {
                    report.damaged.append("\(f.name): missing (the index of a backup that needs it lists it)")
                    continue
                }
                f.size = st.size
            } catch {
                report.damaged.append("\(f.name): cannot be read: \(HumanError.describe(error))")
                continue
            }
            if f.hashNow {
                if f.archive != nil { report.archivesChecked += 1 }
                hashAndCompare(set, f, report: &report)
            } else if let a = f.archive, !recordsAgree(set, f) {
                pending[a] = f
            } else {
                compare(set, f, digest: nil, report: &report)
            }
        }
        return pending
    }

    /// Whether every record of the archive `f` names what its writer's index does (then the
    /// manifests' per-file checks cover its bytes, and it need not be hashed): true on a sound
    /// set. A later backup's record that differs names another archive under that name.
    private static func recordsAgree(_ set: BackupSet, _ f: StoredRecords) -> Bool {
        guard let w = writerRecord(set, f) else { return !f.records.contains { $0.file.sha256 != nil } }
        return f.records.allSatisfy { $0.file.size == w.size && $0.file.sha256 == w.sha256 }
    }

    /// The record of `f` in the index of the backup that wrote it (read when that backup is not
    /// among those checked).
    private static func writerRecord(_ set: BackupSet, _ f: StoredRecords) -> StoredFile? {
        if let w = f.records.first(where: { $0.backup == $0.file.id })?.file { return w }
        guard let a = f.archive, let i = try? set.readIndex(a) else { return nil }
        return i.archives.first { $0.id == a }
    }

    /// Hashes and compares the archives `checkIndexes` left that the pass over the archives
    /// did not hash (not read, or read in parts around damage).
    static func checkPending(_ set: BackupSet, _ pending: [String: StoredRecords], report: inout VerifyReport) {
        for a in pending.keys.sorted() { hashAndCompare(set, pending[a]!, report: &report) }
    }

    /// Reads the SHA-256 of `f` and compares it (and its size) with every record of it.
    private static func hashAndCompare(_ set: BackupSet, _ f: StoredRecords, report: inout VerifyReport) {
        do {
            let r = try set.destination.open(f.path)
            defer { try? r.close() }
            let (digest, read) = try r.sha256()
            // A file that shrank or grew while it was read is not what any record names.
            compare(set, f, digest: read == f.size ? Digest(digest) : Digest(), report: &report)
        } catch {
            report.damaged.append("\(f.name): cannot be read: \(HumanError.describe(error))")
        }
    }

    /// Compares what is stored as `f` (its size, and its SHA-256 when read) with every record
    /// of it. Where the record of the backup that wrote it disagrees, the file is damaged (a
    /// later backup recording the same is damaged with it, by that one message). A later
    /// backup's record that differs from the writer's names another file under that name: that
    /// backup cannot be restored here, whatever the writer's backup says of the file.
    static func compare(_ set: BackupSet, _ f: StoredRecords, digest: Digest?, report: inout VerifyReport) {
        func agrees(_ s: StoredFile) -> Bool { s.size == f.size && (digest == nil || s.sha256 == nil || s.sha256 == digest) }
        let disagree = f.records.filter { !agrees($0.file) }
        guard !disagree.isEmpty else { return }
        let writer = writerRecord(set, f)
        let short = { (d: Digest?) in d.map { String($0.hex.prefix(16)) } ?? "unknown" }
        var damaged = false
        for (backup, s) in disagree {
            if let w = writer, w.size == s.size, w.sha256 == s.sha256 {
                damaged = true
                continue
            }
            report.damaged.append("\(backup): needs \(f.name) of \(s.size) bytes with SHA-256 \(short(s.sha256)) (its index records so); "
                + "the one here is \(f.size) bytes with SHA-256 \(short(digest)): another backup's file under that name (two sets "
                + "copied or synced into one directory?), so \(backup) cannot be restored from here. Copy the set again from where "
                + "\(backup) was made (`hs-backup copy`) into a directory of its own")
        }
        guard damaged, let w = writer else { return }
        report.damaged.append(w.size != f.size ? "\(f.name): is \(f.size) bytes; the index recorded \(w.size) when it was written"
            : "\(f.name): its bytes do not match the SHA-256 the index recorded when it was written: it was changed or damaged")
    }
}

/// The SHA-256 of an archive's stored bytes, taken from the reads that decompress (and
/// decrypt) it: they come front to back, one at a time, from the reader's decompression job, so
/// `verify` reads a multi-GB archive once for both. A read ahead (the age reader checks the last
/// chunk first) is kept until the hash reaches it. Nil when the reads did not cover the file
/// (a pass that resumed after damage): the caller reads it again.
final class ReadHash: Sendable {
    private struct State: ~Copyable {
        var hasher: SHA256Hasher? = SHA256Hasher()
        var next: UInt64 = 0
        var size: UInt64?
        var ahead: [(offset: UInt64, bytes: [UInt8])] = []
        var aheadBytes = 0
    }
    private let state = Mutex(State())
    /// What is kept of reads ahead; beyond it the hash is given up (and read again).
    private static let aheadLimit = 4 << 20

    init() {}

    /// The reader of the stored file is open: it has `size` bytes.
    func start(size: UInt64) { state.withLock { $0.size = size } }

    func feed(at offset: UInt64, _ bytes: [UInt8]) {
        state.withLock { s in
            guard s.hasher != nil else { return }
            if offset > s.next {
                s.ahead.append((offset, bytes))
                s.aheadBytes += bytes.count
                if s.aheadBytes > Self.aheadLimit { s.hasher = nil; s.ahead = [] }
                return
            }
            Self.take(&s, offset, bytes)
            // Reads kept from ahead that now follow on.
            while let i = s.ahead.firstIndex(where: { $0.offset <= s.next }) {
                let piece = s.ahead.remove(at: i)
                s.aheadBytes -= piece.bytes.count
                Self.take(&s, piece.offset, piece.bytes)
            }
        }
    }

    /// Hashes what `bytes` (read at `offset` <= `s.next`) hold beyond `s.next`.
    private static func take(_ s: inout State, _ offset: UInt64, _ bytes: [UInt8]) {
        guard offset + UInt64(bytes.count) > s.next else { return }
        let from = Int(s.next - offset)
        bytes.withUnsafeBytes { b in s.hasher!.update(UnsafeRawBufferPointer(rebasing: b[from...])) }
        s.next = offset + UInt64(bytes.count)
    }

    /// The digest when the whole file was read (once: the hasher is finished).
    func digest() -> Digest? {
        state.withLock { s in
            guard s.next == s.size, let h = s.hasher.take() else { return nil }
            return Digest(h.finalize())
        }
    }
}

/// A stored file's reader that hands what is read to a `ReadHash`.
final class HashedReader: DestinationReader {
    private let inner: any DestinationReader
    private let hash: ReadHash

    init(_ inner: any DestinationReader, _ hash: ReadHash) {
        self.inner = inner
        self.hash = hash
        hash.start(size: inner.size)
    }

    var size: UInt64 { inner.size }

    func read(at offset: UInt64, count: Int) throws -> [UInt8] {
        let bytes = try inner.read(at: offset, count: count)
        hash.feed(at: offset, bytes)
        return bytes
    }

    func close() throws { try inner.close() }
}
