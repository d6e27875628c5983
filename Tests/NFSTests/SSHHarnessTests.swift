import Foundation
import Support
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

@Suite struct SSHHarnessTests {
    @Test func sharedServerServesSFTPToRclone() throws {
        let s = try SSHServer.shared()
        #expect(try SSHServer.shared() === s)
        let dir = try s.makeUniqueDirectory("harness")
        try "hello\n".write(toFile: s.local(dir + "/hello.txt"), atomically: false, encoding: .utf8)
        let r = try Subprocess.run(["rclone", "lsf", s.remote(dir)], environment: s.environment)
        #expect(r.succeeded, "\(r.stderr)")
        #expect(r.stdout == "hello.txt\n")
        // The local remote sees the same directory.
        let l = try Subprocess.run(["rclone", "lsf", s.localRemote(dir)], environment: s.environment)
        #expect(l.succeeded && l.stdout == "hello.txt\n", "\(l.stderr)")
        // SFTP uploads are private (sftp-server -u 0077).
        let up = try Subprocess.run(["rclone", "rcat", s.remote(dir + "/up.txt")], input: Data("x".utf8), environment: s.environment)
        #expect(up.succeeded, "\(up.stderr)")
        var st = stat()
        #expect(lstat(s.local(dir + "/up.txt"), &st) == 0 && st.st_mode & 0o777 == 0o600)
    }

    @Test func killTakesTheSessionsAlongAndRestartKeepsThePort() throws {
        let s = try SSHServer()
        let pid = try #require(s.processID)
        try "kept\n".write(toFile: s.local("kept.txt"), atomically: false, encoding: .utf8)
        // A long-lived session: rclone's SFTP mount-free `cat` of a slow stream keeps one open.
        // Simpler and deterministic: OpenSSH's sftp in batch mode waiting on its stdin.
        let session = try ChildProcess.start(["sftp", "-b", "-", "-P", String(s.port), "-i", s.clientKeyPath,
                                              "-o", "UserKnownHostsFile=\(s.knownHostsPath)", "-o", "BatchMode=yes",
                                              "\(s.user)@127.0.0.1"], input: .stream)
        var sessions: Set<pid_t> = []
        for _ in 0..<100 where sessions.isEmpty { sessions = s.sessionProcesses(); usleep(50_000) }
        #expect(!sessions.isEmpty, "the sftp client's session is served by processes below the listener")

        let killed = s.kill()
        #expect(s.processID == nil)
        #expect(killed.isSuperset(of: sessions))
        #expect(!Daemon.isAlive(pid) && !sessions.contains(where: Daemon.isAlive))
        let end = session.wait()
        #expect(end.status != 0, "the client saw its session die")
        let down = try Subprocess.run(["rclone", "lsf", "--contimeout", "2s", "--low-level-retries", "1", s.remote()],
                                      environment: s.environment)
        #expect(!down.succeeded)

        try s.restart()
        #expect(try #require(s.processID) != pid)
        let up = try Subprocess.run(["rclone", "lsf", s.remote()], environment: s.environment)
        #expect(up.succeeded && up.stdout.contains("kept.txt"), "\(up.stderr)")
        s.stop()
        #expect(!(try Subprocess.run(["rclone", "lsf", "--contimeout", "2s", "--low-level-retries", "1", s.remote()],
                                     environment: s.environment).succeeded))
    }
}
