import Support

/// An X25519 recipient: the public key `age-keygen` prints (`age1...`).
package struct AgeRecipient: Hashable, Sendable, CustomStringConvertible {
    package let publicKey: [UInt8]

    package init(publicKey: [UInt8]) {
        precondition(publicKey.count == 32)
        self.publicKey = publicKey
    }

    /// Parses `age1...`. `name` says where it came from (an option, a file and line; as shown).
    /// - Throws: `AgeError.badRecipient` saying why (an SSH key, a plugin recipient, a typo);
    ///   the text it quotes is escaped (`NameEscape`): it comes from a file or an option.
    package init(parsing text: String, name: String) throws(AgeError) {
        let t = text.trimmingASCIISpaces
        if t.hasPrefix("ssh-") || t.hasPrefix("ecdsa-") {
            throw AgeError(name, .badRecipient("SSH keys as recipients are not supported"))
        }
        guard let (hrp, data) = Bech32.decode(t) else {
            throw AgeError(name, .badRecipient("'\(NameEscape.escape(String(t.prefix(80))))' is not a valid age recipient (bad characters or checksum)"))
        }
        guard hrp == "age" else {
            throw AgeError(name, .badRecipient(hrp.hasPrefix("age1") ? "plugin recipients (\(NameEscape.escape(hrp))) are not supported"
                                                                     : "'\(NameEscape.escape(String(t.prefix(80))))' is not an age recipient"))
        }
        guard data.count == 32 else { throw AgeError(name, .badRecipient("an age recipient holds 32 bytes, this one \(data.count)")) }
        self.init(publicKey: data)
    }

    /// `age1...`
    package var encoded: String { Bech32.encode(hrp: "age", data: publicKey) }
    package var description: String { encoded }
}

/// An X25519 identity: the secret key `age-keygen` writes (`AGE-SECRET-KEY-1...`). Its
/// description never shows the secret.
package struct AgeIdentity: Sendable, CustomStringConvertible {
    let secret: [UInt8]
    /// Its public key.
    package let recipient: AgeRecipient

    init(secret: [UInt8]) throws(AgeError) {
        self.secret = secret
        do { recipient = AgeRecipient(publicKey: try X25519.publicKey(secret: secret)) } catch {
            throw AgeError("identity", .io("\(error)"))
        }
    }

    /// A new random identity (tests, and `age-keygen`'s job otherwise).
    package static func generate() throws(AgeError) -> AgeIdentity {
        do { return try AgeIdentity(secret: secureRandomBytes(32)) } catch let e as AgeError { throw e } catch {
            throw AgeError("identity", .io("\(error)"))
        }
    }

    /// Parses `AGE-SECRET-KEY-1...` (one line of a key file).
    package init(parsing text: String, name: String, line: Int = 0) throws(AgeError) {
        let t = text.trimmingASCIISpaces
        if t.hasPrefix("AGE-PLUGIN-") { throw AgeError(name, .badIdentity(line: line, why: "plugin identities are not supported")) }
        if t.hasPrefix("AGE-SECRET-KEY-PQ-") { throw AgeError(name, .badIdentity(line: line, why: "post-quantum identities are not supported")) }
        guard let (hrp, data) = Bech32.decode(t), hrp == "age-secret-key-" else {
            throw AgeError(name, .badIdentity(line: line, why: "not an age secret key (or its checksum is wrong)"))
        }
        guard data.count == 32 else { throw AgeError(name, .badIdentity(line: line, why: "an age secret key holds 32 bytes")) }
        try self.init(secret: data)
    }

    /// `AGE-SECRET-KEY-1...`, as `age-keygen` writes it. Only for writing key files.
    package var encodedSecret: String { Bech32.encode(hrp: "age-secret-key-", data: secret).uppercased() }

    package var description: String { "age identity for \(recipient.encoded)" }
}

/// Key and recipients files, as `age-keygen -o` and `age -R` read and write them: one key a
/// line; empty lines and lines starting with `#` are ignored.
package enum AgeKeyFile {
    /// The identities of a key file's text. `name` is the file (for messages: as shown, escaped).
    package static func identities(_ text: String, name: String) throws(AgeError) -> [AgeIdentity] {
        if text.contains("-----BEGIN") { throw AgeError(name, .badIdentity(line: 0, why: "SSH and armored keys are not supported")) }
        if text.hasPrefix("age-encryption.org/") {
            throw AgeError(name, .unsupported("a passphrase-protected key file; decrypt it with `age -d` to a tmpfs first"))
        }
        var out: [AgeIdentity] = []
        for (n, line) in lines(text) { out.append(try AgeIdentity(parsing: line, name: name, line: n)) }
        guard !out.isEmpty else { throw AgeError(name, .noKeys) }
        return out
    }

    /// The recipients of a recipients file's text. `name` is the file (as shown, escaped).
    package static func recipients(_ text: String, name: String) throws(AgeError) -> [AgeRecipient] {
        var out: [AgeRecipient] = []
        for (n, line) in lines(text) { out.append(try AgeRecipient(parsing: line, name: "\(name) line \(n)")) }
        guard !out.isEmpty else { throw AgeError(name, .noKeys) }
        return out
    }

    /// The lines that hold keys, with their 1-based numbers.
    private static func lines(_ text: String) -> [(Int, String)] {
        text.split(separator: "\n", omittingEmptySubsequences: false).enumerated().compactMap { i, raw in
            let l = String(raw).trimmingASCIISpaces
            return l.isEmpty || l.hasPrefix("#") ? nil : (i + 1, l)
        }
    }
}

/// The recipients a set's backups are encrypted to, and the fingerprint its keyless index
/// records: SHA-256 of the sorted, distinct `age1...` strings, one per line.
package struct RecipientSet: Sendable, Equatable {
    package let recipients: [AgeRecipient]

    package init(_ recipients: [AgeRecipient]) {
        self.recipients = Array(Set(recipients)).sorted { $0.encoded < $1.encoded }
    }

    package var fingerprint: [UInt8] {
        SHA256Hasher.hash(Array(recipients.map { $0.encoded + "\n" }.joined().utf8))
    }

    /// How a fingerprint is shown to people: `sha256:` and its first 16 hex digits.
    package static func shortForm(_ fingerprint: [UInt8]) -> String { "sha256:" + hexString(fingerprint.prefix(8)) }
}

extension String {
    /// Without leading and trailing spaces, tabs and carriage returns.
    var trimmingASCIISpaces: String {
        let u = Array(utf8)
        let isSpace: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }
        guard let a = u.firstIndex(where: { !isSpace($0) }), let b = u.lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(decoding: u[a ... b], as: UTF8.self)
    }
}
