import Support

/// A writer at the bottom of a writer stack: passes every byte to the destination's writer and
/// records how many were written and their SHA-256, as they go (never by reading the file
/// back). What it recorded is what is stored: for an encrypted file, the ciphertext.
package final class HashingWriter: DestinationWriter {
    private let base: any DestinationWriter
    private var hasher: SHA256Hasher? = SHA256Hasher()
    private var digest: [UInt8]?
    /// Bytes written so far.
    package private(set) var size: UInt64 = 0

    package init(_ base: any DestinationWriter) { self.base = base }

    package func write(_ bytes: UnsafeRawBufferPointer) throws {
        precondition(digest == nil, "HashingWriter: write after the digest was taken")
        try base.write(bytes)
        hasher!.update(bytes)
        size += UInt64(bytes.count)
    }

    package func sync() throws { try base.sync() }
    package func close() throws { try base.close() }

    /// SHA-256 of everything written. No write may follow.
    package var sha256: [UInt8] {
        if let digest { return digest }
        let d = hasher.take()!.finalize()
        digest = d
        return d
    }
}
