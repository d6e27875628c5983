import Crypto
import FoundationEssentials
import Glibc
import Storage
import Support

/// The plaintext of the newest manifest of an encrypted set, kept on the host that makes its
/// backups: a guest holds only the public key, so it cannot read the manifest it wrote to the
/// destination, and an incremental needs it. One directory per destination and set under the
/// state directory (`/var/lib/home-server-tools` by default), mode 0700, files 0600:
///
///     sets/<set>-<12 hex of SHA-256(destination + NUL + set)>/
///         manifest      the plaintext manifest of backup `binding.id`
///         binding       JSON: destination, set, id, the SHA-256 of that backup's index (as
///                       encoded) and of `manifest`, the recipients it was encrypted to
///
/// The copy is used only when it is bound to the set's newest backup: same id, the index on
/// the destination hashes to what the binding recorded, and the manifest to its hash. Anything
/// else (no copy, another id, a changed index, a damaged copy) makes the run a full backup and
/// says why; a wrong incremental is never made.
package struct LocalManifestCopy {
    package static let defaultStateDirectory = "/var/lib/home-server-tools"

    private let state: LocalDestination
    private let directory: String
    private let destinationName: String
    private let set: String

    package init(stateDirectory: String, destination: String, set: String) {
        state = LocalDestination(root: stateDirectory)
        self.destinationName = destination
        self.set = set
        let key = hexString(SHA256Hasher.hash(Array((destination + "\u{0}" + set).utf8)).prefix(6))
        directory = "sets/\(set)-\(key)"
    }

    /// Where it lives, for messages (escaped: the state directory is a path a person gave, and
    /// the set's name is in it).
    package var location: String { NameEscape.escape("\(state.root)/\(directory)") }

    struct Binding: Codable, Equatable {
        var format = 1
        var destination: String
        var set: String
        var id: String
        var indexSHA256: String
        var manifestSHA256: String
        var recipients: [String]

        enum CodingKeys: String, CodingKey {
            case format, destination, set, id, recipients
            case indexSHA256 = "index_sha256", manifestSHA256 = "manifest_sha256"
        }
    }

    /// The recipients the copy's backup was encrypted to (for messages); nil without a copy.
    package func recordedRecipients() -> [String]? { try? binding().recipients }

    private func binding() throws -> Binding {
        try JSONDecoder().decode(Binding.self, from: Data(state.readAll("\(directory)/binding")))
    }

    /// Opens the copy of backup `newest`, whose index on the destination is `index`.
    /// - Returns: the reader, or why it cannot be used (to say with the full backup it causes).
    package func open(newest: String, index: BackupIndex?) -> Result<ManifestReader, Stale> {
        let b: Binding
        do { b = try binding() } catch {
            return .failure(Stale("there is no local copy of its manifest in \(location) (the first encrypted backup from this host, or the state directory was reset)"))
        }
        guard b.destination == destinationName, b.set == set else { return .failure(Stale("the local copy in \(location) belongs to another set")) }
        guard b.id == newest else {
            return .failure(Stale("the local copy of the newest manifest in \(location) is of backup \(NameEscape.escape(b.id)), but the set's newest backup is \(NameEscape.escape(newest)) (written by another host, or a run that stopped before it kept its copy)"))
        }
        guard let index, hexString(SHA256Hasher.hash(index.encoded())) == b.indexSHA256 else {
            return .failure(Stale("the index of backup \(NameEscape.escape(newest)) on the destination is not the one this host wrote (it was changed or is missing)"))
        }
        do {
            // Hashed in pieces, then read as a stream: a 1M-file manifest is tens of MiB.
            let r = try state.open("\(directory)/manifest")
            guard hexString(try r.sha256(piece: 1 << 20).digest) == b.manifestSHA256 else {
                try? r.close()
                return .failure(Stale("the local copy of the manifest in \(location) is damaged (its SHA-256 is not the recorded one)"))
            }
            return .success(try ManifestReader(size: r.size, name: "\(location)/manifest", read: { try r.read(at: $0, count: $1) },
                                               onClose: { try? r.close() }))
        } catch {
            return .failure(Stale("the local copy of the manifest in \(location) cannot be read (\(HumanError.describe(error)))"))
        }
    }

    /// Why a copy cannot be used.
    package struct Stale: Error, CustomStringConvertible {
        package var description: String
        init(_ d: String) { description = d }
    }

    /// Starts the copy of backup `id`'s manifest (`manifest.partial`); its hash is recorded as
    /// it is written.
    func begin() throws -> HashingWriter {
        try state.makeDirectories(directory)
        return HashingWriter(try state.create("\(directory)/manifest.partial"))
    }

    /// After the backup committed: the copy becomes the newest one, bound to `index`.
    func commit(_ copy: HashingWriter, index: BackupIndex, recipients: RecipientSet) throws {
        try state.rename("\(directory)/manifest.partial", to: "\(directory)/manifest")
        let b = Binding(destination: destinationName, set: set, id: index.id, indexSHA256: hexString(SHA256Hasher.hash(index.encoded())),
                        manifestSHA256: hexString(copy.sha256), recipients: recipients.recipients.map(\.encoded))
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try state.writeAtomically("\(directory)/binding", contents: Array(try enc.encode(b)) + [0x0A])
    }

    /// After a failed run: the partial copy goes; the previous copy stays as it was.
    func abandon() { try? state.remove("\(directory)/manifest.partial") }
}
