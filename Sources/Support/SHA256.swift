internal import CCrypto

/// Streaming SHA-256 (OpenSSL's libcrypto, which uses the CPU's SHA extensions).
package struct SHA256Hasher: ~Copyable {
    private let ctx: OpaquePointer

    /// The provider's SHA-256, fetched once: `EVP_sha256()` makes every init look it up again
    /// (a fifth of the time of hashing a 1 KiB file).
    private nonisolated(unsafe) static let md: OpaquePointer? = EVP_MD_fetch(nil, "SHA256", nil)

    package init() {
        ctx = EVP_MD_CTX_new()
        EVP_DigestInit_ex(ctx, Self.md ?? EVP_sha256(), nil)
    }

    deinit { EVP_MD_CTX_free(ctx) }

    /// Adds bytes to the hash.
    /// The corresponding libcrypto call is `EVP_DigestUpdate`.
    package mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        EVP_DigestUpdate(ctx, base, bytes.count)
    }

    package mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// The 32-byte digest. The hasher cannot be used afterwards.
    package consuming func finalize() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var len: UInt32 = 32
        out.withUnsafeMutableBufferPointer { _ = EVP_DigestFinal_ex(ctx, $0.baseAddress, &len) }
        return out
    }

    /// SHA-256 of a buffer in one call.
    package static func hash(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var h = SHA256Hasher()
        h.update(bytes)
        return h.finalize()
    }

    package static func hash(_ bytes: [UInt8]) -> [UInt8] { bytes.withUnsafeBytes { hash($0) } }
}

/// Lowercase hex of bytes.
package func hexString(_ bytes: some Sequence<UInt8>) -> String {
    let digits: [UInt8] = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
    return String(decoding: out, as: UTF8.self)
}
