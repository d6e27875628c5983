internal import CCrypto

/// Streaming SHA-256: on the CPU's SHA extensions (SHA-NI) in CCrypto when it has them, else
/// OpenSSL's libcrypto (its SSSE3/AVX2 code), loaded on first use. Both give the same digests
/// (SHA256Tests checks them against each other and FIPS 180-4's examples); the SHA-NI path
/// runs as fast as libcrypto's own SHA-NI code and costs a run no libcrypto load.
package struct SHA256Hasher: ~Copyable {
    /// Who computes the hash.
    package enum Engine: Sendable, CaseIterable {
        /// CCrypto's SHA-NI code (only where `nativeAvailable`).
        case native
        /// libcrypto's EVP SHA-256.
        case libcrypto
    }

    /// Whether this CPU has the SHA extensions (x86-64 SHA-NI with SSSE3 and SSE4.1).
    package static let nativeAvailable = hs_sha256_native_available() != 0

    private enum State {
        case native(UnsafeMutablePointer<hs_sha256_ctx>)
        case libcrypto(OpaquePointer, UnsafePointer<hs_libcrypto>)
    }
    private let state: State

    /// The provider's SHA-256, fetched once: `EVP_sha256()` makes every init look it up again
    /// (a fifth of the time of hashing a 1 KiB file).
    private nonisolated(unsafe) static let md: OpaquePointer? = LibCrypto.required.pointee.EVP_MD_fetch(nil, "SHA256", nil)

    /// A hasher on the SHA extensions when the CPU has them, else on libcrypto.
    package init() {
        self.init(engine: Self.nativeAvailable ? .native : .libcrypto)
    }

    /// A hasher on `engine` (tests compare the two); `.native` needs `nativeAvailable`.
    package init(engine: Engine) {
        switch engine {
        case .native:
            precondition(Self.nativeAvailable, "SHA256Hasher(engine: .native) on a CPU without SHA-NI")
            let ctx = UnsafeMutablePointer<hs_sha256_ctx>.allocate(capacity: 1)
            hs_sha256_init(ctx)
            state = .native(ctx)
        case .libcrypto:
            let c = LibCrypto.required
            guard let ctx = c.pointee.EVP_MD_CTX_new() else { Self.failed("EVP_MD_CTX_new") }
            if c.pointee.EVP_DigestInit_ex(ctx, Self.md ?? c.pointee.EVP_sha256(), nil) != 1 { Self.failed("EVP_DigestInit_ex") }
            state = .libcrypto(ctx, c)
        }
    }

    deinit {
        switch state {
        case .native(let ctx): ctx.deallocate()
        case .libcrypto(let ctx, let c): c.pointee.EVP_MD_CTX_free(ctx)
        }
    }

    /// Adds bytes to the hash.
    /// The corresponding libcrypto call is `EVP_DigestUpdate` (or CCrypto's `hs_sha256_update`).
    package mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        switch state {
        case .native(let ctx): hs_sha256_update(ctx, base, bytes.count)
        case .libcrypto(let ctx, let c):
            if c.pointee.EVP_DigestUpdate(ctx, base, bytes.count) != 1 { Self.failed("EVP_DigestUpdate") }
        }
    }

    package mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// A libcrypto SHA-256 call failed (an allocation, a broken provider): a digest that missed
    /// bytes would be recorded as the content's, so the process stops, naming the call.
    private static func failed(_ call: String) -> Never {
        fatalError("SHA-256: \(CryptoPrimitiveError.last(call)). Check libcrypto (apt-get install --reinstall libssl3).")
    }

    /// The 32-byte digest. The hasher cannot be used afterwards.
    package consuming func finalize() -> [UInt8] {
        // Into 32 bytes on the stack, then copied into the array: `Array(repeating:count:)` allocates
        // through the standard library's unspecialized generic path (~600 instructions, once per
        // file hashed), the copy of a buffer through the specialized one.
        var d: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &d) { raw in
            let o = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
            switch state {
            case .native(let ctx): hs_sha256_final(ctx, o)
            case .libcrypto(let ctx, let c):
                var len: UInt32 = 32
                if c.pointee.EVP_DigestFinal_ex(ctx, o, &len) != 1 || len != 32 { Self.failed("EVP_DigestFinal_ex") }
            }
        }
        return withUnsafeBytes(of: &d) { Array($0) }
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
package func hexString(_ bytes: [UInt8]) -> String {
    // The common case (a digest) without the generic: not specialised across modules, the
    // generic one cost type-metadata lookups at its first call in a run (issue 23).
    String(unsafeUninitializedCapacity: bytes.count * 2) { out in
        let digits: StaticString = "0123456789abcdef"
        let d = digits.utf8Start
        for (i, b) in bytes.enumerated() {
            out[2 * i] = d[Int(b >> 4)]
            out[2 * i + 1] = d[Int(b & 15)]
        }
        return bytes.count * 2
    }
}

/// Lower-case hexadecimal of any bytes.
package func hexString(_ bytes: some Sequence<UInt8>) -> String {
    let digits: [UInt8] = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
    return String(decoding: out, as: UTF8.self)
}
