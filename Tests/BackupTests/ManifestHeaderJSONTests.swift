// The manifest header is written without JSONEncoder (issue 23, start-up): its bytes must be
// exactly JSONEncoder's with .sortedKeys, or manifests would change between versions.
@testable import Backup
import Foundation
import Testing

@Suite struct ManifestHeaderJSONTests {
    static func encoderBytes(_ h: ManifestHeader) throws -> [UInt8] {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        return [UInt8](try enc.encode(h))
    }

    static let strings = ["", "20261206T224438Z", "/opt/appdata", "a/b\\c\"d", "tab\tnew\nline\r\u{08}\u{0C}", "ctl\u{00}\u{01}\u{0B}\u{1F}\u{7F}",
                          "é中😀\u{2028}\u{FEFF}", "warning: file 'x' vanished", "0.5.0"]
    static let doubles: [Double] = [0, -0.0, 3, 0.1, 1_765_061_078.123456, 1e-05, .leastNonzeroMagnitude, 1e16, 1e15, 1.5e300, 2.5e-07, 100,
                                    0.012345678901234, 1.0 / 3, 86_400 * 14, 1_765_061_078]

    @Test("sortedKeysJSON is JSONEncoder's .sortedKeys output, byte for byte")
    func sameBytesAsJSONEncoder() throws {
        var rng = SystemRandomNumberGenerator()
        func s() -> String { Self.strings.randomElement(using: &rng)! }
        func d() -> Double { Bool.random() ? Self.doubles.randomElement(using: &rng)! : Double.random(in: -1e6 ... 2e9) }
        func i() -> Int { [0, 1, -1, 42, Int.max, Int.min, Int.random(in: -1_000_000 ... 1_000_000)].randomElement(using: &rng)! }
        func u() -> UInt64 { [0, 1, UInt64.max, UInt64.random(in: 0 ... 1 << 50)].randomElement(using: &rng)! }
        for round in 0 ..< 400 {
            let some = round % 4 != 0   // every fourth header: every optional nil
            var h = ManifestHeader(format: round % 3 + 1, id: s(), kind: Bool.random() ? "full" : "incremental", parent: some ? s() : nil,
                                   archives: (0 ..< round % 4).map { _ in s() }, archive: some ? s() : nil, toolVersion: s(), source: s(),
                                   started: d(), seconds: d(), files: i(), directories: i(), symlinks: i(), filesArchived: i(),
                                   treeBytes: u(), bytesIn: u(), bytesOut: u(), warnings: (0 ..< round % 3).map { _ in s() },
                                   sinceFull: some ? i() : nil, fullID: some ? s() : nil, fullStarted: some ? d() : nil,
                                   scanFlags: some ? i() : nil,
                                   body: some ? (0 ..< round % 3).map { _ in ManifestChunk(length: i(), compressed: i(), sha256: s()) } : nil,
                                   archiveSlots: some ? (0 ..< round % 5).map { _ in s() } : nil)
            h.entries = some ? i() : nil
            h.filesMissing = some && Bool.random() ? i() : nil
            let ours = try h.sortedKeysJSON()
            let theirs = try Self.encoderBytes(h)
            #expect(ours == theirs, "\(String(decoding: ours, as: UTF8.self))\n\(String(decoding: theirs, as: UTF8.self))")
            #expect(try JSONDecoder().decode(ManifestHeader.self, from: Data(ours)) == h)
        }
    }

    @Test("every stored field of ManifestHeader is written (a new field cannot be left out silently)")
    func everyFieldIsWritten() throws {
        var h = ManifestHeader(id: "20261206T224438Z", kind: "incremental", parent: "p", archives: ["a"], archive: "a", toolVersion: "v",
                               source: "/s", started: 1, seconds: 2, files: 3, directories: 4, symlinks: 5, filesArchived: 6,
                               treeBytes: 7, bytesIn: 8, bytesOut: 9, warnings: ["w"], sinceFull: 1, fullID: "f", fullStarted: 1,
                               scanFlags: 1, body: [ManifestChunk(length: 1, compressed: 1, sha256: "x")], archiveSlots: ["s"])
        h.entries = 1
        h.filesMissing = 1
        let stored = Mirror(reflecting: h).children.compactMap(\.label)
        #expect(Mirror(reflecting: h).children.allSatisfy { child in
            guard let o = child.value as? any OptionalProtocolForTests else { return true }
            return o.isSome
        }, "set every optional above, or this test cannot see a field that is left out")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(try h.sortedKeysJSON())) as? [String: Any])
        #expect(Set(object.keys) == Set(stored), "written \(object.keys.sorted()), stored \(stored.sorted())")
        #expect(try h.sortedKeysJSON() == Self.encoderBytes(h))
    }

    @Test("a non-finite time throws as JSONEncoder does")
    func nonFiniteThrows() throws {
        let h = ManifestHeader(id: "x", kind: "full", parent: nil, archives: [], archive: nil, toolVersion: "v", source: "/s",
                               started: .nan, seconds: 0, files: 0, directories: 0, symlinks: 0, filesArchived: 0,
                               treeBytes: 0, bytesIn: 0, bytesOut: 0, warnings: [])
        #expect(throws: (any Error).self) { try Self.encoderBytes(h) }
        #expect(throws: (any Error).self) { try h.sortedKeysJSON() }
    }
}

/// Lets the test above ask whether a reflected optional holds a value.
protocol OptionalProtocolForTests { var isSome: Bool { get } }
extension Optional: OptionalProtocolForTests { var isSome: Bool { self != nil } }
