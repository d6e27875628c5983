internal import CCrypto

/// OpenSSL's libcrypto.so.3, loaded on first use rather than by the dynamic linker at every
/// start (issue 23: the load alone was ~1.8 ms of CPU per run; Sources/CCrypto/include/
/// ccrypto.h). The tools do not link it, so the .deb names libssl3 in Depends by hand
/// (scripts/package.sh).
enum LibCrypto {
    /// The function table, or nil when libcrypto cannot be loaded (once per process).
    nonisolated(unsafe) static let table: UnsafePointer<hs_libcrypto>? = hs_libcrypto()

    /// What is wrong and what to do when `table` is nil.
    static var loadFailure: String {
        "cannot load libcrypto.so.3 (\(String(cString: hs_libcrypto_error()))): install Debian's libssl3 (apt-get install libssl3)"
    }

    /// The table for `call`, or an error naming the call and how to get libcrypto.
    static func api(_ call: String) throws(CryptoPrimitiveError) -> UnsafePointer<hs_libcrypto> {
        guard let t = table else { throw CryptoPrimitiveError(call: call, detail: loadFailure) }
        return t
    }

    /// The table for callers that cannot fail (SHA-256 on a CPU without SHA-NI): a missing
    /// libcrypto is a broken installation, as a missing NEEDED library was before.
    static var required: UnsafePointer<hs_libcrypto> {
        guard let t = table else { fatalError(loadFailure) }
        return t
    }
}
