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
    /// The first libcrypto call that failed (its result is 1 on success), thrown by `finalizeHex`.
    private var failure: CryptoPrimitiveError?

    /// - Returns: nil when libcrypto does not offer `kind` (a FIPS build without MD5) or cannot
    ///   start a hash of it (`EVP_MD_CTX_new` or `EVP_DigestInit_ex` failed).
    package init?(_ kind: Kind) {
        let c = LibCrypto.required
        guard let md = c.pointee.EVP_MD_fetch(nil, kind.openSSLName, nil) else { return nil }
        guard let ctx = c.pointee.EVP_MD_CTX_new() else {
            c.pointee.EVP_MD_free(md)
            return nil
        }
        guard c.pointee.EVP_DigestInit_ex(ctx, md, nil) == 1 else {
            c.pointee.ERR_clear_error()
            c.pointee.EVP_MD_CTX_free(ctx)
            c.pointee.EVP_MD_free(md)
            return nil
        }
        self.c = c
        self.md = md
        self.kind = kind
        self.ctx = ctx
    }

    deinit {
        c.pointee.EVP_MD_CTX_free(ctx)
        c.pointee.EVP_MD_free(md)
    }

    /// Adds bytes to the hash.
    /// The corresponding libcrypto call is `EVP_DigestUpdate`.
    /// A failure is kept and thrown by `finalizeHex` (a hash that missed bytes must never be compared).
    package mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0, failure == nil else { return }
        if c.pointee.EVP_DigestUpdate(ctx, base, bytes.count) != 1 { failure = .last("EVP_DigestUpdate (\(kind.openSSLName))") }
    }

    /// The digest as lowercase hex, as rclone prints it. The hasher cannot be used afterwards.
    /// - Throws: `CryptoPrimitiveError` naming the libcrypto call that failed (an update or the final one).
    package consuming func finalizeHex() throws(CryptoPrimitiveError) -> String {
        if let failure { throw failure }
        var out = [UInt8](repeating: 0, count: 64)
        var len: UInt32 = 64
        let ok = out.withUnsafeMutableBufferPointer { c.pointee.EVP_DigestFinal_ex(ctx, $0.baseAddress, &len) }
        guard ok == 1, len <= 64 else { throw .last("EVP_DigestFinal_ex (\(kind.openSSLName))") }
        return hexString(out.prefix(Int(len)))
    }
}
