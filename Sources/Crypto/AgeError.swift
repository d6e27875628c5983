/// Why an age file, key or recipient cannot be used: what, where, and what to do. Never holds
/// a secret: a bad identity line is named by its number, never shown.
package struct AgeError: Error, CustomStringConvertible, Equatable {
    package enum Kind: Sendable, Equatable {
        /// Not an age file at all (no `age-encryption.org/` version line).
        case notAgeFile
        /// An age file of another version than v1 (what its version line says, escaped: it
        /// is read from the file).
        case unsupportedVersion(String)
        /// The header does not parse (`detail` says how).
        case malformedHeader(String)
        /// The header parses, but a feature this implementation leaves out is needed
        /// (scrypt passphrases, armor, plugins).
        case unsupported(String)
        /// None of the identities can unwrap the file key.
        case noMatchingIdentity(recipients: Int)
        /// The file key was unwrapped but the header's MAC does not match.
        case headerMACMismatch
        /// The payload's size cannot be the size of an age payload (truncated or padded).
        case badPayloadSize(UInt64)
        /// A payload chunk failed authentication (changed, truncated, reordered).
        case damagedChunk(index: UInt64, offset: UInt64)
        /// Bytes follow the final chunk (streaming reads).
        case trailingData
        /// The payload ends without a final chunk (streaming reads).
        case missingFinalChunk
        /// A recipient (`age1...`) that is not valid.
        case badRecipient(String)
        /// An identity that is not valid (never shown: the line number says which).
        case badIdentity(line: Int, why: String)
        /// A key or recipients file without any key in it.
        case noKeys
        /// The underlying reader or writer failed, or libcrypto did.
        case io(String)
    }

    /// Where: a file name (destination and path, or a local path) or an option, as shown
    /// (a name is escaped by whoever gives it: `NameEscape`).
    package var name: String
    package var kind: Kind

    package init(_ name: String, _ kind: Kind) {
        self.name = name
        self.kind = kind
    }

    package var description: String {
        switch kind {
        case .notAgeFile: return "\(name) is not an age file"
        case .unsupportedVersion(let v):
            return "\(name) is an age file of version '\(v)'; this tool reads age-encryption.org/v1. Decrypt it with a newer `age -d` first."
        case .malformedHeader(let why): return "\(name): the age header is damaged or not valid (\(why)). The file cannot be decrypted."
        case .unsupported(let what): return "\(name) needs \(what), which hs-backup does not support. Decrypt it with `age -d` first."
        case .noMatchingIdentity(let n):
            return "\(name): none of the identities given can decrypt it (it is encrypted to \(n) recipient\(n == 1 ? "" : "s")). "
                + "Give the identity (age-keygen's key file) that matches one of the recipients the backup was made with; `age-keygen -y KEYFILE` prints a key file's public key."
        case .headerMACMismatch:
            return "\(name): the age header was changed after it was written (its MAC does not match). The file is damaged or was tampered with."
        case .badPayloadSize(let n):
            return "\(name): the encrypted payload is \(n) bytes, which no age file has: the file is truncated or has extra bytes."
        case .damagedChunk(let i, let off):
            return "\(name) is damaged: the encrypted chunk \(i) (plaintext bytes from \(off)) failed authentication. It was changed, truncated or tampered with."
        case .trailingData: return "\(name) has bytes after the end of the encrypted payload: it is damaged."
        case .missingFinalChunk: return "\(name) ends before the final encrypted chunk: it is truncated."
        case .badRecipient(let why): return "\(name): \(why). A recipient is an X25519 public key as `age-keygen` prints it (age1...)."
        case .badIdentity(let line, let why):
            return "\(name)\(line > 0 ? " line \(line)" : ""): \(why). An identity file is what `age-keygen -o FILE` writes (AGE-SECRET-KEY-1... lines; # comments)."
        case .noKeys: return "\(name) holds no key"
        case .io(let why): return "\(name): \(why)"
        }
    }
}
