import Foundation
import Glibc
import Support
import Testing

/// The one system-call layer: typed errors with call, errno and the escaped name; the
/// descriptor-relative calls the scanner and the restore build on.
@Suite struct SysTests {
    private func scratch() throws -> (String, Int32) {
        let dir = NSTemporaryDirectory() + "sys-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return (dir, try Sys.open(Array(dir.utf8), O_RDONLY | O_DIRECTORY | O_CLOEXEC))
    }

    @Test func openatMissingNameThrowsTypedErrorWithEscapedName() throws {
        let (dir, dfd) = try scratch()
        defer { Sys.close(dfd); try? FileManager.default.removeItem(atPath: dir) }
        let name: [UInt8] = Array("gone".utf8) + [0xFF, 0x0A]
        do {
            _ = try Sys.openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
            Issue.record("openat of a missing name succeeded")
        } catch {
            #expect(error.call == "open")
            #expect(error.errno == ENOENT)
            #expect(error.path == "gone\\xff\\n")
            #expect(error.description == "open gone\\xff\\n: No such file or directory (errno 2)")
        }
        #expect(try Sys.fstatat(dfd, name) == nil)
    }

    @Test func noFollowOpenOfSymlinkFailsWithELOOP() throws {
        let (dir, dfd) = try scratch()
        defer { Sys.close(dfd); try? FileManager.default.removeItem(atPath: dir) }
        #expect(symlink("/etc", dir + "/d") == 0)
        #expect(throws: SysError.self) { try Sys.openat(dfd, Array("d".utf8), O_RDONLY | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC) }
        let st = try #require(try Sys.fstatat(dfd, Array("d".utf8)))
        #expect(st.isSymlink)
        #expect(try Sys.readlinkat(dfd, Array("d".utf8)) == Array("/etc".utf8))
    }

    @Test func fstatIdentityMatchesTheScan() throws {
        let (dir, dfd) = try scratch()
        defer { Sys.close(dfd); try? FileManager.default.removeItem(atPath: dir) }
        try Data("hello".utf8).write(to: URL(fileURLWithPath: dir + "/f"))
        let scanned = try #require(try Sys.fstatat(dfd, Array("f".utf8)))
        let fd = try Sys.openat(dfd, Array("f".utf8), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC | Sys.O_NOATIME)
        defer { Sys.close(fd) }
        let opened = try Sys.fstat(fd)
        #expect(opened.sameIdentity(as: scanned))
        var buf = [UInt8](repeating: 0, count: 16)
        let n = try buf.withUnsafeMutableBytes { try Sys.readFull(fd, into: $0, at: 1) }
        #expect(Array(buf[..<n]) == Array("ello".utf8))
        // Replaced by another file under the same name: another identity.
        try FileManager.default.removeItem(atPath: dir + "/f")
        try Data("other".utf8).write(to: URL(fileURLWithPath: dir + "/f"))
        let again = try #require(try Sys.fstatat(dfd, Array("f".utf8)))
        #expect(!again.sameIdentity(as: opened) || again.ino == opened.ino)  // inode numbers may be reused
    }

    @Test func xattrsThroughDescriptorPathAndProcFallback() throws {
        let (dir, dfd) = try scratch()
        defer { Sys.close(dfd); try? FileManager.default.removeItem(atPath: dir) }
        try Data().write(to: URL(fileURLWithPath: dir + "/f"))
        let fd = try Sys.openat(dfd, Array("f".utf8), O_RDONLY | O_CLOEXEC)
        defer { Sys.close(fd) }
        try Sys.setXattr(.fd(fd), Array("user.b".utf8), Array("value".utf8))
        try Sys.setXattr(.at(dirfd: dfd, name: Array("f".utf8)), Array("user.a".utf8), [0, 1, 2])
        #expect(try Sys.listXattrs(.path(Array((dir + "/f").utf8))).sorted { $0.lexicographicallyPrecedes($1) }
                == [Array("user.a".utf8), Array("user.b".utf8)])
        let all = try Sys.readXattrs(.at(dirfd: dfd, name: Array("f".utf8)))
        #expect(all.map(\.name) == [Array("user.a".utf8), Array("user.b".utf8)])
        #expect(all.map(\.value) == [[0, 1, 2], Array("value".utf8)])
        #expect(try Sys.getXattr(.fd(fd), Array("user.missing".utf8)) == nil)
        do {
            try Sys.setXattr(.at(dirfd: dfd, name: Array("nope".utf8)), Array("user.a".utf8), [1])
            Issue.record("setxattr on a missing name succeeded")
        } catch {
            #expect(error.errno == ENOENT)
            #expect(error.call == "setxattr")
            #expect(error.path == "nope")
        }
    }

    @Test func sparseFileDataAndHoles() throws {
        let (dir, dfd) = try scratch()
        defer { Sys.close(dfd); try? FileManager.default.removeItem(atPath: dir) }
        let fd = try Sys.openat(dfd, Array("s".utf8), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode: 0o600)
        defer { Sys.close(fd) }
        try Sys.ftruncate(fd, 8 << 20)
        try Sys.writeAll(fd, [UInt8](repeating: 7, count: 4096), at: 4 << 20)
        let data = try #require(try Sys.nextData(fd, from: 0))
        #expect(data <= 4 << 20)
        #expect(try Sys.nextHole(fd, from: 4 << 20) > 4 << 20)
        #expect(try Sys.fstat(fd).blocks < (8 << 20) / 512)
    }

    @Test func retryAndCheck() throws {
        #expect(Sys.retry { Int32(5) } == 5)
        #expect(throws: SysError.self) { try Sys.check("close", "fd -1") { Glibc.close(-1) } }
        #expect(Sys.strerror(ENOENT) == "No such file or directory")
        #expect(Sys.O_PATH == 0o10000000)
        #expect(Sys.AT_EMPTY_PATH == 0x1000)
    }

    /// `Sys.processorCount` replaces ProcessInfo's at start-up (issue 23): it must give what
    /// ProcessInfo gives.
    @Test("Sys.processorCount gives what ProcessInfo gives")
    func processFactsMatchProcessInfo() {
        #expect(Sys.processorCount == ProcessInfo.processInfo.activeProcessorCount)
        #expect(Sys.processorCount >= 1)
    }

    /// `makeDirectories` (mkdir -p): parents made, existing directories and symlinks to them
    /// kept, `exactMode` whatever the umask; a component that is a file fails as ENOTDIR
    /// naming that component.
    @Test func makeDirectoriesIsMkdirP() throws {
        let (dir, dfd) = try scratch()
        defer { Sys.close(dfd); try? FileManager.default.removeItem(atPath: dir) }
        try Sys.makeDirectories(dir + "/a/b//c/", mode: 0o700, exactMode: true)
        for d in ["/a", "/a/b", "/a/b/c"] {
            let st = try #require(try Sys.stat(dir + d))
            #expect(st.isDirectory && st.mode & 0o7777 == 0o700, "\(d): \(String(st.mode, radix: 8))")
        }
        #expect(symlink(dir + "/a", dir + "/l") == 0)
        try Sys.makeDirectories(dir + "/l/b/c", mode: 0o755)
        try Sys.makeDirectories(dir + "/l/b/d", mode: 0o755)
        #expect(try Sys.stat(dir + "/a/b/d")?.isDirectory == true)
        #expect(FileManager.default.createFile(atPath: dir + "/a/f", contents: Data("f".utf8)))
        for path in [dir + "/a/f/x/y", dir + "/a/f"] {
            do {
                try Sys.makeDirectories(path, mode: 0o755)
                Issue.record("\(path): made under a file")
            } catch {
                #expect(error.errno == ENOTDIR && error.path == dir + "/a/f", "\(error)")
            }
        }
    }

    /// `directoryNames`: every name as bytes (not UTF-8 too), without "." and ".."; a path that
    /// is no directory fails with its errno, never as an empty listing.
    @Test func directoryNamesListsBytesAndFailsLoudly() throws {
        let (dir, dfd) = try scratch()
        defer { Sys.close(dfd); try? FileManager.default.removeItem(atPath: dir) }
        #expect(try Sys.directoryNames(dir).isEmpty)
        let odd: [UInt8] = Array("caf".utf8) + [0xE9]
        let fd = try Sys.openat(dfd, odd, O_WRONLY | O_CREAT | O_CLOEXEC, mode: 0o600)
        Sys.close(fd)
        #expect(mkdirat(dfd, "sub", 0o700) == 0)
        #expect(try Sys.directoryNames(dir).sorted { $0.lexicographicallyPrecedes($1) } == [odd, Array("sub".utf8)])
        do { _ = try Sys.directoryNames(dir + "/sub/missing"); Issue.record("a missing directory listed") } catch {
            #expect(error.errno == ENOENT && error.path == dir + "/sub/missing", "\(error)")
        }
        let file = dir + "/file"
        #expect(FileManager.default.createFile(atPath: file, contents: Data("f".utf8)))
        do { _ = try Sys.directoryNames(file); Issue.record("a file listed") } catch {
            #expect(error.errno == ENOTDIR && error.call == "open" && error.path == file, "\(error)")
        }
    }

    /// `hexString([UInt8])` (the digest path) is the generic one, for every byte value.
    @Test("hexString of an array is the generic hexString")
    func hexStringArrayMatchesGeneric() {
        var bytes: [UInt8] = Array(0 ... 255)
        for _ in 0 ..< 8 { bytes += (0 ..< 37).map { _ in UInt8.random(in: 0 ... 255) } }
        for n in [0, 1, 2, 31, 32, 255, bytes.count] {
            let a = Array(bytes.prefix(n))
            #expect(hexString(a) == hexString(a.lazy.map { $0 }))
            #expect(hexString(a) == a.map { String(format: "%02x", $0) }.joined())
        }
    }
}
