import Foundation
import Testing
@testable import Backup
@testable import BackupOps
import Crypto
import Restore
import Storage
import Support
import TestSupport

/// The rules of an encrypted set: where the previous manifest comes from, whose recipients a
/// run may use, what verify and restore do with damage, and what works without the key.
@Suite struct EncryptedSetRuleTests {
    final class Fixture {
        let work: TempDir
        let src: String
        let key: AgeKey
        let dest: TestDestination
        let state: String
        let log = WarningLog()
        var reporter: Reporter { Reporter(mode: .plain) }

        init(_ kind: DestKind = .local) throws {
            work = try TempDir("enc-rules")
            src = work.sub("src")
            try Tree.makeSample(src)
            key = try AgeKey(work, "key.txt")
            dest = try TestDestination(kind)
            state = work.sub("state")
        }

        /// A run whose warnings are kept in the summary.
        func run(_ recipients: [String]? = nil, full: Bool = false, rotate: Bool = false, state: String? = nil) throws -> BackupSummary {
            try encryptedBackup(src, dest, recipients: recipients ?? [key.recipient], state: state ?? self.state, full: full, rotate: rotate)
        }

        func touch(_ n: Int) throws { try Tree.write(src + "/changes/\(n).txt", "change \(n)\n") }
    }

    @Test func aMissingOrStaleLocalCopyMakesAFullBackupAndSaysWhy() throws {
        let f = try Fixture()
        _ = try f.run()
        try f.touch(1)
        #expect(try f.run().kind == "incremental")

        // The state directory was reset (a reinstalled guest).
        try FileManager.default.removeItem(atPath: f.state)
        try f.touch(2)
        var s = try f.run()
        #expect(s.kind == "full")
        #expect(s.warnings.contains { $0.contains("taking a full backup") && $0.contains("no local copy") }, "\(s.warnings)")
        try f.touch(3)
        #expect(try f.run().kind == "incremental")

        // Another host (another state directory) wrote the newest backup: this host's copy is stale.
        try f.touch(4)
        _ = try f.run(state: f.work.sub("other-host-state"))
        try f.touch(5)
        s = try f.run()
        #expect(s.kind == "full")
        #expect(s.warnings.contains { $0.contains("is of backup") && $0.contains("newest backup is") }, "\(s.warnings)")

        // The newest index was changed on the destination.
        try f.touch(6)
        let ids = try BackupSet(destination: f.dest.destination, name: "t").committedIDs()
        let set = BackupSet(destination: f.dest.destination, name: "t")
        var index = try #require(try set.readIndex(ids.last!))
        index.started += 1
        try set.writeIndex(index)
        s = try f.run()
        #expect(s.kind == "full")
        #expect(s.warnings.contains { $0.contains("not the one this host wrote") }, "\(s.warnings)")

        // The local copy itself is damaged.
        try f.touch(7)
        let dir = try #require(try FileManager.default.contentsOfDirectory(atPath: f.state + "/sets").first)
        let manifest = f.state + "/sets/\(dir)/manifest"
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: manifest)))
        bytes[bytes.count / 2] ^= 1
        try Data(bytes).write(to: URL(fileURLWithPath: manifest))
        s = try f.run()
        #expect(s.kind == "full")
        #expect(s.warnings.contains { $0.contains("damaged") }, "\(s.warnings)")
        // Each of those full backups restores exactly.
        let out = f.work.sub("out")
        _ = try restoreEncrypted(f.dest, to: out, identities: try f.key.identities)
        #expect(Tree.diff(try Tree.describe(f.src, skipping: [cacheDir]), try Tree.describe(out)).isEmpty)
        #expect(try FileManager.default.attributesOfItem(atPath: manifest)[.posixPermissions] as? Int == 0o600)
    }

    @Test func recipientsComeFromTheRunAndAChangeNeedsRotateKeys() throws {
        let f = try Fixture()
        let first = try f.run()
        let other = try AgeKey(f.work, "new.txt")
        let old = RecipientSet([try AgeRecipient(parsing: f.key.recipient, name: "")])
        let new = RecipientSet([try AgeRecipient(parsing: other.recipient, name: "")])

        // Different recipients: an error naming both, nothing written.
        do {
            _ = try f.run([other.recipient])
            Issue.record("a run with other recipients was accepted")
        } catch let e as EncryptionError {
            #expect(e.exitCode == 2)
            #expect(e.description.contains(RecipientSet.shortForm(old.fingerprint)) && e.description.contains(f.key.recipient))
            #expect(e.description.contains(RecipientSet.shortForm(new.fingerprint)) && e.description.contains(other.recipient))
            #expect(e.description.contains("--rotate-keys"))
        }
        // No recipient on an encrypted set: refused, never a plaintext backup.
        var o = BackupOptions(source: f.src, destination: f.dest.destination, set: "t")
        o.encryption.stateDirectory = f.state
        #expect(throws: EncryptionError.self) { try BackupRunner(options: o, reporter: quiet).run() }
        #expect(try BackupSet(destination: f.dest.destination, name: "t").committedIDs() == [first.id])

        // --rotate-keys: a new chain, full, to the new key.
        let rotated = try f.run([other.recipient], rotate: true)
        #expect(rotated.kind == "full")
        #expect(rotated.warnings.contains { $0.contains("keys rotated") })
        try f.touch(1)
        #expect(try f.run([other.recipient]).kind == "incremental")

        // The old identity still restores the old backup, and says it cannot read the newest.
        let r = try restoreEncrypted(f.dest, id: first.id, to: f.work.sub("old"), identities: try f.key.identities)
        #expect(r.warnings.contains { $0.contains("cannot decrypt the newest backup") }, "\(r.warnings)")
        #expect(FileManager.default.fileExists(atPath: f.work.sub("old/radarr/config.xml")))
        // The new one restores the newest without that warning.
        let n = try restoreEncrypted(f.dest, to: f.work.sub("new"), identities: try other.identities)
        #expect(!n.warnings.contains { $0.contains("cannot decrypt") })
    }

    @Test func aPlaintextSetIsEncryptedOnlyWithRotateKeys() throws {
        let f = try Fixture()
        _ = try backup(f.src, f.dest)
        do {
            _ = try f.run()
            Issue.record("recipients on a plaintext set were accepted")
        } catch let e as EncryptionError {
            guard case .setNotEncrypted = e.kind else { Issue.record("\(e)"); return }
        }
        let s = try f.run(rotate: true)
        #expect(s.kind == "full")
        try f.touch(1)
        #expect(try f.run().kind == "incremental")
    }

    /// A flipped byte anywhere in an archive or manifest: verify finds it with and without the
    /// key (saying which it did), a restore stops and names the file.
    @Test(arguments: DestKind.allCases)
    func aFlippedByteIsFoundByVerifyAndStopsARestore(_ kind: DestKind) throws {
        let f = try Fixture(kind)
        let first = try f.run()
        try f.touch(1)
        _ = try f.run()
        let ok = try SetInspector.verify(destination: f.dest.destination, set: "t", backup: nil, reporter: quiet)
        #expect(ok.ok && ok.notDecrypted.count == 2 && ok.archivesChecked == 2)
        let okKey = try SetInspector.verify(destination: f.dest.destination, set: "t", backup: nil, identities: try f.key.identities, reporter: quiet)
        #expect(okKey.ok && okKey.notDecrypted.isEmpty && okKey.filesChecked > 5)

        let path = "t/\(first.id).tar.gz"
        var bytes = try f.dest.destination.readAll(path)
        bytes[bytes.count / 3] ^= 0x01
        try f.dest.destination.writeAtomically(path, contents: bytes)
        let keyless = try SetInspector.verify(destination: f.dest.destination, set: "t", backup: nil, reporter: quiet)
        #expect(!keyless.ok && keyless.damaged.contains { $0.hasPrefix("\(first.id).tar.gz:") && $0.contains("SHA-256") }, "\(keyless.damaged)")
        let keyed = try SetInspector.verify(destination: f.dest.destination, set: "t", backup: nil, identities: try f.key.identities, reporter: quiet)
        #expect(!keyed.ok && keyed.damaged.contains { $0.contains("\(first.id).tar.gz") }, "\(keyed.damaged)")
        do {
            _ = try restoreEncrypted(f.dest, to: f.work.sub("out"), identities: try f.key.identities)
            Issue.record("a restore went through a damaged archive")
        } catch {
            #expect("\(error)".contains("\(first.id).tar.gz"), "\(error)")
        }

        // A manifest too (its index says what it should hash to).
        let mpath = "t/\(first.id).manifest"
        var m = try f.dest.destination.readAll(mpath)
        m[m.count - 40] ^= 0x80
        try f.dest.destination.writeAtomically(mpath, contents: m)
        let v = try SetInspector.verify(destination: f.dest.destination, set: "t", backup: first.id, reporter: quiet)
        #expect(v.damaged.contains { $0.hasPrefix("\(first.id).manifest:") }, "\(v.damaged)")
    }

    /// list, prune and the cleanup of every run work without the key, from the indexes.
    @Test func listAndPruneNeedNoKey() throws {
        let f = try Fixture()
        let a = try f.run()
        Thread.sleep(forTimeInterval: 1.1)
        try f.touch(1)
        let b = try f.run()
        Thread.sleep(forTimeInterval: 1.1)
        let c = try f.run(full: true)
        let (rows, damage) = try SetInspector.list(destination: f.dest.destination, set: "t")
        #expect(damage.isEmpty, "without a key an encrypted set is judged by its indexes: \(damage)")
        #expect(rows.map(\.id) == [a.id, b.id, c.id])
        #expect(rows.allSatisfy { $0.encrypted && $0.files == nil })
        #expect(rows[1].kind == "incremental" && rows[1].parent == a.id && rows[1].bytesOut > 0)
        let sets = try BackupSets.list(f.dest.destination)
        #expect(sets.first?.latest == c.id && sets.first?.latestTime != nil)
        let report = try Pruner.prune(set: BackupSet(destination: f.dest.destination, name: "t"), policy: RetentionPolicy(keepLast: 1),
                                      dryRun: false, reporter: nil)
        #expect(report.removed.map(\.id).sorted() == [a.id, b.id])
        #expect(report.warnings.isEmpty, "\(report.warnings)")
        #expect(try f.dest.destination.list("t").map(\.name).sorted() == ["\(c.id).index", "\(c.id).manifest", "\(c.id).tar.gz"])
    }

    /// The command line: hs-backup run --recipient, verify without and with --identity,
    /// hs-restore --identity, hs-restore --archive of an age file, and the exit codes.
    /// Harden's copied-manifest rule holds without the key: an encrypted manifest copied over
    /// another is found by the size its index records (list), its SHA-256 (verify), and with the
    /// key by its header (restore of latest, and of that backup).
    @Test func aManifestCopiedOverAnotherIsDamageWithoutTheKey() throws {
        let f = try Fixture()
        let a = try f.run()
        Thread.sleep(forTimeInterval: 1.1)
        try f.touch(1)
        let b = try f.run()
        let dir = f.dest.dir.path + "/t"
        let sizes = try [a.id, b.id].map { try #require(FileManager.default.attributesOfItem(atPath: dir + "/\($0).manifest")[.size] as? Int) }
        try #require(sizes[0] != sizes[1], "the two manifests differ in size")
        try FileManager.default.removeItem(atPath: dir + "/\(b.id).manifest")
        try FileManager.default.copyItem(atPath: dir + "/\(a.id).manifest", toPath: dir + "/\(b.id).manifest")
        let to = f.dest.dir.path
        let l = try Tools.run("hs-backup", ["list", "--to", to, "--name", "t"])
        #expect(l.status == 1 && (l.stdout + l.stderr).contains("\(b.id).manifest"), "list: \(l.stdout) \(l.stderr)")
        let v = try Tools.run("hs-backup", ["verify", "--to", to, "--name", "t"])
        #expect(v.status == 1 && (v.stdout + v.stderr).contains("\(b.id).manifest"), "verify: \(v.stdout) \(v.stderr)")
        for args in [[String](), ["--backup", b.id]] {
            let r = try Tools.run("hs-restore", ["--from", to, "--name", "t", "--to", f.work.sub("r\(args.count)"), "--identity", f.key.path] + args)
            #expect(r.status == 1, "restore \(args): \(r.stdout) \(r.stderr)")
        }
    }

    @Test func commandLine() throws {
        let f = try Fixture()
        let env = ["HS_STATE_DIR": f.state]
        let to = f.dest.dir.path
        let run = try Tools.run("hs-backup", ["run", "--source", f.src, "--to", to, "--name", "t", "--recipient", f.key.recipient, "--json"],
                                environment: env)
        #expect(run.status == 0, "\(run.stderr)")
        try Tree.write(f.work.sub("recipients.txt"), "# guest io\n\(f.key.recipient)\n")
        try f.touch(1)
        let inc = try Tools.run("hs-backup", ["run", "--source", f.src, "--to", to, "--name", "t", "--recipients-file", f.work.sub("recipients.txt")],
                                environment: env)
        #expect(inc.status == 0 && inc.stdout.contains("(incremental)"), "\(inc.stdout) \(inc.stderr)")
        // The configuration's HS_AGE_RECIPIENTS_FILE fills --recipients-file.
        try Tree.write(f.work.sub("hs.conf"), "HS_AGE_RECIPIENTS_FILE=\(f.work.sub("recipients.txt"))\n", mode: 0o600)
        try f.touch(2)
        let conf = try Tools.run("hs-backup", ["run", "--source", f.src, "--to", to, "--name", "t"],
                                 environment: env.merging(["HS_CONFIG": f.work.sub("hs.conf")]) { $1 })
        #expect(conf.status == 0 && conf.stdout.contains("(incremental)"), "\(conf.stdout) \(conf.stderr)")
        let plain = try Tools.run("hs-backup", ["run", "--source", f.src, "--to", to, "--name", "t"], environment: env)
        #expect(plain.status == 2 && plain.stderr.contains("is encrypted"), "\(plain.stderr)")
        let bad = try Tools.run("hs-backup", ["run", "--source", f.src, "--to", to, "--name", "t", "--recipient", "age1nope"], environment: env)
        #expect(bad.status == 2 && bad.stderr.contains("--recipient"), "\(bad.stderr)")

        let v = try Tools.run("hs-backup", ["verify", "--to", to, "--name", "t"])
        #expect(v.status == 0 && v.stdout.contains("NOT decrypted"), "\(v.stdout)")
        let vk = try Tools.run("hs-backup", ["verify", "--to", to, "--name", "t", "--identity", f.key.path])
        #expect(vk.status == 0 && !vk.stdout.contains("NOT decrypted"), "\(vk.stdout) \(vk.stderr)")
        let list = try Tools.run("hs-backup", ["list", "--to", to, "--name", "t"])
        #expect(list.status == 0 && list.stdout.contains("encrypted"), "\(list.stdout)")

        let noKey = try Tools.run("hs-restore", ["--from", to, "--name", "t", "--to", f.work.sub("r0")])
        #expect(noKey.status == 2 && noKey.stderr.contains("--identity"), "\(noKey.stderr)")
        let r = try Tools.run("hs-restore", ["--from", to, "--name", "t", "--to", f.work.sub("r1"), "--identity", f.key.path])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(Tree.diff(try Tree.describe(f.src, skipping: [cacheDir]), try Tree.describe(f.work.sub("r1"))).isEmpty)
        #expect(!r.stdout.contains("AGE-SECRET-KEY") && !r.stderr.contains("AGE-SECRET-KEY"))

        let id = try BackupSet(destination: f.dest.destination, name: "t").committedIDs().first!
        let archive = f.dest.dir.sub("t/\(id).tar.gz")
        let a0 = try Tools.run("hs-restore", ["--archive", archive, "--to", f.work.sub("a0")])
        #expect(a0.status == 2 && a0.stderr.contains("--identity"), "\(a0.stderr)")
        let a1 = try Tools.run("hs-restore", ["--archive", archive, "--to", f.work.sub("a1"), "--identity", f.key.path])
        #expect(a1.status == 0, "\(a1.stderr)")
        #expect(FileManager.default.fileExists(atPath: f.work.sub("a1/radarr/config.xml")))

        // The same age file on stdin: without --identity exit 2 naming it, with it the same tree as from the file;
        // a flipped byte in the last chunk stops the restore (exit 1).
        let stream = try Data(contentsOf: URL(fileURLWithPath: archive))
        let s0 = try Tools.run("hs-restore", ["--archive", "-", "--to", f.work.sub("s0")], input: stream)
        #expect(s0.status == 2 && s0.stderr.contains("--identity"), "\(s0.stderr)")
        let s1 = try Tools.run("hs-restore", ["--archive", "-", "--to", f.work.sub("s1"), "--identity", f.key.path], input: stream)
        #expect(s1.status == 0, "\(s1.stderr)")
        #expect(Tree.diff(try Tree.describe(f.work.sub("a1")), try Tree.describe(f.work.sub("s1"))).isEmpty)
        var flipped = stream
        flipped[flipped.count - 5] ^= 0x01
        let s2 = try Tools.run("hs-restore", ["--archive", "-", "--to", f.work.sub("s2"), "--identity", f.key.path], input: flipped)
        #expect(s2.status == 1, "\(s2.status) \(s2.stderr)")
    }
}
