import Foundation
import Synchronization
import Support
import Testing
import TestSupport

@Suite struct SubprocessTests {
    @Test func capturesBothStreamsStatusAndInput() throws {
        let r = try Subprocess.run(["sh", "-c", "cat; echo err >&2; exit 7"], input: Data("piped\n".utf8))
        #expect(r.status == 7)
        #expect(r.stdout == "piped\n")
        #expect(r.stderr == "err\n")
        #expect(throws: ProcessFailure.self) { try Subprocess.checked(["sh", "-c", "exit 1"]) }
        let dir = try TempDir()
        let env = try Subprocess.checked(["sh", "-c", "pwd; echo \"$HS_SUBPROCESS_TEST\""],
                                         environment: ["HS_SUBPROCESS_TEST": "set by the caller"], directory: dir.path)
        #expect(env.stdout == "\(URL(fileURLWithPath: dir.path).resolvingSymlinksInPath().path)\nset by the caller\n")
        #expect(try Subprocess.run(["sh", "-c", "kill -9 $$"]).status == 128 + 9)
        #expect(throws: ProcessFailure.self) { try Subprocess.run(["hs-no-such-program-anywhere"]) }
    }

    /// A child starts with no signal blocked, whatever the thread that starts it blocks (a tool
    /// started by a supervisor's worker thread, a thread of ours): `Subprocess` passed the mask
    /// on, so docker, docker compose, apt-get and systemctl started by the tools could not be
    /// stopped by SIGTERM and saw no SIGCHLD. (Read by a direct child: dash clears its own mask.)
    @Test("children start with an empty signal mask, from a thread that blocks every signal")
    func childrenStartWithNoSignalBlocked() throws {
        let status = ["grep", "-E", "^SigBlk", "/proc/self/status"]
        let results = Mutex<[String]>([])
        let done = DispatchSemaphore(value: 0)
        startThread {
            var all = sigset_t()
            sigfillset(&all)
            pthread_sigmask(SIG_BLOCK, &all, nil)
            var out: [String] = []
            out.append("Subprocess: " + ((try? Subprocess.run(status))?.stdout ?? "did not start"))
            out.append("ChildProcess: " + ((try? ChildProcess.start(status, captureStdout: true))?.wait().stdout ?? "did not start"))
            results.withLock { $0 = out }
            done.signal()
        }
        #expect(done.wait(timeout: .now() + 120) == .success, "a child hung")
        let lines = results.withLock { $0 }
        #expect(lines.count == 2)
        for line in lines { #expect(line.hasSuffix(": SigBlk:\t0000000000000000\n"), "\(line)") }
    }

    /// An ignored SIGHUP stays ignored in `Subprocess`'s children: `nohup hs-provision apply`
    /// over SSH must not lose apt-get to the hang-up (nohup is meant for the whole command).
    @Test("an ignored SIGHUP (nohup) is passed on to Subprocess's children")
    func nohupReachesTheChildren() throws {
        let old = signal(SIGHUP, SIG_IGN)
        defer { signal(SIGHUP, old) }
        let r = try Subprocess.checked(["grep", "-E", "^SigIgn", "/proc/self/status"])
        let hex = r.stdout.split(separator: "\t").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) } ?? ""
        let ignored = UInt64(hex, radix: 16) ?? 0
        #expect(ignored & (1 << (UInt64(SIGHUP) - 1)) != 0, "\(r.stdout)")
        #expect(ignored & (1 << (UInt64(SIGCHLD) - 1)) == 0, "\(r.stdout)")
    }

    @Test func aChildThatDoesNotReadItsInputDoesNotKillUs() throws {
        // `true` exits without reading: 1 MiB cannot fit in the pipe, so the writer meets the closed
        // pipe for certain. It must get EPIPE; a SIGPIPE would end this whole test process.
        let r = try Subprocess.run(["true"], input: Data(count: 1 << 20))
        #expect(r.status == 0)
        let c = try Subprocess.run(["sh", "-c", "head -c 1 >/dev/null; exit 4"], input: Data(count: 1 << 20))
        #expect(c.status == 4)
    }

    @Test func largeOutputOnBothPipesDoesNotDeadlock() throws {
        // 8 MiB on stdout and 8 MiB on stderr, interleaved: far beyond a pipe's 64 KiB buffer.
        let r = try Subprocess.checked(["sh", "-c", "head -c 8388608 /dev/zero | tr '\\0' a; head -c 8388608 /dev/zero | tr '\\0' b >&2"])
        #expect(r.stdout.utf8.count == 8 << 20)
        #expect(r.stderr.utf8.count == 8 << 20)
    }

    @Test func returnsWhenADaemonKeepsThePipesOpen() throws {
        // The child exits at once but leaves a background process holding stdout/stderr.
        let start = Date()
        let r = try Subprocess.run(["sh", "-c", "echo hello; echo oops >&2; (sleep 30 &); exit 3"])
        let elapsed = Date().timeIntervalSince(start)
        #expect(r.status == 3)
        #expect(r.stdout == "hello\n")
        #expect(r.stderr == "oops\n")
        #expect(elapsed < 10, "Subprocess.run waited \(elapsed)s for a daemon's end of file")
        _ = try? Subprocess.run(["pkill", "-f", "^sleep 30$"])
    }
}
