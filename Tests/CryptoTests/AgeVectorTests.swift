import Foundation
import Testing
@testable import Crypto
import Support
import TestSupport

/// The age project's test vectors (C2SP/CCTV, vendored in CCTV/; armor, scrypt and hybrid
/// vectors are left out: see CCTV/README.md). Each file is decrypted as a stream (what was
/// released before an error must match the vector's payload hash) and, through the random-
/// access reader, as a file.
@Suite struct AgeVectorTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("CCTV").path

    struct Vector: CustomStringConvertible, Sendable {
        var name: String
        var expect: String
        var payload: String?
        var identities: [String]
        var compressed: Bool
        var body: [UInt8]
        var description: String { name }
    }

    static let names: [String] = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
        .filter { $0 != "README.md" }.sorted()

    static func load(_ name: String) throws -> Vector {
        let raw = try readFile(directory + "/" + name)
        let sep = try #require(raw.indices.first { raw[$0] == 0x0A && $0 + 1 < raw.count && raw[$0 + 1] == 0x0A })
        var v = Vector(name: name, expect: "", payload: nil, identities: [], compressed: false, body: Array(raw[(sep + 2)...]))
        for line in String(decoding: raw[..<sep], as: UTF8.self).split(separator: "\n") {
            let kv = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            switch kv[0] {
            case "expect": v.expect = kv[1]
            case "payload": v.payload = kv[1]
            case "identity": v.identities.append(kv[1])
            case "compressed": v.compressed = kv[1] == "zlib"
            default: break
            }
        }
        if v.compressed {
            // Python's zlib: the vectors say "zlib" (RFC 1950), which the Gzip module does not read.
            let dir = try TempDir("cctv")
            try writeFile(dir.sub("in"), v.body)
            try run(["python3", "-c", "import sys,zlib; open(sys.argv[2],'wb').write(zlib.decompress(open(sys.argv[1],'rb').read()))",
                     dir.sub("in"), dir.sub("out")])
            v.body = try readFile(dir.sub("out"))
        }
        return v
    }

    /// The class of failure a vector expects, from our error's kind.
    static func outcome(_ error: any Error) -> String {
        guard let e = error as? AgeError else { return "other: \(error)" }
        switch e.kind {
        case .notAgeFile, .unsupportedVersion, .malformedHeader, .unsupported: return "header failure"
        case .noMatchingIdentity: return "no match"
        case .headerMACMismatch: return "HMAC failure"
        case .badPayloadSize, .damagedChunk, .trailingData, .missingFinalChunk: return "payload failure"
        default: return "other: \(e)"
        }
    }

    @Test func vectorsArePresent() {
        #expect(Self.names.count == 67)
        #expect(!Self.names.contains { $0.hasPrefix("armor") || $0.hasPrefix("scrypt") || $0.hasPrefix("hybrid") })
    }

    @Test(arguments: names)
    func streamDecryption(_ name: String) throws {
        let v = try Self.load(name)
        let ids = try v.identities.map { try AgeIdentity(parsing: $0, name: name) }
        var released: [UInt8] = []
        var outcome = "success"
        do {
            let d = AgeStreamDecryptor(identities: ids, name: name)
            // Odd-sized pieces, so chunk and header boundaries fall inside a feed.
            var i = 0
            while i < v.body.count {
                let n = min(4099, v.body.count - i)
                try v.body[i ..< i + n].withUnsafeBytes { try d.feed($0) { released += $0 } }
                i += n
            }
            try d.finish { released += $0 }
        } catch { outcome = Self.outcome(error) }
        #expect(outcome == v.expect, "\(name)")
        if let p = v.payload { #expect(hexString(SHA256Hasher.hash(released)) == p, "\(name): released plaintext") }
    }

    @Test(arguments: names)
    func randomAccessDecryption(_ name: String) throws {
        let v = try Self.load(name)
        let ids = try v.identities.map { try AgeIdentity(parsing: $0, name: name) }
        var outcome = "success"
        var plaintext: [UInt8] = []
        do {
            let r = try AgeDecryptingReader(MemoryReader(v.body), identities: ids, name: name)
            plaintext = try r.read(at: 0, count: Int(r.size) + 1)
            #expect(UInt64(plaintext.count) == r.size)
            // Every chunk again, backwards, in reads that straddle chunk boundaries.
            var rebuilt = [UInt8](repeating: 0, count: plaintext.count)
            var off = plaintext.count
            while off > 0 {
                let start = max(0, off - 70_001)
                let part = try r.read(at: UInt64(start), count: off - start)
                rebuilt.replaceSubrange(start ..< off, with: part)
                off = start
            }
            #expect(rebuilt == plaintext)
        } catch { outcome = Self.outcome(error) }
        // A file that fails only after some chunks streamed fails here when it is opened.
        #expect(outcome == v.expect, "\(name)")
        if outcome == "success", let p = v.payload { #expect(hexString(SHA256Hasher.hash(plaintext)) == p) }
    }
}
