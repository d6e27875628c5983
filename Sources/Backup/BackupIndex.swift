// The keyless index: a small plaintext file per backup, `SET/<id>.index`, that says what the
// backup needs on the destination without saying anything about what it holds.
//
// Why: an encrypted set's manifests and archives are age files. What must work without the
// key (`list`, `prune`, the cleanup every run does, `copy` to another destination, `verify`
// of structure) reads the index instead: the backup's id, parent, kind and start time, the
// archives it needs with their sizes and the SHA-256 of their bytes as stored (ciphertext for
// an encrypted set), the manifest's size and SHA-256 as stored, and the fingerprint of the
// recipient set the backup was encrypted to. Unencrypted sets get one too (same fields, no
// fingerprint), so the keyless tools work the same way on both.
//
// What is never in it: a path, a file name, a file's size, a count of files, a warning's text.
// Those stay in the manifest (encrypted in an encrypted set).
//
// When: written (atomically: temp name, fsync, rename) at commit, after the archive and the
// manifest are complete and synced and just before the manifest's rename. The manifest stays
// the commit record: a backup exists if and only if its manifest does. An index without its
// manifest is what a run killed in that window leaves (cleanup removes it by the same rule as
// that run's archive); a manifest without an index is a backup made before 0.5.0 (the keyless
// tools then read the manifest's plaintext header, as before).
//
// The sizes and hashes are recorded as the bytes are written, by a `HashingWriter` at the
// bottom of the writer stack, never by reading the files back.
//
// Text format (UTF-8, one record per line, fields separated by one space, LF endings):
//
//     hs-backup-index 1
//     id 20261127T030000Z
//     kind incremental
//     parent 20261126T030000Z
//     started 1795748400.25
//     clock 1795748400.25                        (optional: the real clock at start)
//     recipients <64 hex>                        (encrypted sets only)
//     archive 20261120T030000Z 1234567 <64 hex>  (one per archive it needs; "-" for a hash
//                                                 not known: archives of backups made before
//                                                 indexes existed)
//     manifest 45678 <64 hex>
//     end <64 hex>                               (SHA-256 of every byte before this line)
//
// Unknown keys before `end` are refused (a newer format changes the version number instead).
import Support

/// What one stored file of a backup weighs and hashes to, as written (ciphertext for an
/// encrypted set).
package struct StoredFile: Sendable, Equatable, Hashable {
    /// The archive's id (`<id>.tar.gz`); for the manifest, the backup's id.
    package var id: String
    /// Bytes on the destination.
    package var size: UInt64
    /// SHA-256 of those bytes; nil when not known (archives written before indexes existed).
    package var sha256: Digest?

    package init(id: String, size: UInt64, sha256: Digest?) {
        self.id = id
        self.size = size
        self.sha256 = sha256
    }
}

/// A backup's kind, as the index records it.
package enum BackupKind: String, Sendable, Equatable, CaseIterable {
    case full, incremental
}

/// The keyless index of one backup (see the file's overview).
package struct BackupIndex: Sendable, Equatable {
    package static let currentFormat = 1
    static let magic = "hs-backup-index"

    package var format = BackupIndex.currentFormat
    package var id: String
    package var kind: BackupKind
    /// The backup this one was compared with (nil for a full backup).
    package var parent: String?
    /// Start time, seconds since the epoch (the manifest header's `started`).
    package var started: Double
    /// The real clock at start when the id rule records it apart from `started`.
    package var clock: Double?
    /// SHA-256 fingerprint of the recipient set (`RecipientSet.fingerprint`); nil when the
    /// backup is not encrypted.
    package var recipients: Digest?
    /// Every archive the backup needs (its own and its chain's), oldest first.
    package var archives: [StoredFile]
    /// The manifest as stored.
    package var manifest: StoredFile

    package init(id: String, kind: BackupKind, parent: String?, started: Double, clock: Double? = nil,
                 recipients: Digest? = nil, archives: [StoredFile], manifest: StoredFile) {
        self.id = id
        self.kind = kind
        self.parent = parent
        self.started = started
        self.clock = clock
        self.recipients = recipients
        self.archives = archives
        self.manifest = manifest
    }

    package var isEncrypted: Bool { recipients != nil }

    /// The index's bytes.
    package func encoded() -> [UInt8] {
        var lines = ["\(Self.magic) \(format)", "id \(id)", "kind \(kind.rawValue)", "parent \(parent ?? "-")",
                     "started \(started)"]
        if let clock { lines.append("clock \(clock)") }
        if let recipients { lines.append("recipients \(recipients.hex)") }
        for a in archives { lines.append("archive \(a.id) \(a.size) \(a.sha256?.hex ?? "-")") }
        lines.append("manifest \(manifest.size) \(manifest.sha256?.hex ?? "-")")
        var body = Array((Format.join(lines, separator: "\n") + "\n").utf8)
        body += Array("end \(hexString(SHA256Hasher.hash(body)))\n".utf8)
        return body
    }

    /// Reads an index. `name` is where it came from (for messages), `expectedID` the id its
    /// file name gives: an index whose own id differs is refused.
    /// - Throws: `IndexError` saying what is wrong, where, and what to do.
    package static func decode(_ bytes: [UInt8], name: String, expectedID: String? = nil) throws(IndexError) -> BackupIndex {
        guard bytes.count <= maxSize else { throw IndexError(name, .tooLarge(bytes.count)) }
        guard !bytes.isEmpty else { throw IndexError(name, .truncated) }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw IndexError(name, .notText) }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.last == "" else { throw IndexError(name, .truncated) }
        lines.removeLast()
        guard let first = lines.first, first.hasPrefix(magic + " ") else { throw IndexError(name, .notAnIndex) }
        guard let format = Int(first.dropFirst(magic.count + 1)), format >= 1 else { throw IndexError(name, .notAnIndex) }
        guard format <= currentFormat else { throw IndexError(name, .newerFormat(format)) }
        guard let endLine = lines.last, endLine.hasPrefix("end ") else { throw IndexError(name, .truncated) }
        let bodyCount = bytes.count - endLine.utf8.count - 1
        guard hexString(SHA256Hasher.hash(Array(bytes[..<bodyCount]))) == endLine.dropFirst(4) else {
            throw IndexError(name, .checksumMismatch)
        }
        var fields = Fields(name: name)
        for (n, line) in lines.dropFirst().dropLast().enumerated() { try fields.take(line, lineNumber: n + 2) }
        let index = try fields.index(format: format)
        if let expectedID, index.id != expectedID { throw IndexError(name, .idMismatch(found: index.id)) }
        return index
    }

    /// Indexes are a few hundred bytes; anything this large is not one.
    static let maxSize = 4 << 20
}

/// The fields of an index being decoded, checked one line at a time.
private struct Fields {
    let name: String
    var id: String?, kind: BackupKind?, parent: String??, started: Double?, clock: Double?
    var recipients: Digest?, manifest: StoredFile?
    var archives: [StoredFile] = []
    var seen = Set<Substring>()

    init(name: String) { self.name = name }

    mutating func take(_ line: Substring, lineNumber: Int) throws(IndexError) {
        let parts = line.split(separator: " ", omittingEmptySubsequences: false)
        let key = parts[0]
        let values = Array(parts.dropFirst())
        func bad(_ why: String) -> IndexError { IndexError(name, .badLine(lineNumber, why)) }
        let shownKey = NameEscape.escape(key.utf8)   // read from the file
        if key != "archive" {
            guard !seen.contains(key) else { throw bad("'\(shownKey)' given twice") }
            seen.insert(key)
        }
        let expected = ["archive": 3, "manifest": 2]
        guard values.count == expected[String(key), default: 1] else { throw bad("'\(shownKey)' with \(values.count) values") }
        func need<T>(_ v: T?, _ why: String) throws(IndexError) -> T {
            guard let v else { throw bad(why) }
            return v
        }
        switch key {
        case "id": id = try need(Self.backupID(values[0]), "not a backup id")
        case "kind": kind = try need(BackupKind(rawValue: String(values[0])), "kind must be full or incremental")
        case "parent":
            parent = .some(values[0] == "-" ? nil : try need(Self.backupID(values[0]), "the parent is not a backup id"))
        case "started": started = try need(Self.time(values[0]), "not a time")
        case "clock": clock = try need(Self.time(values[0]), "not a time")
        case "recipients": recipients = try need(Self.digest(values[0]), "not a SHA-256 in hex")
        case "archive":
            let id = try need(Self.backupID(values[0]), "not an archive id")
            guard !archives.contains(where: { $0.id == id }) else { throw bad("archive \(id) listed twice") }
            archives.append(try stored(id, values[1], values[2], bad))
        case "manifest": manifest = try stored(id ?? "", values[0], values[1], bad)
        default: throw bad("unknown key '\(shownKey)'")
        }
    }

    private func stored(_ id: String, _ size: Substring, _ hash: Substring, _ bad: (String) -> IndexError) throws(IndexError) -> StoredFile {
        guard let n = UInt64(size), size.first != "+" else { throw bad("the size is not a number") }
        if hash == "-" { return StoredFile(id: id, size: n, sha256: nil) }
        guard let d = Self.digest(hash) else { throw bad("the hash is not a SHA-256 in hex") }
        return StoredFile(id: id, size: n, sha256: d)
    }

    func index(format: Int) throws(IndexError) -> BackupIndex {
        func missing(_ key: String) -> IndexError { IndexError(name, .missing(key)) }
        guard let id else { throw missing("id") }
        guard let kind else { throw missing("kind") }
        guard let parent else { throw missing("parent") }
        guard let started else { throw missing("started") }
        guard var manifest else { throw missing("manifest") }
        guard (kind == .full) == (parent == nil) else {
            throw IndexError(name, .badLine(0, kind == .full ? "a full backup names a parent" : "an incremental backup names no parent"))
        }
        manifest.id = id
        var out = BackupIndex(id: id, kind: kind, parent: parent, started: started, clock: clock, recipients: recipients,
                              archives: archives, manifest: manifest)
        out.format = format
        return out
    }

    /// A backup id: `yyyyMMddTHHmmssZ`, optionally `-NN`; only ASCII letters, digits and `-`.
    static func backupID(_ s: Substring) -> String? {
        guard s.count >= 16, s.count <= 64, s.utf8.allSatisfy({ isASCIIAlnum($0) || $0 == 0x2D }) else { return nil }
        return String(s)
    }

    private static func isASCIIAlnum(_ c: UInt8) -> Bool {
        (0x30 ... 0x39).contains(c) || (0x41 ... 0x5A).contains(c) || (0x61 ... 0x7A).contains(c)
    }

    static func time(_ s: Substring) -> Double? {
        guard let v = Double(s), v.isFinite, s.utf8.allSatisfy({ (0x30 ... 0x39).contains($0) || $0 == 0x2E || $0 == 0x2D || $0 == 0x65 || $0 == 0x2B })
        else { return nil }
        return v
    }

    static func digest(_ s: Substring) -> Digest? {
        guard s.utf8.count == 64 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(32)
        var it = s.utf8.makeIterator()
        while let hi = it.next(), let lo = it.next() {
            guard let h = hexValue(hi), let l = hexValue(lo) else { return nil }
            out.append(h << 4 | l)
        }
        return Digest(out)
    }

    /// Lowercase hex only (what `encoded()` writes).
    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30 ... 0x39: c - 0x30
        case 0x61 ... 0x66: c - 0x61 + 10
        default: nil
        }
    }
}

/// A keyless index that cannot be used: what is wrong, in which file, and what to do.
package struct IndexError: Error, CustomStringConvertible, Equatable {
    package enum Kind: Sendable, Equatable {
        case notText, notAnIndex, truncated, checksumMismatch, tooLarge(Int)
        case newerFormat(Int)
        case badLine(Int, String)
        case missing(String)
        case idMismatch(found: String)
        /// The file could not be read (the destination's own error, as text).
        case unreadable(String)
    }

    /// Where: the index's location (destination and path).
    package var name: String
    package var kind: Kind

    package init(_ name: String, _ kind: Kind) {
        self.name = name
        self.kind = kind
    }

    /// True when the file was read and is wrong (damage); false when it could not be read now
    /// or is a newer format.
    package var isDamage: Bool {
        switch kind {
        case .unreadable, .newerFormat: false
        default: true
        }
    }

    package var description: String {
        let damaged = "Run `hs-backup verify` on the set; restore from this backup needs its manifest, which is separate."
        switch kind {
        case .notText: return "\(name) is not a backup index (not UTF-8 text). \(damaged)"
        case .notAnIndex: return "\(name) is not a backup index (it does not start with 'hs-backup-index <version>'). \(damaged)"
        case .truncated: return "\(name) is truncated (no 'end' line). \(damaged)"
        case .checksumMismatch: return "\(name) is damaged: its content does not match its own checksum. \(damaged)"
        case .tooLarge(let n): return "\(name) is \(n) bytes: too large to be a backup index. \(damaged)"
        case .newerFormat(let v):
            return "\(name) has index format \(v), newer than this hs-backup reads (\(BackupIndex.currentFormat)). Upgrade home-server-tools."
        case .badLine(let n, let why):
            return "\(name)\(n > 0 ? " line \(n)" : ""): \(why). \(damaged)"
        case .missing(let key): return "\(name) has no '\(key)' line. \(damaged)"
        case .idMismatch(let found):
            return "\(name) holds the index of backup \(found), not of the backup its file name says: it was copied or renamed by hand. \(damaged)"
        case .unreadable(let why): return "cannot read \(name): \(why). Check that the destination is reachable."
        }
    }
}
