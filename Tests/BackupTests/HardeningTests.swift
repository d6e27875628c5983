// Defects of issue #23 (a source that changes, lies or attacks under a running backup), each
// as a test that failed on the code before the fix: a directory swapped for a symlink during
// the run, paths longer than PATH_MAX, files swapped or unreadable, a clock that is behind,
// damage on the destination (a deleted or copied manifest), names printed raw, sparse files,
// usage errors, and verify comparing tar headers with the manifest.
//
// Races are real: a real rename against a real `hs-backup` process, timed by inotify events
// on the source (the scan opening a directory), with the landings counted.
import Foundation
import Testing
import Archive
import BackupOps
@testable import Backup
import Storage
import Support
import Synchronization
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Watches directories with inotify (IN_OPEN) and calls back on each event, on its own thread.
final class OpenWatch: @unchecked Sendable {
    struct Event { var wd: Int32; var isDir: Bool; var name: String }
    private let fd: Int32
    private var stopped = false
    private let lock = NSLock()
    private var thread: Thread?

    init() throws {
        fd = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        guard fd >= 0 else { throw ToolError("inotify_init1 failed: errno \(errno)") }
    }

    func watch(_ path: String) throws -> Int32 {
        let wd = inotify_add_watch(fd, path, UInt32(IN_OPEN))
        guard wd >= 0 else { throw ToolError("inotify_add_watch \(path) failed: errno \(errno)") }
        return wd
    }

    /// Delivers events to `handle` until `stop()`.
    func start(_ handle: @escaping @Sendable (Event) -> Void) {
        let t = Thread { [self] in
            var buf = [UInt8](repeating: 0, count: 64 * 1024)
            while true {
                lock.lock(); let s = stopped; lock.unlock()
                if s { return }
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                if poll(&p, 1, 20) <= 0 { continue }
                let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
                if n <= 0 { continue }
                var off = 0
                while off + 16 <= n {
                    let wd = buf.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: off, as: Int32.self) }
                    let mask = buf.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: off + 4, as: UInt32.self) }
                    let len = Int(buf.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: off + 12, as: UInt32.self) })
                    let nameBytes = buf[(off + 16) ..< (off + 16 + len)].prefix { $0 != 0 }
                    handle(Event(wd: wd, isDir: mask & UInt32(IN_ISDIR) != 0, name: String(decoding: nameBytes, as: UTF8.self)))
                    off += 16 + len
                }
            }
        }
        thread = t
        t.start()
    }

    func stop() {
        lock.lock(); stopped = true; lock.unlock()
        usleep(50_000)
        close(fd)
    }
}

/// State shared between a test and its inotify thread.
final class RaceState: Sendable {
    struct Value { var swapped = false, opensBefore = 0, opensAfter = 0, openedEarly = false }
    let value = Mutex(Value())
}

/// Runs a built tool in the background (stdout and stderr to files).
final class BackgroundTool {
    let process = Process()
    let out: String, err: String
    init(_ tool: String, _ arguments: [String], scratch: TempDir, environment: [String: String] = [:]) throws {
        out = scratch.sub("out-\(UUID().uuidString)"); err = scratch.sub("err-\(UUID().uuidString)")
        try Data().write(to: URL(fileURLWithPath: out))
        try Data().write(to: URL(fileURLWithPath: err))
        process.executableURL = URL(fileURLWithPath: Tools.path(tool))
        process.arguments = arguments
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, b in b } }
        process.standardOutput = FileHandle(forWritingAtPath: out)
        process.standardError = FileHandle(forWritingAtPath: err)
        try process.run()
    }
    func wait() -> (status: Int32, stdout: String, stderr: String) {
        process.waitUntilExit()
        return (process.terminationStatus, (try? String(contentsOfFile: out, encoding: .utf8)) ?? "",
                (try? String(contentsOfFile: err, encoding: .utf8)) ?? "")
    }
}

/// Helpers shared by the hardening tests.
enum Hardening {
    static func write(_ path: String, _ text: String, mode: Int = 0o644) throws {
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, mode_t(mode))
    }

    static func json(_ text: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
    }

    /// Every argument of every command of the five tools (`--experimental-dump-help`), with
    /// where it is ("hs-backup run"): what `problem` says of each, collected.
    static func argumentProblems(_ problem: (_ argument: [String: Any], _ where: String) -> String?) throws -> [String] {
        func walk(_ command: [String: Any], _ where_: String) -> [String] {
            var bad = (command["arguments"] as? [[String: Any]] ?? []).compactMap { problem($0, where_) }
            for sub in command["subcommands"] as? [[String: Any]] ?? [] {
                bad += walk(sub, where_ + " " + (sub["commandName"] as? String ?? "?"))
            }
            return bad
        }
        var bad: [String] = []
        for tool in ["hs-backup", "hs-restore", "hs-linkcheck", "hs-provision", "hs-deploy"] {
            let r = try Tools.run(tool, ["--experimental-dump-help"])
            #expect(r.status == 0, "\(tool): \(r.stderr)")
            let command = try #require(json(r.stdout)["command"] as? [String: Any], "\(tool): \(r.stdout.prefix(200))")
            #expect((command["arguments"] as? [Any])?.isEmpty == false || (command["subcommands"] as? [Any])?.isEmpty == false, "\(tool)")
            bad += walk(command, tool)
        }
        return bad
    }

    /// Every byte of every archive of `set` in `dest`, decompressed.
    static func archiveBytes(_ dest: String, set: String = "t") throws -> Data {
        var all = Data()
        for a in try archives(in: dest, set: set) {
            let r = try Subprocess.run(["sh", "-c", "gzip -dc '\(a)' | base64 -w0"])
            all += Data(base64Encoded: r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? Data()
        }
        return all
    }

    static func ids(_ dest: String, set: String = "t") throws -> [String] {
        try BackupSet(destination: LocalDestination(root: dest), name: set).committedIDs()
    }

    static func manifest(_ dest: String, _ id: String, set: String = "t") throws -> Manifest {
        try BackupSet(destination: LocalDestination(root: dest), name: set).loadManifest(id)
    }

    /// Runs `hs-backup` as root without the capabilities that let root read any file
    /// (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH): a mode-000 file then gives EACCES, as on a
    /// root-squashed NFS or a FUSE source.
    static func backupWithoutDACOverride(_ arguments: [String]) throws -> ProcessResult {
        try Subprocess.run(["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search",
                            Tools.path("hs-backup")] + arguments)
    }

    /// A directory chain below `root` whose full path is longer than PATH_MAX: 17 directories
    /// of 250-byte names, then `deepfile.txt` holding `content`. Made with *at calls.
    static func makeDeepTree(_ root: String, content: String) throws -> [String] {
        var names: [String] = []
        var fd = open(root, O_RDONLY | O_DIRECTORY)
        guard fd >= 0 else { throw ToolError("open \(root)") }
        for i in 0 ..< 17 {
            let name = String(format: "%02d", i) + String(repeating: "d", count: 248)
            names.append(name)
            guard mkdirat(fd, name, 0o755) == 0 else { throw ToolError("mkdirat: errno \(errno)") }
            let next = openat(fd, name, O_RDONLY | O_DIRECTORY)
            close(fd)
            guard next >= 0 else { throw ToolError("openat: errno \(errno)") }
            fd = next
        }
        let f = openat(fd, "deepfile.txt", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        close(fd)
        guard f >= 0 else { throw ToolError("create deepfile.txt: errno \(errno)") }
        _ = Array(content.utf8).withUnsafeBytes { Glibc.write(f, $0.baseAddress!, $0.count) }
        close(f)
        return names
    }

    /// The content of `names`/deepfile.txt below `root` (nil when absent), read with *at calls.
    static func readDeep(_ root: String, _ names: [String]) -> String? {
        var fd = open(root, O_RDONLY | O_DIRECTORY)
        for n in names {
            guard fd >= 0 else { return nil }
            let next = openat(fd, n, O_RDONLY | O_DIRECTORY)
            close(fd)
            fd = next
        }
        guard fd >= 0 else { return nil }
        let f = openat(fd, "deepfile.txt", O_RDONLY)
        close(fd)
        guard f >= 0 else { return nil }
        defer { close(f) }
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = read(f, &buf, 4096)
        return n < 0 ? nil : String(decoding: buf[0 ..< n], as: UTF8.self)
    }
}

@Suite("Issue 23: the source changes, lies or attacks", .serialized)
struct HardeningTests {
    /// `src/app/d` (3000 files) is renamed away and replaced by a symlink to a canary
    /// directory outside the source as soon as the scan opens it (inotify IN_OPEN), while the
    /// backup still has to read its files. A landing: the rename completed after the scan
    /// opened the directory and before all of its files had been opened for reading. At least
    /// 5 landings are needed; the canary's content must be in no archive, no manifest, no restore.
    @Test("a directory swapped for a symlink during the run never makes the backup read outside --source")
    func symlinkSwapRace() throws {
        let work = try TempDir("hs-swap")
        let canary = work.sub("canary")
        try FileManager.default.createDirectory(atPath: canary, withIntermediateDirectories: true)
        let count = 3000
        let secret = "CANARY-\(UUID().uuidString.prefix(8))"
        var canaryHashes = Set<Digest>()
        for i in 0 ..< count {
            let text = "\(secret)-\(String(format: "%05d", i))\n"
            try Hardening.write(canary + "/" + String(format: "f%05d", i), text)
            canaryHashes.insert(Digest(SHA256Hasher.hash(Array(text.utf8))))
        }
        var landings = 0
        for attempt in 0 ..< 12 where landings < 5 {
            let src = work.sub("src\(attempt)")
            let d = src + "/app/d"
            try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
            for i in 0 ..< count {
                // Same length as the canary's content: a leak would look like a clean read.
                try Hardening.write(d + "/" + String(format: "f%05d", i), "DATAXX-\(String(secret.dropFirst(7)))-\(String(format: "%05d", i))\n")
            }
            let dest = work.sub("dest\(attempt)")
            try FileManager.default.createDirectory(atPath: dest, withIntermediateDirectories: true)
            let watch = try OpenWatch()
            let wd = try watch.watch(d)
            let state = RaceState()
            watch.start { ev in
                guard ev.wd == wd else { return }
                state.value.withLock { v in
                    if ev.isDir && ev.name.isEmpty && !v.swapped {
                        // The scan opened d: swap it now.
                        if rename(d, src + "/app/d.moved") == 0 && symlink(canary, d) == 0 { v.swapped = true }
                    } else if !ev.isDir && !ev.name.isEmpty {
                        if v.swapped { v.opensAfter += 1 } else { v.opensBefore += 1 }
                    }
                }
            }
            let tool = try BackgroundTool("hs-backup", ["run", "--source", src, "--to", dest, "--name", "t", "--json"], scratch: work)
            let r = tool.wait()
            watch.stop()
            let (landed, opensBeforeSwap, opensAfterSwap) = state.value.withLock { ($0.swapped && $0.opensBefore < count, $0.opensBefore, $0.opensAfter) }
            if landed { landings += 1 }
            #expect(r.status == 0 || r.status == 3, "attempt \(attempt): exit \(r.status): \(r.stderr)")
            let bytes = try Hardening.archiveBytes(dest)
            #expect(bytes.range(of: Data(secret.utf8)) == nil, "attempt \(attempt): the canary's content is in the archive")
            for id in try Hardening.ids(dest) {
                let m = try Hardening.manifest(dest, id)
                let leaked = m.items().filter { canaryHashes.contains($0.hash) }
                #expect(leaked.isEmpty, "attempt \(attempt): the manifest holds the canary's hash for \(leaked.prefix(3).map { String(decoding: $0.path, as: UTF8.self) })")
            }
            let target = work.sub("restore\(attempt)")
            let restored = try Tools.run("hs-restore", ["--from", dest, "--name", "t", "--to", target])
            #expect(restored.status == 0, "\(restored.stderr)")
            let grep = try Subprocess.run(["grep", "-rl", secret, target])
            #expect(grep.stdout.isEmpty, "attempt \(attempt): the restore holds the canary: \(grep.stdout.prefix(200))")
            Issue.record(Comment(rawValue: "attempt \(attempt): landed \(landed), opens before/after the swap \(opensBeforeSwap)/\(opensAfterSwap)"), severity: .warning)
        }
        #expect(landings >= 5, "only \(landings) of 12 attempts landed the swap between the scan and the reads")
    }

    /// Files stat'ed by the scan are swapped before they are read: one for a symlink to a
    /// host file, one for a directory, one deleted. The run commits, names the two it left out
    /// and exits 3; the deleted one is only a warning.
    @Test("a file swapped for a symlink or a directory during the run is left out (exit 3), never an aborted run")
    func fileSwapRace() throws {
        let work = try TempDir("hs-fswap")
        var landings = 0
        for attempt in 0 ..< 6 where landings < 3 {
            let src = work.sub("src\(attempt)")
            try FileManager.default.createDirectory(atPath: src + "/z", withIntermediateDirectories: true)
            let big = String(repeating: "0123456789abcdef", count: 256 * 1024)   // 4 MiB: read, not prefetched
            for n in ["a-link", "b-dir", "c-gone"] { try Hardening.write(src + "/" + n, big) }
            for i in 0 ..< 3000 { try Hardening.write(src + "/z/" + String(format: "f%05d", i), "z\(i)\n") }
            let dest = work.sub("dest\(attempt)")
            try FileManager.default.createDirectory(atPath: dest, withIntermediateDirectories: true)
            let watch = try OpenWatch()
            let rootWd = try watch.watch(src)
            let zWd = try watch.watch(src + "/z")
            let state = RaceState()
            watch.start { ev in
                state.value.withLock { v in
                    if ev.wd == zWd && ev.isDir && ev.name.isEmpty && !v.swapped {
                        // The scan is inside z: the three files were stat'ed, not read yet.
                        unlink(src + "/a-link"); symlink("/etc/hostname", src + "/a-link")
                        unlink(src + "/b-dir"); mkdir(src + "/b-dir", 0o755)
                        unlink(src + "/c-gone")
                        v.swapped = true
                    } else if ev.wd == rootWd && !ev.isDir && ["a-link", "b-dir", "c-gone"].contains(ev.name) && !v.swapped {
                        v.openedEarly = true
                    }
                }
            }
            let tool = try BackgroundTool("hs-backup", ["run", "--source", src, "--to", dest, "--name", "t", "--json"], scratch: work)
            let r = tool.wait()
            watch.stop()
            let landed = state.value.withLock { $0.swapped && !$0.openedEarly }
            guard landed else { continue }
            landings += 1
            #expect(r.status == 3, "attempt \(attempt): exit \(r.status), stderr: \(r.stderr)")
            let summary = Hardening.json(r.stdout)
            let missing = summary["missing"] as? [String: Any] ?? [:]
            #expect(missing["count"] as? Int == 2, "attempt \(attempt): \(r.stdout)")
            let names = (missing["first"] as? [[String: Any]] ?? []).compactMap { $0["path"] as? String }
            #expect(Set(names) == ["a-link", "b-dir"], "attempt \(attempt): \(names)")
            #expect(r.stderr.contains("c-gone"), "the vanished file is named in a warning")
            let ids = try Hardening.ids(dest)
            #expect(ids.count == 1, "the backup is committed")
            if let id = ids.first {
                let m = try Hardening.manifest(dest, id)
                let paths = Set(m.items().map { String(decoding: $0.path, as: UTF8.self) })
                #expect(!paths.contains("a-link") && !paths.contains("b-dir") && !paths.contains("c-gone"))
                #expect(paths.contains("z/f02999"))
            }
        }
        #expect(landings >= 3, "only \(landings) of 6 attempts swapped the files between the scan and the reads")
    }

    @Test("a file whose path is longer than PATH_MAX (17 x 250-byte directories) is backed up and restored")
    func deepPath() throws {
        let work = try TempDir("hs-deep")
        let src = work.sub("src"), dest = work.sub("dest"), target = work.sub("r")
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        let names = try Hardening.makeDeepTree(src, content: "deep content\n")
        let run = try CLIRun.backup(["--source", src, "--to", dest, "--name", "t"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.warnings.isEmpty, "\(run.warnings)")
        #expect(run.json["files"] as? Int == 1)
        let v = try Tools.run("hs-backup", ["verify", "--to", dest, "--name", "t"])
        #expect(v.status == 0, "\(v.stdout) \(v.stderr)")
        let r = try Tools.run("hs-restore", ["--from", dest, "--name", "t", "--to", target])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(Hardening.readDeep(target, names) == "deep content\n")
    }

    @Test("an unreadable file (EACCES) is named and left out; the backup commits and exits 3")
    func unreadableFile() throws {
        let work = try TempDir("hs-eacces")
        let src = work.sub("src"), dest = work.sub("dest")
        try FileManager.default.createDirectory(atPath: src + "/sub", withIntermediateDirectories: true)
        try Hardening.write(src + "/ok.txt", "fine\n")
        try Hardening.write(src + "/secret.key", "locked\n", mode: 0)
        try Hardening.write(src + "/sub/big.bin", String(repeating: "x", count: 3 << 20), mode: 0)
        try Hardening.write(src + "/sub/small.txt", "small\n")
        let r = try Hardening.backupWithoutDACOverride(["run", "--source", src, "--to", dest, "--name", "t", "--json"])
        #expect(r.status == 3, "exit \(r.status): \(r.stderr)")
        let summary = Hardening.json(r.stdout)
        let missing = summary["missing"] as? [String: Any] ?? [:]
        #expect(missing["count"] as? Int == 2, "\(r.stdout)")
        #expect(r.stderr.contains("secret.key") && r.stderr.contains("sub/big.bin"))
        let ids = try Hardening.ids(dest)
        #expect(ids.count == 1, "committed")
        if let id = ids.first {
            let paths = Set(try Hardening.manifest(dest, id).items().map { String(decoding: $0.path, as: UTF8.self) })
            #expect(paths.contains("ok.txt") && paths.contains("sub/small.txt"))
            #expect(!paths.contains("secret.key") && !paths.contains("sub/big.bin"))
        }
        // The human summary says so too, and the next (incremental) run again.
        let again = try Hardening.backupWithoutDACOverride(["run", "--source", src, "--to", dest, "--name", "t"])
        #expect(again.status == 3, "\(again.stderr)")
        #expect(again.stdout.contains("2 files missing") || again.stderr.contains("2 files missing"), "\(again.stdout) \(again.stderr)")
    }

    /// Runs at 2026-12-01, 2026-12-02, then with the clock at 2026-11-15 (faketime).
    @Test("a clock that is behind: the id never goes backwards, latest and --keep-last follow the ids")
    func clockBehind() throws {
        let work = try TempDir("hs-clock")
        let src = work.sub("src"), dest = work.sub("dest")
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        let env = ["FAKETIME_DONT_FAKE_MONOTONIC": "1", "NO_FAKE_STAT": "1"]
        var outs: [[String: Any]] = []
        for (i, day) in ["2026-12-01 03:00:00", "2026-12-02 03:00:00", "2026-11-15 03:00:00"].enumerated() {
            try Hardening.write(src + "/data.txt", "version \(i + 1)\n")
            let r = try Subprocess.run(["faketime", day, Tools.path("hs-backup"), "run", "--source", src, "--to", dest,
                                        "--name", "t", "--json"], environment: env)
            #expect(r.status == 0, "\(day): \(r.stderr)")
            outs.append(Hardening.json(r.stdout))
        }
        let ids = outs.map { $0["id"] as? String ?? "" }
        // (A run may take a second or two to reach its clock under faketime.)
        #expect(ids[0].hasPrefix("20261201T03000") && ids[1].hasPrefix("20261202T03000"), "\(ids)")
        #expect(ids[2] > ids[1], "the third backup's id \(ids[2]) sorts after \(ids[1])")
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withYear, .withMonth, .withDay, .withTime, .withTimeZone]
        let second = try #require(f.date(from: ids[1]))
        #expect(f.date(from: ids[2]) == second.addingTimeInterval(1), "max(clock, newest id + 1 s): \(ids)")
        let warnings = outs[2]["warnings"] as? [String] ?? []
        #expect(warnings.contains { $0.contains("clock") && $0.contains("behind") }, "\(warnings)")
        #expect(try Hardening.ids(dest) == ids)
        let h = try Hardening.manifest(dest, ids[2]).header
        #expect(h.started >= f.date(from: "20261115T030000Z")!.timeIntervalSince1970)
        #expect(h.started < f.date(from: "20261115T030100Z")!.timeIntervalSince1970, "the manifest records the real clock")
        #expect(h.parent == ids[1])
        let target = work.sub("r")
        let r = try Tools.run("hs-restore", ["--from", dest, "--name", "t", "--to", target])
        #expect(r.status == 0, "\(r.stderr)")
        #expect((try? String(contentsOfFile: target + "/data.txt", encoding: .utf8)) == "version 3\n", "latest is the newest id")
        let p = try Tools.run("hs-backup", ["prune", "--to", dest, "--name", "t", "--keep-last", "1", "--dry-run", "--json"])
        let kept = (Hardening.json(p.stdout)["kept"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
        #expect(kept.first == ids[2], "--keep-last 1 keeps the newest id: \(p.stdout)")
    }

    @Test("the newest manifest deleted: verify and list report it, the next run keeps its archive, latest refuses")
    func deletedNewestManifest() throws {
        let work = try TempDir("hs-delman")
        let src = work.sub("src"), dest = work.sub("dest")
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        try Hardening.write(src + "/a.txt", "one\n")
        #expect(try CLIRun.backup(["--source", src, "--to", dest, "--name", "t"]).status == 0)
        sleep(1)
        try Hardening.write(src + "/a.txt", "two\n")
        let second = try CLIRun.backup(["--source", src, "--to", dest, "--name", "t"])
        #expect(second.status == 0)
        let b2 = second.id
        try FileManager.default.removeItem(atPath: dest + "/t/\(b2).manifest")
        let v = try Tools.run("hs-backup", ["verify", "--to", dest, "--name", "t"])
        #expect(v.status == 1, "verify: \(v.stdout) \(v.stderr)")
        #expect((v.stdout + v.stderr).contains("\(b2).tar.gz"))
        let l = try Tools.run("hs-backup", ["list", "--to", dest, "--name", "t"])
        #expect(l.status == 1, "list: \(l.stdout) \(l.stderr)")
        #expect((l.stdout + l.stderr).contains(b2))
        let restore = try Tools.run("hs-restore", ["--from", dest, "--name", "t", "--to", work.sub("r")])
        #expect(restore.status == 1, "latest must refuse: \(restore.stdout) \(restore.stderr)")
        #expect(restore.stderr.contains(b2))
        sleep(1)
        let third = try CLIRun.backup(["--source", src, "--to", dest, "--name", "t"])
        #expect(third.status == 0, "a run never refuses: \(third.stderr)")
        #expect(FileManager.default.fileExists(atPath: dest + "/t/\(b2).tar.gz"), "the damaged backup's archive is kept")
        #expect(third.warnings.contains { $0.contains("\(b2).tar.gz") })
    }

    /// A run (or a copy) stopped between its manifest's rename (the commit) and its archive's
    /// and index's leaves `<id>.tar.gz.partial` and `<id>.index.partial` beside a committed
    /// manifest. That backup is whole: verify, list, a restore of `latest` and an incremental
    /// on top of it read the archive under its `.partial` name, and the next run renames it.
    @Test("a commit stopped between the manifest's rename and the archive's is a whole backup that every reader uses")
    func commitStoppedBeforeTheArchiveRename() throws {
        let work = try TempDir("hs-halfcommit")
        let src = work.sub("src"), dest = work.sub("dest")
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        try Hardening.write(src + "/a.txt", "one\n")
        let b1 = try CLIRun.backup(["--source", src, "--to", dest, "--name", "t"]).id
        for ext in ["tar.gz", "index"] {
            try FileManager.default.moveItem(atPath: dest + "/t/\(b1).\(ext)", toPath: dest + "/t/\(b1).\(ext).partial")
        }
        let v = try Tools.run("hs-backup", ["verify", "--to", dest, "--name", "t"])
        #expect(v.status == 0, "verify: \(v.stdout) \(v.stderr)")
        let l = try Tools.run("hs-backup", ["list", "--to", dest, "--name", "t", "--json"])
        #expect(l.status == 0 && l.stdout.contains(b1), "list: \(l.stdout) \(l.stderr)")
        let r = try Tools.run("hs-restore", ["--from", dest, "--name", "t", "--to", work.sub("r")])
        #expect(r.status == 0, "restore of latest: \(r.stdout) \(r.stderr)")
        #expect((try? String(contentsOfFile: work.sub("r") + "/a.txt", encoding: .utf8)) == "one\n")
        sleep(1)
        try Hardening.write(src + "/b.txt", "two\n")
        let second = try CLIRun.backup(["--source", src, "--to", dest, "--name", "t"])
        #expect(second.status == 0, "\(second.stderr)")
        let names = try FileManager.default.contentsOfDirectory(atPath: dest + "/t")
        #expect(names.contains("\(b1).tar.gz") && names.contains("\(b1).index") && !names.contains { $0.hasSuffix(".partial") }, "\(names)")
        let r2 = try Tools.run("hs-restore", ["--from", dest, "--name", "t", "--to", work.sub("r2")])
        #expect(r2.status == 0 && FileManager.default.fileExists(atPath: work.sub("r2") + "/a.txt")
                && FileManager.default.fileExists(atPath: work.sub("r2") + "/b.txt"), "\(r2.stderr)")
    }

    @Test("a manifest copied over another (cp B1.manifest B2.manifest) is damage, not a backup")
    func copiedManifest() throws {
        let work = try TempDir("hs-cpman")
        let src = work.sub("src"), dest = work.sub("dest")
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        try Hardening.write(src + "/a.txt", "one\n")
        let b1 = try CLIRun.backup(["--source", src, "--to", dest, "--name", "t"]).id
        sleep(1)
        try Hardening.write(src + "/a.txt", "two\n")
        let b2 = try CLIRun.backup(["--source", src, "--to", dest, "--name", "t"]).id
        try FileManager.default.removeItem(atPath: dest + "/t/\(b2).manifest")
        try FileManager.default.copyItem(atPath: dest + "/t/\(b1).manifest", toPath: dest + "/t/\(b2).manifest")
        let l = try Tools.run("hs-backup", ["list", "--to", dest, "--name", "t"])
        #expect(l.status == 1, "list: \(l.stdout) \(l.stderr)")
        let v = try Tools.run("hs-backup", ["verify", "--to", dest, "--name", "t"])
        #expect(v.status == 1, "verify: \(v.stdout) \(v.stderr)")
        #expect((v.stdout + v.stderr).contains("\(b2).manifest"))
        let r = try Tools.run("hs-restore", ["--from", dest, "--name", "t", "--to", work.sub("r")])
        #expect(r.status == 1, "restore of latest: \(r.stdout) \(r.stderr)")
        let r2 = try Tools.run("hs-restore", ["--from", dest, "--name", "t", "--backup", b2, "--to", work.sub("r2")])
        #expect(r2.status == 1, "restore of \(b2): \(r2.stdout) \(r2.stderr)")
    }

    @Test("names with ESC, newline and bidi characters never reach the output raw")
    func escapedNames() throws {
        let work = try TempDir("hs-esc")
        let src = work.sub("src"), dest = work.sub("dest")
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        let evil = "x\u{1B}[31m\nFORGED: all good\u{202E}txt"
        try Hardening.write(src + "/" + evil + ".locked", "locked\n", mode: 0)
        try Hardening.write(src + "/" + evil, "plain\n")
        #expect(mkfifo(src + "/" + evil + ".fifo", 0o644) == 0)
        let http = try OpsHTTPRecorder()
        let runs = [
            try Hardening.backupWithoutDACOverride(["run", "--source", src, "--to", dest, "--name", "t", "--dry-run"]),
            try Hardening.backupWithoutDACOverride(["run", "--source", src, "--to", dest, "--name", "t",
                                                    "--notify", http.base + "/topic", "--notify-success"]),
            try Tools.run("hs-backup", ["list", "--to", dest, "--name", "t"]),
        ]
        for r in runs {
            let text = r.stdout + r.stderr
            #expect(!text.contains("\u{1B}") && !text.contains("\u{202E}"), "raw control/bidi characters in: \(text.debugDescription)")
            #expect(!text.split(separator: "\n").contains { $0.hasPrefix("FORGED") }, "a forged line: \(text.debugDescription)")
        }
        #expect(runs[1].status == 3, "\(runs[1].stderr)")
        for req in http.requests {
            #expect(!req.body.contains("\u{1B}") && !req.body.contains("\n FORGED") && !req.body.contains("\nFORGED"), "ntfy body: \(req.body.debugDescription)")
        }
        #expect(!http.requests.isEmpty)
        for id in try Hardening.ids(dest) {
            for w in try Hardening.manifest(dest, id).header.warnings {
                #expect(!w.contains("\u{1B}") && !w.contains("\n"), "stored warning: \(w.debugDescription)")
            }
        }
    }

    /// 256 MiB apparent, 1 MiB of data at 100 MiB: read by extents, archived as a pax sparse
    /// 1.0 member that GNU tar and bsdtar extract with the same content.
    @Test("a sparse file is read by its data extents and archived as a pax sparse member")
    func sparseFile() throws {
        let work = try TempDir("hs-sparse")
        let src = work.sub("src"), dest = work.sub("dest")
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        let file = src + "/disk.img"
        _ = try Subprocess.checked(["truncate", "-s", "256M", file])
        _ = try Subprocess.checked(["sh", "-c", "head -c 1048576 /dev/urandom | dd of='\(file)' bs=1M seek=100 conv=notrunc status=none"])
        _ = try Subprocess.checked(["sh", "-c", "printf tail | dd of='\(file)' bs=1 seek=200000000 conv=notrunc status=none"])
        let run = try CLIRun.backup(["--source", src, "--to", dest, "--name", "t"])
        #expect(run.status == 0, "\(run.stderr)")
        let bytesIn = run.json["bytes_in"] as? Int ?? -1
        #expect(bytesIn < 4 << 20, "bytes read: \(bytesIn) (holes must not be read)")
        let archive = try #require(try archives(in: dest).first)
        let list = try Subprocess.run(["sh", "-c", "gzip -dc '\(archive)' | head -c 4096 | strings"])
        #expect(list.stdout.contains("GNU.sparse.major=1"), "\(list.stdout.prefix(500))")
        let want = try Subprocess.checked(["sha256sum", file]).stdout.prefix(64)
        for tool in ["gnu", "bsd"] {
            let t = work.sub("x-\(tool)")
            try extractWith(tool, [archive], into: t)
            #expect(try Subprocess.checked(["sha256sum", t + "/disk.img"]).stdout.prefix(64) == want, "\(tool) tar")
        }
        let v = try Tools.run("hs-backup", ["verify", "--to", dest, "--name", "t"])
        #expect(v.status == 0, "\(v.stdout) \(v.stderr)")
        let r = try Tools.run("hs-restore", ["--from", dest, "--name", "t", "--to", work.sub("r")])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try Subprocess.checked(["sha256sum", work.sub("r/disk.img")]).stdout.prefix(64) == want)
        // Unchanged: carried by the next run without reading it.
        let again = try CLIRun.backup(["--source", src, "--to", dest, "--name", "t"])
        #expect(again.filesArchived == 0)
    }

    @Test("usage errors exit 2: an empty --to, a single-value option given twice (all five tools)")
    func usageErrors() throws {
        let work = try TempDir("hs-usage")
        let empty = try Tools.run("hs-restore", ["--archive", "/nonexistent.tar.gz", "--to", ""])
        #expect(empty.status == 2, "hs-restore --to \"\": exit \(empty.status): \(empty.stderr)")
        let cases: [(String, [String])] = [
            ("hs-restore", ["--from", work.path, "--to", work.sub("a"), "--to", work.sub("b")]),
            ("hs-backup", ["run", "--source", work.path, "--to", work.sub("a"), "--to", work.sub("b")]),
            ("hs-backup", ["verify", "--to", work.sub("a"), "--backup", "latest", "--backup", "x"]),
            ("hs-linkcheck", [work.path, "--downloads", "d", "--downloads", "e"]),
            ("hs-provision", ["plan", "--inventory", "a.yml", "--inventory", "b.yml", "--host", "io"]),
            ("hs-deploy", ["--check", "--repo", work.path, "--repo", work.sub("x")]),
            ("hs-backup", ["run", "--source", work.path, "--to=" + work.sub("a"), "--to", work.sub("b")]),
        ]
        for (tool, args) in cases {
            let r = try Tools.run(tool, args)
            #expect(r.status == 2, "\(tool) \(args.joined(separator: " ")): exit \(r.status): \(r.stderr)")
            #expect(r.stderr.contains("twice") || r.stderr.contains("more than once"), "\(tool): \(r.stderr)")
        }
    }

    /// A usage error ends with the usage of the command that failed and the hint to its --help,
    /// nothing after: every tool printed the root command's usage once more, a bare
    /// `hs-backup <subcommand>` under `hs-backup copy --frob`; hs-deploy's conflicting flags
    /// printed only that fragment, and nothing on stdout with --json.
    @Test("a usage error of any tool ends with 'See ... --help', no bare usage line after it; --json: one object, exit_code 2",
          arguments: [false, true])
    func usageErrorsEndWithTheHint(_ json: Bool) throws {
        let work = try TempDir("hs-usage")
        let cases: [(String, [String], String)] = [
            ("hs-backup", ["run", "--source", work.path, "--to", work.sub("a"), "--bogus"], "hs-backup run"),
            ("hs-backup", ["run", "--bogus"], "hs-backup run"),
            ("hs-backup", ["copy", "--frob"], "hs-backup copy"),
            ("hs-backup", ["list", "--nfs-timeout", "x"], "hs-backup list"),
            ("hs-restore", ["--to", ""], "hs-restore"),
            ("hs-restore", ["--frob"], "hs-restore"),
            ("hs-provision", ["--frob"], "hs-provision"),
            ("hs-provision", ["inventory", "--frob"], "hs-provision inventory"),
            ("hs-deploy", ["--frob"], "hs-deploy"),
            ("hs-deploy", ["--check", "--down"], "hs-deploy"),
            ("hs-linkcheck", ["--frob"], "hs-linkcheck"),
        ]
        for (tool, args, command) in cases {
            let r = try Tools.run(tool, args + (json ? ["--json"] : []))
            let shown = "\(tool) \(args.joined(separator: " "))"
            let lines = r.stderr.split(separator: "\n").map(String.init)
            #expect(r.status == 2, "\(shown): exit \(r.status): \(r.stderr)")
            #expect(lines.last == "  See '\(command) --help' for more information.", "\(shown): \(r.stderr)")
            #expect(lines.filter { $0.hasPrefix("Usage: \(command)") }.count == 1, "\(shown): \(r.stderr)")
            #expect(!lines.contains { $0.hasPrefix(tool + " ") }, "\(shown): a bare usage line: \(r.stderr)")
            if json {
                let object = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any]
                #expect(object?["exit_code"] as? Int == 2, "\(shown): stdout '\(r.stdout)'")
            } else {
                #expect(r.stdout.isEmpty, "\(shown): stdout '\(r.stdout)'")
            }
        }
    }

    /// `RepeatedOptions.possible` reads the help dump only when two option words have the same
    /// spelling or one is short: that is exact only while no option has two long names.
    @Test("every option of the five tools has at most one long name (the repeated-option pre-check relies on it)")
    func optionsHaveOneLongName() throws {
        // (Single-dash spellings, `-h` and `-help`, always send the check to the dump.)
        let bad = try Hardening.argumentProblems { a, where_ in
            let longs = (a["names"] as? [[String: Any]] ?? []).filter { $0["kind"] as? String == "long" }
            return longs.count > 1 ? "\(where_): \(longs.compactMap { $0["name"] as? String })" : nil
        }
        #expect(bad.isEmpty, "options with two long names: \(bad)")
    }

    /// The manifest says one thing, the archive's tar header another (mode, owner, mtime):
    /// the content's hash still matches, so only comparing the header finds it.
    @Test("verify compares each tar header's metadata with the manifest entry")
    func verifyComparesHeaders() throws {
        let work = try TempDir("hs-vhdr")
        let src = work.sub("src"), dest = work.sub("dest")
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        try Hardening.write(src + "/a.txt", "alpha\n")
        try Hardening.write(src + "/b.txt", "beta\n")
        let run = try CLIRun.backup(["--source", src, "--to", dest, "--name", "t"])
        #expect(run.status == 0)
        let set = BackupSet(destination: LocalDestination(root: dest), name: "t")
        var m = try set.loadManifest(run.id)
        let i = try #require(m.table.find("a.txt"))
        var e = m.table.entry(i)
        e.mode = 0o4777
        e.mtime = FileTime(seconds: e.mtime.seconds + 3600, nanoseconds: e.mtime.nanoseconds)
        m.table.set(i, e)
        let bytes = try m.encoded()
        try Data(bytes).write(to: URL(fileURLWithPath: dest + "/t/\(run.id).manifest"))
        let v = try Tools.run("hs-backup", ["verify", "--to", dest, "--name", "t", "--json"])
        #expect(v.status == 1, "\(v.stdout) \(v.stderr)")
        let damaged = Hardening.json(v.stdout)["damaged"] as? [String] ?? []
        #expect(damaged.contains { $0.contains("a.txt") && $0.contains("mode") }, "\(damaged)")
        #expect(damaged.contains { $0.contains("a.txt") && $0.contains("mtime") }, "\(damaged)")
        #expect(!damaged.contains { $0.contains("b.txt") })
    }
}

@Suite("Issue 23: the id rule and retention order")
struct IDRuleTests {
    static func t(_ id: String) -> Date { Date(timeIntervalSince1970: Double(BackupID.seconds(of: id)!)) }

    @Test("a new id is max(clock, newest id + 1 s); ids written with -NN stay valid and in order")
    func next() {
        #expect(BackupID.next(clock: Self.t("20261115T030000Z"), newest: "20261202T030000Z") == "20261202T030001Z")
        #expect(BackupID.next(clock: Self.t("20261203T030000Z").addingTimeInterval(0.7), newest: "20261202T030000Z") == "20261203T030000Z")
        #expect(BackupID.next(clock: Self.t("20261202T030000Z"), newest: "20261202T030000Z") == "20261202T030001Z")
        #expect(BackupID.next(clock: Self.t("20261202T030000Z"), newest: "20261202T030000Z-01") == "20261202T030001Z")
        #expect(BackupID.next(clock: Self.t("20261202T030000Z"), newest: nil) == "20261202T030000Z")
        #expect("20261202T030000Z" < "20261202T030000Z-01" && "20261202T030000Z-01" < "20261202T030001Z")
        #expect(BackupID.seconds(of: "lock") == nil && BackupID.seconds(of: "20261302T030000Z") == nil)
        #expect(BackupID.seconds(of: "20261202T030000Z-x") == nil)
        #expect(BackupID.format(BackupID.seconds(of: "19991231T235959Z")!) == "19991231T235959Z")
    }

    @Test("the clock warning: only when the clock is behind the newest backup's own start")
    func clockWarning() {
        let behind = BackupID.clockWarning(clock: Self.t("20261115T030000Z"), newest: "20261202T030000Z",
                                           newestStarted: Self.t("20261202T030000Z").timeIntervalSince1970, id: "20261202T030001Z")
        #expect(behind?.contains("behind") == true && behind?.contains("20261202T030001Z") == true)
        // Quick successive runs: ids ahead of the clock by a few seconds, the clock never went back.
        #expect(BackupID.clockWarning(clock: Self.t("20261202T030001Z"), newest: "20261202T030004Z",
                                      newestStarted: Self.t("20261202T030000Z").timeIntervalSince1970, id: "20261202T030005Z") == nil)
        #expect(BackupID.clockWarning(clock: Self.t("20261202T030001Z"), newest: "20261202T030004Z", newestStarted: nil, id: "x") == nil)
        #expect(BackupID.clockWarning(clock: Self.t("20261115T030001Z"), newest: "20261202T030004Z", newestStarted: nil, id: "x") != nil)
    }

    @Test("retention follows the ids; calendar rules place a backup no earlier than its parent")
    func retentionOrder() {
        let items = [
            RetentionItem(id: "20261130T030000Z", date: Self.t("20261130T030000Z"), kind: .full),
            RetentionItem(id: "20261201T030000Z", date: Self.t("20261201T030000Z"), kind: .full),
            RetentionItem(id: "20261202T030000Z", date: Self.t("20261202T030000Z"), kind: .incremental, parent: "20261201T030000Z"),
            // Taken with the clock at 2026-11-15.
            RetentionItem(id: "20261202T030001Z", date: Self.t("20261115T030000Z"), kind: .incremental, parent: "20261202T030000Z"),
        ]
        let utc = TimeZone(identifier: "UTC")!
        let last = Retention.decide(items, policy: RetentionPolicy(keepLast: 1), timeZone: utc)
        #expect(last.keep.first?.id == "20261202T030001Z" && last.keep.first?.reasons == [.last])
        #expect(last.remove == ["20261130T030000Z"])
        let daily = Retention.decide(items, policy: RetentionPolicy(keepDaily: 2), timeZone: utc)
        #expect(daily.keep.filter { $0.reasons.contains(.daily) }.map(\.id) == ["20261202T030001Z", "20261201T030000Z"])
        #expect(daily.remove == ["20261130T030000Z"])
        #expect(Retention.calendarDates(items)["20261202T030001Z"] == Self.t("20261202T030000Z"))
    }
}

@Suite("Issue 23: extended attributes through the directory descriptor", .serialized)
struct XattrAtTests {
    /// Kernels before 6.13 (Debian 12: 6.1, Proxmox 8: 6.8) have no listxattrat/getxattrat:
    /// the scan and the reads go through /proc/self/fd/<dir>/<name> instead. Both ways give
    /// the same hashes, and the archive's headers carry the attributes.
    @Test("xattrs are read relative to the scanned directory, also through /proc/self/fd (forced)")
    func procFallback() throws {
        let work = try TempDir("hs-xattrat")
        let src = work.sub("src")
        try FileManager.default.createDirectory(atPath: src + "/d", withIntermediateDirectories: true)
        try Hardening.write(src + "/d/f", "content\n")
        #expect(symlink("f", src + "/d/l") == 0)
        _ = try Subprocess.checked(["setfattr", "-n", "user.dir", "-v", "D", src + "/d"])
        _ = try Subprocess.checked(["setfattr", "-n", "user.file", "-v", "F", src + "/d/f"])
        _ = try Subprocess.checked(["setfattr", "-h", "-n", "trusted.link", "-v", "L", src + "/d/l"])
        func hashes() throws -> [String: UInt64] {
            let r = try Scanner(root: src, excludes: ExcludeSet(patterns: [])).scan()
            return Dictionary(uniqueKeysWithValues: (0 ..< r.table.count).map { i in
                let e = r.table.entry(i)
                return (String(decoding: r.table.pathBytes(e), as: UTF8.self), e.xattrHash)
            })
        }
        let direct = try hashes()
        XattrAt.forceProcFallback.store(true, ordering: .relaxed)
        defer { XattrAt.forceProcFallback.store(false, ordering: .relaxed) }
        let viaProc = try hashes()
        #expect(direct == viaProc)
        for p in ["d", "d/f", "d/l"] { #expect((viaProc[p] ?? 0) != 0, "\(p) has xattrs") }
        let dest = work.sub("dest")
        let summary = try BackupRunner(options: BackupOptions(source: src, destination: LocalDestination(root: dest), set: "t"),
                                       reporter: quiet).run()
        #expect(summary.missing.count == 0)
        let archive = try #require(try archives(in: dest).first)
        let py = try Subprocess.checked(["python3", "-c", """
            import tarfile, sys
            for m in tarfile.open(sys.argv[1]):
                x = sorted(k for k in m.pax_headers if k.startswith("SCHILY.xattr."))
                if x: print(m.name, ",".join(x))
            """, archive])
        #expect(py.stdout.contains("d SCHILY.xattr.user.dir") || py.stdout.contains("d/ SCHILY.xattr.user.dir"), "\(py.stdout)")
        #expect(py.stdout.contains("d/f SCHILY.xattr.user.file"), "\(py.stdout)")
        #expect(py.stdout.contains("d/l SCHILY.xattr.trusted.link"), "\(py.stdout)")
        let m = try Hardening.manifest(dest, summary.id)
        for item in m.items() where ["d", "d/f", "d/l"].contains(String(decoding: item.path, as: UTF8.self)) {
            #expect(item.xattrHash == viaProc[String(decoding: item.path, as: UTF8.self)])
        }
        let v = try Tools.run("hs-backup", ["verify", "--to", dest, "--name", "t"])
        #expect(v.status == 0, "\(v.stdout) \(v.stderr)")
    }
}

extension XattrAtTests {
    /// A regular file archived now has its xattrs read from the descriptor its content is
    /// read through (prefetched small files, empty files and large ones opened at the read),
    /// not by name at the scan: the headers carry them, the manifest's hashes are the scan's,
    /// `verify` agrees, in a full backup and for new and changed files of an incremental.
    @Test("a regular file's xattrs come from the descriptor its content is read through (full and incremental)")
    func fileXattrsFromContentDescriptor() throws {
        let work = try TempDir("hs-xattrfd")
        let src = work.sub("src")
        try FileManager.default.createDirectory(atPath: src + "/d", withIntermediateDirectories: true)
        try Hardening.write(src + "/d/small", "content\n")
        try Hardening.write(src + "/d/empty", "")
        try Hardening.write(src + "/d/plain", "no attributes\n")
        try Data(repeating: 0x61, count: 3 << 20).write(to: URL(fileURLWithPath: src + "/d/large"))
        for (f, v) in [("small", "S"), ("empty", "E"), ("large", "L")] {
            _ = try Subprocess.checked(["setfattr", "-n", "user.x", "-v", v, src + "/d/" + f])
        }
        func scanned() throws -> [String: UInt64] {
            let r = try Scanner(root: src, excludes: ExcludeSet(patterns: [])).scan()
            return Dictionary(uniqueKeysWithValues: (0 ..< r.table.count).map { i in
                let e = r.table.entry(i)
                return (String(decoding: r.table.pathBytes(e), as: UTF8.self), e.xattrHash)
            })
        }
        let dest = work.sub("dest")
        func backUp() throws -> (Manifest, String) {
            let summary = try BackupRunner(options: BackupOptions(source: src, destination: LocalDestination(root: dest), set: "t"),
                                           reporter: quiet).run()
            #expect(summary.missing.count == 0)
            let py = try Subprocess.checked(["python3", "-c", """
                import tarfile, sys
                for m in tarfile.open(sys.argv[1]):
                    for k, v in sorted(m.pax_headers.items()):
                        if k.startswith("SCHILY.xattr."): print(m.name, k, v)
                """, try #require(try archives(in: dest).last)])
            return (try Hardening.manifest(dest, summary.id), py.stdout)
        }
        func check(_ m: Manifest, expected: [String: UInt64]) {
            var seen = 0
            for item in m.items() {
                let p = String(decoding: item.path, as: UTF8.self)
                guard let want = expected[p] else { continue }
                #expect(item.xattrHash == want, "\(p)")
                seen += 1
            }
            #expect(seen == expected.count)
        }
        let first = try scanned()
        for f in ["small", "empty", "large"] { #expect((first["d/" + f] ?? 0) != 0, "\(f) has xattrs") }
        #expect(first["d/plain"] == 0)
        let (m1, headers1) = try backUp()
        check(m1, expected: first)
        for line in ["d/small SCHILY.xattr.user.x S", "d/empty SCHILY.xattr.user.x E", "d/large SCHILY.xattr.user.x L"] {
            #expect(headers1.contains(line), "\(headers1)")
        }
        #expect(!headers1.contains("d/plain"), "\(headers1)")

        // Incremental: a new file with xattrs, one that got xattrs (its ctime changed).
        try Hardening.write(src + "/d/new", "new\n")
        _ = try Subprocess.checked(["setfattr", "-n", "user.x", "-v", "N", src + "/d/new"])
        _ = try Subprocess.checked(["setfattr", "-n", "user.x", "-v", "P", src + "/d/plain"])
        let second = try scanned()
        #expect(second["d/new"] != 0 && second["d/plain"] != 0)
        let (m2, headers2) = try backUp()
        check(m2, expected: second)
        #expect(headers2.contains("d/new SCHILY.xattr.user.x N") && headers2.contains("d/plain SCHILY.xattr.user.x P"), "\(headers2)")
        let v = try Tools.run("hs-backup", ["verify", "--to", dest, "--name", "t"])
        #expect(v.status == 0, "\(v.stdout) \(v.stderr)")
    }
}

@Suite("Issue 23: exit 3 for monitors")
struct ExitStatusTests {
    @Test("exit 3 (committed, files missing) is a warning: ntfy posts it without --notify-success, Kuma stays up")
    func filesMissingIsAWarning() throws {
        #expect(ExitStatus.filesMissing.monitor == .warning && ExitStatus.success.monitor == .ok && ExitStatus.failure.monitor == .failed)
        let server = try OpsHTTPRecorder()
        let n = Notifier(ntfyURL: server.base + "/topic", pingURL: server.base + "/api/push/T")
        let report = RunReport(status: .filesMissing, operation: "hs-backup run", set: "io",
                               message: "backup X of 10 files; committed, 1 file missing (left out: a\u{1B}[31m\nFORGED)", duration: 2)
        #expect(n.report(report).isEmpty)
        let post = try #require(server.requests.first { $0.method == "POST" })
        #expect(post.headers["title"] == "hs-backup run OK, FILES MISSING on io")
        #expect(post.headers["priority"] == "high" && post.headers["tags"]?.contains("warning") == true)
        #expect(!post.body.contains("\u{1B}") && !post.body.contains("\n"), "\(post.body.debugDescription)")
        let ping = try #require(server.requests.first { $0.method == "GET" })
        #expect(ping.query["status"] == "up")
        #expect(ping.query["msg"]?.hasPrefix("WARNING: committed, files missing: ") == true, "\(ping.query)")
    }
}
