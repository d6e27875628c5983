/// Why a manifest cannot be used: the one error of the manifest code. Callers decide on the
/// kind (a damaged previous manifest makes the next run a full one; a manifest that cannot be
/// read now fails the run), never on the text; `description` words it once, with what to do.
package struct ManifestError: Error, CustomStringConvertible, Sendable, Equatable {
    package enum Kind: Sendable, Equatable {
        /// Reading failed (the NAS went away, an I/O error): the manifest may well be fine.
        case unreadable(String)
        /// The bytes were read and are wrong: not a manifest, truncated, a checksum that does
        /// not match, sizes or places that do not add up (damage or tampering).
        case damaged(String)
        /// Written by a newer hs-backup, in a format this one cannot read.
        case newerFormat(format: Int, toolVersion: String)
        /// Its header names another backup than its file name does (a manifest copied or
        /// renamed by hand, `cp B1.manifest B2.manifest`): it is not the backup it claims to be.
        case wrongID(holds: String)
    }

    package var kind: Kind
    /// The manifest, as "DEST/SET/ID.manifest".
    package var name: String

    package init(_ kind: Kind, name: String) {
        self.kind = kind
        self.name = name
    }

    /// True for damage (`damaged`, `wrongID`): the file is there and wrong.
    package var isDamage: Bool {
        switch kind {
        case .damaged, .wrongID: true
        case .unreadable, .newerFormat: false
        }
    }

    /// What happened, without the advice.
    package var what: String {
        switch kind {
        case .unreadable(let why): "cannot read manifest \(name): \(why)"
        case .damaged(let why): "manifest \(name) is damaged (\(why))"
        case .newerFormat(let format, let version):
            "manifest \(name) has format \(format), written by a newer hs-backup (\(version)); this one reads formats up to \(ManifestHeader.currentFormat)"
        case .wrongID(let holds): "manifest \(name) holds backup \(holds), not the one its name says (copied or renamed by hand?)"
        }
    }

    package var description: String {
        switch kind {
        case .unreadable: what + ". Check the destination (is the NAS reachable?) and run again."
        case .damaged, .wrongID: what + "; it cannot be used. Run `hs-backup verify` and take a new full backup with --full."
        case .newerFormat: what + ". Use that version or newer."
        }
    }

    /// A backup's note when this manifest was the previous one: the run is a full backup
    /// instead (so the advice to take one is left out).
    package var fullBackupInstead: String {
        isDamage ? what + "; this run is a full backup instead. Run `hs-backup verify` to check the other backups."
            : "\(self) This run is a full backup instead."
    }
}
