import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Testing
@testable import Backup
@testable import BackupOps
import Crypto
import Gzip
import Restore
import Storage
import Support
import TestSupport

/// A key made by Debian's age-keygen: its file and public key.
struct AgeKey {
    let path: String
    let recipient: String

    init(_ dir: TempDir, _ name: String) throws {
        path = dir.sub(name)
        try Subprocess.checked(["age-keygen", "-o", path])
        recipient = try Subprocess.checked(["age-keygen", "-y", path]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    var identities: [AgeIdentity] { get throws { try SetKeys.identities(files: [path]) } }
}

/// A backup made the way a guest makes it: recipients only, no identity anywhere near it.
func encryptedBackup(_ src: String, _ dest: TestDestination, recipients: [String], state: String, set: String = "t",
                     full: Bool = false, rotate: Bool = false, provider: (any ContentProvider)? = nil,
                     reporter: Reporter = quiet) throws -> BackupSummary {
    var o = BackupOptions(source: src, destination: dest.destination, set: set)
    o.forceFull = full
    o.encryption.recipients = try SetKeys.recipients(recipients, files: [])
    o.encryption.rotateKeys = rotate
    o.encryption.stateDirectory = state
    o.contentProvider = provider
    return try BackupRunner(options: o, reporter: reporter).run()
}

func restoreEncrypted(_ dest: TestDestination, id: String = "latest", to: String, identities: [AgeIdentity], set: String = "t") throws -> RestoreSummary {
    let source = try BackupRestore.source(destination: dest.destination, set: set, backup: id, selection: .everything, identities: identities)
    return try RestoreExecutor(target: to).run(source)
}

/// A reporter that keeps the warnings it is given (what cron mail would show).
final class WarningLog: Sendable {
    private let lines = Mutex<[String]>([])
    var all: [String] { lines.withLock { $0 } }
    func add(_ s: String) { lines.withLock { $0.append(s) } }
}

/// Copies every file of the set directory (names and bytes) when the scan reaches the file
/// named `trigger`: the lock, the `.partial` archive and manifest of the run in progress.
final class DestinationSnapshotter: ContentProvider {
    let destination: any Destination
    let set: String
    let trigger: String
    private let taken = Mutex<[(name: String, bytes: [UInt8])]>([])
    var files: [(name: String, bytes: [UInt8])] { taken.withLock { $0 } }

    init(_ destination: any Destination, set: String, trigger: String, waitForPartialBytes: UInt64 = 0) {
        self.waitForPartialBytes = waitForPartialBytes
        self.destination = destination
        self.set = set
        self.trigger = trigger
    }

    func interest(relativePath: [UInt8], size: UInt64) -> ContentInterest {
        // Asked when the file is read for the archive: the files before it are in the archive writer.
        relativePath.split(separator: 0x2F).last.map { Array($0) } == Array(trigger.utf8) ? .ifContentStarts(with: Array("trig".utf8)) : .none
    }

    /// Waits (up to 60 s) until the run's partial archive holds this many bytes: the archive
    /// is written by other threads while the scan waits here.
    let waitForPartialBytes: UInt64

    func plan(relativePath: String, absolutePath: String, size: UInt64) throws -> ContentPlan {
        let deadline = Date().addingTimeInterval(60)
        while waitForPartialBytes > 0, Date() < deadline,
              try !destination.list(set).contains(where: { $0.name.hasSuffix(".tar.gz.partial") && $0.size >= waitForPartialBytes }) {
            Thread.sleep(forTimeInterval: 0.05)
        }
        var got: [(String, [UInt8])] = []
        for e in try destination.list(set) where e.kind == .file { got.append((e.name, try destination.readAll("\(set)/\(e.name)"))) }
        taken.withLock { $0 += got }
        return .asIs
    }
}

@Suite struct EncryptedSetTests {
    /// Every view of a stored file a reader without the key could get: its bytes, and what
    /// gzip makes of them (the whole file, or from its first gzip member on: a manifest's
    /// body follows its magic).
    static func plaintextViews(_ bytes: [UInt8]) -> [[UInt8]] {
        var views = [bytes]
        if let all = try? GzipDecoder.decompress(bytes) { return views + [all] }
        if let start = (0 ..< max(0, bytes.count - 3)).first(where: { bytes[$0] == 0x1F && bytes[$0 + 1] == 0x8B && bytes[$0 + 2] == 0x08 }) {
            var out: [UInt8] = []
            try? GzipDecoder().feed(Array(bytes[start...])) { out.append(contentsOf: $0) }
            views.append(out)
        }
        return views
    }

    static func contains(_ hay: [UInt8], _ needle: String) -> Bool {
        let n = Array(needle.utf8)
        guard hay.count >= n.count else { return false }
        return hay.withUnsafeBytes { h in
            n.withUnsafeBytes { m in
                // memchr for the first byte, memcmp for the rest (memmem is not in Swift's Glibc).
                var at = h.baseAddress!
                let last = h.baseAddress! + (h.count - m.count)
                while at <= last, let hit = memchr(at, Int32(n[0]), last - at + 1) {
                    if memcmp(hit, m.baseAddress!, m.count) == 0 { return true }
                    at = UnsafeRawPointer(hit) + 1
                }
                return false
            }
        }
    }

    /// Which markers a set of stored files shows, by name and by any plaintext view.
    static func markersFound(_ files: [(name: String, bytes: [UInt8])], _ markers: [String]) -> Set<String> {
        var found = Set<String>()
        for f in files {
            let views = plaintextViews(f.bytes)
            for m in markers where f.name.contains(m) || views.contains(where: { contains($0, m) }) { found.insert(m) }
        }
        return found
    }

    static func allFiles(_ d: any Destination, _ dir: String = "") throws -> [(name: String, bytes: [UInt8])] {
        var out: [(String, [UInt8])] = []
        for e in try d.list(dir) {
            let p = dir.isEmpty ? e.name : dir + "/" + e.name
            if e.kind == .directory { out += try allFiles(d, p) } else { out.append((p, try d.readAll(p))) }
        }
        return out
    }

    /// A tree with markers in file and directory names, in the source directory's own name, and
    /// inside incompressible (stored) content, plus enough files before the trigger that the
    /// run has written archive bytes when the snapshot is taken.
    static func markedTree(_ work: TempDir, nameMarker: String, contentMarker: String) throws -> String {
        let src = work.sub("appdata-\(nameMarker)-src")
        try Tree.makeSample(src)
        for i in 0 ..< 1500 { try Tree.writeBytes(src + "/filler/f\(i / 100)/\(i).bin", noise(2048, seed: UInt64(i + 1))) }
        var secret = noise(200_000, seed: 99)
        secret.replaceSubrange(100_000 ..< 100_000 + contentMarker.utf8.count, with: Array(contentMarker.utf8))
        try Tree.writeBytes(src + "/vault-\(nameMarker)/secret-\(nameMarker).key", secret)
        try Tree.write(src + "/zzzz/trigger", "trigger")
        return src
    }

    @Test(arguments: DestKind.allCases)
    func encryptedSetHoldsNoPlaintextNameOrContent(_ kind: DestKind) throws {
        let work = try TempDir("enc-markers")
        let nameMarker = "NAMEMARK\(UInt32.random(in: 100_000 ... 999_999))"
        let contentMarker = "CONTENTMARK\(UInt32.random(in: 100_000 ... 999_999))"
        let newMarker = "NEWMARK\(UInt32.random(in: 100_000 ... 999_999))"
        let src = try Self.markedTree(work, nameMarker: nameMarker, contentMarker: contentMarker)
        let key = try AgeKey(work, "key.txt")
        let markers = [nameMarker, contentMarker, newMarker]

        var seen: [String: [(name: String, bytes: [UInt8])]] = [:]
        for encrypted in [false, true] {
            let dest = try TestDestination(kind)
            let set = encrypted ? "enc" : "plain"
            var files: [(name: String, bytes: [UInt8])] = []
            for round in 0 ..< 2 {
                if round == 1 {
                    var more = noise(100_000, seed: 7)
                    more.replaceSubrange(500 ..< 500 + newMarker.utf8.count, with: Array(newMarker.utf8))
                    try Tree.writeBytes(src + "/added-\(newMarker).bin", more)
                    try Tree.write(src + "/zzzz/trigger", "trigger \(round)")
                }
                let snap = DestinationSnapshotter(dest.destination, set: set, trigger: "trigger", waitForPartialBytes: round == 0 ? 256 << 10 : 0)
                let s: BackupSummary
                if encrypted {
                    s = try encryptedBackup(src, dest, recipients: [key.recipient], state: work.sub("state"), set: set, provider: snap)
                } else {
                    var o = BackupOptions(source: src, destination: dest.destination, set: set)
                    o.contentProvider = snap
                    s = try BackupRunner(options: o, reporter: quiet).run()
                }
                #expect(s.kind == (round == 0 ? "full" : "incremental"))
                // The snapshot saw the run in progress: its lock and its partial files.
                #expect(snap.files.contains { $0.name == "lock" })
                #expect(snap.files.contains { $0.name.hasSuffix(".tar.gz.partial") && $0.bytes.count >= (round == 0 ? 256 << 10 : 0) })
                #expect(snap.files.contains { $0.name.hasSuffix(".manifest.partial") })
                files += snap.files
            }
            files += try Self.allFiles(dest.destination)
            seen[set] = files
        }
        // The check can see markers: the unencrypted set shows every one of them...
        #expect(Self.markersFound(seen["plain"]!, markers) == Set(markers))
        // ...and the encrypted set none, in no file and no name, mid-run files included.
        #expect(Self.markersFound(seen["enc"]!, markers).isEmpty)
        #expect(seen["enc"]!.filter { $0.name.hasSuffix(".tar.gz") || $0.name.hasSuffix(".manifest") }
            .allSatisfy { Age.looksLikeAgeFile($0.bytes) })
    }

    @Test(arguments: DestKind.allCases)
    func guestWithOnlyThePublicKeyMakesIncrementalsThatRestoreWithTheIdentity(_ kind: DestKind) throws {
        let work = try TempDir("enc-chain")
        let src = work.sub("src")
        try Tree.makeSample(src)
        let key = try AgeKey(work, "key.txt")
        let dest = try TestDestination(kind)
        let state = work.sub("state")
        let full = try encryptedBackup(src, dest, recipients: [key.recipient], state: state)
        #expect(full.kind == "full")
        try Tree.copy(src, work.sub("v1"))   // the tree as the full backup saw it
        try Tree.write(src + "/radarr/config.xml", "<Config><Port>7979</Port></Config>\n", mode: 0o600)
        try Tree.write(src + "/new/file.txt", "new\n")
        try FileManager.default.removeItem(atPath: src + "/homepage/empty")
        let inc = try encryptedBackup(src, dest, recipients: [key.recipient], state: state)
        #expect(inc.kind == "incremental" && inc.parent == full.id)
        #expect(inc.filesArchived == 2, "only the changed files are archived again")

        // The index records the recipients; everything stored is an age file.
        let set = BackupSet(destination: dest.destination, name: "t")
        let index = try #require(try set.readIndex(inc.id))
        #expect(index.recipients?.bytes == RecipientSet([try AgeRecipient(parsing: key.recipient, name: "")]).fingerprint)
        #expect(index.archives.map(\.id) == [full.id, inc.id])

        // Restores exactly with the identity.
        let out = work.sub("out")
        _ = try restoreEncrypted(dest, to: out, identities: try key.identities)
        let d = Tree.diff(try Tree.describe(src, skipping: [cacheDir]), try Tree.describe(out))
        #expect(d.isEmpty, "\(d.prefix(5))")
        // Fails clearly without it, and with another key.
        do {
            _ = try restore(dest, id: "latest", to: work.sub("out2"))
            Issue.record("restored an encrypted set without an identity")
        } catch let e as EncryptionError {
            guard case .identityRequired = e.kind else { Issue.record("\(e)"); return }
            #expect(e.exitCode == 2 && e.description.contains("--identity") && e.description.contains("\(inc.id).manifest"))
        }
        let stranger = try AgeKey(work, "stranger.txt")
        #expect(throws: EncryptionError.self) { try restoreEncrypted(dest, to: work.sub("out3"), identities: try stranger.identities) }
        #expect(!FileManager.default.fileExists(atPath: work.sub("out3/radarr")))

        // The full archive comes back with stock tools: `age -d | tar -xz` gives exactly what
        // the unencrypted archive of the same tree gives.
        let archive = work.sub("full.tar.gz.age")
        try Data(try dest.destination.readAll("t/\(full.id).tar.gz")).write(to: URL(fileURLWithPath: archive))
        let plainDest = try TestDestination(.local)
        let plainFull = try backup(work.sub("v1"), plainDest, full: true)
        let (xEnc, xPlain) = (work.sub("x-enc"), work.sub("x-plain"))
        for d in [xEnc, xPlain] { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true) }
        try Subprocess.checked(["bash", "-c", "set -o pipefail; age -d -i \"$1\" \"$2\" | tar --numeric-owner -xzpf - -C \"$3\"",
                                "bash", key.path, archive, xEnc])
        try Subprocess.checked(["tar", "--numeric-owner", "-xzpf", plainDest.dir.sub("t/\(plainFull.id).tar.gz"), "-C", xPlain])
        let got = try Tree.describe(xEnc), want = try Tree.describe(xPlain)
        #expect(got.count > 10 && Tree.diff(want, got).isEmpty, "\(Tree.diff(want, got).prefix(5))")
    }
}

/// Deterministic incompressible bytes.
func noise(_ count: Int, seed: UInt64) -> [UInt8] {
    var x = seed | 1
    return (0 ..< count).map { _ in
        x ^= x << 13; x ^= x >> 7; x ^= x << 17
        return UInt8(truncatingIfNeeded: x)
    }
}
