// SHA-256 on the CPU's SHA extensions (CCrypto) and on libcrypto give the same digests, and
// both give FIPS 180-4's (issue 23: a run that needs only SHA-256 no longer loads libcrypto).
import Foundation
import Support
import Testing

@Suite("SHA-256: SHA-NI and libcrypto against FIPS 180-4 and each other")
struct SHA256Tests {
    /// The engines this CPU runs (libcrypto always; SHA-NI where the CPU has it).
    static var engines: [SHA256Hasher.Engine] { SHA256Hasher.nativeAvailable ? [.native, .libcrypto] : [.libcrypto] }

    static func digest(_ engine: SHA256Hasher.Engine, _ bytes: [UInt8], chunks: [Int] = []) -> String {
        var h = SHA256Hasher(engine: engine)
        var at = 0
        for c in chunks where at < bytes.count {
            let n = min(c, bytes.count - at)
            bytes[at..<(at + n)].withUnsafeBytes { h.update($0) }
            at += n
        }
        bytes[at...].withUnsafeBytes { h.update($0) }
        return hexString(h.finalize())
    }

    @Test("the SHA-NI detection agrees with the kernel's cpuinfo flags")
    func detectionMatchesCpuinfo() throws {
        let cpuinfo = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        let flags = Set(cpuinfo.split(separator: "\n").first { $0.hasPrefix("flags") }?.split(separator: " ").map(String.init) ?? [])
        try #require(!flags.isEmpty, "no flags line in /proc/cpuinfo")
        #expect(SHA256Hasher.nativeAvailable == (flags.contains("sha_ni") && flags.contains("ssse3") && flags.contains("sse4_1")),
                "nativeAvailable \(SHA256Hasher.nativeAvailable), cpuinfo sha_ni \(flags.contains("sha_ni"))")
    }

    @Test("FIPS 180-4 examples (one and two blocks, 896 bits, empty, a million a's) on every engine")
    func fipsVectors() {
        let vectors: [(String, String)] = [
            ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
             "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
            ("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
             "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"),
            (String(repeating: "a", count: 1_000_000), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
        ]
        for engine in Self.engines {
            for (message, expected) in vectors {
                let bytes = Array(message.utf8)
                #expect(Self.digest(engine, bytes) == expected, "\(engine), \(bytes.count) bytes")
                #expect(Self.digest(engine, bytes, chunks: [1, 63, 2, 64, 65, 127, 1000]) == expected, "\(engine), \(bytes.count) bytes in pieces")
            }
        }
        #expect(hexString(SHA256Hasher.hash(Array("abc".utf8))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    @Test("every length from 0 to 1,100 bytes and 1 MiB, whole and in random pieces: SHA-NI equals libcrypto")
    func enginesAgree() throws {
        try #require(SHA256Hasher.nativeAvailable || Self.engines == [.libcrypto])
        var rng = SystemRandomNumberGenerator()
        let data = (0..<(1 << 20)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        var lengths = Array(0...1_100)
        lengths += [4095, 4096, 4097, 65_536, 1 << 20]
        for n in lengths {
            let bytes = Array(data[0..<n])
            let pieces = (0..<8).map { _ in Int.random(in: 1...130, using: &rng) }
            let reference = Self.digest(.libcrypto, bytes)
            for engine in Self.engines {
                #expect(Self.digest(engine, bytes) == reference, "\(engine), \(n) bytes")
                #expect(Self.digest(engine, bytes, chunks: pieces) == reference, "\(engine), \(n) bytes in pieces \(pieces)")
            }
        }
    }
}
