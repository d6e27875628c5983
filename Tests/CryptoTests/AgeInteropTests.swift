import Foundation
import Testing
@testable import Crypto
import Storage
import Support
import TestSupport

/// Our age files against Debian's `age` and `age-keygen` (1.1.1), both ways, at the sizes
/// where STREAM has edges: empty, one byte, one chunk minus one, exactly one and two chunks
/// (the final chunk is then full), one more, and a few MiB.
@Suite struct AgeInteropTests {
    static let sizes = [0, 1, 65_535, 65_536, 65_537, 131_072, 3 * 65_536 + 17, 5 << 20]

    /// A key made by age-keygen: its file (with age-keygen's comments) and its public key.
    static func keygen(_ dir: TempDir, _ name: String = "key.txt") throws -> (path: String, recipient: String) {
        let path = dir.sub(name)
        try run(["age-keygen", "-o", path])
        let pub = try run(["age-keygen", "-y", path]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        return (path, pub)
    }

    @Test func keyFilesAsAgeKeygenWritesThem() throws {
        let dir = try TempDir("age-interop")
        let key = try Self.keygen(dir)
        let text = try String(contentsOfFile: key.path, encoding: .utf8)
        #expect(text.hasPrefix("# created: "))
        let ids = try AgeKeyFile.identities(text, name: key.path)
        #expect(ids.count == 1)
        // Our public key of age-keygen's secret is age-keygen's public key.
        #expect(ids[0].recipient.encoded == key.recipient)
        #expect(try AgeRecipient(parsing: key.recipient, name: "--recipient").encoded == key.recipient)
        // And a key we make is one age-keygen reads.
        let mine = try AgeIdentity.generate()
        try ("# made by a test\n" + mine.encodedSecret + "\n").write(toFile: dir.sub("mine.txt"), atomically: true, encoding: .utf8)
        #expect(try run(["age-keygen", "-y", dir.sub("mine.txt")]).stdout.trimmingCharacters(in: .whitespacesAndNewlines) == mine.recipient.encoded)
    }

    @Test(arguments: sizes)
    func ageEncryptsWeDecrypt(_ size: Int) throws {
        let dir = try TempDir("age-interop")
        let key = try Self.keygen(dir)
        let other = try Self.keygen(dir, "other.txt")
        let plain = noise(size, seed: UInt64(size) + 1)
        try writeFile(dir.sub("plain"), plain)
        try run(["age", "-r", other.recipient, "-r", key.recipient, "-o", dir.sub("file.age"), dir.sub("plain")])
        let file = try readFile(dir.sub("file.age"))
        let ids = try AgeKeyFile.identities(try String(contentsOfFile: key.path, encoding: .utf8), name: key.path)
        let r = try AgeDecryptingReader(MemoryReader(file), identities: ids, name: "file.age")
        #expect(r.size == UInt64(size))
        #expect(try r.read(at: 0, count: size + 10) == plain)
        #expect(try decryptStream(file, identities: ids) == plain)
        // Piece by piece at chunk edges.
        for off in [0, 65_535, 65_536, 65_537, size / 2, max(0, size - 1)] where off < size {
            #expect(try r.read(at: UInt64(off), count: 3) == Array(plain[off ..< min(size, off + 3)]))
        }
    }

    @Test(arguments: sizes)
    func weEncryptAgeDecrypts(_ size: Int) throws {
        let dir = try TempDir("age-interop")
        let key = try Self.keygen(dir)
        let second = try Self.keygen(dir, "second.txt")
        let plain = noise(size, seed: UInt64(size) + 7)
        let recipients = try [key.recipient, second.recipient].map { try AgeRecipient(parsing: $0, name: "test") }
        // Writes of odd sizes, so chunk boundaries fall inside writes.
        let file = try encrypt(plain, to: recipients, writeSizes: 40_009)
        try writeFile(dir.sub("file.age"), file)
        for k in [key.path, second.path] {
            // Through the shell's redirection: age writes no -o file for an empty payload.
            try run(["sh", "-c", "age -d -i \"$1\" \"$2\" > \"$3\"", "sh", k, dir.sub("file.age"), dir.sub("out")])
            #expect(try readFile(dir.sub("out")) == plain)
        }
        // The layout is what the format says: header, 16-byte nonce, chunks of 64 KiB + 16.
        let chunks = max(1, (size + 65_535) / 65_536)
        let header = try #require(try AgeHeader.parse(file, name: "f"))
        #expect(file.count == header.length + 16 + size + 16 * chunks)
        #expect(header.stanzas.count == 2 && header.stanzas.allSatisfy { $0.type == "X25519" })
    }

    @Test func ageRefusesAndReportsWhatWeRefuse() throws {
        let dir = try TempDir("age-interop")
        let key = try Self.keygen(dir)
        let plain = noise(200_000)
        let file = try encrypt(plain, to: [try AgeRecipient(parsing: key.recipient, name: "t")])
        let stranger = try AgeIdentity.generate()
        #expect(throws: AgeError("file.age", .noMatchingIdentity(recipients: 1))) {
            try AgeDecryptingReader(MemoryReader(file), identities: [stranger], name: "file.age")
        }
        // Cut at a chunk boundary: the file ends without its final chunk. Both refuse.
        let cut = Array(file.prefix(file.count - (200_000 - 3 * 65_536) - 16))
        try writeFile(dir.sub("cut.age"), cut)
        #expect(try Subprocess.run(["age", "-d", "-i", key.path, "-o", dir.sub("o"), dir.sub("cut.age")]).status != 0)
        let ids = try AgeKeyFile.identities(try String(contentsOfFile: key.path, encoding: .utf8), name: key.path)
        #expect(throws: AgeError.self) { try AgeDecryptingReader(MemoryReader(cut), identities: ids, name: "cut.age") }
        #expect(throws: AgeError.self) { try decryptStream(cut, identities: ids) }
    }
}
