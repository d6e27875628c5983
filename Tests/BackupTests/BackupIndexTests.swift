import Foundation
import Testing
@testable import Backup
@testable import BackupOps
import Storage
import Support
import TestSupport

private func digest(_ byte: UInt8) -> Digest { Digest([UInt8](repeating: byte, count: 32)) }

private let sample = BackupIndex(
    id: "20261127T030000Z", kind: .incremental, parent: "20261126T030000Z", started: 1795748400.25, clock: 1795748399.5,
    recipients: digest(7),
    archives: [StoredFile(id: "20261120T030000Z", size: 1234567, sha256: nil),
               StoredFile(id: "20261127T030000Z", size: 42, sha256: digest(0xAB))],
    manifest: StoredFile(id: "20261127T030000Z", size: 999, sha256: digest(1)))

@Suite struct BackupIndexFormatTests {
    @Test func roundTrips() throws {
        #expect(try BackupIndex.decode(sample.encoded(), name: "x", expectedID: sample.id) == sample)
        let full = BackupIndex(id: "20261127T030000Z-01", kind: .full, parent: nil, started: 1, archives: [],
                               manifest: StoredFile(id: "20261127T030000Z-01", size: 0, sha256: digest(2)))
        let back = try BackupIndex.decode(full.encoded(), name: "x")
        #expect(back == full)
        #expect(!back.isEncrypted && sample.isEncrypted)
    }

    @Test func textIsWhatTheFormatSays() {
        let text = String(decoding: sample.encoded(), as: UTF8.self)
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines.first == "hs-backup-index 1")
        #expect(lines.contains("archive 20261120T030000Z 1234567 -"))
        #expect(lines.contains("archive 20261127T030000Z 42 " + String(repeating: "ab", count: 32)))
        #expect(lines.contains("recipients " + String(repeating: "07", count: 32)))
        #expect(lines.last?.hasPrefix("end ") == true)
    }

    enum Damage: String, CaseIterable, Sendable { case truncated, flipped, empty, binary, otherFile }

    /// Each way an index can be wrong gives its own kind, naming the file.
    @Test(arguments: Damage.allCases)
    func damageIsTyped(_ damage: Damage) {
        let good = sample.encoded()
        let (bytes, kind): ([UInt8], IndexError.Kind) = switch damage {
        case .truncated: (Array(good.dropLast(10)), .truncated)
        case .flipped: ({ var c = good; c[30] ^= 1; return c }(), .checksumMismatch)
        case .empty: ([], .truncated)
        case .binary: ([0xFF, 0xFE, 0x0A], .notText)
        case .otherFile: (Array("hello\nend x\n".utf8), .notAnIndex)
        }
        #expect(throws: IndexError("DEST/t/x.index", kind), "\(damage)") {
            try BackupIndex.decode(bytes, name: "DEST/t/x.index")
        }
        #expect(IndexError("DEST/t/x.index", kind).description.contains("DEST/t/x.index"))
    }

    /// Re-sealed bodies (a valid checksum over wrong content) are refused line by line.
    @Test(arguments: [
        ("hs-backup-index 2\nid 20261127T030000Z\n", IndexError.Kind.newerFormat(2)),
        ("hs-backup-index 1\nid 20261127T030000Z\nkind full\nparent -\nstarted 1\nmanifest 1 -\nsize 3\n", .badLine(7, "unknown key 'size'")),
        ("hs-backup-index 1\nid 20261127T030000Z\nid 20261127T030000Z\n", .badLine(3, "'id' given twice")),
        ("hs-backup-index 1\nid ../../etc/passwd\n", .badLine(2, "not a backup id")),
        ("hs-backup-index 1\nid 20261127T030000Z\nkind full\nparent -\nstarted 1\n", .missing("manifest")),
        ("hs-backup-index 1\nid 20261127T030000Z\nkind full\nparent 20261126T030000Z\nstarted 1\nmanifest 1 -\n",
         .badLine(0, "a full backup names a parent")),
        ("hs-backup-index 1\nid 20261127T030000Z\nkind full\nparent -\nstarted 1\nmanifest -1 -\n", .badLine(6, "the size is not a number")),
        ("hs-backup-index 1\nid 20261127T030000Z\nkind full\nparent -\nstarted 1\nmanifest 1 ABCD\n",
         .badLine(6, "the hash is not a SHA-256 in hex")),
    ])
    func contentIsChecked(_ body: String, _ kind: IndexError.Kind) {
        var bytes = Array(body.utf8)
        bytes += Array("end \(hexString(SHA256Hasher.hash(bytes)))\n".utf8)
        #expect(throws: IndexError("n", kind)) { try BackupIndex.decode(bytes, name: "n") }
    }

    @Test func anIndexUnderAnotherNameIsRefused() {
        #expect(throws: IndexError("n", .idMismatch(found: sample.id))) {
            try BackupIndex.decode(sample.encoded(), name: "n", expectedID: "20261128T030000Z")
        }
    }
}

/// Indexes written by real backups, on a local directory and on nfs-ganesha.
@Suite struct BackupIndexRunTests {
    private static func sha(_ path: String) throws -> Digest {
        Digest(SHA256Hasher.hash(Array(try Data(contentsOf: URL(fileURLWithPath: path)))))
    }

    private static func files(_ dest: TestDestination, _ set: String) throws -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        for e in try dest.destination.list(set) { out[e.name] = try dest.destination.readAll("\(set)/\(e.name)") }
        return out
    }

    @Test(arguments: DestKind.allCases)
    func eachBackupHasAnIndexOfWhatItStored(_ kind: DestKind) throws {
        let src = try TempDir("idx-src")
        try Tree.makeSample(src.path)
        let marker = "MARKER-name-\(UUID().uuidString)"
        try Tree.write(src.sub(marker), "content")
        let dest = try TestDestination(kind)
        let first = try backup(src.path, dest, full: true)
        try Tree.write(src.sub("new.txt"), "changed \(marker)")
        let second = try backup(src.path, dest)
        #expect(second.kind == "incremental")
        let set = BackupSet(destination: dest.destination, name: "t")
        let files = try Self.files(dest, "t")
        func stored(_ name: String) -> StoredFile {
            let b = files[name]!
            return StoredFile(id: String(name.prefix { $0 != "." }), size: UInt64(b.count), sha256: Digest(SHA256Hasher.hash(b)))
        }
        let i1 = try #require(try set.readIndex(first.id))
        #expect(i1.kind == .full && i1.parent == nil && i1.recipients == nil)
        #expect(i1.archives == [stored("\(first.id).tar.gz")])
        #expect(i1.manifest == stored("\(first.id).manifest"))
        let i2 = try #require(try set.readIndex(second.id))
        #expect(i2.kind == .incremental && i2.parent == first.id)
        #expect(i2.archives == [stored("\(first.id).tar.gz"), stored("\(second.id).tar.gz")])
        #expect(i2.manifest == stored("\(second.id).manifest"))
        let header = try set.loadHeader(second.id)
        #expect(i2.started == header.started)
        // No name, path or content of the tree in any index.
        for (name, bytes) in files where name.hasSuffix(".index") {
            let text = String(decoding: bytes, as: UTF8.self)
            #expect(!text.contains("MARKER") && !text.contains(src.path), "\(name)")
        }
    }

    @Test func anIndexWithoutItsManifestIsALeftoverOnlyWhenPartial() throws {
        let src = try TempDir("idx-src")
        try Tree.makeSample(src.path)
        let dest = try TestDestination(.local)
        let first = try backup(src.path, dest, full: true)
        let set = BackupSet(destination: dest.destination, name: "t")
        let index = try #require(try set.readIndex(first.id))
        // A run killed between its index and its manifest's rename: the index still has its
        // `.partial` name (it gets its final name after the commit), a provable leftover.
        var leftover = index
        leftover.id = "29991231T235959Z"
        leftover.manifest.id = leftover.id
        try set.writeIndex(leftover)
        // An index under its final name whose manifest was lost: damage, kept and reported,
        // also when it is the newest (a lost manifest must not cost its files too).
        for id in ["20000101T000000Z", "29991231T235958Z"] {
            var orphan = index
            orphan.id = id
            orphan.manifest.id = orphan.id
            try dest.destination.writeAtomically(set.indexPath(id), contents: orphan.encoded())
        }
        let report = try set.cleanUpReport()
        #expect(report.removed == ["29991231T235959Z.index.partial"])
        #expect(report.warnings.contains { $0.contains("20000101T000000Z.index") })
        #expect(report.warnings.contains { $0.contains("29991231T235958Z.index") })
        #expect(try set.readIndex(first.id) == index)
    }

    @Test func pruneRemovesTheIndexWithItsBackup() throws {
        let src = try TempDir("idx-src")
        try Tree.makeSample(src.path)
        let dest = try TestDestination(.local)
        let first = try backup(src.path, dest, full: true)
        Thread.sleep(forTimeInterval: 1.1)
        let second = try backup(src.path, dest, full: true)
        let set = BackupSet(destination: dest.destination, name: "t")
        _ = try Pruner.prune(set: set, policy: RetentionPolicy(keepLast: 1), dryRun: false, reporter: nil)
        #expect(try set.readIndex(first.id) == nil)
        #expect(try set.readIndex(second.id) != nil)
        #expect(!FileManager.default.fileExists(atPath: dest.dir.sub("t/\(first.id).tar.gz")))
    }
}
