// One test per defect of issue #12 on the `--archive` path (archives from defects.py).
import Foundation
import Glibc
import Support
import Testing
import TestSupport

@Suite struct RestoreDefectTests {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("defects.py").path

    func corpus() throws -> (TempDir, String) {
        let tmp = try TempDir("restore-defects")
        let made = try run(["python3", Self.script, tmp.sub("c")])
        try #require(made.succeeded, "defects.py: \(made.stderr)")
        return (tmp, tmp.sub("c"))
    }

    /// `timeout` only guards against a hang (the old code ran for years); no timing is asserted.
    func restore(_ args: [String]) throws -> ProcessResult {
        try run(["timeout", "120", Tools.path("hs-restore")] + args)
    }

    @Test func exabyteSparseRealsizeIsRefusedWithoutWalkingHoles() throws {
        let (tmp, c) = try corpus()
        let r = try restore(["--archive", c + "/sparse-exabyte.tar.gz", "--to", tmp.sub("t")])
        #expect(r.status == 1, "\(r.status) \(r.stderr)")
        #expect(r.stderr.contains("huge") && r.stderr.contains("too large"), "\(r.stderr)")
        let d = try restore(["--archive", c + "/sparse-exabyte.tar.gz", "--to", tmp.sub("d"), "--dry-run"])
        #expect(d.status == 0, "dry run: \(d.status) \(d.stderr)")
    }

    @Test func bigSparseFileKeepsItsHoles() throws {
        let (tmp, c) = try corpus()
        let r = try restore(["--archive", c + "/sparse-100g.tar.gz", "--to", tmp.sub("t")])
        #expect(r.status == 0, "\(r.stderr)")
        var st = stat()
        #expect(lstat(tmp.sub("t/huge"), &st) == 0 && st.st_size == 100 << 30)
        #expect(st.st_blocks * 512 <= 1 << 20, "allocated \(st.st_blocks * 512) bytes")
        let fd = open(tmp.sub("t/huge"), O_RDONLY)
        defer { close(fd) }
        var head = [UInt8](repeating: 0, count: 5), tail = [UInt8](repeating: 0, count: 3)
        _ = pread(fd, &head, 5, 0); _ = pread(fd, &tail, 3, off_t((100 << 30) - 3))
        #expect(head == Array("headr".utf8) && tail == Array("end".utf8))
    }

    /// The FIFO's mode is never applied by name (a name can be swapped for a symlink between
    /// mkfifo and chmod): every chmod the restore makes goes through a descriptor.
    @Test func fifoModeIsNotAppliedByName() throws {
        let (tmp, c) = try corpus()
        let log = tmp.sub("strace.log")
        let r = try run(["strace", "-f", "-qq", "-e", "trace=chmod,fchmodat,mknodat,mknod", "-o", log,
                         Tools.path("hs-restore"), "--archive", c + "/fifo.tar.gz", "--to", tmp.sub("t")])
        #expect(r.status == 0, "\(r.stderr)")
        let trace = try String(contentsOfFile: log, encoding: .utf8)
        #expect(trace.contains("mknodat"), "no mknodat in the trace:\n\(trace)")
        let byName = trace.split(separator: "\n").filter { ($0.contains("chmod(") || $0.contains("fchmodat")) && !$0.contains("/proc/self/fd/") }
        #expect(byName.isEmpty, "chmod by name: \(byName)")
        var st = stat()
        #expect(lstat(tmp.sub("t/p"), &st) == 0 && st.st_mode & S_IFMT == S_IFIFO && st.st_mode & 0o7777 == 0o620)
    }

    @Test func enospcLeavesNoPartialFileAndNamesIt() throws {
        let (tmp, c) = try corpus()
        let mnt = tmp.sub("small")
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        let m = try run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt])
        try #require(m.succeeded, "mount tmpfs: \(m.stderr)")
        defer { _ = try? run(["umount", mnt]) }
        let r = try restore(["--archive", c + "/big.tar.gz", "--to", mnt + "/t"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("big.bin"), "\(r.stderr)")
        let left = try FileManager.default.contentsOfDirectory(atPath: mnt + "/t")
        #expect(left == ["small.txt"], "left in the target: \(left)")
    }

    @Test func badCRCAtTheEndNamesTheFilesWrittenFromTheDamagedMember() throws {
        let (tmp, c) = try corpus()
        let r = try restore(["--archive", c + "/bad-crc.tar.gz", "--to", tmp.sub("t")])
        #expect(r.status == 1)
        #expect(r.stderr.contains("big.bin") && r.stderr.contains("small.txt"), "\(r.stderr)")
    }

    @Test func danglingAbsoluteSymlinkIsRestoredWithAWarning() throws {
        let (tmp, c) = try corpus()
        let r = try restore(["--archive", c + "/absolute-symlink.tar.gz", "--to", tmp.sub("t")])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("dangling"), "no warning: \(r.stderr)")
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: tmp.sub("t/dangling"))) == "/nonexistent/target")
        #expect(FileManager.default.fileExists(atPath: tmp.sub("t/file.txt")))
    }

    @Test func deviceNodeIsSkippedWithAWarning() throws {
        let (tmp, c) = try corpus()
        let r = try restore(["--archive", c + "/device.tar.gz", "--to", tmp.sub("t")])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("dev/null"), "no warning: \(r.stderr)")
        #expect(FileManager.default.fileExists(atPath: tmp.sub("t/a.txt")) && FileManager.default.fileExists(atPath: tmp.sub("t/z.txt")))
        var st = stat()
        #expect(lstat(tmp.sub("t/dev/null"), &st) != 0)
    }

    @Test func onlyTwoHardlinksOfOneInodeGiveOneInode() throws {
        let (tmp, c) = try corpus()
        let r = try restore(["--archive", c + "/hardlinks.tar.gz", "--to", tmp.sub("t"), "--only", "a", "--only", "b"])
        #expect(r.status == 0, "\(r.stderr)")
        var a = stat(), b = stat()
        #expect(lstat(tmp.sub("t/a"), &a) == 0 && lstat(tmp.sub("t/b"), &b) == 0)
        #expect(a.st_ino == b.st_ino && a.st_nlink == 2)
        #expect((try? String(contentsOfFile: tmp.sub("t/a"), encoding: .utf8)) == "shared\n")
        #expect(!FileManager.default.fileExists(atPath: tmp.sub("t/c")))
    }

    @Test func selfHardlinkIsReportedNotSilentlyDropped() throws {
        let (tmp, c) = try corpus()
        let r = try restore(["--archive", c + "/self-hardlink.tar.gz", "--to", tmp.sub("t")])
        #expect(r.stderr.contains("x") && r.stderr.contains("itself"), "\(r.status) \(r.stderr)")
        #expect(FileManager.default.fileExists(atPath: tmp.sub("t/y.txt")))
    }

    /// xattrs (binary values) and a POSIX ACL from pax `SCHILY.xattr.*` records are restored
    /// (ACLs as root: they live in `system.*`).
    @Test func xattrsAndACLFromPaxRecordsAreRestored() throws {
        let (tmp, c) = try corpus()
        let r = try restore(["--archive", c + "/xattrs-acl.tar.gz", "--to", tmp.sub("t")])
        #expect(r.status == 0, "\(r.stderr)")
        let x = try run(["getfattr", "--absolute-names", "-e", "hex", "-n", "user.bin", tmp.sub("t/acl.txt")])
        #expect(x.stdout.contains("user.bin=0xff0001"), "\(x.stdout) \(x.stderr)")
        if geteuid() == 0 {
            let a = try run(["getfacl", "--absolute-names", "-n", tmp.sub("t/acl.txt")])
            #expect(a.stdout.contains("user:1234:r--") && a.stdout.contains("group:5678:rw-"), "\(a.stdout) \(a.stderr)")
        }
    }
}
