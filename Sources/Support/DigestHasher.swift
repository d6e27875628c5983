internal import CCrypto

/// Streaming MD5, SHA-1 or SHA-256 by name (libcrypto): the hashes remote storage reports
/// (rclone's `md5`, `sha1`, `sha256`), to compare a remote's copy with the bytes sent to it.
/// SHA-256 of content the toolkit records stays `SHA256Hasher`.
package struct DigestHasher: ~Copyable {
    /// A hash by rclone's name for it.
    package enum Kind: String, Sendable, CaseIterable {
        case md5, sha1, sha256
        var openSSLName: String {
            switch self {
            case .md5: "MD5"
            case .sha1: "SHA1"
            case .sha256: "SHA256"
            }
        }
    }

    private let ctx: OpaquePointer
    private let md: OpaquePointer
    private let c: UnsafePointer<hs_libcrypto>
    package let kind: Kind

    /// - Returns: nil when libcrypto does not offer `kind` (a FIPS build without MD5).
    package init?(_ kind: Kind) {
        let c = LibCrypto.required
        guard let md = c.pointee.EVP_MD_fetch(nil, kind.openSSLName, nil) else { return nil }
        self.c = c
        self.md = md
        self.kind = kind
        ctx = c.pointee.EVP_MD_CTX_new()!
        c.pointee.EVP_DigestInit_ex(ctx, md, nil)
    }

    deinit {
        c.pointee.EVP_MD_CTX_free(ctx)
        c.pointee.EVP_MD_free(md)
    }

    /// Adds bytes to the hash.
    /// The corresponding libcrypto call is `EVP_DigestUpdate`.
    package mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        c.pointee.EVP_DigestUpdate(ctx, base, bytes.count)
    }

    /// The digest as lowercase hex, as rclone prints it. The hasher cannot be used afterwards.
    package consuming func finalizeHex() -> String {
        var out = [UInt8](repeating: 0, count: 64)
        var len: UInt32 = 64
        out.withUnsafeMutableBufferPointer { _ = c.pointee.EVP_DigestFinal_ex(ctx, $0.baseAddress, &len) }
        return hexString(out.prefix(Int(len)))
    }
}
