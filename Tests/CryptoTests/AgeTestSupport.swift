import Foundation
@testable import Crypto
import Storage
import Support
import TestSupport

/// A file in memory, read through the DestinationReader protocol; counts what is read.
final class MemoryReader: DestinationReader, @unchecked Sendable {
    let bytes: [UInt8]
    private(set) var reads: [(offset: UInt64, count: Int)] = []
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    var size: UInt64 { UInt64(bytes.count) }
    func read(at offset: UInt64, count: Int) throws -> [UInt8] {
        reads.append((offset, count))
        guard offset < size else { return [] }
        return Array(bytes[Int(offset) ..< min(bytes.count, Int(offset) + count)])
    }
    func close() throws {}
}

/// Collects what is written through the DestinationWriter protocol.
final class MemoryWriter: DestinationWriter {
    var bytes: [UInt8] = []
    var synced = false
    func write(_ b: UnsafeRawBufferPointer) throws { bytes.append(contentsOf: b) }
    func sync() throws { synced = true }
    func close() throws {}
}

/// Deterministic pseudo-random bytes (xorshift), so payload sizes and contents are varied.
func noise(_ count: Int, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> [UInt8] {
    var x = seed | 1
    return (0 ..< count).map { _ in
        x ^= x << 13; x ^= x >> 7; x ^= x << 17
        return UInt8(truncatingIfNeeded: x)
    }
}

func encrypt(_ plaintext: [UInt8], to recipients: [AgeRecipient], writeSizes: Int = 100_000) throws -> [UInt8] {
    let w = MemoryWriter()
    let e = try AgeEncryptingWriter(w, recipients: recipients, name: "test")
    var i = 0
    while i < plaintext.count {
        let n = min(writeSizes, plaintext.count - i)
        try plaintext[i ..< i + n].withUnsafeBytes { try e.write($0) }
        i += n
    }
    try e.sync()
    try e.close()
    return w.bytes
}

func decryptStream(_ file: [UInt8], identities: [AgeIdentity], piece: Int = 7919) throws -> [UInt8] {
    var out: [UInt8] = []
    let d = AgeStreamDecryptor(identities: identities, name: "test")
    var i = 0
    while i < file.count {
        let n = min(piece, file.count - i)
        try file[i ..< i + n].withUnsafeBytes { try d.feed($0) { out += $0 } }
        i += n
    }
    try d.finish { out += $0 }
    return out
}

/// Runs a command with files (binary input and output go through files, not strings).
@discardableResult
func run(_ argv: [String]) throws -> ProcessResult {
    let r = try Subprocess.run(argv)
    guard r.succeeded else { throw ToolError("\(argv.joined(separator: " ")) exited \(r.status): \(r.stderr)") }
    return r
}

func readFile(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }
func writeFile(_ path: String, _ bytes: [UInt8]) throws { try Data(bytes).write(to: URL(fileURLWithPath: path)) }
