// Crypto: the age file format (age-encryption.org/v1, spec at c2sp.org/age) as byte streams.
//
// - `AgeEncryptingWriter` (a `DestinationWriter` over another): what is written to it goes
//   out as an age file to one or more X25519 recipients. It sits below the archive and
//   manifest writers and above the `HashingWriter`, so the index records ciphertext hashes.
// - `AgeDecryptingReader` (a `DestinationReader` over another): random access to the
//   plaintext by 64 KiB chunk: a read decrypts and authenticates only the chunks it covers,
//   each on its own, so the manifest's member offsets keep working and `--only` reads only
//   what it needs. The final chunk is checked when it is opened (a truncated file fails then).
// - `AgeStreamDecryptor`: the same for a stream (stdin), chunk by chunk, in order.
// - `AgeRecipient` (`age1...`), `AgeIdentity` (`AGE-SECRET-KEY-1...`), key and recipients
//   files as `age-keygen` and `age -R` write them, and `RecipientSet` whose fingerprint the
//   keyless index records.
//
// Primitives come from libcrypto through Support (X25519, HKDF-SHA-256, HMAC-SHA-256,
// ChaCha20-Poly1305, RAND_bytes); nothing here is a cipher of its own. Left out: the ASCII
// armor, scrypt (passphrase) recipients, plugins, SSH keys and the post-quantum types: backups
// are binary and made to X25519 recipients. Files that need them are refused by name.
import Support

package enum Age {
    static let fileKeySize = 16
    private static let x25519Info = Array("age-encryption.org/v1/X25519".utf8)

    /// A new file key and the header that wraps it for every recipient.
    static func newHeader(to recipients: [AgeRecipient], name: String) throws(AgeError) -> (header: [UInt8], fileKey: [UInt8]) {
        precondition(!recipients.isEmpty)
        do {
            let fileKey = try secureRandomBytes(fileKeySize)
            var stanzas: [AgeStanza] = []
            for r in recipients { stanzas.append(try wrap(fileKey, to: r)) }
            return (try AgeHeader.encode(stanzas: stanzas, fileKey: fileKey), fileKey)
        } catch let e as AgeError { throw AgeError(name, e.kind) } catch { throw AgeError(name, .io("\(error)")) }
    }

    /// An X25519 stanza wrapping `fileKey` for `recipient` (a fresh ephemeral key each time).
    static func wrap(_ fileKey: [UInt8], to recipient: AgeRecipient) throws -> AgeStanza {
        let ephemeral = try secureRandomBytes(32)
        let share = try X25519.publicKey(secret: ephemeral)
        let shared = try X25519.sharedSecret(secret: ephemeral, peer: recipient.publicKey)
        let key = try hkdfSHA256(ikm: shared, salt: share + recipient.publicKey, info: x25519Info)
        let body = try ChaChaPoly(key: key).seal(nonce: [UInt8](repeating: 0, count: 12), fileKey)
        return AgeStanza(type: "X25519", args: [String(decoding: Base64Raw.encode(share), as: UTF8.self)], body: body)
    }

    /// The file key of an X25519 stanza for `identity`; nil when the stanza is not for it.
    /// - Throws: `AgeError.malformedHeader` for an X25519 stanza that is not valid.
    static func unwrap(_ stanza: AgeStanza, with identity: AgeIdentity, name: String) throws(AgeError) -> [UInt8]? {
        guard stanza.type == "X25519" else { return nil }
        func bad(_ why: String) -> AgeError { AgeError(name, .malformedHeader(why)) }
        guard stanza.args.count == 1, let share = Base64Raw.decode(Array(stanza.args[0].utf8)), share.count == 32 else {
            throw bad("an X25519 stanza's share is not canonical base64 of 32 bytes")
        }
        guard stanza.body.count == fileKeySize + ChaChaPoly.tagSize else { throw bad("an X25519 stanza's body is not 32 bytes") }
        let shared: [UInt8]
        do { shared = try X25519.sharedSecret(secret: identity.secret, peer: share) } catch {
            throw bad("an X25519 stanza's share is a low-order point")
        }
        do {
            let key = try hkdfSHA256(ikm: shared, salt: share + identity.recipient.publicKey, info: x25519Info)
            return try ChaChaPoly(key: key).open(nonce: [UInt8](repeating: 0, count: 12), stanza.body)
        } catch { throw AgeError(name, .io("\(error)")) }
    }

    /// The file key of a parsed header for one of `identities`, its MAC checked.
    /// - Throws: `AgeError`: .unsupported (scrypt), .malformedHeader, .noMatchingIdentity,
    ///   .headerMACMismatch.
    static func fileKey(_ header: AgeHeader, identities: [AgeIdentity], name: String) throws(AgeError) -> [UInt8] {
        if header.stanzas.contains(where: { $0.type == "scrypt" }) {
            guard header.stanzas.count == 1 else { throw AgeError(name, .malformedHeader("an scrypt stanza is not the only one")) }
            throw AgeError(name, .unsupported("a passphrase (scrypt)"))
        }
        var found: [UInt8]?
        search: for identity in identities {
            for s in header.stanzas {
                if let k = try unwrap(s, with: identity, name: name) { found = k; break search }
            }
        }
        guard let fileKey = found else {
            throw AgeError(name, .noMatchingIdentity(recipients: header.stanzas.filter { $0.type == "X25519" }.count))
        }
        guard try AgeHeader.headerMAC(fileKey: fileKey, macInput: header.macInput) == header.mac else {
            throw AgeError(name, .headerMACMismatch)
        }
        return fileKey
    }

    /// True when `prefix` (the first bytes of a file) starts like an age file.
    package static func looksLikeAgeFile(_ prefix: some Collection<UInt8>) -> Bool {
        prefix.starts(with: AgeHeader.versionPrefix)
    }
}
