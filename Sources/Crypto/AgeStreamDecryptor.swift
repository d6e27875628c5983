import Support

/// Decrypts an age file that arrives as a stream (stdin, a pipe): `feed` the bytes as they
/// come, `finish` at the end. Plaintext is passed to `sink` one chunk at a time, each only
/// after it was authenticated; a chunk is known to be the final one only at the end of the
/// input, so one sealed chunk is held back until more bytes follow it.
package final class AgeStreamDecryptor {
    private let identities: [AgeIdentity]
    private let name: String
    private var buffer: [UInt8] = []
    private var payload: AgePayload?
    private var index: UInt64 = 0
    private var sawFinal = false

    package init(identities: [AgeIdentity], name: String) {
        self.identities = identities
        self.name = name
    }

    /// Takes the next bytes of the file.
    /// - Throws: `AgeError` for a header that cannot be used or a chunk that fails.
    package func feed(_ bytes: UnsafeRawBufferPointer, sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard !sawFinal else {
            if bytes.count > 0 { throw AgeError(name, .trailingData) }
            return
        }
        buffer.append(contentsOf: bytes)
        if payload == nil {
            guard let header = try AgeHeader.parse(buffer, name: name) else {
                guard buffer.count < AgeHeader.maxSize else { throw AgeError(name, .malformedHeader("the header is larger than 1 MiB")) }
                return
            }
            guard buffer.count >= header.length + AgePayload.nonceSize else { return }
            let fileKey = try Age.fileKey(header, identities: identities, name: name)
            let nonce = Array(buffer[header.length ..< header.length + AgePayload.nonceSize])
            do { payload = try AgePayload(fileKey: fileKey, nonce: nonce) } catch { throw AgeError(name, .io("\(error)")) }
            buffer.removeFirst(header.length + AgePayload.nonceSize)
        }
        // Every complete chunk with bytes after it is not the final one... unless it opens
        // only as final, and then the bytes after it are trailing data.
        var consumed = 0
        defer { if consumed > 0 { buffer.removeFirst(consumed) } }
        while buffer.count - consumed > AgePayload.sealedChunkSize {
            try open(consumed ..< consumed + AgePayload.sealedChunkSize, atEnd: false, sink: sink)
            consumed += AgePayload.sealedChunkSize
            if sawFinal { throw AgeError(name, .trailingData) }
        }
    }

    package func feed(_ bytes: [UInt8], sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        try bytes.withUnsafeBytes { try feed($0, sink: sink) }
    }

    /// The end of the input: opens the final chunk.
    /// - Throws: `AgeError` when the file ends early (in the header, or before a final chunk).
    package func finish(sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        if sawFinal { return }
        guard payload != nil else {
            throw buffer.isEmpty || !Age.looksLikeAgeFile(buffer) ? AgeError(name, .notAgeFile)
                : AgeError(name, .malformedHeader("the input ends inside the header"))
        }
        guard buffer.count >= ChaChaPoly.tagSize else { throw AgeError(name, .missingFinalChunk) }
        try open(0 ..< buffer.count, atEnd: true, sink: sink)
        buffer = []
        if !sawFinal { throw AgeError(name, .missingFinalChunk) }
    }

    private func open(_ range: Range<Int>, atEnd: Bool, sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        let payload = payload!
        let plain = range.count - ChaChaPoly.tagSize
        var out = [UInt8](repeating: 0, count: max(plain, 1))
        let damaged = AgeError(name, .damagedChunk(index: index, offset: index * UInt64(AgePayload.chunkSize)))
        func attempt(last: Bool) -> Bool {
            buffer.withUnsafeBytes { b in
                out.withUnsafeMutableBytes { payload.open(index, last: last, UnsafeRawBufferPointer(rebasing: b[range]), into: $0.baseAddress!) }
            }
        }
        var last = atEnd
        var ok = attempt(last: last)
        // A full-size final chunk followed by more bytes (trailing data): say that, after
        // passing on what authenticated.
        if !ok && !atEnd && range.count == AgePayload.sealedChunkSize { last = true; ok = attempt(last: true) }
        if !ok && atEnd && range.count == AgePayload.sealedChunkSize && attempt(last: false) {
            // A full chunk that is not the final one, and then the end: it is passed on (it
            // authenticated), the file is truncated.
            try out.withUnsafeBytes { try sink(UnsafeRawBufferPointer(rebasing: $0[..<plain])) }
            index += 1
            throw AgeError(name, .missingFinalChunk)
        }
        guard ok else { throw damaged }
        if last && plain == 0 && index > 0 { throw damaged }   // only an empty file has an empty final chunk
        try out.withUnsafeBytes { try sink(UnsafeRawBufferPointer(rebasing: $0[..<plain])) }
        index += 1
        sawFinal = last
    }
}
