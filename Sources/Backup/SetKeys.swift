// Encrypted sets: which keys a command holds, and how a set's stored files are opened and
// written through the age layer (module Crypto).
//
// A guest holds only the recipients (public keys), from its own configuration: it writes
// backups it cannot read. The identity (secret key) is given only to the commands that read
// contents (`hs-restore`, `hs-backup verify --identity`, the browse commands), on a machine
// that is not a guest. Keyless commands (list, prune, cleanup, copy, verify without
// --identity) read the keyless index and never open an age file's payload.
import Archive
import Crypto
import FoundationEssentials
import Glibc
import Storage
import Support
import Synchronization

/// The keys a command was given for a set.
package struct SetKeys: Sendable {
    /// The recipients new backups are encrypted to (`hs-backup run --recipient`); nil: the
    /// run writes plaintext (refused for an encrypted set).
    package var recipients: RecipientSet?
    /// The identities stored files are decrypted with (`--identity`).
    package var identities: [AgeIdentity] = []

    package init(recipients: RecipientSet? = nil, identities: [AgeIdentity] = []) {
        self.recipients = recipients
        self.identities = identities
    }

    /// The recipients of `--recipient` values and `--recipients-file` files (nil when none).
    /// - Throws: `EncryptionError` naming the option or file and line that is not valid.
    package static func recipients(_ values: [String], files: [String]) throws -> RecipientSet? {
        var all: [AgeRecipient] = []
        do {
            for v in values { all.append(try AgeRecipient(parsing: v, name: "--recipient")) }
            for f in files { all += try AgeKeyFile.recipients(try readKeyFile(f, option: "--recipients-file"), name: NameEscape.escape(f)) }
        } catch let e as AgeError { throw EncryptionError(.badKey(e)) }
        return all.isEmpty ? nil : RecipientSet(all)
    }

    /// The identities of `--identity` files.
    package static func identities(files: [String]) throws -> [AgeIdentity] {
        var out: [AgeIdentity] = []
        do {
            for f in files { out += try AgeKeyFile.identities(try readKeyFile(f, option: "--identity"), name: NameEscape.escape(f)) }
        } catch let e as AgeError { throw EncryptionError(.badKey(e)) }
        return out
    }

    private static func readKeyFile(_ path: String, option: String) throws -> String {
        do { return try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw EncryptionError(.keyFileUnreadable(option: option, path: path, why: HumanError.describe(error)))
        }
    }

    /// The fingerprint of `recipients`, as the keyless index records it.
    package var recipientFingerprint: Digest? { recipients.map { Digest($0.fingerprint) } }
}

/// Why a command on an encrypted set (or an encryption option) cannot go on.
package struct EncryptionError: ExitCodeCarrying, CustomStringConvertible {
    package enum Kind: Sendable {
        /// A stored file is an age file and no identity was given (`file` as shown: escaped by
        /// the caller). The other cases hold names as they are; `description` escapes them.
        case identityRequired(file: String)
        /// The set is encrypted and the run has no recipient.
        case recipientRequired(set: String, newest: String, fingerprint: String)
        /// The set holds plaintext backups and the run has recipients (without --rotate-keys).
        case setNotEncrypted(set: String, newest: String)
        /// The run's recipients are not the ones the newest backup was encrypted to.
        case recipientsChanged(set: String, newest: String, theirs: String, ours: String)
        case keyFileUnreadable(option: String, path: String, why: String)
        case badKey(AgeError)
        /// An age layer error reading or writing a stored file.
        case age(AgeError)
    }

    package var kind: Kind

    package init(_ kind: Kind) { self.kind = kind }

    /// 2 (bad usage: a missing or wrong option) or 1 (the files cannot be used).
    package var exitCode: Int32 {
        switch kind {
        case .age: 1
        default: 2
        }
    }

    package var description: String {
        let rotate = "If the change is on purpose, run once with --rotate-keys: it starts a new chain with a full backup."
        let shown = NameEscape.escape as (String) -> String
        switch kind {
        case .identityRequired(let file):
            return "\(file) is encrypted (an age file): give --identity KEYFILE, the key file `age-keygen` wrote for one of the set's recipients "
                + "(keep it off the guests; `age-keygen -y KEYFILE` prints its public key)."
        case .recipientRequired(let set, let newest, let fp):
            return "set \(shown(set)) is encrypted (its newest backup \(shown(newest)) is encrypted to recipients \(fp)), and this run has no recipient: "
                + "a plaintext backup of an encrypted set is refused. Give the set's recipients with --recipient age1... or --recipients-file FILE "
                + "(from this host's configuration)."
        case .setNotEncrypted(let set, let newest):
            return "set \(shown(set)) holds unencrypted backups (the newest is \(shown(newest))), and this run has recipients. "
                + "To encrypt from now on, run once with --rotate-keys: it starts a new, encrypted chain with a full backup "
                + "(the older plaintext backups stay until prune removes them)."
        case .recipientsChanged(let set, let newest, let theirs, let ours):
            return "the recipients of this run (\(ours)) are not the ones set \(shown(set))'s newest backup \(shown(newest)) was encrypted to (\(theirs)). "
                + "Recipients come from this host's configuration, never from the destination. " + rotate
        case .keyFileUnreadable(let option, let path, let why):
            return "\(option) \(shown(path)): cannot read it (\(why)). Give the path of the file `age-keygen -o` wrote."
        case .badKey(let e): return e.description
        case .age(let e): return e.description
        }
    }
}

extension BackupSet {
    /// Opens a stored file of the set (an archive or a manifest) for reading its content: an age
    /// file is decrypted with `keys.identities` (random access by 64 KiB chunk), anything else
    /// is returned as it is.
    /// - Throws: `EncryptionError` (.identityRequired without identities, .age when none of
    ///   them matches or the header is damaged), or the destination's error.
    /// - Parameter stored: wraps the reader of the stored bytes (before any decryption).
    package func openStored(_ path: String, stored: (any DestinationReader) -> any DestinationReader = { $0 }) throws -> any DestinationReader {
        let r = stored(try destination.open(path))
        do {
            let head = try r.size == 0 ? [] : r.read(at: 0, count: min(32, Int(r.size)))
            guard Age.looksLikeAgeFile(head) else { return r }
            let name = NameEscape.escape("\(destination.displayName)/\(path)")
            guard !keys.identities.isEmpty else { throw EncryptionError(.identityRequired(file: name)) }
            do { return try AgeDecryptingReader(r, identities: keys.identities, name: name) } catch { throw EncryptionError(.age(error)) }
        } catch {
            try? r.close()
            throw error
        }
    }

    /// True when the stored file at `path` is an age file (reads its first bytes only).
    package func isEncrypted(_ path: String) throws -> Bool {
        let r = try destination.open(path)
        defer { try? r.close() }
        return try r.size > 0 && Age.looksLikeAgeFile(r.read(at: 0, count: min(32, Int(r.size))))
    }

    /// The writer stack of a stored file being written: [a plaintext copy] -> [age encryption
    /// to `keys.recipients`] -> `HashingWriter` -> `created` (the destination's file).
    package func storedWriter(_ created: any DestinationWriter, path: String, plaintextCopy: (any DestinationWriter)? = nil) throws -> StoredWriter {
        let hashing = HashingWriter(created)
        guard let recipients = keys.recipients else { return StoredWriter(hashing: hashing, top: hashing, copy: plaintextCopy) }
        do {
            let age = try AgeEncryptingWriter(hashing, recipients: recipients.recipients, name: NameEscape.escape("\(destination.displayName)/\(path)"))
            return StoredWriter(hashing: hashing, top: age, copy: plaintextCopy)
        } catch let e as AgeError { throw EncryptionError(.age(e)) }
    }
}

/// A stored file being written (see `BackupSet.storedWriter`). `sync()` ends the age stream
/// (its final chunk) and syncs; nothing may be written after it.
package final class StoredWriter: DestinationWriter {
    package let hashing: HashingWriter
    private let top: any DestinationWriter
    private let copy: (any DestinationWriter)?

    init(hashing: HashingWriter, top: any DestinationWriter, copy: (any DestinationWriter)?) {
        self.hashing = hashing
        self.top = top
        self.copy = copy
    }

    package func write(_ bytes: UnsafeRawBufferPointer) throws {
        try copy?.write(bytes)
        try top.write(bytes)
    }

    package func sync() throws {
        try top.sync()
        try copy?.sync()
    }

    /// Ends the stream without syncing: an age stream's final chunk is written (a plaintext file
    /// has none), so what is stored is complete and `stored(as:)` final. `sync()` may follow,
    /// on another thread too (the commit syncs its files at once: `syncForCommit`).
    package func endStream() throws {
        try (top as? AgeEncryptingWriter)?.finish()
    }

    package func close() throws {
        defer { try? copy?.close() }
        try top.close()
    }

    /// What was stored, as the index records it.
    package func stored(as id: String) -> StoredFile { hashing.stored(as: id) }
}

extension BackupSet {
    /// A warning when the identities given cannot decrypt the set's newest backup (its keys
    /// were rotated and the new identity is not among them): a restore of an older backup
    /// works, but the newest ones would not. Nil when they can, or the set is not encrypted.
    package func identityWarning() -> String? {
        guard !keys.identities.isEmpty, let newest = try? committedIDs().last else { return nil }
        do {
            let r = try openStored(manifestPath(newest))
            try? r.close()
            return nil
        } catch let e as EncryptionError {
            guard case .age(let a) = e.kind, case .noMatchingIdentity = a.kind else { return nil }
            let fp = ((try? readIndex(newest))??.recipients).map { " (recipients \(RecipientSet.shortForm($0.bytes)))" } ?? ""
            return "the identity given cannot decrypt the newest backup \(newest)\(fp): the set's keys were rotated since. "
                + "Keep the new identity (off the guests) next to the old one; `age-keygen -y KEYFILE` shows which public key a key file has."
        } catch {
            return nil
        }
    }
}

/// `hs-restore --archive FILE` of an age file (an archive of an encrypted set, copied out).
package enum EncryptedArchive {
    /// The plaintext of `path` as an `ArchiveSource` when it is an age file (decrypted with the
    /// identities of `identityFiles`, random access by chunk); nil when it is not one.
    /// - Throws: `EncryptionError` (.identityRequired when no identity is given, .age when none
    ///   matches or the file is damaged); a missing file is left to the caller (nil).
    package static func source(_ path: String, identityFiles: [String]) throws -> ArchiveSource? {
        let url = URL(fileURLWithPath: path)
        let local = LocalDestination(root: url.deletingLastPathComponent().path)
        let set = BackupSet(destination: local, name: "", keys: SetKeys(identities: try SetKeys.identities(files: identityFiles)))
        guard (try? set.isEncrypted(url.lastPathComponent)) == true else { return nil }
        let r = try set.openStored(url.lastPathComponent)
        return ArchiveSource(size: r.size, displayName: NameEscape.escape(path)) { try r.read(at: $0, count: $1) }
    }
}

/// `hs-restore --archive -` of a stream that may be an age file (`cat ARCHIVE.tar.gz | hs-restore
/// --archive - --identity key.txt`): read in order; an age stream (its first bytes say so) is
/// decrypted with the identities of `identityFiles` as it arrives, each chunk authenticated
/// before its plaintext is passed on; anything else passes through unchanged.
package final class DecryptingStream: ByteSource {
    package let displayName: String
    package var size: UInt64? { nil }
    private let base: any ByteSource
    private let identityFiles: [String]

    private struct State {
        /// Plaintext offset the next read must ask for.
        var position: UInt64 = 0
        /// Offset of the next read of `base`.
        var consumed: UInt64 = 0
        /// nil until the first bytes were seen; then the decryptor, or none (plaintext).
        var decryptor: AgeStreamDecryptor??
        var pending: [UInt8] = []
        var ended = false
    }

    private let state = Mutex(State())
    static let piece = 256 << 10

    package init(_ base: any ByteSource, identityFiles: [String]) {
        self.base = base
        self.displayName = base.displayName
        self.identityFiles = identityFiles
    }

    package func read(at offset: UInt64, count: Int) throws -> [UInt8] {
        try state.withLock { (s: inout State) throws -> [UInt8] in
            guard offset == s.position else {
                throw SysError(call: "read", path: displayName, errno: ESPIPE, hint: "a stream is read once, in order; give the archive as a file for this")
            }
            while s.pending.count < count && !s.ended { try fill(&s, want: count) }
            let n = min(count, s.pending.count)
            let out = Array(s.pending[..<n])
            s.pending.removeFirst(n)
            s.position += UInt64(n)
            return out
        }
    }

    /// Reads the next piece of `base` into `pending` (decrypted when it is an age stream).
    private func fill(_ s: inout State, want: Int) throws {
        let bytes = try base.read(at: s.consumed, count: max(want, Self.piece))
        s.consumed += UInt64(bytes.count)
        if s.decryptor == nil {
            guard Age.looksLikeAgeFile(bytes) else {
                s.decryptor = .some(nil)
                s.pending += bytes
                s.ended = bytes.isEmpty
                return
            }
            let identities = try SetKeys.identities(files: identityFiles)
            guard !identities.isEmpty else { throw EncryptionError(.identityRequired(file: displayName)) }
            s.decryptor = .some(AgeStreamDecryptor(identities: identities, name: displayName))
        }
        guard let decryptor = s.decryptor ?? nil else {
            s.pending += bytes
            s.ended = bytes.isEmpty
            return
        }
        var out: [UInt8] = []
        do {
            if bytes.isEmpty {
                try decryptor.finish { out.append(contentsOf: $0) }
                s.ended = true
            } else {
                try decryptor.feed(bytes) { out.append(contentsOf: $0) }
            }
        } catch let e as AgeError { throw EncryptionError(.age(e)) }
        s.pending += out
    }
}
