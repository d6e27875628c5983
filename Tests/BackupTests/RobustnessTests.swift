import Foundation
import Testing
@testable import Backup
import Storage
import Restore
import Support
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A medium tree (a few MB, a few hundred files) so a backup takes long enough to be killed
/// in the middle, while keeping CI fast.
func makeMediumTree(_ root: String, files: Int = 300, seed: UInt64 = 1) throws {
    var x = seed
    func next() -> UInt64 { x = x &* 6364136223846793005 &+ 1442695040888963407; return x >> 33 }
    for i in 0 ..< files {
        let dir = "\(root)/app\(i % 7)/sub\(i % 13)"
        let n = 2000 + Int(next() % 40000)
        var bytes = [UInt8](repeating: 0, count: n)
        if i % 3 == 0 { for k in 0 ..< n { bytes[k] = UInt8(truncatingIfNeeded: next()) } } else {
            for k in 0 ..< n { bytes[k] = UInt8(0x61 + (k * 7 + i) % 26) }
        }
        try Tree.writeBytes("\(dir)/f\(i).bin", bytes)
    }
}

@Suite struct RobustnessTests {
    /// kill -9 at random moments, repeated: earlier backups restore, the next run succeeds.
    @Test(arguments: DestKind.allCases) func killNineAtRandomMoments(kind: DestKind) throws {
        let work = try TempDir("hs-backup-kill")
        let src = work.sub("src")
        try makeMediumTree(src, files: 400)
        let dest = try TestDestination(kind)
        let first = try Tools.run("hs-backup", ["--source", src, "--to", dest.spec, "--name", "k", "--json"])
        #expect(first.status == 0, "\(first.stderr)")
        let snap0 = work.sub("snap0")
        try Tree.copy(src, snap0)
        var rng = SystemRandomNumberGenerator()
        var killedMidRun = 0
        for round in 0 ..< 6 {
            // Change some files so each run has work to do.
            for i in stride(from: round, to: 400, by: 9) {
                try Tree.writeBytes("\(src)/app\(i % 7)/sub\(i % 13)/f\(i).bin", (0 ..< 30000).map { UInt8(truncatingIfNeeded: $0 &* (round + 3)) })
            }
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Tools.path("hs-backup"))
            p.arguments = ["--source", src, "--to", dest.spec, "--name", "k", "--full"]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            usleep(UInt32.random(in: 5_000 ... 250_000, using: &rng))
            if p.isRunning { kill(p.processIdentifier, SIGKILL); killedMidRun += 1 }
            p.waitUntilExit()
            // Every committed backup is complete: the first one restores exactly.
            let out = work.sub("r\(round)")
            let r = try Tools.run("hs-restore", ["--from", dest.spec, "--name", "k", "--backup", try firstID(dest), "--to", out])
            #expect(r.status == 0, "round \(round): \(r.stderr)")
            #expect(Tree.diff(try Tree.describe(snap0), try Tree.describe(out)).isEmpty, "round \(round)")
            try FileManager.default.removeItem(atPath: out)
        }
        // The next run cleans up (taking over the dead run's lock) and succeeds.
        let next = try Tools.run("hs-backup", ["--source", src, "--to", dest.spec, "--name", "k"])
        #expect(next.status == 0, "\(next.stderr)")
        let names = try dest.destination.list("k").map(\.name)
        #expect(!names.contains { $0.hasSuffix(".partial") || $0.contains(".tmp-") || $0 == "lock" }, "\(names)")
        let latest = work.sub("latest")
        let r = try Tools.run("hs-restore", ["--from", dest.spec, "--name", "k", "--to", latest])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(Tree.diff(try Tree.describe(src), try Tree.describe(latest)).isEmpty)
        let v = try Tools.run("hs-backup", ["verify", "--to", dest.spec, "--name", "k"])
        #expect(v.status == 0, "\(v.stdout)\(v.stderr)")
        #expect(killedMidRun > 0)
    }

    func firstID(_ dest: TestDestination) throws -> String {
        try BackupSet(destination: dest.destination, name: "k").committedIDs().first!
    }

    /// A second run while one holds the lock is refused with the holder's host, pid and time;
    /// a lock of a dead process is taken over with a warning.
    @Test(arguments: DestKind.allCases) func lockRefusesLiveHolderAndTakesOverStale(kind: DestKind) throws {
        let work = try TempDir("hs-backup-lock")
        let src = work.sub("src")
        try Tree.makeSample(src)
        let dest = try TestDestination(kind)
        try dest.destination.makeDirectories("l")
        // A live holder: a real process on this host.
        let sleeper = Process()
        sleeper.executableURL = URL(fileURLWithPath: "/bin/sleep")
        sleeper.arguments = ["60"]
        try sleeper.run()
        defer { sleeper.terminate() }
        let holder = #"{"host":"\#(SetLock.hostName)","pid":\#(sleeper.processIdentifier),"started":\#(Date().timeIntervalSince1970)}"#
        #expect(try dest.destination.createExclusive("l/lock", contents: Array(holder.utf8)))
        let refused = try Tools.run("hs-backup", ["--source", src, "--to", dest.spec, "--name", "l"])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("pid \(sleeper.processIdentifier)") && refused.stderr.contains(SetLock.hostName) && refused.stderr.contains("started"), "\(refused.stderr)")
        #expect(try BackupSet(destination: dest.destination, name: "l").committedIDs().isEmpty)
        // The holder dies: its lock is stale and is taken over with a warning.
        sleeper.terminate(); sleeper.waitUntilExit()
        let ok = try Tools.run("hs-backup", ["--source", src, "--to", dest.spec, "--name", "l"])
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(ok.stderr.contains("stale lock"), "\(ok.stderr)")
        // An old lock of another host is stale by age.
        let old = #"{"host":"elsewhere","pid":1,"started":\#(Date().timeIntervalSince1970 - 48 * 3600)}"#
        #expect(try dest.destination.createExclusive("l/lock", contents: Array(old.utf8)))
        let ok2 = try Tools.run("hs-backup", ["--source", src, "--to", dest.spec, "--name", "l"])
        #expect(ok2.status == 0 && ok2.stderr.contains("elsewhere"), "\(ok2.stderr)")
        // An empty lock (a run killed between creating and writing it) is taken over.
        #expect(try dest.destination.createExclusive("l/lock", contents: []))
        let ok3 = try Tools.run("hs-backup", ["--source", src, "--to", dest.spec, "--name", "l"])
        #expect(ok3.status == 0 && ok3.stderr.contains("unreadable lock"), "\(ok3.stderr)")
    }

    /// Two runs started at once: one wins, the other is refused (or runs after it); every
    /// committed backup restores.
    @Test(arguments: DestKind.allCases) func twoConcurrentRuns(kind: DestKind) throws {
        let work = try TempDir("hs-backup-conc")
        let src = work.sub("src")
        try makeMediumTree(src, files: 300)
        let dest = try TestDestination(kind)
        let procs = (0 ..< 2).map { _ -> (Process, Pipe) in
            let p = Process(), err = Pipe()
            p.executableURL = URL(fileURLWithPath: Tools.path("hs-backup"))
            p.arguments = ["--source", src, "--to", dest.spec, "--name", "c"]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = err
            return (p, err)
        }
        for (p, _) in procs { try p.run() }
        var codes: [Int32] = [], errs: [String] = []
        for (p, e) in procs {
            let d = e.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            codes.append(p.terminationStatus); errs.append(String(decoding: d, as: UTF8.self))
        }
        #expect(codes.contains(0))
        for (c, e) in zip(codes, errs) where c != 0 { #expect(e.contains("locked by host"), "\(e)") }
        let ids = try BackupSet(destination: dest.destination, name: "c").committedIDs()
        #expect(ids.count == codes.filter { $0 == 0 }.count)
        let out = work.sub("out")
        _ = try restore(dest, id: ids.last!, to: out, set: "c")
        #expect(Tree.diff(try Tree.describe(src), try Tree.describe(out)).isEmpty)
    }

    /// verify names the damaged file for a flipped byte, and fails on a truncated archive.
    @Test(arguments: DestKind.allCases) func verifyFindsFlippedByteAndTruncation(kind: DestKind) throws {
        let work = try TempDir("hs-backup-verify")
        let src = work.sub("src")
        try makeMediumTree(src, files: 120)
        let dest = try TestDestination(kind)
        let s = try backup(src, dest, set: "v")
        let good = try Tools.run("hs-backup", ["verify", "--to", dest.spec, "--name", "v"])
        #expect(good.status == 0, "\(good.stdout)\(good.stderr)")
        let path = "v/\(s.id).tar.gz"
        let original = try dest.destination.readAll(path)
        // Flip one byte in the middle of the archive.
        var bad = original
        bad[bad.count / 2] ^= 0x40
        try dest.destination.writeAtomically(path, contents: bad)
        let flipped = try Tools.run("hs-backup", ["verify", "--to", dest.spec, "--name", "v", "--backup", s.id])
        #expect(flipped.status == 1)
        #expect(flipped.stderr.contains("damaged: \(s.id).tar.gz: app"), "\(flipped.stderr)")
        // Restore refuses to hand out damaged content.
        let r = try Tools.run("hs-restore", ["--from", dest.spec, "--name", "v", "--to", work.sub("r")])
        #expect(r.status == 1)
        // Truncated archive.
        try dest.destination.writeAtomically(path, contents: Array(original[0 ..< original.count - 5000]))
        let truncated = try Tools.run("hs-backup", ["verify", "--to", dest.spec, "--name", "v", "--json"])
        #expect(truncated.status == 1)
        #expect(truncated.stdout.contains("\"damaged\""), "\(truncated.stdout)")
        #expect(truncated.stdout.contains("truncated") || truncated.stdout.contains("ends early"), "\(truncated.stdout)")
    }

    /// A previous manifest damaged in its body (bit rot or tampering on the NAS; its header
    /// is fine, so the damage only shows while the incremental reads it): the run starts again
    /// as a full backup with a warning naming the manifest, which is left for `verify` to report.
    @Test(arguments: DestKind.allCases) func damagedPreviousManifestMeansAFullBackup(kind: DestKind) throws {
        let work = try TempDir("hs-backup-dmgman")
        let src = work.sub("src")
        try makeMediumTree(src, files: 150)
        let dest = try TestDestination(kind)
        let first = try CLIRun.backup(["--source", src, "--to", dest.spec, "--name", "d"])
        #expect(first.status == 0, "\(first.stderr)")
        let manifest = "d/\(first.id).manifest"
        var bytes = try dest.destination.readAll(manifest)
        bytes[bytes.count / 3] ^= 0x40
        try dest.destination.writeAtomically(manifest, contents: bytes)
        try Tree.write(src + "/app1/new.txt", "added after the first backup\n")

        let dry = try CLIRun.backup(["--source", src, "--to", dest.spec, "--name", "d", "--dry-run"])
        #expect(dry.status == 0 && dry.json["kind"] as? String == "full", "\(dry.stdout)\(dry.stderr)")
        let second = try CLIRun.backup(["--source", src, "--to", dest.spec, "--name", "d"])
        #expect(second.status == 0, "\(second.stderr)")
        #expect(second.json["kind"] as? String == "full", "\(second.stdout)")
        #expect(second.warnings.contains { $0.contains("\(first.id).manifest") && $0.contains("damaged") && $0.contains("this run is a full backup instead") },
                "\(second.warnings)")
        #expect(second.filesArchived == 151)
        let names = try dest.destination.list("d").map(\.name)
        #expect(names.contains("\(first.id).manifest"), "the damaged manifest is left for verify: \(names)")
        #expect(!names.contains { $0.hasSuffix(".partial") }, "\(names)")
        let verify = try Tools.run("hs-backup", ["verify", "--to", dest.spec, "--name", "d", "--backup", first.id])
        #expect(verify.status == 1 && verify.stderr.contains("damaged"), "\(verify.stderr)")
        let out = work.sub("restored")
        let r = try Tools.run("hs-restore", ["--from", dest.spec, "--name", "d", "--to", out])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(Tree.diff(try Tree.describe(src), try Tree.describe(out)).isEmpty)
        // The next run is an incremental on top of the new full.
        let third = try CLIRun.backup(["--source", src, "--to", dest.spec, "--name", "d"])
        #expect(third.status == 0 && third.json["kind"] as? String == "incremental" && third.warnings.isEmpty,
                "\(third.stderr)")
    }
}

@Suite struct GaneshaFailureTests {
    /// Runs `hs-backup` of `source` to `spec` (set "g") and kills the server as soon as a name
    /// ending in `suffix` appears in `dir` (the export's local path). Returns the run's exit
    /// status and stderr.
    static func backupKillingServer(_ g: GaneshaServer, source: String, to spec: String, once suffix: String,
                                    appearsIn dir: String) throws -> (status: Int32, stderr: String) {
        let p = Process()
        let err = Pipe()
        p.executableURL = URL(fileURLWithPath: Tools.path("hs-backup"))
        p.arguments = ["--source", source, "--to", spec, "--name", "g"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = err
        try p.run()
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
            if names.contains(where: { $0.hasSuffix(suffix) }) { break }
            usleep(2_000)
        }
        g.kill()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, stderr)
    }

    /// nfs-ganesha killed mid-backup: clear error, exit 1, nothing committed; after a restart
    /// the next run succeeds and every backup restores.
    @Test func serverKilledMidBackup() throws {
        let g = try GaneshaServer()
        defer { g.stop() }
        let work = try TempDir("hs-backup-gkill")
        let src = work.sub("src")
        try makeMediumTree(src, files: 60)
        let dir = try g.makeUniqueDirectory("gkill")
        let spec = g.url(path: dir)
        let first = try Tools.run("hs-backup", ["--source", src, "--to", spec, "--name", "g"])
        #expect(first.status == 0, "\(first.stderr)")
        let snap = work.sub("snap")
        try Tree.copy(src, snap)
        // Enough incompressible data that the second run is still writing when the server dies.
        for i in 0 ..< 3 {
            try Subprocess.checked(["sh", "-c", "head -c 10000000 /dev/urandom > '\(src)/big\(i).bin'"])
        }
        // Killed once the archive is being written.
        let partialDir = g.exportPath + "/" + dir + "/g"
        let (status, stderr) = try Self.backupKillingServer(g, source: src, to: spec, once: ".partial", appearsIn: partialDir)
        #expect(status == 1, "\(stderr)")
        #expect(stderr.contains("error:") && stderr.contains("nfs://") && stderr.contains("Nothing was committed"), "\(stderr)")
        try g.restart()
        let names = try FileManager.default.contentsOfDirectory(atPath: partialDir)
        #expect(names.filter { $0.hasSuffix(".manifest") }.count == 1, "\(names)")
        let next = try Tools.run("hs-backup", ["--source", src, "--to", spec, "--name", "g"])
        #expect(next.status == 0, "\(next.stderr)")
        let after = try FileManager.default.contentsOfDirectory(atPath: partialDir)
        #expect(!after.contains { $0.hasSuffix(".partial") }, "\(after)")
        let ids = after.filter { $0.hasSuffix(".manifest") }.map { String($0.dropLast(9)) }.sorted()
        #expect(ids.count == 2)
        let r0 = try Tools.run("hs-restore", ["--from", spec, "--name", "g", "--backup", ids[0], "--to", work.sub("r0")])
        #expect(r0.status == 0, "\(r0.stderr)")
        #expect(Tree.diff(try Tree.describe(snap), try Tree.describe(work.sub("r0"))).isEmpty)
        let r1 = try Tools.run("hs-restore", ["--from", spec, "--name", "g", "--to", work.sub("r1")])
        #expect(r1.status == 0, "\(r1.stderr)")
        #expect(Tree.diff(try Tree.describe(src), try Tree.describe(work.sub("r1"))).isEmpty)
    }

    /// nfs-ganesha killed while an incremental reads the previous manifest (and writes the
    /// new one): whichever NFS call fails first, the error says that nothing was committed.
    @Test func serverKilledWhileThePreviousManifestIsRead() throws {
        let g = try GaneshaServer()
        defer { g.stop() }
        let work = try TempDir("hs-backup-gkill2")
        let src = work.sub("src")
        // Many small files: a previous manifest of several members.
        for i in 0 ..< 40_000 { try Tree.write("\(src)/d\(i % 97)/file-with-a-longer-name-\(i).txt", "\(i)\n") }
        let dir = try g.makeUniqueDirectory("gkill2")
        let spec = g.url(path: dir)
        let first = try Tools.run("hs-backup", ["--source", src, "--to", spec, "--name", "g"])
        #expect(first.status == 0, "\(first.stderr)")
        // Killed once the new manifest's .partial exists: the incremental is reading the previous one.
        let setDir = g.exportPath + "/" + dir + "/g"
        let (status, stderr) = try Self.backupKillingServer(g, source: src, to: spec, once: ".manifest.partial", appearsIn: setDir)
        #expect(status == 1, "\(stderr)")
        let error = stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }
        #expect(error.count == 1 && error[0].contains("nfs://") && error[0].contains("Nothing was committed"), "\(stderr)")
        try g.restart()
        let next = try Tools.run("hs-backup", ["--source", src, "--to", spec, "--name", "g"])
        #expect(next.status == 0, "\(next.stderr)")
        let names = try FileManager.default.contentsOfDirectory(atPath: g.exportPath + "/" + dir + "/g")
        #expect(names.filter { $0.hasSuffix(".manifest") }.count == 2 && !names.contains { $0.hasSuffix(".partial") }, "\(names)")
    }
}
