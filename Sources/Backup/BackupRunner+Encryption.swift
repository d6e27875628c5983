import Crypto
import FoundationEssentials
import Glibc
import Storage
import Support

/// How a run encrypts (`hs-backup run --recipient/--recipients-file/--rotate-keys/--state-dir`).
package struct EncryptionOptions: Sendable {
    /// The recipients of this run, from this host's configuration; nil: a plaintext backup
    /// (refused when the set is encrypted).
    package var recipients: RecipientSet?
    /// Start a new chain (a full backup) with these recipients, whatever the set's newest
    /// backup was encrypted to (or when it was not encrypted).
    package var rotateKeys = false
    /// Where the plaintext copy of the newest manifest is kept (LocalManifestCopy).
    package var stateDirectory = LocalManifestCopy.defaultStateDirectory

    package init() {}
}

/// What a run decided about encryption before it scans (BackupRunner.checkKeys).
final class EncryptionRun {
    /// The local copy of the newest manifest (encrypted runs only).
    var copy: LocalManifestCopy?
    /// The newest backup's index, which the copy must be bound to.
    var newestIndex: BackupIndex?
    /// Set when the run must be a full backup whatever the copy says (keys rotated, the
    /// newest backup's index cannot be read).
    var fullReason: String?
    /// The copy being written by this run.
    var writing: HashingWriter?
}

extension BackupRunner {
    /// Checks this run's recipients against the set's newest backup, before anything is
    /// written: an encrypted set needs recipients, and the same ones (by fingerprint) unless
    /// `--rotate-keys`; a plaintext set is encrypted from a run with `--rotate-keys` only.
    /// - Throws: `EncryptionError` (exit 2) naming both sides.
    func checkKeys(_ set: BackupSet, newest: String?) throws {
        let enc = options.encryption
        guard let recipients = enc.recipients else {
            if enc.rotateKeys { throw ToolError.usage("--rotate-keys needs the new recipients: give --recipient age1... or --recipients-file FILE.") }
            guard let newest else { return }
            let index = try? set.readIndex(newest)
            if let fp = index?.recipients {
                throw EncryptionError(.recipientRequired(set: set.name, newest: newest, fingerprint: RecipientSet.shortForm(fp.bytes)))
            }
            if index == nil, try set.isEncrypted(set.manifestPath(newest)) {
                throw EncryptionError(.recipientRequired(set: set.name, newest: newest, fingerprint: "unknown: its index is missing"))
            }
            return
        }
        let copy = LocalManifestCopy(stateDirectory: enc.stateDirectory, destination: set.destination.displayName, set: set.name)
        encryption.copy = copy
        guard let newest else { return }
        if enc.rotateKeys {
            encryption.fullReason = "keys rotated (--rotate-keys): this full backup starts a new chain encrypted to \(Self.describe(recipients))"
            return
        }
        let index: BackupIndex?
        do { index = try set.readIndex(newest) } catch {
            encryption.fullReason = "the index of the newest backup \(newest) cannot be read (\(error))"
            return
        }
        guard let index else {
            if try set.isEncrypted(set.manifestPath(newest)) {
                encryption.fullReason = "the newest backup \(newest) has no index: its recipients cannot be compared with this run's"
                return
            }
            throw EncryptionError(.setNotEncrypted(set: set.name, newest: newest))
        }
        guard let theirs = index.recipients else { throw EncryptionError(.setNotEncrypted(set: set.name, newest: newest)) }
        guard theirs.bytes == recipients.fingerprint else {
            var known = RecipientSet.shortForm(theirs.bytes)
            // Shown as parsed (`age1...`), not as the state directory's file has them.
            if let listed = copy.recordedRecipients()?.compactMap({ try? AgeRecipient(parsing: $0, name: "") }),
               RecipientSet(listed).fingerprint == theirs.bytes {
                known += ": " + listed.map(\.encoded).joined(separator: ", ")
            }
            throw EncryptionError(.recipientsChanged(set: set.name, newest: newest, theirs: known, ours: Self.describe(recipients)))
        }
        encryption.newestIndex = index
    }

    /// "sha256:0123abcd...: age1..., age1..."
    static func describe(_ r: RecipientSet) -> String {
        RecipientSet.shortForm(r.fingerprint) + ": " + r.recipients.map(\.encoded).joined(separator: ", ")
    }

    /// The previous backup's manifest, which an incremental compares with: from the destination
    /// (plaintext sets), or the local copy bound to the newest index (encrypted runs: the run
    /// holds no key). Nil, with the reason said, makes the run a full backup.
    func openPreviousManifest(_ set: BackupSet, _ id: String) throws -> ManifestReader? {
        guard let copy = encryption.copy else { return try set.openManifest(id) }
        if let why = encryption.fullReason {
            note("taking a full backup: \(why)")
            return nil
        }
        switch copy.open(newest: id, index: encryption.newestIndex) {
        case .success(let reader): return reader
        case .failure(let why):
            note("taking a full backup: \(why)")
            return nil
        }
    }

    /// Where the plaintext of the manifest being written is copied (encrypted runs), or nil.
    /// A state directory that cannot be written is a warning: the backup goes on, and the next
    /// run will be a full one.
    func manifestCopyWriter() -> (any DestinationWriter)? {
        guard let copy = encryption.copy else { return nil }
        do {
            let w = try copy.begin()
            encryption.writing = w
            return w
        } catch {
            note("cannot keep the local copy of this backup's manifest in \(copy.location) (\(HumanError.describe(error))): "
                 + "the next backup will be a full one. Check --state-dir (default \(LocalManifestCopy.defaultStateDirectory)).")
            return nil
        }
    }

    /// After the commit: the local copy becomes the one bound to `index`.
    func keepManifestCopy(_ index: BackupIndex) {
        guard let copy = encryption.copy, let w = encryption.writing, let recipients = options.encryption.recipients else { return }
        do { try copy.commit(w, index: index, recipients: recipients) } catch {
            note("backup \(index.id) is committed, but the local copy of its manifest could not be kept in \(copy.location) "
                 + "(\(HumanError.describe(error))): the next backup will be a full one")
        }
        encryption.writing = nil
    }

    /// After a failed run: the partial copy goes.
    func abandonManifestCopy() {
        guard encryption.writing != nil else { return }
        encryption.copy?.abandon()
        encryption.writing = nil
    }
}
