import Foundation
import Support
import Testing
import TestSupport
@testable import Storage

#if canImport(Glibc)
import Glibc
#endif

@Suite struct RcloneDestinationTests {
    @Test func largeUploadsStreamThroughRcatWithAndWithoutSize() throws {
        let s = try SSHServer.shared()
        let dir = try s.makeUniqueDirectory("rcat")
        let d = try rcloneDestination(s.remote(dir), s)
        let payload = pseudoRandomBytes(9 << 20 + 12345, seed: 7)
        for (name, size) in [("unknown.partial", nil), ("known.partial", UInt64(payload.count))] as [(String, UInt64?)] {
            let w = try d.create(name, size: size)
            var off = 0
            while off < payload.count {
                let n = min(700_001, payload.count - off)
                try w.write(Array(payload[off..<(off + n)]))
                off += n
            }
            try w.sync()
            try w.close()
            #expect(try Data(contentsOf: URL(fileURLWithPath: s.local(dir + "/" + name))) == Data(payload), "\(name)")
        }
        // Ranged reads: sequential (read-ahead), backwards, across the cached window, past the end.
        let r = try d.open("known.partial")
        #expect(r.size == UInt64(payload.count))
        var got: [UInt8] = []
        while true {
            let chunk = try r.read(at: UInt64(got.count), count: 300_000)
            if chunk.isEmpty { break }
            got += chunk
        }
        #expect(got == payload)
        for off in [9_000_000, 5, 4_194_300, payload.count - 3] {
            #expect(try r.read(at: UInt64(off), count: 1000) == Array(payload[off..<min(off + 1000, payload.count)]))
        }
        #expect(try r.read(at: UInt64(payload.count) + 10, count: 10) == [])
        try r.close()
        // The remote's own hash of one file, without transferring it.
        let md5 = try Subprocess.checked(["md5sum", s.local(dir + "/known.partial")]).stdout.prefix(32)
        #expect(try d.hash(of: "known.partial", type: "md5") == String(md5))
        #expect(try d.hash(of: "known.partial", type: "sha256") == nil, "sftp has no SHA-256 in rclone 1.60")
        let local = try rcloneDestination(s.localRemote(dir), s)
        let sha = try Subprocess.checked(["sha256sum", s.local(dir + "/known.partial")]).stdout.prefix(64)
        #expect(try local.hash(of: "known.partial", type: "sha256") == String(sha))
        #expect(throws: RcloneError.self) { _ = try local.hash(of: "nope", type: "sha256") }
    }

    @Test func aWriterGivenTheWrongSizeFailsAndSaysSo() throws {
        let s = try SSHServer.shared()
        let dir = try s.makeUniqueDirectory("size")
        let d = try rcloneDestination(s.localRemote(dir), s)
        let w = try d.create("x.partial", size: 10 << 20)
        try w.write(pseudoRandomBytes(5 << 20, seed: 1))
        let e = #expect(throws: RcloneError.self) { try w.sync() }
        #expect(e?.description.contains("announced") == true, "\(String(describing: e))")
        try w.close()  // idempotent after a failure
    }

    @Test func renameOntoAFileOfTheSameSizeAndSecondReplacesIt() throws {
        // rclone 1.60 takes two files of equal size and modification second for equal and, in a
        // move, keeps the old one and deletes the new one (unless --ignore-times).
        let s = try SSHServer.shared()
        let dir = try s.makeUniqueDirectory("rename")
        for d in [try rcloneDestination(s.remote(dir), s), try rcloneDestination(s.localRemote(dir), s)] {
            try d.writeAtomically("m", contents: Array("old!".utf8))
            try d.writeAtomically("m.new", contents: Array("new!".utf8))
            var times = [timespec(tv_sec: 1_700_000_000, tv_nsec: 0), timespec(tv_sec: 1_700_000_000, tv_nsec: 0)]
            for f in ["m", "m.new"] { #expect(utimensat(AT_FDCWD, s.local(dir + "/" + f), &times, 0) == 0) }
            try d.rename("m.new", to: "m")
            #expect(try String(contentsOfFile: s.local(dir + "/m"), encoding: .utf8) == "new!", "\(d.displayName)")
            #expect(try d.stat("m.new") == nil)
        }
    }

    @Test func anUnknownRemoteIsAUsageErrorNamingIt() throws {
        let s = try SSHServer.shared()
        let e = #expect(throws: RcloneError.self) { _ = try rcloneDestination("nosuchremote:/x", s) }
        #expect(e?.kind == .usage && e?.exitCode == 2)
        #expect(e?.description.contains("rclone:nosuchremote:/x") == true && e?.description.contains("rclone listremotes") == true,
                "\(String(describing: e))")
    }

    @Test func exitStatusesMapToKinds() {
        #expect(RcloneError.kind(exitStatus: 1, stderr: "Error: unknown flag: --sizee\nUsage:\n  rclone rcat") == .usage)
        // 1.60 exits 1 for errors it did not classify, too.
        #expect(RcloneError.kind(exitStatus: 1, stderr: "Failed to rcat with 2 errors: last error was: Update ReadFrom failed: connection lost") == .unreachable)
        #expect(RcloneError.kind(exitStatus: 1, stderr: "Failed to rcat: permission denied") == .failed)
        #expect(RcloneError.kind(exitStatus: 3, stderr: "") == .notFound)
        #expect(RcloneError.kind(exitStatus: 4, stderr: "") == .notFound)
        #expect(RcloneError.kind(exitStatus: 5, stderr: "") == .unreachable)
        #expect(RcloneError.kind(exitStatus: 2, stderr: "dial tcp 127.0.0.1:22: connect: connection refused") == .unreachable)
        #expect(RcloneError.kind(exitStatus: 2, stderr: "didn't find section in config file") == .usage)
        #expect(RcloneError.kind(exitStatus: 7, stderr: "account suspended") == .failed)
        #expect(RcloneError.kind(httpStatus: 404, error: "object not found") == .notFound)
        #expect(RcloneError.tail("a\nb\n\nc\nd\ne\nf\n") == "b\nc\nd\ne\nf")
    }

    @Test func aDeadServerEndsEveryCallQuicklyWithRclonesWords() throws {
        let s = try SSHServer()
        let dir = try s.makeUniqueDirectory("dead")
        let d = try rcloneDestination(s.remote(dir), s)
        try d.writeAtomically("a", contents: [1, 2, 3])
        let w = try d.create("big.partial", size: 64 << 20)
        try w.write(pseudoRandomBytes(6 << 20, seed: 3))
        s.kill()
        let start = Date()
        let chunk = pseudoRandomBytes(1 << 20, seed: 4)
        let e = #expect(throws: RcloneError.self) {
            for _ in 0..<58 { try w.write(chunk) }
            try w.close()
        }
        #expect(Date().timeIntervalSince(start) < 60)
        #expect(e?.kind == .unreachable || e?.kind == .failed, "\(String(describing: e))")
        #expect(e?.description.contains("rclone upload (rcat)") == true && e?.detail.isEmpty == false, "\(String(describing: e))")
        let listStart = Date()
        let le = #expect(throws: RcloneError.self) { _ = try d.list("") }
        #expect(Date().timeIntervalSince(listStart) < 60)
        #expect(le?.kind == .unreachable, "\(String(describing: le))")
        // Back up: the same destination works again.
        try s.restart()
        #expect(try d.readAll("a") == [1, 2, 3])
    }
}
