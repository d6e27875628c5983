// The FUSE mount, for real: /dev/fuse, libfuse 3, the kernel's checks. Every mounted backup
// is compared with a copy of the source taken when it was backed up. These tests fail (never
// skip) where FUSE is missing.
import Foundation
import Testing
@testable import Browse
import Backup
import Support
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// An `hs-backup mount` running in the background.
final class MountProcess {
    let mountpoint: String
    let process = Process()
    let log: String

    init(_ arguments: [String], mountpoint: String, log: String, environment: [String: String] = [:]) throws {
        self.mountpoint = mountpoint
        self.log = log
        try Data().write(to: URL(fileURLWithPath: log))
        process.executableURL = URL(fileURLWithPath: Tools.path("hs-backup"))
        process.arguments = ["mount"] + arguments + [mountpoint]
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardError = FileHandle(forWritingAtPath: log)
        process.standardOutput = FileHandle(forWritingAtPath: log)
        try process.run()
        // Mounted once the mount table lists it (or the process ended: it failed).
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if Self.isMounted(mountpoint) { return }
            if !process.isRunning { throw ToolError("hs-backup mount exited with \(process.terminationStatus): \(output)") }
            usleep(50_000)
        }
        stop(SIGKILL)
        throw ToolError("hs-backup mount did not mount \(mountpoint) within 60 s: \(output)")
    }

    var output: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    static func isMounted(_ path: String) -> Bool {
        let real = (path as NSString).resolvingSymlinksInPath
        guard let t = try? MountTable.load() else { return false }
        return t.mounts.contains { $0.mountPoint == real }
    }

    /// Sends `signal` and waits for the process; returns its exit status.
    @discardableResult
    func stop(_ signal: Int32 = SIGTERM) -> Int32 {
        if process.isRunning { kill(process.processIdentifier, signal) }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Waits up to `seconds` for the process to end by itself; its exit status, nil if it did not.
    func exited(within seconds: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        return process.isRunning ? nil : process.terminationStatus
    }

    deinit {
        if process.isRunning { stop(SIGKILL) }
        if Self.isMounted(mountpoint) { _ = try? Subprocess.run(["fusermount3", "-u", "-z", mountpoint]) }
    }
}

@Suite(.serialized) struct MountTests {
    private func emptyDir(_ tmp: TempDir, _ name: String) throws -> String {
        let p = tmp.sub(name)
        try FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        return p
    }

    /// Every backup of the chain as mounted, against the copy of the source at that time.
    static func compareMounted(_ chain: BackupChain, _ mp: String) throws {
        for (i, id) in chain.ids.enumerated() {
            let options = TreeDescription.Options(contentSkipped: ["db/app.db"])
            let expected = try TreeDescription.describe(chain.copies[i], options)
            let got = try TreeDescription.describe(mp + "/" + chain.set + "/" + id, options)
            let d = TreeDescription.diff(expected, got)
            #expect(d.isEmpty, "backup \(i + 1) \(id) as mounted:\n\(d.joined(separator: "\n"))")
            #expect(expected.count > 20)
        }
        var buf = [CChar](repeating: 0, count: 256)
        let n = readlink(mp + "/" + chain.set + "/latest", &buf, 256)
        #expect(n > 0 && String(decoding: buf[0 ..< n].map { UInt8(bitPattern: $0) }, as: UTF8.self) == chain.ids.last)
    }

    @Test("every mounted backup equals the source as it was (type, mode, owner, ns mtime, content, links, hardlinks, xattrs); sqlite immutable; writes refused; SIGTERM unmounts")
    func mountedBackupsMatchTheSource() throws {
        let chain = try SharedChain.get()
        let tmp = try TempDir("hs-mount")
        let mp = try emptyDir(tmp, "mnt")
        let m = try MountProcess(["--to", chain.dest], mountpoint: mp, log: tmp.sub("log"))
        #expect(m.output.contains("mounted \(chain.dest) (1 set: chain) read-only at \(mp), for this user only. Leave with Ctrl-C or: fusermount3 -u \(mp)"))
        try Self.compareMounted(chain, mp)

        // SQLite opens the database read-only and immutable, and finds the rows.
        let db = mp + "/chain/latest/db/app.db"
        let q = try Subprocess.run(["sqlite3", "file:\(db)?immutable=1", "select v from t order by id;"])
        #expect(q.succeeded && q.stdout == "one\ntwo\n", "\(q.stdout)\(q.stderr)")
        // The database's bytes are what the manifest recorded.
        let ls = try Tools.run("hs-backup", ["ls", "--to", chain.dest, "--name", chain.set, "--json", "db/app.db"])
        #expect(ls.stdout.contains(hexString(SHA256Hasher.hash(try ByteFS.read(Array(db.utf8))))))

        // Writes of every kind are refused with EROFS.
        let file = mp + "/chain/latest/radarr/config.xml"
        func refused(_ what: String, _ rc: Int32) {
            let e = errno
            #expect(rc == -1 && e == EROFS, "\(what): rc \(rc), \(String(cString: strerror(e)))")
        }
        refused("open for writing", open(file, O_WRONLY))
        refused("create", open(mp + "/chain/latest/new", O_WRONLY | O_CREAT, 0o644))
        refused("mkdir", mkdir(mp + "/chain/latest/dir", 0o755))
        refused("unlink", unlink(file))
        refused("rename", rename(file, file + ".x"))
        refused("chmod", chmod(file, 0o644))
        do {
            try Sys.setXattr(.path(Array(file.utf8)), Array("user.x".utf8), [1])
            Issue.record("setxattr succeeded on the read-only mount")
        } catch { #expect(error.errno == EROFS, "setxattr: \(error)") }
        refused("symlink", symlink("x", mp + "/chain/latest/l"))
        var times = [timespec(tv_sec: 0, tv_nsec: 0), timespec(tv_sec: 0, tv_nsec: 0)]
        refused("utimensat", utimensat(AT_FDCWD, file, &times, 0))

        #expect(m.stop(SIGTERM) == 0)
        #expect(!MountProcess.isMounted(mp))
        #expect(m.output.hasSuffix("unmounted \(mp) (signal 15)\n"), "\(m.output)")
    }

    @Test("a non-empty or busy mount point is refused (exit 2); fusermount3 -u and SIGINT end a mount cleanly")
    func mountpointChecks() throws {
        let chain = try SharedChain.get()
        let tmp = try TempDir("hs-mount")
        let full = try emptyDir(tmp, "full")
        try Data("x".utf8).write(to: URL(fileURLWithPath: full + "/keep"))
        let r = try Tools.run("hs-backup", ["mount", "--to", chain.dest, full])
        #expect(r.status == 2 && r.stderr.contains("mount point \(full) is not empty"), "\(r.stderr)")
        #expect(FileManager.default.fileExists(atPath: full + "/keep"))

        let mp = try emptyDir(tmp, "mnt")
        let m = try MountProcess(["--to", chain.dest, "--name", chain.set], mountpoint: mp, log: tmp.sub("log"))
        let busy = try Tools.run("hs-backup", ["mount", "--to", chain.dest, mp])
        #expect(busy.status == 2 && busy.stderr.contains("\(mp) is already a mount point (busy)"), "\(busy.stderr)")
        let u = try Subprocess.run(["fusermount3", "-u", mp])
        #expect(u.succeeded, "\(u.stderr)")
        #expect(m.exited(within: 20) == 0, "the mount should end by itself after fusermount3 -u: \(m.output)")
        #expect(m.output.hasSuffix("unmounted \(mp)\n"))

        let again = try MountProcess(["--to", chain.dest], mountpoint: mp, log: tmp.sub("log2"))
        #expect(again.stop(SIGINT) == 0)
        #expect(!MountProcess.isMounted(mp) && again.output.hasSuffix("unmounted \(mp) (signal 2)\n"), "\(again.output)")
        let missing = try Tools.run("hs-backup", ["mount", "--to", chain.dest, "--name", "nosuchset", mp])
        #expect(missing.status == 1 && missing.stderr.contains("no backup set 'nosuchset'"), "\(missing.stderr)")
    }

    /// libfuse3.so.3 is loaded with dlopen by the mount only (Sources/CFuse), not linked.
    @Test("without a loadable libfuse3.so.3 the mount fails at once: exit 1, the library and its package named, nothing mounted")
    func missingLibfuse() throws {
        let chain = try SharedChain.get()
        let tmp = try TempDir("hs-mount")
        let mp = try emptyDir(tmp, "mnt")
        let broken = try UnloadableLibrary.environment("libfuse3.so.3", in: tmp)
        do {
            let m = try MountProcess(["--to", chain.dest], mountpoint: mp, log: tmp.sub("log"), environment: broken)
            m.stop()
            Issue.record("mounted without libfuse3: \(m.output)")
        } catch let e as ToolError {
            #expect(e.message.contains("exited with 1") && e.message.contains("libfuse3.so.3 is not installed or cannot be loaded")
                    && e.message.contains("apt-get install libfuse3-3"), "\(e.message)")
        }
        #expect(!MountProcess.isMounted(mp))
        #expect(try FileManager.default.contentsOfDirectory(atPath: mp).isEmpty)
    }

    @Test("backups taken while mounted appear without a remount, and latest follows")
    func newBackupsAppear() throws {
        let tmp = try TempDir("hs-mount")
        let src = try emptyDir(tmp, "src")
        try Data("v1\n".utf8).write(to: URL(fileURLWithPath: src + "/f"))
        func backup() throws {
            let r = try Tools.run("hs-backup", ["run", "-q", "--source", src, "--to", tmp.sub("dst"), "--name", "s"])
            #expect(r.succeeded, "\(r.stderr)")
        }
        try backup()
        let mp = try emptyDir(tmp, "mnt")
        let m = try MountProcess(["--to", tmp.sub("dst")], mountpoint: mp, log: tmp.sub("log"))
        let first = try FileManager.default.contentsOfDirectory(atPath: mp + "/s").sorted()
        #expect(first.count == 2 && first.last == "latest")
        sleep(1)
        try Data("v2\n".utf8).write(to: URL(fileURLWithPath: src + "/f"))
        try backup()
        usleep(1_200_000)   // listings are reused for a second
        let second = try FileManager.default.contentsOfDirectory(atPath: mp + "/s").sorted()
        #expect(second.count == 3, "\(second)")
        #expect(try String(contentsOfFile: mp + "/s/latest/f", encoding: .utf8) == "v2\n")
        #expect(try String(contentsOfFile: mp + "/s/\(first[0])/f", encoding: .utf8) == "v1\n")
        #expect(m.stop() == 0)
    }

    @Test("a backup pruned while mounted: a file of it opened afterwards answers ESTALE, not EIO with an error about the NAS")
    func prunedWhileMounted() throws {
        let tmp = try TempDir("hs-mount")
        let src = try emptyDir(tmp, "src")
        try Data("v1\n".utf8).write(to: URL(fileURLWithPath: src + "/f"))
        try Data("w1\n".utf8).write(to: URL(fileURLWithPath: src + "/g"))
        func backup(_ extra: [String] = []) throws {
            let r = try Tools.run("hs-backup", ["run", "-q", "--source", src, "--to", tmp.sub("dst"), "--name", "s"] + extra)
            #expect(r.succeeded, "\(r.stderr)")
        }
        try backup()
        let mp = try emptyDir(tmp, "mnt")
        let m = try MountProcess(["--to", tmp.sub("dst")], mountpoint: mp, log: tmp.sub("log"))
        let first = try FileManager.default.contentsOfDirectory(atPath: mp + "/s").sorted()[0]
        // A shell in the backup's directory, having listed it (its manifest read, no archive).
        let dir = open(mp + "/s/" + first, O_RDONLY | O_DIRECTORY)
        #expect(dir >= 0)
        defer { close(dir) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: mp + "/s/" + first).sorted() == ["f", "g"])
        sleep(1)
        try backup(["--full"])
        let p = try Tools.run("hs-backup", ["prune", "-q", "--to", tmp.sub("dst"), "--name", "s", "--keep-last", "1"])
        #expect(p.succeeded && !FileManager.default.fileExists(atPath: tmp.sub("dst/s/\(first).tar.gz")), "\(p.stderr)")
        let fd = openat(dir, "g", O_RDONLY)
        let e = errno
        if fd >= 0 { close(fd) }
        #expect(fd == -1 && e == ESTALE, "open after the prune: \(fd), \(String(cString: strerror(e)))")
        #expect(m.stop() == 0)
        #expect(!m.output.contains("error"), "\(m.output)")
    }

    @Test("private to the mounting user; --allow-other lets others in with each file's permissions checked")
    func permissions() throws {
        let chain = try SharedChain.get()
        let tmp = try TempDir("hs-mount")
        chmod(tmp.path, 0o755)
        let mp = try emptyDir(tmp, "mnt")
        func asNobody(_ path: String) throws -> ProcessResult {
            try Subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "cat", path])
        }
        let m = try MountProcess(["--to", chain.dest], mountpoint: mp, log: tmp.sub("log"))
        let open = mp + "/chain/latest/radarr/new.txt"         // 0644 root
        let secret = mp + "/chain/latest/radarr/config.xml"    // 0600 1000:1000
        #expect(try String(contentsOfFile: secret, encoding: .utf8).contains("7879"))   // the mounting user (root) reads all
        let denied = try asNobody(open)
        #expect(!denied.succeeded && denied.stderr.contains("Permission denied"), "\(denied.stdout)\(denied.stderr)")
        #expect(m.stop() == 0)

        let shared = try MountProcess(["--to", chain.dest, "--allow-other"], mountpoint: mp, log: tmp.sub("log2"))
        #expect(shared.output.contains("for every user (permissions checked)"))
        let readable = try asNobody(open)
        #expect(readable.succeeded && readable.stdout == "new\n", "\(readable.stderr)")
        let secretByOther = try asNobody(secret)
        #expect(!secretByOther.succeeded && secretByOther.stderr.contains("Permission denied"))
        #expect(shared.stop() == 0)
    }

    @Test("over nfs-ganesha (libnfs, no kernel NFS mount): every backup as mounted equals the source; dump reads through it too")
    func overNFS() throws {
        let g = try GaneshaServer.shared()
        let chain = try BackupChain(destination: g.url(path: try g.makeUniqueDirectory("browse")))
        let tmp = try TempDir("hs-mount")
        let mp = try emptyDir(tmp, "mnt")
        let m = try MountProcess(["--to", chain.dest], mountpoint: mp, log: tmp.sub("log"))
        try Self.compareMounted(chain, mp)
        let q = try Subprocess.run(["sqlite3", "file:\(mp)/chain/latest/db/app.db?immutable=1", "select count(*) from t;"])
        #expect(q.stdout == "2\n", "\(q.stderr)")
        #expect(m.stop() == 0)
        let out = tmp.sub("big")
        let d = try Subprocess.run(["/bin/sh", "-c", "exec \"$0\" dump --to \"$1\" --name chain --backup \"$2\" plex/big.bin > \"$3\"",
                                    Tools.path("hs-backup"), chain.dest, chain.ids[0], out])
        #expect(d.status == 0, "\(d.stderr)")
        #expect(try ByteFS.read(Array(out.utf8)) == ByteFS.read(Array((chain.copies[0] + "/plex/big.bin").utf8)))
    }

    @Test("over rclone (sftp to a real sshd): every backup as mounted equals the source")
    func overRclone() throws {
        let s = try SSHServer.shared()
        let chain = try BackupChain(destination: "rclone:" + s.remote(try s.makeUniqueDirectory("browse")), environment: s.environment)
        let tmp = try TempDir("hs-mount")
        let mp = try emptyDir(tmp, "mnt")
        let m = try MountProcess(["--to", chain.dest], mountpoint: mp, log: tmp.sub("log"), environment: s.environment)
        try Self.compareMounted(chain, mp)
        #expect(m.stop() == 0)
    }
}
