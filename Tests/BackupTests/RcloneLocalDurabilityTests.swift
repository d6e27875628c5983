// What hs-backup commits to an rclone remote of the local backend (a USB disk named as a
// remote, an alias of a local path) is on stable storage: rclone itself never fsyncs there, so
// hs-backup does, as for a local destination. Checked on the real tool and the real rclone
// under strace.
import Foundation
import Support
import TestSupport
import Testing

/// One system call in strace's `-f -y` output, its `<unfinished ...>` and `<... resumed>`
/// halves joined (placed where it completed).
struct TracedCall {
    var tid: Int32
    var name: String
    /// The call as strace wrote it, without the thread id.
    var text: String
    /// The number after ` = ` (nil for a call that never returned).
    var result: Int?

    /// The file of the first argument when it is a descriptor (`-y`: `fsync(5</a/b>)`).
    var descriptorPath: String? {
        guard let open = text.firstIndex(of: "("), let lt = text[open...].firstIndex(of: "<"),
              text[text.index(after: open) ..< lt].allSatisfy(\.isNumber), let gt = text[lt...].firstIndex(of: ">") else { return nil }
        return String(text[text.index(after: lt) ..< gt])
    }

    /// The quoted arguments (paths), in order.
    var strings: [String] {
        text.split(separator: "\"", omittingEmptySubsequences: false).enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) }
    }

    /// strace's lines as calls, in the order they completed (signals and exits left out).
    static func parse(_ lines: [String]) -> [TracedCall] {
        var pending: [Int32: String] = [:]
        var out: [TracedCall] = []
        for line in lines {
            guard let space = line.firstIndex(of: " "), let tid = Int32(line[..<space]) else { continue }
            var body = String(line[space...].drop { $0 == " " })
            if body.hasPrefix("---") || body.hasPrefix("+++") { continue }
            if body.hasSuffix("<unfinished ...>") {
                pending[tid] = String(body.dropLast("<unfinished ...>".count))
                continue
            }
            if body.hasPrefix("<... "), let resumed = body.range(of: " resumed>") {
                body = (pending.removeValue(forKey: tid) ?? "") + body[resumed.upperBound...]
            }
            guard let paren = body.firstIndex(of: "(") else { continue }
            let result = body.range(of: " = ", options: .backwards).flatMap { r in Int(body[r.upperBound...].prefix { $0 == "-" || $0.isNumber }) }
            out.append(TracedCall(tid: tid, name: String(body[..<paren]), text: body, result: result))
        }
        return out
    }

    /// The threads of the traced command itself (hs-backup, the first process), not of the
    /// programs it started (rclone, sh): a thread that ran a program (execve) and every thread
    /// it or its descendants made (clone) belong to that program.
    static func ownThreads(_ calls: [TracedCall]) -> Set<Int32> {
        guard let root = calls.first?.tid else { return [] }
        var parent: [Int32: Int32] = [:]
        var ranProgram: Set<Int32> = []
        for (i, c) in calls.enumerated() {
            if ["clone", "clone3", "fork", "vfork"].contains(c.name), let child = c.result, child > 0 { parent[Int32(child)] = c.tid }
            if i > 0, c.name.hasPrefix("execve"), c.result == 0 { ranProgram.insert(c.tid) }
        }
        func own(_ tid: Int32) -> Bool {
            var t = tid
            while !ranProgram.contains(t) {
                if t == root { return true }
                guard let p = parent[t] else { return false }
                t = p
            }
            return false
        }
        return Set(calls.map(\.tid).filter(own))
    }
}

@Suite("rclone's local backend: what hs-backup commits there is durable")
struct RcloneLocalDurabilityTests {
    /// The calls traced: fsyncs, everything that writes a file's data, renames, and what tells
    /// hs-backup's threads from rclone's.
    static let trace = "fsync,fdatasync,write,writev,pwrite64,pwritev,copy_file_range,splice,sendfile,"
        + "rename,renameat,renameat2,clone,clone3,fork,vfork,execve"

    /// `run` into a `type = local` remote (a 6 MiB archive: `rclone rcat`), `copy` to an alias
    /// of one (rclone uploads the files itself): each file committed, and the lock, fsynced by
    /// hs-backup after it was last written and before it got its name; the set directory after
    /// the commit's renames; the directories above it before the commit.
    @Test("hs-backup fsyncs what it commits to rclone's local backend: files, lock, set directory and its parents", arguments: ["run", "copy"])
    func committedFilesAreFsynced(_ command: String) throws {
        let dir = try TempDir("hs-rclone-local-sync")
        let src = try bigSource(dir, megabytes: 6)   // an archive over 4 MiB goes up through `rclone rcat`
        let usb = dir.sub("usb/backups"), setDir = usb + "/io"
        try Tree.write(dir.sub("rclone.conf"), "[usb]\ntype = local\n\n[usbalias]\ntype = alias\nremote = \(usb)\n")
        let env = ["RCLONE_CONFIG": dir.sub("rclone.conf")]
        let arguments: [String]
        if command == "run" {
            arguments = ["run", "--source", src, "--to", "rclone:usb:" + usb, "--name", "io"]
        } else {
            let first = try Tools.run("hs-backup", ["run", "-q", "--source", src, "--to", dir.sub("nas"), "--name", "io"],
                                      environment: ["HS_BACKUP_SQLITE_CAPTURE": "0"])
            try #require(first.status == 0, "\(first.stderr)")
            arguments = ["copy", "--from", dir.sub("nas"), "--to", "rclone:usbalias:", "--name", "io"]
        }
        let (r, lines) = try hsBackupUnderStrace(dir, arguments, trace: Self.trace, environment: env)
        #expect(r.status == 0, "exit \(r.status): \(r.stderr)")
        let calls = TracedCall.parse(lines)
        let own = TracedCall.ownThreads(calls)
        let syncs = calls.indices.filter { i in
            ["fsync", "fdatasync"].contains(calls[i].name) && calls[i].result == 0 && own.contains(calls[i].tid)
        }
        func syncedByHsBackup(_ path: String, in range: Range<Int>) -> Bool {
            syncs.contains { range.contains($0) && calls[$0].descriptorPath == path }
        }
        func lastWrite(_ path: String) -> Int? {
            calls.lastIndex { $0.name != "fsync" && $0.name != "fdatasync" && $0.descriptorPath == path && ($0.result ?? 0) > 0 }
        }
        let renames = calls.indices.filter { calls[$0].name.hasPrefix("rename") && calls[$0].result == 0 && calls[$0].strings.count >= 2 }
        // What the failure messages show: hs-backup's fsyncs and the renames, in order.
        let shown = (syncs + renames).sorted().map { "\(calls[$0].tid) \(calls[$0].text)" }.joined(separator: "\n")
        // rclone's move does the renames: its threads are told apart from hs-backup's.
        #expect(!renames.isEmpty && !renames.contains { own.contains(calls[$0].tid) }, "\(command): renames by hs-backup's threads:\n\(shown)")

        let files = filesIn(setDir)
        #expect(files.contains { $0.hasSuffix(".manifest") } && files.contains { $0.hasSuffix(".tar.gz") }, "\(files)")
        for name in files {
            let path = setDir + "/" + name
            // A file got its name by a rename (from `.partial`, `.tmp-<pid>`) or was written under it.
            let rename = renames.last { calls[$0].strings[1] == path }
            let written = rename.map { calls[$0].strings[0] } ?? path
            let wrote = try #require(lastWrite(written), "\(command): no write of \(written) traced")
            #expect(syncedByHsBackup(written, in: (wrote + 1) ..< (rename ?? calls.count)),
                    "\(command): \(written) was not fsynced by hs-backup after it was written\(rename == nil ? "" : ", before it became \(name)"):\n\(shown)")
        }
        // The lock (removed since): fsynced once written, as on a local destination.
        let lock = try #require(lastWrite(setDir + "/lock"), "\(command): no write of the lock traced")
        #expect(syncedByHsBackup(setDir + "/lock", in: (lock + 1) ..< calls.count), "\(command): the lock was not fsynced:\n\(shown)")
        // The set directory after the last rename into it; the directories rclone made, before the commit.
        let lastRename = try #require(renames.last { calls[$0].strings[1].hasPrefix(setDir + "/") }, "\(command): no rename into \(setDir)")
        #expect(syncedByHsBackup(setDir, in: (lastRename + 1) ..< calls.count), "\(command): \(setDir) not fsynced after the renames:\n\(shown)")
        let commit = try #require(renames.first { calls[$0].strings[1].hasSuffix(".manifest") }, "\(command): no commit")
        for parent in [usb, dir.sub("usb"), dir.path] {
            #expect(syncedByHsBackup(parent, in: 0 ..< commit), "\(command): \(parent) not fsynced before the commit:\n\(shown)")
        }
    }
}

/// A failed fsync on rclone's local backend is the command's failure, as on a local destination.
@Suite("rclone's local backend: a failed fsync there fails the command")
struct RcloneLocalSyncFailureTests {
    /// A temporary directory with a small source, and an rclone config naming `usb`, a local
    /// remote, at `usb/backups` in it.
    private func fixture() throws -> (dir: TempDir, src: String, usb: String, env: [String: String]) {
        let dir = try TempDir("hs-rclone-local-eio")
        try Tree.write(dir.sub("appdata/app/config.xml"), "<ApiKey>secret</ApiKey>\n")
        try Tree.write(dir.sub("rclone.conf"), "[usb]\ntype = local\n")
        return (dir, dir.sub("appdata"), dir.sub("usb/backups"), ["RCLONE_CONFIG": dir.sub("rclone.conf")])
    }

    @Test("EIO from the set directory's fsync after a run's commit: exit 1, the directory and what to do named")
    func directorySyncFailure() throws {
        let (dir, src, usb, env) = try fixture()
        // The first fsync of the set directory itself (its parents are fsynced before, not it).
        let (r, lines) = try hsBackupUnderStrace(dir, ["run", "--source", src, "--to", "rclone:usb:" + usb, "--name", "io"], trace: "fsync",
                                                 inject: "fsync:error=EIO:when=1", only: usb + "/io", environment: env)
        let injected = lines.filter { $0.contains("(INJECTED)") }
        try #require(injected.count == 1 && injected[0].contains("<\(usb)/io>"), "the injected EIO did not hit the set directory: \(lines)")
        #expect(r.status == 1, "exit \(r.status): \(r.stderr)")
        #expect(r.stderr.contains("Input/output error") && r.stderr.contains("\(usb)/io") && r.stderr.contains("power loss"), "\(r.stderr)")
    }

    @Test("EIO from the fsync of a manifest a copy uploaded: exit 1, the file named, nothing committed")
    func fileSyncFailure() throws {
        let (dir, src, usb, env) = try fixture()
        let nas = dir.sub("nas")
        let first = try Tools.run("hs-backup", ["run", "-q", "--source", src, "--to", nas, "--name", "io"], environment: ["HS_BACKUP_SQLITE_CAPTURE": "0"])
        try #require(first.status == 0, "\(first.stderr)")
        let manifest = try #require(filesIn(nas + "/io").first { $0.hasSuffix(".manifest") })
        let partial = usb + "/io/" + manifest + ".partial"
        let (r, lines) = try hsBackupUnderStrace(dir, ["copy", "--from", nas, "--to", "rclone:usb:" + usb, "--name", "io"], trace: "fsync",
                                                 inject: "fsync:error=EIO", only: partial, environment: env)
        try #require(lines.contains { $0.contains("(INJECTED)") && $0.contains("<\(partial)>") }, "no fsync of \(partial): \(lines)")
        #expect(r.status == 1, "exit \(r.status): \(r.stderr)")
        #expect(r.stderr.contains("fsync") && r.stderr.contains(partial) && r.stderr.contains("Input/output error"), "\(r.stderr)")
        #expect(!filesIn(usb + "/io").contains { $0.hasSuffix(".manifest") }, "committed: \(filesIn(usb + "/io"))")
    }
}
