import Storage
import Support
import Synchronization

/// Random access to the plaintext of an age file on a Destination (or any `DestinationReader`):
/// `read(at:count:)` takes plaintext offsets, reads the sealed chunks that cover them in one
/// call to `base`, and opens each on its own; nothing else is read or decrypted. `size` is the
/// plaintext size. The header (MAC included) and the final chunk (a truncated file fails here)
/// are checked when it is opened. Safe to call from several threads (one read at a time).
package final class AgeDecryptingReader: DestinationReader {
    private let base: any DestinationReader
    private let name: String
    /// Where the first sealed chunk starts in the file.
    private let payloadStart: UInt64
    private let chunks: UInt64
    package let size: UInt64
    private let state: Mutex<State>

    private struct State: ~Copyable {
        let payload: AgePayload
        /// The last chunk opened (index and plaintext).
        var cached: (index: UInt64, bytes: [UInt8])?
        var scratch = [UInt8](repeating: 0, count: AgePayload.chunkSize + 1)
    }

    /// Opens the age file `base` with one of `identities`. `name` names it in messages.
    /// - Throws: `AgeError` (not an age file, no matching identity, damaged header, a size no
    ///   age file has, a final chunk that fails authentication, the base reader's failure).
    package init(_ base: any DestinationReader, identities: [AgeIdentity], name: String) throws(AgeError) {
        self.base = base
        self.name = name
        let header = try Self.readHeader(base, name: name)
        let fileKey = try Age.fileKey(header, identities: identities, name: name)
        let nonceAt = UInt64(header.length)
        guard base.size >= nonceAt + UInt64(AgePayload.nonceSize) else {
            throw AgeError(name, .malformedHeader("the file ends before the payload's nonce"))
        }
        payloadStart = nonceAt + UInt64(AgePayload.nonceSize)
        guard let layout = AgePayload.layout(sealedSize: base.size - payloadStart) else {
            throw AgeError(name, .badPayloadSize(base.size - payloadStart))
        }
        chunks = layout.chunks
        size = layout.plaintext
        let nonce = try Self.readExactly(base, at: nonceAt, count: AgePayload.nonceSize, name: name)
        let payload: AgePayload
        do { payload = try AgePayload(fileKey: fileKey, nonce: nonce) } catch { throw AgeError(name, .io("\(error)")) }
        state = Mutex(State(payload: payload))
        // The final chunk, checked now: a file cut at a chunk boundary fails here, not later.
        _ = try read(at: size == 0 ? 0 : size - 1, count: 1, allowEmpty: true)
    }

    /// The header at the start of `base`, read in growing pieces up to `AgeHeader.maxSize`.
    static func readHeader(_ base: any DestinationReader, name: String) throws(AgeError) -> AgeHeader {
        var want = 4096
        while true {
            let bytes = try readExactly(base, at: 0, count: Int(min(UInt64(want), base.size)), name: name)
            if let h = try AgeHeader.parse(bytes, name: name) { return h }
            guard UInt64(bytes.count) < base.size, want < AgeHeader.maxSize else {
                throw bytes.isEmpty || !Age.looksLikeAgeFile(bytes) ? AgeError(name, .notAgeFile)
                    : AgeError(name, .malformedHeader(UInt64(bytes.count) >= base.size ? "the file ends inside the header" : "the header is larger than 1 MiB"))
            }
            want *= 4
        }
    }

    private static func readExactly(_ base: any DestinationReader, at offset: UInt64, count: Int, name: String) throws(AgeError) -> [UInt8] {
        var out: [UInt8] = []
        do {
            while out.count < count {
                let got = try base.read(at: offset + UInt64(out.count), count: count - out.count)
                if got.isEmpty { break }
                out += got
            }
        } catch { throw AgeError(name, .io(HumanError.describe(error))) }
        return out
    }

    package func read(at offset: UInt64, count: Int) throws -> [UInt8] {
        try read(at: offset, count: count, allowEmpty: false)
    }

    private func read(at offset: UInt64, count: Int, allowEmpty: Bool) throws(AgeError) -> [UInt8] {
        let chunk = UInt64(AgePayload.chunkSize)
        guard count > 0, offset < size || (allowEmpty && size == 0) else { return [] }
        let end = min(size, offset + UInt64(count))
        let first = offset / chunk
        let last = size == 0 ? 0 : (end - 1) / chunk
        return try state.withLock { (st: inout State) throws(AgeError) -> [UInt8] in
            var out: [UInt8] = []
            out.reserveCapacity(Int(end - offset))
            var i = first
            if let c = st.cached, c.index == first {
                append(c.bytes, chunk: first, from: offset, to: end, into: &out)
                i += 1
            }
            guard i <= last else { return out }
            let sealedChunk = UInt64(AgePayload.sealedChunkSize)
            let from = payloadStart + i * sealedChunk
            let to = min(base.size, payloadStart + (last + 1) * sealedChunk)
            let sealed = try Self.readExactly(base, at: from, count: Int(to - from), name: name)
            guard sealed.count == Int(to - from) else { throw AgeError(name, .damagedChunk(index: i, offset: i * chunk)) }
            var at = 0
            while i <= last {
                let n = min(Int(sealedChunk), sealed.count - at)
                let plain = n - ChaChaPoly.tagSize
                let start = i * chunk
                // A chunk wholly inside the read is opened straight into the output; the first
                // and last ones of a read go through the scratch buffer (and the last is kept).
                let whole = start >= offset && start + UInt64(max(plain, 0)) <= end && i != last
                let ok: Bool
                if whole {
                    let was = out.count
                    out.append(contentsOf: repeatElement(0, count: max(plain, 0)))
                    ok = sealed.withUnsafeBytes { s in
                        out.withUnsafeMutableBytes { o in
                            st.payload.open(i, last: i == chunks - 1, UnsafeRawBufferPointer(rebasing: s[at ..< at + n]), into: o.baseAddress! + was)
                        }
                    }
                } else {
                    ok = sealed.withUnsafeBytes { s in
                        st.scratch.withUnsafeMutableBytes { o in
                            st.payload.open(i, last: i == chunks - 1, UnsafeRawBufferPointer(rebasing: s[at ..< at + n]), into: o.baseAddress!)
                        }
                    }
                }
                guard ok, plain > 0 || chunks == 1 else { throw AgeError(name, .damagedChunk(index: i, offset: i * chunk)) }
                if !whole {
                    let bytes = Array(st.scratch[..<plain])
                    append(bytes, chunk: i, from: offset, to: end, into: &out)
                    if i == last { st.cached = (i, bytes) }
                }
                at += n
                i += 1
            }
            return out
        }
    }

    /// Appends the part of chunk `index` (plaintext `bytes`) that lies in `from..<to`.
    private func append(_ bytes: [UInt8], chunk index: UInt64, from: UInt64, to: UInt64, into out: inout [UInt8]) {
        let start = index * UInt64(AgePayload.chunkSize)
        let lo = Int(max(from, start) - start), hi = Int(min(to, start + UInt64(bytes.count)) - start)
        if lo < hi { out += bytes[lo ..< hi] }
    }

    package func close() throws { try base.close() }
}
