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

    // Every client here runs with a deadline (Daemon.runClient, ChildProcess.wait(upTo:)) and every wait
    // is for a state seen in /proc or on disk: under load the test gets slower, it does not hang or guess.
    @Test func killTakesTheSessionsAlongAndRestartKeepsThePort() throws {
        let s = try SSHServer()
        let listener = try #require(s.processID)
        let port = s.port
        try "kept\n".write(toFile: s.local("kept.txt"), atomically: false, encoding: .utf8)
        func sftp(_ port: UInt16) -> [String] {
            ["sftp", "-b", "-", "-P", String(port), "-i", s.clientKeyPath, "-o", "UserKnownHostsFile=\(s.knownHostsPath)",
             "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "\(s.user)@127.0.0.1"]
        }
        // A live, authenticated session: OpenSSH's sftp reads its commands from a socket the test
        // holds open, so the session lasts until the test ends it or the server dies. Its first
        // command makes a directory: once that exists, the session's sftp-server is serving.
        let client = try ChildProcess.start(sftp(port), input: .stream)
        defer { _ = client.wait(upTo: 0) }
        try Data("mkdir \(s.local("session-up"))\n".utf8).withUnsafeBytes { try client.write($0) }
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: s.local("session-up")) && client.isRunning && Date() < deadline {
            usleep(20_000)
        }
        let why = "client running: \(client.isRunning), its stderr: \(client.stderrTail)\n\(s.logTail())"
        try #require(FileManager.default.fileExists(atPath: s.local("session-up")),
                     "the sftp session did not serve its first command within 60 s (\(why))")
        let sftpServer = try #require(s.sessionProcesses().first { program($0).hasSuffix("/sftp-server") },
                                      "no sftp-server below the listener: \(s.sessionProcesses().map { "\($0) \(program($0))" })")
        // sftp-server and the sshd processes between it and the listener: the session itself.
        let session = Set(sequence(first: sftpServer) { Daemon.parent(of: $0) }.prefix { $0 != listener && $0 > 1 })
        #expect(session.count >= 2, "sftp-server \(sftpServer) is served by sshd processes below the listener \(listener): \(session)")
        // Everything that serves a connection now, short-lived processes (an earlier probe's) included.
        let serving = s.sessionProcesses()
        defer {  // a kill() that left some behind must not leave them to later tests
            for p in serving where Daemon.isAlive(p) && ["/sshd", "/sftp-server"].contains(where: { program(p).hasSuffix($0) }) {
                kill(p, SIGKILL)
            }
        }

        let killed = s.kill()
        #expect(s.processID == nil)
        #expect(!Daemon.isAlive(listener), "the listener \(listener) died")
        #expect(killed.isSuperset(of: session), "kill() names the session it killed: \(killed) ⊉ \(session)")
        let survivors = serving.filter(Daemon.isAlive)
        #expect(survivors.isEmpty, "no process that served a connection survives kill(): \(survivors.map { "\($0) \(program($0))" })")
        // The client sees its session gone: its next command fails (a live session would list the
        // directory, then exit 0 at the end of its input).
        _ = try? Data("ls \(s.dataPath)\n".utf8).withUnsafeBytes { try client.write($0) }
        client.closeInput()
        let end = try #require(client.wait(upTo: 30), "sftp did not exit within 30 s of its server's death")
        #expect(end.status != 0, "the client saw its session die: \(end.stderr)")
        let down = try #require(try Daemon.runClient(sftp(port), input: Data("ls\n".utf8), within: 60),
                                "sftp to a killed server did not end within 60 s")
        #expect(!down.succeeded, "nothing answers on port \(port) after kill()")

        try s.restart()
        #expect(try #require(s.processID) != listener)
        #expect(s.port == port)
        // The port clients knew before the crash, with the host key they knew.
        let back = try #require(try Daemon.runClient(sftp(port), input: Data("ls \(s.dataPath)\n".utf8), within: 60),
                                "sftp after restart() did not end within 60 s")
        #expect(back.succeeded && back.stdout.contains("kept.txt"), "the restarted server answers on port \(port): \(back.stderr)")
        let up = try #require(try Daemon.runClient(["rclone", "lsf", s.remote()], environment: s.environment, within: 60),
                              "rclone lsf after restart() did not end within 60 s")
        #expect(up.succeeded && up.stdout.contains("kept.txt"), "\(up.stderr)")
        s.stop()
        let stopped = try #require(try Daemon.runClient(["rclone", "lsf", "--contimeout", "2s", "--low-level-retries", "1", s.remote()],
                                                        environment: s.environment, within: 60),
                                   "rclone lsf after stop() did not end within 60 s")
        #expect(!stopped.succeeded)
    }
}

/// The program `p` runs (where /proc/p/exe points), "" when it is gone.
private func program(_ p: pid_t) -> String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(p)/exe")) ?? ""
}
