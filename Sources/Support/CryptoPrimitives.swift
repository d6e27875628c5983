// The primitives the age format needs, from OpenSSL's libcrypto (loaded on first use: LibCrypto):
// X25519, HKDF-SHA-256, HMAC-SHA-256, ChaCha20-Poly1305 and the system's CSPRNG. Nothing here
// is a cipher of its own: each function is one libcrypto call sequence, named in its doc.
// Support is the only importer of CCrypto; the age format itself lives in the Crypto module.
internal import CCrypto

/// A libcrypto call that failed: which call, and OpenSSL's own error text.
package struct CryptoPrimitiveError: Error, CustomStringConvertible, Equatable {
    package var call: String
    package var detail: String
    package var description: String { "libcrypto \(call) failed: \(detail)" }

    static func last(_ call: String) -> CryptoPrimitiveError {
        guard let c = LibCrypto.table else { return CryptoPrimitiveError(call: call, detail: LibCrypto.loadFailure) }
        let code = c.pointee.ERR_get_error()
        c.pointee.ERR_clear_error()
        guard code != 0 else { return CryptoPrimitiveError(call: call, detail: "no detail") }
        var buf = [CChar](repeating: 0, count: 256)
        c.pointee.ERR_error_string_n(code, &buf, buf.count)
        return CryptoPrimitiveError(call: call, detail: String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
}

/// X25519 (RFC 7748) through `EVP_PKEY`.
package enum X25519 {
    /// The public key (`X25519(secret, basepoint)`) of a 32-byte secret.
    /// The corresponding libcrypto calls are `EVP_PKEY_new_raw_private_key` and
    /// `EVP_PKEY_get_raw_public_key`.
    package static func publicKey(secret: [UInt8]) throws(CryptoPrimitiveError) -> [UInt8] {
        let c = try LibCrypto.api("X25519")
        precondition(secret.count == 32)
        guard let key = c.pointee.EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nil, secret, 32) else {
            throw .last("EVP_PKEY_new_raw_private_key")
        }
        defer { c.pointee.EVP_PKEY_free(key) }
        var out = [UInt8](repeating: 0, count: 32)
        var len = 32
        guard c.pointee.EVP_PKEY_get_raw_public_key(key, &out, &len) == 1, len == 32 else { throw .last("EVP_PKEY_get_raw_public_key") }
        return out
    }

    /// The shared secret `X25519(secret, peer)`. Fails when it is all zeros (a low-order peer
    /// point): libcrypto refuses that result, as age requires.
    /// The corresponding libcrypto call is `EVP_PKEY_derive`.
    package static func sharedSecret(secret: [UInt8], peer: [UInt8]) throws(CryptoPrimitiveError) -> [UInt8] {
        let c = try LibCrypto.api("X25519")
        precondition(secret.count == 32 && peer.count == 32)
        guard let mine = c.pointee.EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nil, secret, 32) else {
            throw .last("EVP_PKEY_new_raw_private_key")
        }
        defer { c.pointee.EVP_PKEY_free(mine) }
        guard let theirs = c.pointee.EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nil, peer, 32) else {
            throw .last("EVP_PKEY_new_raw_public_key")
        }
        defer { c.pointee.EVP_PKEY_free(theirs) }
        guard let ctx = c.pointee.EVP_PKEY_CTX_new(mine, nil) else { throw .last("EVP_PKEY_CTX_new") }
        defer { c.pointee.EVP_PKEY_CTX_free(ctx) }
        var out = [UInt8](repeating: 0, count: 32)
        var len = 32
        guard c.pointee.EVP_PKEY_derive_init(ctx) == 1 else { throw .last("EVP_PKEY_derive_init") }
        guard c.pointee.EVP_PKEY_derive_set_peer(ctx, theirs) == 1 else { throw .last("EVP_PKEY_derive_set_peer") }
        guard c.pointee.EVP_PKEY_derive(ctx, &out, &len) == 1, len == 32 else { throw .last("EVP_PKEY_derive") }
        guard out.contains(where: { $0 != 0 }) else { throw CryptoPrimitiveError(call: "EVP_PKEY_derive", detail: "all-zero shared secret") }
        return out
    }
}

/// HKDF-SHA-256 (RFC 5869): extract with `salt`, expand with `info` to `count` bytes.
/// The corresponding libcrypto call is `EVP_PKEY_derive` on an `EVP_PKEY_HKDF` context.
package func hkdfSHA256(ikm: [UInt8], salt: [UInt8], info: [UInt8], count: Int = 32) throws(CryptoPrimitiveError) -> [UInt8] {
    let c = try LibCrypto.api("HKDF-SHA-256")
    guard let ctx = c.pointee.EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nil) else { throw .last("EVP_PKEY_CTX_new_id(HKDF)") }
    defer { c.pointee.EVP_PKEY_CTX_free(ctx) }
    guard c.pointee.EVP_PKEY_derive_init(ctx) == 1 else { throw .last("EVP_PKEY_derive_init") }
    guard c.pointee.EVP_PKEY_CTX_set_hkdf_md(ctx, c.pointee.EVP_sha256()) == 1 else { throw .last("EVP_PKEY_CTX_set_hkdf_md") }
    // An empty salt means "HashLen zeros" (RFC 5869 2.2); libcrypto wants a non-null pointer.
    let zeroSalt = [UInt8](repeating: 0, count: 32)
    let s = salt.isEmpty ? zeroSalt : salt
    guard c.pointee.EVP_PKEY_CTX_set1_hkdf_salt(ctx, s, Int32(s.count)) == 1 else { throw .last("EVP_PKEY_CTX_set1_hkdf_salt") }
    guard c.pointee.EVP_PKEY_CTX_set1_hkdf_key(ctx, ikm, Int32(ikm.count)) == 1 else { throw .last("EVP_PKEY_CTX_set1_hkdf_key") }
    if !info.isEmpty {
        guard c.pointee.EVP_PKEY_CTX_add1_hkdf_info(ctx, info, Int32(info.count)) == 1 else { throw .last("EVP_PKEY_CTX_add1_hkdf_info") }
    }
    var out = [UInt8](repeating: 0, count: count)
    var len = count
    guard c.pointee.EVP_PKEY_derive(ctx, &out, &len) == 1, len == count else { throw .last("EVP_PKEY_derive(HKDF)") }
    return out
}

/// HMAC-SHA-256 of `data` under `key`.
/// The corresponding libcrypto call is `HMAC`.
package func hmacSHA256(key: [UInt8], data: [UInt8]) throws(CryptoPrimitiveError) -> [UInt8] {
    let c = try LibCrypto.api("HMAC-SHA-256")
    var out = [UInt8](repeating: 0, count: 32)
    var len: UInt32 = 32
    let ok = data.withUnsafeBufferPointer { d in
        c.pointee.HMAC(c.pointee.EVP_sha256(), key, Int32(key.count), d.baseAddress, d.count, &out, &len) != nil
    }
    guard ok, len == 32 else { throw .last("HMAC") }
    return out
}

/// `count` bytes from the CSPRNG.
/// The corresponding libcrypto call is `RAND_bytes` (seeded from getrandom(2)).
package func secureRandomBytes(_ count: Int) throws(CryptoPrimitiveError) -> [UInt8] {
    let c = try LibCrypto.api("RAND_bytes")
    var out = [UInt8](repeating: 0, count: count)
    guard c.pointee.RAND_bytes(&out, Int32(count)) == 1 else { throw .last("RAND_bytes") }
    return out
}

/// ChaCha20-Poly1305 (RFC 7539) with one 32-byte key, for many messages with different
/// 12-byte nonces. One context per key; not for use from two threads at once.
/// The corresponding libcrypto calls are `EVP_EncryptInit_ex`/`EVP_DecryptInit_ex` with
/// `EVP_chacha20_poly1305()`, `EVP_*Update`, `EVP_*Final_ex` and the AEAD tag controls.
package final class ChaChaPoly {
    package static let tagSize = 16
    private let enc: OpaquePointer
    private let dec: OpaquePointer
    private let c: UnsafePointer<hs_libcrypto>

    package init(key: [UInt8]) throws(CryptoPrimitiveError) {
        let c = try LibCrypto.api("ChaCha20-Poly1305")
        self.c = c
        precondition(key.count == 32)
        guard let e = c.pointee.EVP_CIPHER_CTX_new(), let d = c.pointee.EVP_CIPHER_CTX_new() else { throw .last("EVP_CIPHER_CTX_new") }
        enc = e
        dec = d
        guard c.pointee.EVP_EncryptInit_ex(enc, c.pointee.EVP_chacha20_poly1305(), nil, key, nil) == 1 else { throw .last("EVP_EncryptInit_ex") }
        guard c.pointee.EVP_DecryptInit_ex(dec, c.pointee.EVP_chacha20_poly1305(), nil, key, nil) == 1 else { throw .last("EVP_DecryptInit_ex") }
    }

    deinit {
        c.pointee.EVP_CIPHER_CTX_free(enc)
        c.pointee.EVP_CIPHER_CTX_free(dec)
    }

    /// Encrypts `plaintext` to `out` (plaintext.count + 16 bytes: ciphertext then tag).
    package func seal(nonce: UnsafeRawBufferPointer, _ plaintext: UnsafeRawBufferPointer,
                      into out: UnsafeMutableRawPointer) throws(CryptoPrimitiveError) {
        precondition(nonce.count == 12)
        let o = out.assumingMemoryBound(to: UInt8.self)
        guard c.pointee.EVP_EncryptInit_ex(enc, nil, nil, nil, nonce.baseAddress!.assumingMemoryBound(to: UInt8.self)) == 1 else {
            throw .last("EVP_EncryptInit_ex")
        }
        var n: Int32 = 0
        if plaintext.count > 0 {
            guard c.pointee.EVP_EncryptUpdate(enc, o, &n, plaintext.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(plaintext.count)) == 1,
                  Int(n) == plaintext.count else { throw .last("EVP_EncryptUpdate") }
        }
        var fin: Int32 = 0
        guard c.pointee.EVP_EncryptFinal_ex(enc, o + Int(n), &fin) == 1 else { throw .last("EVP_EncryptFinal_ex") }
        guard c.pointee.EVP_CIPHER_CTX_ctrl(enc, EVP_CTRL_AEAD_GET_TAG, 16, o + plaintext.count) == 1 else { throw .last("EVP_CTRL_AEAD_GET_TAG") }
    }

    package func seal(nonce: [UInt8], _ plaintext: [UInt8]) throws(CryptoPrimitiveError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: plaintext.count + Self.tagSize)
        let failure: CryptoPrimitiveError? = nonce.withUnsafeBytes { n in
            plaintext.withUnsafeBytes { p in
                out.withUnsafeMutableBytes { (o) -> CryptoPrimitiveError? in
                    do throws(CryptoPrimitiveError) { try seal(nonce: n, p, into: o.baseAddress!); return nil } catch { return error }
                }
            }
        }
        if let failure { throw failure }
        return out
    }

    /// Decrypts and authenticates `sealed` (ciphertext then 16-byte tag) to `out`
    /// (sealed.count - 16 bytes). False when the tag does not match (nothing in `out` may be
    /// used then).
    package func open(nonce: UnsafeRawBufferPointer, _ sealed: UnsafeRawBufferPointer,
                      into out: UnsafeMutableRawPointer) -> Bool {
        precondition(nonce.count == 12)
        guard sealed.count >= Self.tagSize else { return false }
        let n = sealed.count - Self.tagSize
        let s = sealed.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let o = out.assumingMemoryBound(to: UInt8.self)
        guard c.pointee.EVP_DecryptInit_ex(dec, nil, nil, nil, nonce.baseAddress!.assumingMemoryBound(to: UInt8.self)) == 1 else { return false }
        var got: Int32 = 0
        if n > 0 {
            guard c.pointee.EVP_DecryptUpdate(dec, o, &got, s, Int32(n)) == 1 else { return false }
        }
        guard c.pointee.EVP_CIPHER_CTX_ctrl(dec, EVP_CTRL_AEAD_SET_TAG, 16, UnsafeMutableRawPointer(mutating: s + n)) == 1 else { return false }
        var fin: Int32 = 0
        let ok = c.pointee.EVP_DecryptFinal_ex(dec, o + Int(got), &fin) == 1
        c.pointee.ERR_clear_error()
        return ok
    }

    package func open(nonce: [UInt8], _ sealed: [UInt8]) -> [UInt8]? {
        guard sealed.count >= Self.tagSize else { return nil }
        var out = [UInt8](repeating: 0, count: sealed.count - Self.tagSize + 1)
        let ok = nonce.withUnsafeBytes { n in sealed.withUnsafeBytes { s in out.withUnsafeMutableBytes { open(nonce: n, s, into: $0.baseAddress!) } } }
        guard ok else { return nil }
        out.removeLast()
        return out
    }
}
