import Foundation
import Support
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

@Suite struct ChildProcessTests {
    @Test func streamsInputAndCollectsOutput() throws {
        let c = try ChildProcess.start(["sh", "-c", "sha256sum; echo done >&2"], input: .stream, captureStdout: true)
        let chunk = [UInt8](repeating: 0x61, count: 1 << 20)
        for _ in 0..<8 { try chunk.withUnsafeBytes { try c.write($0) } }  // 8 MiB: far beyond a socket buffer
        c.closeInput()
        let r = c.wait()
        let expected = try Subprocess.checked(["sh", "-c", "head -c 8388608 /dev/zero | tr '\\0' a | sha256sum"]).stdout
        #expect(r.status == 0 && r.stdout == expected && r.stderr == "done\n")
        #expect(!c.isRunning)
    }

    @Test func aChildThatStopsReadingMakesWriteThrowNotSignal() throws {
        let c = try ChildProcess.start(["sh", "-c", "head -c 10 >/dev/null; echo 'gave up' >&2; exit 3"], input: .stream)
        let chunk = [UInt8](repeating: 1, count: 1 << 20)
        let error = #expect(throws: ChildInputClosed.self) {
            for _ in 0..<64 { try chunk.withUnsafeBytes { try c.write($0) } }
        }
        #expect(error?.errno == EPIPE || error?.errno == ECONNRESET)
        let r = c.wait()
        #expect(r.status == 3 && c.stderrTail == "gave up\n")
    }

    @Test func keepsOnlyTheTailOfStderrAndRunsInItsOwnGroup() throws {
        let c = try ChildProcess.start(["sh", "-c", "head -c 100000 /dev/zero | tr '\\0' x >&2; echo END >&2; ps -o pgid= -p $$"],
                                       captureStdout: true, stderrLimit: 1000)
        let r = c.wait()
        #expect(r.stderr.utf8.count == 1000 && r.stderr.hasSuffix("xxxEND\n"))
        #expect(Int32(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) == c.pid, "a process group of its own")
        #expect(c.wait().status == 0, "wait is idempotent")
    }

    @Test func signalEndsAChildAndTheStatusSaysHow() throws {
        let c = try ChildProcess.start(["sleep", "30"])
        #expect(c.isRunning)
        c.signal(SIGTERM)
        #expect(c.wait().status == 128 + SIGTERM)
        #expect(throws: ProcessFailure.self) { _ = try ChildProcess.start(["hs-no-such-program-anywhere"]) }
    }
}

@Suite struct DigestHasherTests {
    @Test(arguments: DigestHasher.Kind.allCases) func matchesCoreutils(_ kind: DigestHasher.Kind) throws {
        let data = Array("The quick brown fox jumps over the lazy dog\n".utf8) + [UInt8](repeating: 0, count: 100_000)
        guard var h = DigestHasher(kind) else {
            Issue.record("libcrypto offers no \(kind)")
            return
        }
        data.withUnsafeBytes { h.update(UnsafeRawBufferPointer(rebasing: $0[..<10])) }
        data.withUnsafeBytes { h.update(UnsafeRawBufferPointer(rebasing: $0[10...])) }
        let tool = try Subprocess.checked(["\(kind.rawValue)sum"], input: Data(data)).stdout.prefix { $0 != " " }
        #expect(try h.finalizeHex() == String(tool))
    }
}
