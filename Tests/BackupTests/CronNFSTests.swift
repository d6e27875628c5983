// hs-backup against a NAS that stops answering (issue 14): a SIGSTOPped ganesha, a server that
// accepts TCP and never answers, and a DNS typo. Each test has its own servers.
import Foundation
import Support
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A TCP listener on 127.0.0.1 that accepts connections and never answers (python3); it
/// counts them (a byte each in its file `accepted`).
final class SilentServer: @unchecked Sendable {
    static let script = #"""
    import socket, sys, time
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0)); s.listen(16)
    print(s.getsockname()[1], flush=True)
    conns = []
    while True:
        c, _ = s.accept(); conns.append(c)
        with open(sys.argv[1], "a") as f: f.write("x")
    """#
    let port: Int
    private let process = Process()
    private let dir: TempDir

    init() throws {
        dir = try TempDir("hs-silent")
        try Self.script.write(toFile: dir.sub("s.py"), atomically: true, encoding: .utf8)
        port = try startPortPrinter(process, [dir.sub("s.py"), dir.sub("accepted")], what: "the silent server")
    }
    /// Connections accepted so far.
    var accepted: Int {
        var st = stat()
        return stat(dir.sub("accepted"), &st) == 0 ? Int(st.st_size) : 0
    }
    deinit { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
}

@Suite("cron safety: a NAS that stops answering", .serialized)
struct CronNFSTests {
    @Test("a SIGSTOPped ganesha ends the run with exit 1 within timeout + 30 s; lock gone, notified, next run succeeds")
    func stoppedServer() throws {
        let g = try GaneshaServer()
        let http = try OpsHTTPRecorder()
        let dir = try TempDir("hs-cron-nfs")
        let src = try bigSource(dir, megabytes: 96)
        let sub = try g.makeUniqueDirectory("stall")
        let url = g.url(path: sub, extra: [("timeout", "20")])
        let setDir = g.exportPath + "/" + sub + "/io"
        let run = try RunningTool("hs-backup", ["run", "--source", src, "--to", url, "--name", "io", "--notify", http.base + "/topic"],
                                  environment: ["HS_BACKUP_SQLITE_CAPTURE": "0"])
        #expect(waitFor(60) { filesIn(setDir).contains { $0.hasSuffix(".partial") } }, "archive started: \(filesIn(setDir)) \(run.stderr)")
        let pid = try #require(g.processID)
        kill(pid, SIGSTOP)
        let stopped = Date()
        let status = run.wait(upTo: 20 + 30)
        let waited = Date().timeIntervalSince(stopped)
        kill(pid, SIGCONT)
        #expect(status == 1, "exit \(String(describing: status)) after \(waited)s: \(run.stderr)")
        #expect(run.stderr.contains("server not responding, still trying"), "a notice every 15 s: \(run.stderr)")
        #expect(run.stderr.contains("not responding") || run.stderr.contains("timed out"), "\(run.stderr)")
        #expect(!run.stderr.contains("NSCocoaErrorDomain") && !run.stderr.contains("NSURLErrorDomain"))
        let post = try #require(http.requests.first { $0.method == "POST" }, "a failure notification was sent")
        #expect(post.headers["title"]?.contains("FAILED") == true)
        // While the server is frozen nothing can be removed on it; the lock names a process
        // that is gone, so the next run takes it over at once and removes the partial archive.
        let next = try Tools.run("hs-backup", ["run", "--source", src, "--to", url, "--name", "io"],
                                 environment: ["HS_BACKUP_SQLITE_CAPTURE": "0"])
        #expect(next.succeeded, "\(next.stderr)")
        #expect(!filesIn(setDir).contains("lock"), "lock gone: \(filesIn(setDir))")
        #expect(!filesIn(setDir).contains { $0.hasSuffix(".partial") }, "partial gone: \(filesIn(setDir))")
        #expect(filesIn(setDir).filter { $0.hasSuffix(".manifest") }.count == 1)
    }

    @Test("a server that accepts TCP but never answers times out, saying it is still trying")
    func silentServer() throws {
        let s = try SilentServer()
        let dir = try TempDir("hs-cron-nfs")
        try Tree.write(dir.sub("appdata/x.txt"), "x\n")
        let url = "nfs://127.0.0.1/backups?nfsport=\(s.port)&mountport=\(s.port)&timeout=20"
        let started = Date()
        let r = try Tools.run("hs-backup", ["run", "--source", dir.sub("appdata"), "--to", url, "--name", "io"])
        let took = Date().timeIntervalSince(started)
        #expect(r.status == 1, "\(r.stderr)")
        #expect(took < 20 + 30, "took \(took)s")
        #expect(r.stderr.contains("server not responding, still trying"), "\(r.stderr)")
        #expect(r.stderr.contains("timed out"), "\(r.stderr)")
        #expect(foundationLeaks(r).isEmpty)
    }

    @Test("--nfs-timeout overrides the default and bad values are usage errors")
    func timeoutFlag() throws {
        let dir = try TempDir("hs-cron-nfs")
        try Tree.write(dir.sub("appdata/x.txt"), "x\n")
        for bad in ["nfs://127.0.0.1/b?timeout=0", "nfs://127.0.0.1/b?timeout=abc"] {
            let r = try Tools.run("hs-backup", ["run", "--source", dir.sub("appdata"), "--to", bad, "--name", "io"])
            #expect(r.status == 2 && r.stderr.contains("timeout"), "\(bad): \(r.stderr)")
        }
        let s = try SilentServer()
        let url = "nfs://127.0.0.1/backups?nfsport=\(s.port)&mountport=\(s.port)"
        let started = Date()
        let r = try Tools.run("hs-backup", ["run", "--nfs-timeout", "3", "--source", dir.sub("appdata"), "--to", url, "--name", "io"])
        #expect(r.status == 1 && r.stderr.contains("timed out"), "\(r.stderr)")
        #expect(Date().timeIntervalSince(started) < 3 + 30)
    }

    @Test("a DNS typo says the name could not be resolved")
    func dnsTypo() throws {
        let dir = try TempDir("hs-cron-nfs")
        try Tree.write(dir.sub("appdata/x.txt"), "x\n")
        let http = try OpsHTTPRecorder()
        let r = try Tools.run("hs-backup", ["run", "--source", dir.sub("appdata"), "--to", "nfs://truenass.invalid/mnt/tank/backups", "--name", "io",
                                            "--notify", http.base + "/topic", "--ping", http.base + "/api/push/T"])
        #expect(r.status == 1, "\(r.stderr)")
        // A NAS that cannot be reached at all is reported like any failure.
        let post = try #require(http.requests.first { $0.method == "POST" }, "ntfy heard of it")
        #expect(post.body.contains("could not be resolved"), "\(post.body)")
        #expect(http.requests.contains { $0.method == "GET" && $0.query["status"] == "down" })
        #expect(http.requests.allSatisfy { $0.headers["user-agent"] == "hs-backup/\(homeServerVersion)" }, "\(http.requests.map(\.headers))")
        #expect(r.stderr.contains("truenass.invalid") && r.stderr.contains("could not be resolved"), "\(r.stderr)")
        #expect(!r.stderr.contains("No route to host"), "\(r.stderr)")
    }
}
