// Browse on an encrypted set (every archive and manifest an age file): ls, find, diff and dump
// with --identity print exactly what they print on the same set decrypted by Debian's age, the
// mount shows every backup as the source was; without --identity (or with another key) each
// command refuses clearly.
import Foundation
import Testing
@testable import Browse
import Backup
import Support
import TestSupport

/// The chain backed up encrypted to a key made by age-keygen, and the same destination
/// decrypted file by file with `age -d` (one per suite: three backups take a few seconds).
final class EncryptedChain: Sendable {
    let chain: BackupChain
    let key: String
    let otherKey: String
    /// The destination with every age file decrypted by Debian's age (other files copied).
    let plain: String
    /// Holds the keys, the local manifest copies and `plain` (kept for the whole run).
    private let keys: TempDir

    private static let made: Result<EncryptedChain, any Error> = Result { try EncryptedChain() }
    static func get() throws -> EncryptedChain { try made.get() }

    private init() throws {
        keys = try TempDir("hs-browse-keys")
        TempDirsAtExit.add(keys.path)
        key = keys.sub("key.txt")
        otherKey = keys.sub("other.txt")
        try Subprocess.checked(["age-keygen", "-o", key])
        try Subprocess.checked(["age-keygen", "-o", otherKey])
        let recipient = try Subprocess.checked(["age-keygen", "-y", key]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        chain = try BackupChain(runArguments: ["--recipient", recipient, "--state-dir", keys.sub("state")])
        TempDirsAtExit.add(chain.tmp.path)
        plain = keys.sub("plain")
        let from = chain.dest + "/" + chain.set, to = plain + "/" + chain.set
        try FileManager.default.createDirectory(atPath: to, withIntermediateDirectories: true)
        for name in try FileManager.default.contentsOfDirectory(atPath: from).sorted() {
            let head = try ByteFS.read(Array((from + "/" + name).utf8)).prefix(21)
            if Array(head) == Array("age-encryption.org/v1".utf8) {
                try Subprocess.checked(["age", "-d", "-i", key, "-o", to + "/" + name, from + "/" + name])
            } else {
                try Subprocess.checked(["cp", "-a", from + "/" + name, to + "/" + name])
            }
        }
    }
}

private func hsBackup(_ args: [String]) throws -> ProcessResult { try Tools.run("hs-backup", args) }

/// Runs hs-backup with stdout into a file (dump's bytes need not be UTF-8): status, stderr, stdout's bytes.
private func hsBackupBytes(_ args: [String], _ out: String) throws -> (status: Int32, stderr: String, stdout: [UInt8]) {
    let r = try Subprocess.run(["/bin/sh", "-c", "exec \"$0\" \"$@\" > \"$OUT\"", Tools.path("hs-backup")] + args, environment: ["OUT": out])
    return (r.status, r.stderr, try ByteFS.read(Array(out.utf8)))
}

@Suite(.serialized) struct EncryptedBrowseTests {
    @Test("the set is encrypted: every archive and manifest is an age file that holds no name of the source in the clear")
    func storedFilesAreAgeFiles() throws {
        let e = try EncryptedChain.get()
        for id in e.chain.ids {
            for ext in ["tar.gz", "manifest"] {
                let bytes = try ByteFS.read(Array("\(e.chain.dest)/\(e.chain.set)/\(id).\(ext)".utf8))
                #expect(Array(bytes.prefix(21)) == Array("age-encryption.org/v1".utf8), "\(id).\(ext)")
                #expect(!bytes.withUnsafeBytes { Data($0) }.contains(Data("config.xml".utf8)), "\(id).\(ext) holds a name in the clear")
            }
        }
    }

    @Test("ls, find, diff and dump with --identity print what they print on the set decrypted by age")
    func sameAsDecrypted() throws {
        let e = try EncryptedChain.get()
        let c = e.chain
        let (a, b) = (c.ids[0], c.ids[1])
        let commands: [[String]] = [
            ["ls", "-R"], ["ls", "--backup", a, "-R", "media"], ["ls", "--backup", b, "radarr/config.xml"],
            ["find", "config.xml", "*caf*", "hard/?"],
            ["diff", a, b], ["diff", b, "latest"],
            ["dump", "--backup", a, "radarr/config.xml"], ["dump", "plex/big.bin"], ["dump", "--backup", b, "radarr"],
        ]
        let tmp = try TempDir("hs-browse-enc")
        for cmd in commands {
            let enc = try hsBackupBytes(cmd + ["--to", c.dest, "--name", c.set, "--identity", e.key], tmp.sub("enc"))
            let dec = try hsBackupBytes(cmd + ["--to", e.plain, "--name", c.set], tmp.sub("dec"))
            #expect(enc.status == 0 && dec.status == 0, "\(cmd): \(enc.stderr) \(dec.stderr)")
            #expect(enc.stdout == dec.stdout, "\(cmd): encrypted and decrypted sets differ")
            #expect(enc.stdout.count > 10, "\(cmd): printed nothing")
        }
        // The big file (over several members, several 64 KiB age chunks) is the source's bytes.
        let big = try hsBackupBytes(["dump", "--to", c.dest, "--name", c.set, "--identity", e.key, "plex/big.bin"], tmp.sub("big"))
        let source = try ByteFS.read(Array((c.copies[2] + "/plex/big.bin").utf8))
        #expect(big.status == 0 && big.stdout == source, "\(big.stderr)")
    }

    @Test("without --identity every command says the set is encrypted and how to give the key (exit 2); another key fails naming the file")
    func refusedWithoutTheKey() throws {
        let e = try EncryptedChain.get()
        let c = e.chain
        let tmp = try TempDir("hs-browse-enc")
        for cmd in [["ls"], ["find", "config.xml"], ["diff", c.ids[0], c.ids[1]], ["dump", "radarr/config.xml"], ["mount", tmp.path]] {
            let r = try hsBackup(cmd + ["--to", c.dest, "--name", c.set])
            #expect(r.status == 2, "\(cmd): \(r.status) \(r.stderr)")
            #expect(r.stderr.contains("is encrypted (an age file): give --identity KEYFILE"), "\(cmd): \(r.stderr)")
            #expect(r.stdout.isEmpty || cmd[0] == "mount", "\(cmd): \(r.stdout)")
            let other = try hsBackup(cmd + ["--to", c.dest, "--name", c.set, "--identity", e.otherKey])
            #expect(other.status != 0 && other.stderr.contains(c.set), "\(cmd) with another key: \(other.status) \(other.stderr)")
        }
        #expect(!MountProcess.isMounted(tmp.path))
    }

    @Test("mounted with --identity, every backup equals the source as it was")
    func mounted() throws {
        let e = try EncryptedChain.get()
        let tmp = try TempDir("hs-mount-enc")
        let mp = tmp.sub("mnt")
        try FileManager.default.createDirectory(atPath: mp, withIntermediateDirectories: true)
        let m = try MountProcess(["--to", e.chain.dest, "--identity", e.key], mountpoint: mp, log: tmp.sub("log"))
        try MountTests.compareMounted(e.chain, mp)
        #expect(m.stop() == 0)
    }
}
