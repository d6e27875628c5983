import Storage
import Support

/// Encrypts what is written to it as an age file for `recipients` and passes the ciphertext to
/// `base` (for the backup: the `HashingWriter` over the destination's file). The header and
/// the payload nonce are written when it is created; 64 KiB chunks are sealed as they fill;
/// `sync()` seals the final chunk (flagged last: it is held back until then, even when full)
/// and syncs `base`. Nothing may be written after `sync()`. `close()` without `sync()` leaves
/// an incomplete file (the caller removes it: a run that failed).
package final class AgeEncryptingWriter: DestinationWriter {
    /// Sealed chunks gathered before they are passed to `base` (1 MiB and a bit).
    static let chunksPerWrite = 16

    private let base: any DestinationWriter
    private let payload: AgePayload
    private let name: String
    /// The plaintext of the chunk being filled (`pendingCount` bytes of it).
    private var pending: [UInt8]
    private var pendingCount = 0
    /// Sealed chunks not yet written (`outCount` bytes): allocated once, reused.
    private var out: [UInt8]
    private var outCount = 0
    private var index: UInt64 = 0
    private var finished = false

    /// - Parameters:
    ///   - base: where the ciphertext goes.
    ///   - recipients: at least one.
    ///   - name: the file, for messages.
    package init(_ base: any DestinationWriter, recipients: [AgeRecipient], name: String) throws {
        self.base = base
        self.name = name
        let (header, fileKey) = try Age.newHeader(to: recipients, name: name)
        let nonce = try secureRandomBytes(AgePayload.nonceSize)
        payload = try AgePayload(fileKey: fileKey, nonce: nonce)
        pending = [UInt8](repeating: 0, count: AgePayload.chunkSize)
        out = [UInt8](repeating: 0, count: Self.chunksPerWrite * AgePayload.sealedChunkSize)
        try base.write(header + nonce)
    }

    package func write(_ bytes: UnsafeRawBufferPointer) throws {
        precondition(!finished, "AgeEncryptingWriter: write after sync")
        guard bytes.count > 0 else { return }
        var rest = bytes
        let chunk = AgePayload.chunkSize
        if pendingCount > 0 {
            let take = min(chunk - pendingCount, rest.count)
            addPending(UnsafeRawBufferPointer(rebasing: rest[..<take]))
            rest = UnsafeRawBufferPointer(rebasing: rest[take...])
            // A full chunk is sealed only once more bytes follow: the last one is flagged.
            guard !rest.isEmpty else { return }
            try sealPending(last: false)
        }
        // Whole chunks straight from the caller's buffer; the last one (even when full) waits.
        while rest.count > chunk {
            try sealChunk(UnsafeRawBufferPointer(rebasing: rest[..<chunk]), last: false)
            rest = UnsafeRawBufferPointer(rebasing: rest[chunk...])
        }
        addPending(rest)
        try flush()
    }

    private func addPending(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        pending.withUnsafeMutableBytes { p in
            (p.baseAddress! + pendingCount).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        }
        pendingCount += bytes.count
    }

    private func sealPending(last: Bool) throws {
        let count = pendingCount
        try pending.withUnsafeBytes { try sealChunk(UnsafeRawBufferPointer(rebasing: $0[..<count]), last: last) }
        pendingCount = 0
    }

    private func sealChunk(_ plaintext: UnsafeRawBufferPointer, last: Bool) throws {
        if outCount + plaintext.count + ChaChaPoly.tagSize > out.count { try flush() }
        let start = outCount
        try out.withUnsafeMutableBytes { try payload.seal(index, last: last, plaintext, into: $0.baseAddress! + start) }
        outCount += plaintext.count + ChaChaPoly.tagSize
        index += 1
    }

    private func flush() throws {
        guard outCount > 0 else { return }
        let count = outCount
        try out.withUnsafeBytes { try base.write(UnsafeRawBufferPointer(rebasing: $0[..<count])) }
        outCount = 0
    }

    /// Seals the final chunk and writes it. Idempotent.
    package func finish() throws {
        guard !finished else { return }
        finished = true
        try sealPending(last: true)
        try flush()
        pending = []
        out = []
    }

    package func sync() throws {
        try finish()
        try base.sync()
    }

    package func close() throws { try base.close() }
}
