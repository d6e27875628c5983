import Foundation
import Testing
@testable import Crypto
import Storage
import Support
import TestSupport

@Suite struct AgeStreamTests {
    static let identity = try! AgeIdentity.generate()

    @Test(arguments: [0, 1, 65_535, 65_536, 65_537, 131_072, 131_073, 1 << 20])
    func roundTrip(_ size: Int) throws {
        let plain = noise(size, seed: UInt64(size) &+ 3)
        for writes in [1, 4096, 65_536, 1 << 20] {
            let file = try encrypt(plain, to: [Self.identity.recipient], writeSizes: writes)
            let r = try AgeDecryptingReader(MemoryReader(file), identities: [Self.identity], name: "f")
            #expect(try r.read(at: 0, count: size) == plain, "write size \(writes)")
            #expect(try decryptStream(file, identities: [Self.identity]) == plain)
        }
    }

    /// A read at a plaintext offset reads and opens only the chunks it covers.
    @Test func partialReadsTouchOnlyTheirChunks() throws {
        let plain = noise(10 * 65_536 + 100)
        let file = try encrypt(plain, to: [Self.identity.recipient])
        let base = MemoryReader(file)
        let r = try AgeDecryptingReader(base, identities: [Self.identity], name: "f")
        let header = try #require(try AgeHeader.parse(file, name: "f"))
        let payload = UInt64(header.length + 16)
        let opened = base.reads.count
        #expect(try r.read(at: 5 * 65_536 + 3, count: 10) == Array(plain[(5 * 65_536 + 3)...].prefix(10)))
        #expect(base.reads.count == opened + 1)
        #expect(base.reads.last!.offset == payload + 5 * 65_552 && base.reads.last!.count == 65_552)
        // Two chunks straddled: one read of exactly those two.
        _ = try r.read(at: 7 * 65_536 - 1, count: 2)
        #expect(base.reads.last!.offset == payload + 6 * 65_552 && base.reads.last!.count == 2 * 65_552)
    }

    /// Any byte changed anywhere in the file is found: at open (header, nonce, final chunk)
    /// or by the read of its chunk, naming the file.
    @Test func everyFlippedByteIsFound() throws {
        let plain = noise(3 * 65_536 + 500)
        let file = try encrypt(plain, to: [Self.identity.recipient])
        var positions = Array(stride(from: 0, to: file.count, by: 997))
        positions += [0, 30, file.count - 1, file.count - 17, 65_552 * 2]
        for p in positions {
            var bad = file
            bad[p] ^= 0x40
            var failed = false
            do {
                let r = try AgeDecryptingReader(MemoryReader(bad), identities: [Self.identity], name: "DEST/t/x.tar.gz")
                _ = try r.read(at: 0, count: plain.count)
            } catch let e as AgeError {
                failed = true
                #expect(e.description.contains("DEST/t/x.tar.gz"))
            }
            #expect(failed, "byte \(p) flipped and not noticed")
            #expect(throws: AgeError.self, "stream, byte \(p)") { try decryptStream(bad, identities: [Self.identity]) }
        }
    }

    @Test func truncationAndExtensionAreFound() throws {
        let file = try encrypt(noise(2 * 65_536), to: [Self.identity.recipient])
        for cut in [1, 16, 17, 65_552, 65_553] {
            #expect(throws: AgeError.self, "cut \(cut)") {
                _ = try AgeDecryptingReader(MemoryReader(Array(file.dropLast(cut))), identities: [Self.identity], name: "f")
            }
        }
        #expect(throws: AgeError.self) { _ = try AgeDecryptingReader(MemoryReader(file + [0]), identities: [Self.identity], name: "f") }
        #expect(throws: AgeError("test", .trailingData)) { try decryptStream(file + Array(repeating: 1, count: 65_552), identities: [Self.identity]) }
    }

    @Test func layoutTable() {
        #expect(AgePayload.layout(sealedSize: 16)! == (1, 0))
        #expect(AgePayload.layout(sealedSize: 17)! == (1, 1))
        #expect(AgePayload.layout(sealedSize: 65_552)! == (1, 65_536))
        #expect(AgePayload.layout(sealedSize: 65_552 + 16) == nil)   // an empty final chunk
        #expect(AgePayload.layout(sealedSize: 65_552 + 17)! == (2, 65_537))
        #expect(AgePayload.layout(sealedSize: 15) == nil)
    }
}

@Suite struct AgeKeyTests {
    @Test func recipientsAndIdentitiesAreParsedStrictly() throws {
        let id = try AgeIdentity.generate()
        let r = id.recipient.encoded
        #expect(r.hasPrefix("age1") && r.count == 62)
        #expect(try AgeRecipient(parsing: "  \(r)\r", name: "x") == id.recipient)
        var flipped = Array(r.utf8)
        flipped[10] = flipped[10] == UInt8(ascii: "q") ? UInt8(ascii: "p") : UInt8(ascii: "q")
        #expect(throws: AgeError.self) { try AgeRecipient(parsing: String(decoding: flipped, as: UTF8.self), name: "x") }
        #expect(throws: AgeError.self) { try AgeRecipient(parsing: String(r.uppercased().prefix(5)) + String(r.dropFirst(5)), name: "x") }
        #expect(throws: AgeError.self) { try AgeRecipient(parsing: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI", name: "x") }
        #expect(throws: AgeError.self) { try AgeRecipient(parsing: id.encodedSecret, name: "x") }
        let back = try AgeIdentity(parsing: id.encodedSecret, name: "k")
        #expect(back.recipient == id.recipient)
    }

    /// A key file's error names the line, never its content.
    @Test func identityErrorsNeverShowTheSecret() throws {
        let id = try AgeIdentity.generate()
        var s = Array(id.encodedSecret.utf8)
        s[20] = s[20] == UInt8(ascii: "Q") ? UInt8(ascii: "P") : UInt8(ascii: "Q")
        let text = "# created: now\n# public key: \(id.recipient)\n\(String(decoding: s, as: UTF8.self))\n"
        do {
            _ = try AgeKeyFile.identities(text, name: "/root/key.txt")
            Issue.record("a damaged key was accepted")
        } catch {
            #expect(error.description.contains("/root/key.txt line 3"))
            #expect(!error.description.contains(String(decoding: s.prefix(30), as: UTF8.self).dropFirst(15)))
        }
        #expect(!"\(id)".contains(id.encodedSecret))
        #expect(throws: AgeError("/k", .noKeys)) { try AgeKeyFile.identities("# nothing\n\n", name: "/k") }
    }

    @Test func recipientSetFingerprintIgnoresOrderAndRepeats() throws {
        let a = try AgeIdentity.generate().recipient, b = try AgeIdentity.generate().recipient
        #expect(RecipientSet([a, b]).fingerprint == RecipientSet([b, a, b]).fingerprint)
        #expect(RecipientSet([a]).fingerprint != RecipientSet([a, b]).fingerprint)
        #expect(RecipientSet.shortForm(RecipientSet([a]).fingerprint).count == "sha256:".count + 16)
    }
}
