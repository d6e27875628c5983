import Support

/// The payload of an age file (age-encryption.org/v1, "Payload"): a 16-byte nonce, then the
/// plaintext in 64 KiB chunks, each sealed with ChaCha20-Poly1305 under
/// HKDF(file key, salt nonce, info "payload") with the 12-byte nonce `counter (11 bytes, big
/// endian) || last flag (1 byte)`. The final chunk may be short but is empty only when the
/// whole payload is.
struct AgePayload {
    static let chunkSize = 64 * 1024
    static let sealedChunkSize = chunkSize + ChaChaPoly.tagSize
    static let nonceSize = 16

    private let aead: ChaChaPoly

    init(fileKey: [UInt8], nonce: [UInt8]) throws(CryptoPrimitiveError) {
        aead = try ChaChaPoly(key: hkdfSHA256(ikm: fileKey, salt: nonce, info: Array("payload".utf8)))
    }

    /// The 12-byte AEAD nonce of chunk `index`.
    static func chunkNonce(_ index: UInt64, last: Bool) -> [UInt8] {
        var n = [UInt8](repeating: 0, count: 12)
        for i in 0 ..< 8 { n[3 + i] = UInt8(truncatingIfNeeded: index >> (8 * (7 - i))) }
        n[11] = last ? 1 : 0
        return n
    }

    /// Seals chunk `index` (at most 64 KiB) into `out` (plaintext.count + 16 bytes).
    func seal(_ index: UInt64, last: Bool, _ plaintext: UnsafeRawBufferPointer, into out: UnsafeMutableRawPointer) throws(CryptoPrimitiveError) {
        let nonce = Self.chunkNonce(index, last: last)
        let failure = nonce.withUnsafeBytes { (n) -> CryptoPrimitiveError? in
            do throws(CryptoPrimitiveError) { try aead.seal(nonce: n, plaintext, into: out); return nil } catch { return error }
        }
        if let failure { throw failure }
    }

    /// Opens chunk `index` into `out`; false when it fails authentication.
    func open(_ index: UInt64, last: Bool, _ sealed: UnsafeRawBufferPointer, into out: UnsafeMutableRawPointer) -> Bool {
        Self.chunkNonce(index, last: last).withUnsafeBytes { aead.open(nonce: $0, sealed, into: out) }
    }

    /// The number of chunks and the plaintext size of a payload of `size` bytes after its
    /// nonce; nil when no age payload has that size (as the reference implementation's
    /// `EncryptedChunkCount`: an empty plaintext is one empty chunk, and no final chunk is
    /// empty otherwise).
    static func layout(sealedSize size: UInt64) -> (chunks: UInt64, plaintext: UInt64)? {
        let sealed = UInt64(sealedChunkSize), tag = UInt64(ChaChaPoly.tagSize)
        guard size >= tag else { return nil }
        let chunks = (size + sealed - 1) / sealed
        let plaintext = size - chunks * tag
        let expected = plaintext == 0 ? 1 : (plaintext + UInt64(chunkSize) - 1) / UInt64(chunkSize)
        guard expected == chunks else { return nil }
        return (chunks, plaintext)
    }
}
