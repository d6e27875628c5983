import Storage
import Support

/// Encrypts what is written to it as an age file for `recipients` and passes the ciphertext to
/// `base` (for the backup: the `HashingWriter` over the destination's file). The header and
/// the payload nonce are written when it is created; 64 KiB chunks are sealed as they fill;
/// `sync()` seals the final chunk (flagged last: it is held back until then, even when full)
/// and syncs `base`. Nothing may be written after `sync()`. `close()` without `sync()` leaves
/// an incomplete file (the caller removes it: a run that failed).
package final class AgeEncryptingWriter: DestinationWriter {
    private let base: any DestinationWriter
    private let payload: AgePayload
    private let name: String
    private var pending: [UInt8] = []
    private var out: [UInt8] = []
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
        pending.reserveCapacity(AgePayload.chunkSize)
        try base.write(header + nonce)
    }

    package func write(_ bytes: UnsafeRawBufferPointer) throws {
        precondition(!finished, "AgeEncryptingWriter: write after sync")
        guard bytes.count > 0 else { return }
        var rest = bytes
        let chunk = AgePayload.chunkSize
        if !pending.isEmpty {
            let take = min(chunk - pending.count, rest.count)
            pending.append(contentsOf: rest[..<take])
            rest = UnsafeRawBufferPointer(rebasing: rest[take...])
            // A full chunk is sealed only once more bytes follow: the last one is flagged.
            guard !rest.isEmpty else { return }
            try pending.withUnsafeBytes { try sealChunk($0, last: false) }
            pending.removeAll(keepingCapacity: true)
        }
        while rest.count > chunk {
            try sealChunk(UnsafeRawBufferPointer(rebasing: rest[..<chunk]), last: false)
            rest = UnsafeRawBufferPointer(rebasing: rest[chunk...])
        }
        pending.append(contentsOf: rest)
        try flush()
    }

    private func sealChunk(_ plaintext: UnsafeRawBufferPointer, last: Bool) throws {
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: plaintext.count + ChaChaPoly.tagSize))
        try out.withUnsafeMutableBytes { try payload.seal(index, last: last, plaintext, into: $0.baseAddress! + start) }
        index += 1
    }

    private func flush() throws {
        guard !out.isEmpty else { return }
        try base.write(out)
        out.removeAll(keepingCapacity: true)
    }

    /// Seals the final chunk and writes it. Idempotent.
    package func finish() throws {
        guard !finished else { return }
        finished = true
        try pending.withUnsafeBytes { try sealChunk($0, last: true) }
        pending = []
        try flush()
    }

    package func sync() throws {
        try finish()
        try base.sync()
    }

    package func close() throws { try base.close() }
}
