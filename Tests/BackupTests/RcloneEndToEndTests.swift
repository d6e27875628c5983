// hs-backup run / list / verify and hs-restore over rclone: the sftp backend against a real
// sshd, and the local backend.
import Foundation
import Backup
import Storage
import Support
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Processes whose environment holds `tag` (the rclone servers and uploads a tool started).
func processesTagged(_ tag: String) -> [Int32] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return names.compactMap { Int32($0) }.filter { pid in
        guard let env = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { return false }
        return env.split(separator: 0).contains { String(decoding: $0, as: UTF8.self) == "HS_TEST_TAG=\(tag)" }
    }
}

@Suite("rclone destinations end to end", .serialized)
struct RcloneEndToEndTests {
    @Test("run, an incremental, list, verify and an exact restore through rclone (sftp and local)", arguments: ["sftp", "local"])
    func roundTrip(_ backend: String) throws {
        let s = try SSHServer.shared()
        let work = try TempDir("hs-rclone-e2e")
        try Tree.makeSample(work.sub("appdata"))
        let dir = try s.makeUniqueDirectory("e2e-\(backend)")
        let dest = "rclone:" + (backend == "sftp" ? s.remote(dir) : s.localRemote(dir))
        let tag = "e2e-\(getpid())-\(backend)"
        var env = s.environment
        env["HS_BACKUP_SQLITE_CAPTURE"] = "0"
        env["HS_TEST_TAG"] = tag
        let first = try Tools.run("hs-backup", ["run", "--source", work.sub("appdata"), "--to", dest, "--name", "io", "--json"], environment: env)
        #expect(first.status == 0, "\(first.stderr)")
        try Tree.write(work.sub("appdata/changed.txt"), "changed after the first backup\n")
        let second = try Tools.run("hs-backup", ["run", "--source", work.sub("appdata"), "--to", dest, "--name", "io", "--json"], environment: env)
        #expect(second.status == 0 && second.stdout.contains("\"incremental\""), "\(second.stdout) \(second.stderr)")
        let files = filesIn(s.local(dir + "/io"))
        #expect(files.filter { $0.hasSuffix(".manifest") }.count == 2 && !files.contains("lock")
                && !files.contains { $0.contains(".partial") || $0.contains(".tmp-") }, "\(files)")

        let list = try Tools.run("hs-backup", ["list", "--to", dest, "--name", "io"], environment: env)
        #expect(list.status == 0 && list.stdout.contains("incremental"), "\(list.stdout) \(list.stderr)")
        let verify = try Tools.run("hs-backup", ["verify", "--to", dest, "--name", "io"], environment: env)
        #expect(verify.status == 0 && verify.stdout.contains("ok:"), "\(verify.stdout) \(verify.stderr)")

        let restored = work.sub("restored")
        let r = try Tools.run("hs-restore", ["--from", dest, "--name", "io", "--to", restored], environment: env)
        #expect(r.status == 0, "\(r.stderr)")
        let d = Tree.diff(try Tree.describe(work.sub("appdata"), skipping: [cacheDir]), try Tree.describe(restored))
        #expect(d.isEmpty, "\(d.prefix(10))")
        #expect(waitFor(10) { processesTagged(tag).isEmpty }, "no rclone left behind: \(processesTagged(tag))")
    }

    @Test("a killed hs-backup leaves no rclone behind, and the next run cleans up and commits")
    func killedRunLeavesNoRclone() throws {
        let s = try SSHServer.shared()
        let work = try TempDir("hs-rclone-kill")
        let src = try bigSource(work, megabytes: 64)
        let dir = try s.makeUniqueDirectory("kill")
        let tag = "kill-\(getpid())"
        var env = s.environment
        env["HS_BACKUP_SQLITE_CAPTURE"] = "0"
        env["HS_TEST_TAG"] = tag
        env["RCLONE_BWLIMIT"] = "8M"  // rclone's own options reach it: the upload takes seconds
        let dest = "rclone:" + s.remote(dir)
        let run = try RunningTool("hs-backup", ["run", "--source", src, "--to", dest, "--name", "io"], environment: env)
        #expect(waitFor(60) { filesIn(s.local(dir + "/io")).contains { $0.hasSuffix(".partial") } }, "upload started: \(run.stderr)")
        #expect(!processesTagged(tag).isEmpty)
        kill(run.process.processIdentifier, SIGKILL)
        _ = run.wait(upTo: 10)
        #expect(waitFor(15) { processesTagged(tag).isEmpty }, "rclone stops when hs-backup dies: \(processesTagged(tag))")
        env["RCLONE_BWLIMIT"] = nil
        let next = try Tools.run("hs-backup", ["run", "--source", src, "--to", dest, "--name", "io"], environment: env)
        #expect(next.status == 0, "\(next.stderr)")
        #expect(next.stderr.contains("stale lock") || next.stdout.contains("stale lock"), "the dead run's lock is taken over: \(next.stderr)")
        let files = filesIn(s.local(dir + "/io"))
        #expect(files.filter { $0.hasSuffix(".manifest") }.count == 1 && !files.contains { $0.contains(".partial") }, "\(files)")
    }
}

@Suite struct RcloneLockTests {
    @Test func aLockHeldOnAnRcloneRemoteSaysItIsBestEffort() throws {
        let s = try SSHServer.shared()
        let dir = try s.makeUniqueDirectory("lock")
        let d = try RcloneDestination(try #require(RcloneRemote(fs: s.remote(dir))), environment: s.environment)
        try d.makeDirectories("io")
        let a = SetLock(destination: d, set: "io")
        try a.acquire(operation: "run")
        let e = #expect(throws: ToolError.self) { try SetLock(destination: d, set: "io").acquire(operation: "copy") }
        #expect(e?.message.contains("locked by host") == true && e?.message.contains("best-effort") == true, "\(String(describing: e))")
        a.release()
        #expect(try d.stat("io/lock") == nil)
        // Local and NFS locks are atomic: no such note.
        #expect(SetLock.bestEffortNote(LocalDestination(root: "/tmp")).isEmpty)
    }
}

/// A DEST of rclone's local backend inside the source is a directory inside the source, as a
/// plain path there is: the scan must leave it out (or each backup holds the earlier ones, and
/// the first its own archive as it is written).
@Suite("rclone destinations inside the source")
struct RcloneDestinationInsideSourceTests {
    @Test("rclone::local:, a type = local remote and an alias inside --source are left out of the scan as a plain path is; a crypt remote there is not")
    func localBackendInsideSource() throws {
        let work = try TempDir("hs-rclone-in-src")
        let src = work.sub("appdata")
        try Tree.write(src + "/app/config.yml", "a: 1\n")
        let password = try Subprocess.checked(["rclone", "obscure", "secret"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try Tree.write(work.sub("rclone.conf"), "[disk]\ntype = local\n\n[srcalias]\ntype = alias\nremote = \(src)/alias\n\n"
                       + "[srccrypt]\ntype = crypt\nremote = \(src)/crypt\npassword = \(password)\n")
        let env = ["RCLONE_CONFIG": work.sub("rclone.conf"), "HS_BACKUP_SQLITE_CAPTURE": "0"]
        func backup(_ dest: String) throws -> (status: Int32, json: [String: Any], stderr: String) {
            let r = try Tools.run("hs-backup", ["run", "--source", src, "--to", dest, "--name", "t", "--json"], environment: env)
            return (r.status, (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any] ?? [:], r.stderr)
        }
        // The first backup's archive, as tar lists it.
        func members(_ dir: String) throws -> [String] {
            let archive = try #require(filesIn(dir + "/t").first { $0.hasSuffix(".tar.gz") }, "no archive in \(dir)/t: \(filesIn(dir + "/t"))")
            return try Subprocess.checked(["tar", "-tzf", dir + "/t/" + archive]).stdout.split(separator: "\n").map(String.init)
        }
        for (dest, name) in [("rclone::local:" + src + "/backups", "backups"), ("rclone:disk:" + src + "/disk", "disk"), ("rclone:srcalias:", "alias")] {
            let first = try backup(dest), second = try backup(dest)
            #expect(first.status == 0 && second.status == 0, "\(dest): \(first.stderr) \(second.stderr)")
            for (run, json) in [("first", first.json), ("second", second.json)] {
                let said = (json["warnings"] as? [String] ?? []).filter { $0.contains("inside the source") && $0.contains("(at \(name))") }
                #expect(said.count == 1, "\(dest), \(run) run: \(json["warnings"] ?? "no --json: \(first.stderr)")")
            }
            #expect(second.json["files_archived"] as? Int == 0, "\(dest): the second backup archived the first: \(second.json)")
            let inside = try members(src + "/" + name).filter { $0.hasPrefix(name) }
            #expect(inside.isEmpty, "\(dest): the archive holds the destination: \(inside)")
        }
        // A crypt remote stores another tree (encrypted names and contents) in its directory:
        // another place, not the destination's directory, so it is not left out.
        let crypt = try backup("rclone:srccrypt:")
        #expect(!(crypt.json["warnings"] as? [String] ?? []).contains { $0.contains("inside the source") }, "\(crypt.json) \(crypt.stderr)")
    }
}
