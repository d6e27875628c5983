// hs-backup copy against real components: the NAS side a local directory, the offsite side
// rclone's sftp backend over a real sshd (and the local backend, and a plain directory).
import Foundation
import Support
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A source set with backups made by the real tool, and a place to copy it to.
struct CopyFixture {
    let work: TempDir
    let sshd: SSHServer
    let remoteDir: String
    var env: [String: String]

    init(_ label: String, sshd: SSHServer? = nil) throws {
        work = try TempDir("hs-copy-\(label)")
        self.sshd = try sshd ?? SSHServer.shared()
        remoteDir = try self.sshd.makeUniqueDirectory(label)
        env = self.sshd.environment
        env["HS_BACKUP_SQLITE_CAPTURE"] = "0"
    }

    var source: String { work.sub("appdata") }
    var nas: String { work.sub("nas") }
    /// The copy's destination over SFTP.
    var offsite: String { "rclone:" + sshd.remote(remoteDir) }
    /// The same directory on disk (what the remote holds).
    var offsiteLocal: String { sshd.local(remoteDir) }

    @discardableResult
    func backup(full: Bool = false) throws -> String {
        let r = try Tools.run("hs-backup", ["run", "--source", source, "--to", nas, "--name", "io", "--json"] + (full ? ["--full"] : []),
                              environment: env)
        guard r.status == 0, let id = (try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])?["id"] as? String else {
            throw ToolError("backup failed: \(r.status) \(r.stderr)")
        }
        return id
    }

    func copy(_ extra: [String] = [], to: String? = nil, environment: [String: String] = [:]) throws -> ProcessResult {
        try Tools.run("hs-backup", ["copy", "--from", nas, "--to", to ?? offsite, "--name", "io", "--json"] + extra,
                      environment: env.merging(environment) { $1 })
    }

    func json(_ r: ProcessResult) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any] ?? [:]
    }

    func copied(_ r: ProcessResult) -> [String] {
        ((json(r)["sets"] as? [[String: Any]])?.first?["copied"] as? [String]) ?? []
    }

    /// Restores backup `id` (default latest) from `from` (with `identity`, an age key file, for
    /// an encrypted set) and compares it with `snapshot`.
    func expectExactRestore(from: String, id: String = "latest", of snapshot: [String: String], _ label: String,
                            identity: String? = nil) throws {
        let out = work.sub("restore-\(label)")
        let r = try Tools.run("hs-restore", ["--from", from, "--name", "io", "--backup", id, "--to", out] + (identity.map { ["--identity", $0] } ?? []),
                              environment: env)
        #expect(r.status == 0, "\(label): \(r.stderr)")
        let d = Tree.diff(snapshot, try Tree.describe(out))
        #expect(d.isEmpty, "\(label): \(d.prefix(10))")
    }

    /// Names, sizes, modification and change times of everything in the remote's set directory
    /// (the directory's own times included): anything written there changes it.
    func remoteState() -> [String] {
        let dir = offsiteLocal + "/io"
        var out: [String] = []
        for name in ["."] + filesIn(dir) {
            var st = stat()
            guard lstat(dir + "/" + name, &st) == 0 else { continue }
            out.append("\(name) \(st.st_size) \(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec) \(st.st_ctim.tv_sec).\(st.st_ctim.tv_nsec) \(st.st_ino)")
        }
        return out
    }
}

@Suite("hs-backup copy", .serialized)
struct CopyTests {
    @Test("copy to sftp gives an exact restore from the remote; a second copy writes nothing")
    func exactRestoreAndIdempotent() throws {
        var f = try CopyFixture("exact")
        try Tree.makeSample(f.source)
        try f.backup()
        try Tree.write(f.source + "/radarr/new.txt", "second\n")
        try f.backup()
        try Tree.write(f.source + "/homepage/empty", "not empty any more\n")
        try f.backup()
        let snapshot = try Tree.describe(f.source, skipping: [cacheDir])
        let r = try f.copy()
        #expect(r.status == 0, "\(r.stdout) \(r.stderr)")
        #expect(f.copied(r).count == 3, "\(r.stdout)")
        let set = try #require((f.json(r)["sets"] as? [[String: Any]])?.first)
        #expect(set["checked_by"] as? String == "the remote's MD5 of the bytes sent", "\(set)")
        let files = filesIn(f.offsiteLocal + "/io")
        #expect(files.filter { $0.hasSuffix(".manifest") }.count == 3 && files.filter { $0.hasSuffix(".index") }.count == 3
                && files.filter { $0.hasSuffix(".tar.gz") }.count == 3 && files.count == 9, "\(files)")
        try f.expectExactRestore(from: f.offsite, of: snapshot, "latest")
        let verify = try Tools.run("hs-backup", ["verify", "--to", f.offsite, "--name", "io"], environment: f.env)
        #expect(verify.status == 0, "\(verify.stdout) \(verify.stderr)")

        let before = f.remoteState()
        f.env["HS_TEST_TAG"] = "copy-again-\(getpid())"
        let again = try f.copy()
        #expect(again.status == 0 && f.copied(again).isEmpty, "\(again.stdout) \(again.stderr)")
        #expect(f.remoteState() == before, "a second copy writes nothing (not even a lock)")
        let third = try f.copy()
        #expect((f.json(third)["sets"] as? [[String: Any]])?.first?["already_there"] as? Int == 3, "\(third.stdout)")
    }

    @Test("killing sshd and its sessions mid-copy: exit 1 within 60 s, no half backup there, the next copy completes it")
    func killedRemoteMidCopy() throws {
        let sshd = try SSHServer()
        var f = try CopyFixture("kill", sshd: sshd)
        try FileManager.default.createDirectory(atPath: f.source + "/app", withIntermediateDirectories: true)
        var snapshots: [String: [String: String]] = [:]
        for i in 0..<3 {
            try Subprocess.checked(["sh", "-c", "head -c 24M /dev/urandom > '\(f.source)/app/big\(i).bin'"])
            let id = try f.backup()
            snapshots[id] = try Tree.describe(f.source, skipping: [cacheDir])
        }
        f.env["RCLONE_BWLIMIT"] = "6M"  // so the copy is still running when the server dies
        let run = try RunningTool("hs-backup", ["copy", "--from", f.nas, "--to", f.offsite, "--name", "io", "--transfers", "1"],
                                  environment: f.env)
        let set = f.offsiteLocal + "/io"
        #expect(waitFor(120) { filesIn(set).contains { $0.hasSuffix(".manifest") } && filesIn(set).contains { $0.hasSuffix(".partial") } },
                "one backup committed and the next on its way: \(filesIn(set)) \(run.stderr)")
        let killed = sshd.kill()
        #expect(!killed.isEmpty, "session processes were killed with the listener")
        let t0 = Date()
        let status = run.wait(upTo: 60)
        #expect(status == 1, "exit \(String(describing: status)) after \(Date().timeIntervalSince(t0)) s: \(run.stderr)")
        #expect(Date().timeIntervalSince(t0) < 60)
        #expect(run.stderr.contains("rclone"), "rclone's words reach the user: \(run.stderr)")

        // What is there: committed backups only, each whole (checked on disk, without sshd).
        let committed = filesIn(set).filter { $0.hasSuffix(".manifest") }.map { String($0.dropLast(".manifest".count)) }
        #expect(!committed.isEmpty && committed.count < 3, "\(filesIn(set))")
        let list = try Tools.run("hs-backup", ["list", "--to", f.offsiteLocal, "--name", "io", "--json"], environment: f.env)
        #expect(list.status == 0 && (f.json(list)["backups"] as? [Any])?.count == committed.count, "\(list.stdout) \(list.stderr)")
        let verify = try Tools.run("hs-backup", ["verify", "--to", f.offsiteLocal, "--name", "io"], environment: f.env)
        #expect(verify.status == 0, "every backup visible there is whole: \(verify.stdout) \(verify.stderr)")

        try sshd.restart()
        f.env["RCLONE_BWLIMIT"] = nil
        let next = try f.copy()
        #expect(next.status == 0, "\(next.stdout) \(next.stderr)")
        #expect(f.copied(next).count == 3 - committed.count, "\(next.stdout)")
        let after = filesIn(set)
        #expect(after.filter { $0.hasSuffix(".manifest") }.count == 3 && !after.contains { $0.contains(".partial") || $0 == "lock" }, "\(after)")
        for (id, snap) in snapshots { try f.expectExactRestore(from: f.offsite, id: id, of: snap, id) }
    }

    @Test("what the destination pruned is never copied again; only newer backups are")
    func prunedAtDestinationStaysPruned() throws {
        let f = try CopyFixture("pruned")
        try Tree.makeSample(f.source)
        for i in 0..<3 {
            try Tree.write(f.source + "/radarr/n.txt", "\(i)\n")
            try f.backup(full: i != 1)  // full, incremental, full: keep-last 1 keeps the last alone
        }
        #expect(try f.copy().status == 0)
        let p = try Tools.run("hs-backup", ["prune", "--to", f.offsite, "--name", "io", "--keep-last", "1"], environment: f.env)
        #expect(p.status == 0, "\(p.stderr)")
        #expect(filesIn(f.offsiteLocal + "/io").filter { $0.hasSuffix(".manifest") }.count == 1)
        try Tree.write(f.source + "/radarr/n.txt", "new\n")
        let newest = try f.backup()
        let r = try f.copy()
        #expect(r.status == 0 && f.copied(r) == [newest], "\(r.stdout) \(r.stderr)")
        #expect(filesIn(f.offsiteLocal + "/io").filter { $0.hasSuffix(".manifest") }.count == 2)
        try f.expectExactRestore(from: f.offsite, of: try Tree.describe(f.source, skipping: [cacheDir]), "after-prune")
    }

    @Test("a chain whose archives the destination pruned gets those archives, not their backups")
    func chainArchivesAreBroughtBack() throws {
        let f = try CopyFixture("chain")
        try Tree.makeSample(f.source)
        let full = try f.backup(full: true)
        try Tree.write(f.source + "/radarr/n.txt", "1\n")
        try f.backup()
        // The destination starts empty but gets only the newest: copy it alone through a
        // second source holding just that backup is not possible, so copy all, then remove
        // the full backup's manifest and index there as a prune of another chain would.
        #expect(try f.copy().status == 0)
        try Tree.write(f.source + "/radarr/n.txt", "2\n")
        let third = try f.backup()
        let set = f.offsiteLocal + "/io"
        for ext in ["manifest", "index", "tar.gz"] { unlink(set + "/\(full).\(ext)") }
        let r = try f.copy()
        // The second backup needs the full's archive: it is missing there, so the copy of the
        // third (which needs it too) uploads it again, but the full backup itself stays gone.
        #expect(r.status == 0 && f.copied(r) == [third], "\(r.stdout) \(r.stderr)")
        #expect(FileManager.default.fileExists(atPath: set + "/\(full).tar.gz") && !FileManager.default.fileExists(atPath: set + "/\(full).manifest"))
        try f.expectExactRestore(from: f.offsite, of: try Tree.describe(f.source, skipping: [cacheDir]), "chain")
    }

    @Test("a source archive that does not match its index is left out with what needs it; the rest is copied (exit 3)")
    func damagedSourceLeavesOut() throws {
        let f = try CopyFixture("damage")
        try Tree.makeSample(f.source)
        let first = try f.backup(full: true)
        let snapshot = try Tree.describe(f.source, skipping: [cacheDir])
        try Tree.write(f.source + "/radarr/n.txt", "1\n")
        let second = try f.backup()
        try Tree.write(f.source + "/radarr/m.txt", "2\n")  // n.txt stays in the second's archive: the third needs it
        let third = try f.backup()
        // Flip one byte of the second backup's archive at the source.
        let path = f.nas + "/io/\(second).tar.gz"
        var bytes = try #require(FileManager.default.contents(atPath: path))
        bytes[bytes.count / 2] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: path))
        let r = try f.copy()
        #expect(r.status == 3, "\(r.stdout) \(r.stderr)")
        #expect(f.copied(r) == [first])
        let skipped = ((f.json(r)["sets"] as? [[String: Any]])?.first?["skipped"] as? [[String: Any]]) ?? []
        #expect(skipped.map { $0["id"] as? String } == [second, third], "\(skipped)")
        #expect((skipped.first?["reason"] as? String)?.contains("does not match its index") == true, "\(skipped)")
        #expect(!filesIn(f.offsiteLocal + "/io").contains { $0.hasPrefix(second) || $0.hasPrefix(third) || $0.contains(".partial") })
        try f.expectExactRestore(from: f.offsite, of: snapshot, "first-only")
        let plain = try Tools.run("hs-backup", ["copy", "--from", f.nas, "--to", f.offsite, "--name", "io"], environment: f.env)
        // Again: nothing left to copy but the damaged ones, so nothing copied and exit 1.
        #expect(plain.status == 1 && plain.stdout.contains("LEFT OUT") && plain.stdout.contains(second), "\(plain.stdout)")
    }

    @Test("a destination holding another backup under the same id, its archive of the same size: what needs that archive is left out, not committed on top of it")
    func sameIdOtherBackupAtDestination() throws {
        let work = try TempDir("hs-copy-sameid")
        let nas = work.sub("nas"), dst = work.sub("dst")
        var ids: [String] = []
        // Two hosts' sets both named io, backed up in the same second (the id is the second):
        // the same names, sizes and times, one byte different.
        for attempt in 0 ..< 5 {
            for (src, text) in [("a", "AAAA\n"), ("b", "BBBB\n")] {
                try? FileManager.default.removeItem(atPath: work.sub(src))
                try FileManager.default.createDirectory(atPath: work.sub(src + "/app"), withIntermediateDirectories: true)
                try Tree.write(work.sub(src + "/app/f"), text)
                try Subprocess.checked(["touch", "-d", "2020-01-01 UTC", work.sub(src + "/app/f"), work.sub(src + "/app"), work.sub(src)])
            }
            try? FileManager.default.removeItem(atPath: nas)
            try? FileManager.default.removeItem(atPath: dst)
            let a = try RunningTool("hs-backup", ["run", "-q", "--source", work.sub("a"), "--to", nas, "--name", "io"])
            let b = try RunningTool("hs-backup", ["run", "-q", "--source", work.sub("b"), "--to", dst, "--name", "io"])
            #expect(a.wait(upTo: 60) == 0 && b.wait(upTo: 60) == 0, "\(a.stderr) \(b.stderr)")
            ids = [filesIn(nas + "/io"), filesIn(dst + "/io")].map { $0.first { $0.hasSuffix(".manifest") } ?? "" }
            if ids[0] == ids[1] { break }
            #expect(attempt < 4, "no two backups in the same second: \(ids)")
        }
        let id = String(ids[0].dropLast(".manifest".count))
        #expect(FileManager.default.contents(atPath: "\(nas)/io/\(id).tar.gz")?.count == FileManager.default.contents(atPath: "\(dst)/io/\(id).tar.gz")?.count)
        sleep(1)
        try Tree.write(work.sub("a/app/g"), "more\n")
        let second = try Tools.run("hs-backup", ["run", "-q", "--source", work.sub("a"), "--to", nas, "--name", "io", "--json"])
        #expect(second.status == 0, "\(second.stderr)")

        let r = try Tools.run("hs-backup", ["copy", "--from", nas, "--to", dst, "--name", "io", "--json"])
        let sets = ((try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any])?["sets"] as? [[String: Any]]
        let skipped = (sets?.first?["skipped"] as? [[String: Any]]) ?? []
        #expect(r.status == 1 && (sets?.first?["copied"] as? [String]) == [], "\(r.stdout) \(r.stderr)")
        #expect((skipped.first?["reason"] as? String)?.contains("\(dst)/io/\(id).tar.gz is not the archive the index names") == true, "\(skipped)")
        #expect(filesIn(dst + "/io") == ["\(id).index", "\(id).manifest", "\(id).tar.gz"], "\(filesIn(dst + "/io"))")
        let out = work.sub("restored")
        let restore = try Tools.run("hs-restore", ["--from", dst, "--name", "io", "--to", out])
        #expect(restore.status == 0 && (try? String(contentsOfFile: out + "/app/f", encoding: .utf8)) == "BBBB\n", "\(restore.stderr)")
    }

    @Test("a destination that fills up: exit 1 naming ENOSPC (not the uploads it cancelled), nothing left there")
    func destinationFull() throws {
        let work = try TempDir("hs-copy-full")
        let src = work.sub("src"), nas = work.sub("nas"), small = work.sub("small")
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        for i in 0 ..< 4 {
            try Subprocess.checked(["sh", "-c", "head -c 12M /dev/urandom > \"$0\"", src + "/big\(i).bin"])
            let r = try Tools.run("hs-backup", ["run", "-q", "--source", src, "--to", nas, "--name", "io"])
            #expect(r.status == 0, "\(r.stderr)")
            sleep(1)
        }
        try FileManager.default.createDirectory(atPath: small, withIntermediateDirectories: true)
        let m = try Subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", small])
        try #require(m.succeeded, "mount tmpfs: \(m.stderr)")
        defer { _ = try? Subprocess.run(["umount", "-l", small]) }
        // The four uploads run side by side; whichever fills the disk, the others stop.
        for round in 0 ..< 3 {
            let r = try Tools.run("hs-backup", ["copy", "--from", nas, "--to", small + "/dst", "--name", "io", "--transfers", "4", "--json"])
            let failed = ((try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any])?["failed"] as? [[String: Any]]
            let error = failed?.first?["error"] as? String ?? ""
            #expect(r.status == 1 && error.contains("No space left on device") && !error.contains("Cancellation"),
                    "round \(round): exit \(r.status): \(r.stdout) \(r.stderr)")
            #expect(r.stderr.contains("No space left on device") && !r.stderr.contains("Cancellation"), "round \(round): \(r.stderr)")
            #expect(filesIn(small + "/dst/io").allSatisfy { !$0.contains(".partial") && $0 != "lock" },
                    "round \(round): \(filesIn(small + "/dst/io"))")
            try? FileManager.default.removeItem(atPath: small + "/dst")
        }
    }

    @Test("a source backup whose commit stopped after the manifest's rename (archive and index still .partial) is copied whole; the source is not touched")
    func sourceCommitStoppedBeforeTheArchiveRename() throws {
        let work = try TempDir("hs-copy-partial")
        let src = work.sub("src"), nas = work.sub("nas"), dst = work.sub("dst")
        try Tree.write(src + "/app/a.txt", "a\n")
        var ids: [String] = []
        for i in 0 ..< 2 {
            if i == 1 { try Tree.write(src + "/app/b.txt", "b\n") }
            let r = try Tools.run("hs-backup", ["run", "--source", src, "--to", nas, "--name", "io", "--json"])
            let id = ((try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any])?["id"] as? String
            #expect(r.status == 0 && id != nil, "\(r.stderr)")
            ids.append(id ?? "")
            sleep(1)
        }
        // What a run killed just after its commit leaves (docs/backups.md: `copy` reads it so).
        for ext in ["tar.gz", "index"] {
            try FileManager.default.moveItem(atPath: "\(nas)/io/\(ids[1]).\(ext)", toPath: "\(nas)/io/\(ids[1]).\(ext).partial")
        }
        let before = filesIn(nas + "/io")
        let r = try Tools.run("hs-backup", ["copy", "--from", nas, "--to", dst, "--name", "io", "--json"])
        let sets = ((try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any])?["sets"] as? [[String: Any]]
        #expect(r.status == 0 && (sets?.first?["copied"] as? [String]) == ids, "\(r.stdout) \(r.stderr)")
        #expect(filesIn(dst + "/io") == ids.flatMap { ["\($0).index", "\($0).manifest", "\($0).tar.gz"] }, "\(filesIn(dst + "/io"))")
        #expect(filesIn(nas + "/io") == before)
        let verify = try Tools.run("hs-backup", ["verify", "--to", dst, "--name", "io"])
        #expect(verify.status == 0, "\(verify.stdout) \(verify.stderr)")
        let out = work.sub("restored")
        let restore = try Tools.run("hs-restore", ["--from", dst, "--name", "io", "--to", out])
        #expect(restore.status == 0 && (try? String(contentsOfFile: out + "/app/b.txt", encoding: .utf8)) == "b\n", "\(restore.stderr)")
    }

    @Test("backups made before indexes existed are copied with an index built from their manifest")
    func legacyBackupsWithoutIndex() throws {
        let f = try CopyFixture("legacy")
        try Tree.makeSample(f.source)
        try f.backup()
        try Tree.write(f.source + "/radarr/n.txt", "1\n")
        try f.backup()
        for name in filesIn(f.nas + "/io") where name.hasSuffix(".index") { unlink(f.nas + "/io/" + name) }
        let r = try f.copy()
        #expect(r.status == 0 && f.copied(r).count == 2, "\(r.stdout) \(r.stderr)")
        let indexes = filesIn(f.offsiteLocal + "/io").filter { $0.hasSuffix(".index") }
        #expect(indexes.count == 2)
        for name in indexes {
            let text = try String(contentsOfFile: f.offsiteLocal + "/io/" + name, encoding: .utf8)
            #expect(!text.contains(" - "), "every hash measured while copying: \(text)")
        }
        try f.expectExactRestore(from: f.offsite, of: try Tree.describe(f.source, skipping: [cacheDir]), "legacy")
    }

    @Test("to rclone's local backend (its SHA-256) and to a plain directory (read back); --dry-run writes nothing")
    func otherDestinations() throws {
        let f = try CopyFixture("others")
        try Tree.makeSample(f.source)
        try f.backup()
        let snapshot = try Tree.describe(f.source, skipping: [cacheDir])
        let dry = try f.copy(["--dry-run"])
        #expect(dry.status == 0 && f.copied(dry).count == 1 && !FileManager.default.fileExists(atPath: f.offsiteLocal + "/io"), "\(dry.stdout)")
        let local = "rclone:" + f.sshd.localRemote(f.remoteDir)
        let r = try f.copy([], to: local)
        #expect(r.status == 0, "\(r.stderr)")
        #expect((f.json(r)["sets"] as? [[String: Any]])?.first?["checked_by"] as? String == "the remote's SHA-256")
        try f.expectExactRestore(from: local, of: snapshot, "rclone-local")
        let dir = f.work.sub("second-nas")
        let d = try f.copy(["--read-back"], to: dir)
        #expect(d.status == 0 && (f.json(d)["sets"] as? [[String: Any]])?.first?["checked_by"] as? String == "reading back", "\(d.stdout)")
        try f.expectExactRestore(from: dir, of: snapshot, "directory")
    }

    @Test("an encrypted set is copied as ciphertext with no key anywhere; the copy restores exactly with the identity")
    func encryptedSetWithoutKey() throws {
        let f = try CopyFixture("encrypted")
        let keys = try TempDir("hs-copy-key")  // the identity lives away from the copy's work and environment
        let key = try AgeKey(keys, "key.txt")
        let state = f.work.sub("state")
        try Tree.makeSample(f.source)
        var ids: [String] = []
        for i in 0..<2 {
            if i > 0 { try Tree.write(f.source + "/radarr/n.txt", "second\n") }
            let r = try Tools.run("hs-backup", ["run", "--source", f.source, "--to", f.nas, "--name", "io", "--json",
                                                "--recipient", key.recipient, "--state-dir", state], environment: f.env)
            #expect(r.status == 0, "\(r.stderr)")
            ids.append(try #require(f.json(r)["id"] as? String))
        }
        let list = f.json(try Tools.run("hs-backup", ["list", "--to", f.nas, "--name", "io", "--json"], environment: f.env))
        #expect((list["backups"] as? [[String: Any]])?.map { $0["kind"] as? String } == ["full", "incremental"], "\(list)")
        let snapshot = try Tree.describe(f.source, skipping: [cacheDir])

        // The copier is given no identity (copy has no --identity; nothing in its environment names one).
        #expect(!f.env.keys.contains { $0.contains("AGE") || $0.contains("IDENTITY") }, "\(f.env.keys)")
        let r = try f.copy()
        #expect(r.status == 0 && f.copied(r) == ids, "\(r.stdout) \(r.stderr)")

        // What is stored there is the source's ciphertext, byte for byte: every archive and
        // manifest an age file, the indexes the same plaintext indexes.
        let src = f.nas + "/io", dst = f.offsiteLocal + "/io"
        let stored = filesIn(src).filter { !$0.contains(".partial") && $0 != "lock" }
        #expect(stored.count == 6 && filesIn(dst) == stored, "\(filesIn(dst)) vs \(stored)")
        for name in stored {
            let a = try #require(FileManager.default.contents(atPath: src + "/" + name))
            let b = try #require(FileManager.default.contents(atPath: dst + "/" + name))
            #expect(a == b, "\(name) differs")
            if !name.hasSuffix(".index") { #expect(b.starts(with: Array("age-encryption.org/v1\n".utf8)), "\(name) is an age file") }
        }

        // Without the key: keyless verify there passes and says it did not decrypt; a restore is refused.
        let verify = try Tools.run("hs-backup", ["verify", "--to", f.offsite, "--name", "io"], environment: f.env)
        #expect(verify.status == 0 && (verify.stdout + verify.stderr).contains("NOT decrypted"), "\(verify.stdout) \(verify.stderr)")
        let refused = try Tools.run("hs-restore", ["--from", f.offsite, "--name", "io", "--to", f.work.sub("no-key")], environment: f.env)
        #expect(refused.status == 2 && refused.stderr.contains("--identity"), "\(refused.stderr)")
        // With the identity: exact, from the copy.
        try f.expectExactRestore(from: f.offsite, of: snapshot, "encrypted", identity: key.path)
        let full = try Tools.run("hs-backup", ["verify", "--to", f.offsite, "--name", "io", "--identity", key.path], environment: f.env)
        #expect(full.status == 0 && !(full.stdout + full.stderr).contains("NOT decrypted"), "\(full.stdout) \(full.stderr)")
    }

    /// A set `io` of one backup in `nas`, and `link`, a symlink to `nas`.
    private func backedUpWithLink(_ label: String) throws -> (work: TempDir, nas: String) {
        let work = try TempDir(label)
        let nas = work.sub("nas")
        try Tree.write(work.sub("appdata/app/config.xml"), "<ApiKey>secret</ApiKey>\n")
        let made = try Tools.run("hs-backup", ["run", "--source", work.sub("appdata"), "--to", nas, "--name", "io", "-q"],
                                 environment: ["HS_BACKUP_SQLITE_CAPTURE": "0"])
        try #require(made.status == 0, "\(made.stderr)")
        try FileManager.default.createSymbolicLink(atPath: work.sub("link"), withDestinationPath: nas)
        return (work, nas)
    }

    @Test("the same place spelled differently (.., a symlink, //, ./, an nfs:// or rclone: path) is refused: exit 2 naming both, nothing written")
    func samePlaceSpelledDifferently() throws {
        let (work, nas) = try backedUpWithLink("hs-copy-same")
        let g = try GaneshaServer.shared()
        let sub = try g.makeUniqueDirectory("same")
        let url = g.url(path: sub)
        let nfsOther = url.replacingOccurrences(of: "/\(sub)?", with: "/./x/..//\(sub)/?")
        var pairs = [(nas, work.sub("nas/../nas")), (nas, work.sub("link")), (work.sub("link/"), nas + "/."),
                     (nas, work.sub("./nas//")), (nas, work.sub("nosuch/../nas")),
                     ("rclone::local:" + nas, "rclone::local:" + nas + "//x/../"), (url, nfsOther)]
        if nfsOther == url { Issue.record("the NFS spelling did not change: \(url)"); pairs.removeLast() }
        for (from, to) in pairs {
            let before = try Tree.describe(nas)
            let r = try Tools.run("hs-backup", ["copy", "--from", from, "--to", to, "--json"])
            // Both as given (a local directory without its trailing "/"); URLs as shown.
            func shown(_ s: String) -> String { s.hasPrefix("/") ? (s.hasSuffix("/") ? String(s.dropLast()) : s) : "" }
            #expect(r.status == 2 && r.stderr.contains("same place") && r.stderr.contains("--from \(shown(from))")
                    && r.stderr.contains("--to \(shown(to))"),
                    "\(from) -> \(to): \(r.status) \(r.stdout) \(r.stderr)")
            #expect((try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])?["exit_code"] as? Int == 2, "\(r.stdout)")
            #expect(Tree.diff(before, try Tree.describe(nas)).isEmpty, "\(from) -> \(to) changed the source")
        }
        // Different places stay different: a sibling directory, and a directory inside the source.
        for to in [work.sub("nas2"), work.sub("nas/../nas2")] {
            let r = try Tools.run("hs-backup", ["copy", "--from", nas, "--to", to, "-q"])
            #expect(r.status == 0, "\(to): \(r.stderr)")
        }
    }

    @Test("an rclone local-backend destination is the directory it names: copy between it and that directory is refused (real rclone)")
    func rcloneLocalBackendIsItsDirectory() throws {
        let (work, nas) = try backedUpWithLink("hs-copy-rclone-local")
        // A configured remote of the local backend, an alias of the directory, and a crypt
        // remote in it (another place: what it stores there is encrypted).
        let password = try Subprocess.checked(["rclone", "obscure", "secret"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try Tree.write(work.sub("rclone.conf"), "[disk]\ntype = local\n\n[nasalias]\ntype = alias\nremote = \(nas)\n\n"
                       + "[nascrypt]\ntype = crypt\nremote = \(nas)\npassword = \(password)\n")
        let env = ["RCLONE_CONFIG": work.sub("rclone.conf")]
        let pairs = [("rclone::local:" + nas, nas), (nas, "rclone::local:" + nas), ("rclone::local:" + work.sub("link"), nas + "/."),
                     (work.sub("link"), "rclone::local,links:" + nas + "/"), ("rclone:disk:" + nas, nas), ("rclone:nasalias:", nas),
                     ("rclone:disk:" + nas, "rclone::local:" + work.sub("link"))]
        for (from, to) in pairs {
            let before = try Tree.describe(nas)
            let r = try Tools.run("hs-backup", ["copy", "--from", from, "--to", to, "--json"], environment: env)
            #expect(r.status == 2 && r.stderr.contains("same place"), "\(from) -> \(to): \(r.status) \(r.stdout) \(r.stderr)")
            #expect(Tree.diff(before, try Tree.describe(nas)).isEmpty, "\(from) -> \(to) changed the source")
        }
        // Another directory through the local backend is another place, and so is a crypt remote: copied.
        for (from, to) in [("rclone::local:" + nas, work.sub("nas2")), (nas, "rclone::local:" + work.sub("nas3")), (nas, "rclone:nascrypt:")] {
            let r = try Tools.run("hs-backup", ["copy", "--from", from, "--to", to, "-q"], environment: env)
            #expect(r.status == 0, "\(from) -> \(to): \(r.stderr)")
        }
        #expect(filesIn(work.sub("nas2/io")).contains { $0.hasSuffix(".manifest") } && filesIn(work.sub("nas3/io")).contains { $0.hasSuffix(".manifest") })
    }

    @Test("usage: --to is required and never taken from HS_BACKUP_DEST; same place twice; bad --transfers")
    func usage() throws {
        let f = try CopyFixture("usage")
        try Tree.makeSample(f.source)
        try f.backup()
        try Tree.write(f.work.sub("empty.conf"), "", mode: 0o600)
        let noConfig = ["HS_CONFIG": f.work.sub("empty.conf")]
        let r = try Tools.run("hs-backup", ["copy", "--from", f.nas], environment: noConfig.merging(["HS_BACKUP_DEST": f.work.sub("elsewhere")]) { $1 })
        #expect(r.status == 2 && r.stderr.contains("--to") && r.stderr.contains("HS_COPY_DEST"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: f.work.sub("elsewhere")))
        // As the packaged unit runs it: SRC from HS_BACKUP_DEST, DST from HS_COPY_DEST.
        let unit = try Tools.run("hs-backup", ["copy", "-q", "--json"],
                                 environment: noConfig.merging(["HS_BACKUP_DEST": f.nas, "HS_COPY_DEST": f.work.sub("offsite")]) { $1 })
        #expect(unit.status == 0 && f.copied(unit).count == 1, "\(unit.stdout) \(unit.stderr)")
        #expect(filesIn(f.work.sub("offsite/io")).filter { $0.hasSuffix(".manifest") }.count == 1)
        let same = try Tools.run("hs-backup", ["copy", "--from", f.nas, "--to", f.nas])
        #expect(same.status == 2 && same.stderr.contains("same place"), "\(same.stderr)")
        let t = try Tools.run("hs-backup", ["copy", "--from", f.nas, "--to", f.work.sub("x"), "--transfers", "0"])
        #expect(t.status == 2 && t.stderr.contains("--transfers"), "\(t.stderr)")
        let missing = try Tools.run("hs-backup", ["copy", "--from", f.nas, "--to", f.work.sub("x"), "--name", "nosuchset"])
        #expect(missing.status == 1 && missing.stderr.contains("nosuchset"), "\(missing.stderr)")
        // A source that is not there is named as the --from it came from, with or without --name.
        for name in [[], ["--name", "io"]] {
            let gone = try Tools.run("hs-backup", ["copy", "--from", f.work.sub("nosuchnas"), "--to", f.work.sub("x")] + name)
            #expect(gone.status == 1 && gone.stderr.contains("\(f.work.sub("nosuchnas")) does not exist") && gone.stderr.contains("Check --from")
                    && !gone.stderr.contains("--to"), "\(gone.stderr)")
        }
        let help = try Tools.run("hs-backup", ["copy", "--help"])
        for option in ["--from", "--to", "--name", "--transfers", "--read-back", "--dry-run", "--json", "--notify", "Exit codes"] {
            #expect(help.stdout.contains(option), "\(option) in --help")
        }
    }
}
