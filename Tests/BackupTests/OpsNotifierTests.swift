// Notifier against a real loopback HTTP server (python3 http.server) that records requests.
import Backup
import BackupOps
import Foundation
import Support
import TestSupport
import Testing

/// Starts `python3 arguments...` whose first line on stdout is the port it listens on (the
/// HTTP recorder here, `SilentServer` in CronNFSTests).
/// - Returns: that port.
func startPortPrinter(_ process: Process, _ arguments: [String], what: String) throws -> Int {
    guard let python = Subprocess.which("python3") else { throw ToolError("python3 not found") }
    process.executableURL = URL(fileURLWithPath: python)
    process.arguments = arguments
    let out = Pipe()
    process.standardOutput = out
    try process.run()
    var line = Data()
    while !line.contains(UInt8(ascii: "\n")) {
        let chunk = out.fileHandleForReading.availableData
        if chunk.isEmpty { throw ToolError("\(what) did not start") }
        line += chunk
    }
    guard let p = Int(String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) else {
        throw ToolError("\(what) printed no port")
    }
    return p
}

/// A python3 HTTP server on a free 127.0.0.1 port that records every request (method, path,
/// headers, body) as a JSON line. Paths starting with /fail answer 500. With a body limit, every
/// answer carries `Ping-Body-Limit` (as a Healthchecks server does).
final class OpsHTTPRecorder: @unchecked Sendable {
    static let script = #"""
    import http.server, json, sys, threading
    log = sys.argv[1]
    limit = sys.argv[2] if len(sys.argv) > 2 else None
    lock = threading.Lock()
    class H(http.server.BaseHTTPRequestHandler):
        def handle_one(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n).decode("utf-8", "replace") if n else ""
            with lock, open(log, "a") as f:
                f.write(json.dumps({"method": self.command, "path": self.path,
                                    "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}) + "\n")
            code = 500 if self.path.startswith("/fail") else 200
            out = b'{"ok":true}' if code == 200 else b'{"error":"boom"}'
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            if limit: self.send_header("Ping-Body-Limit", limit)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
        do_GET = do_POST = do_PUT = handle_one
        def log_message(self, *a): pass
    s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    print(s.server_address[1], flush=True)
    s.serve_forever()
    """#

    struct Request: Decodable {
        var method: String
        var path: String
        var headers: [String: String]
        var body: String
        var query: [String: String] {
            guard let c = URLComponents(string: "http://x" + path) else { return [:] }
            return Dictionary((c.queryItems ?? []).map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { _, b in b })
        }
    }

    let port: Int
    private let process = Process()
    private let dir: TempDir
    private var logPath: String { dir.sub("requests.jsonl") }
    var base: String { "http://127.0.0.1:\(port)" }

    init(pingBodyLimit: Int? = nil) throws {
        dir = try TempDir("hs-ops-http")
        let script = dir.sub("server.py")
        try Self.script.write(toFile: script, atomically: true, encoding: .utf8)
        port = try startPortPrinter(process, [script, dir.sub("requests.jsonl")] + (pingBodyLimit.map { [String($0)] } ?? []),
                                    what: "the test HTTP server")
    }

    var requests: [Request] {
        guard let text = try? String(contentsOfFile: logPath, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { try? JSONDecoder().decode(Request.self, from: Data($0.utf8)) }
    }

    deinit { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
}

@Suite("Notifications: ntfy and Uptime Kuma push")
struct OpsNotifierTests {
    static let failure = RunReport(success: false, operation: "hs-backup run", set: "asteria",
                                    message: "cannot write /mnt/backups/asteria: No space left on device", duration: 12.4)
    static let success = RunReport(success: true, operation: "hs-backup run", set: "asteria",
                                    message: "1234 files, 56 MB in 2 archives", duration: 3)

    @Test("failure posts to the ntfy topic with title, priority and tags; ping says down")
    func failurePostsAndPingsDown() throws {
        let server = try OpsHTTPRecorder()
        let n = Notifier(ntfyURL: server.base + "/backups-secret-topic", pingURL: server.base + "/api/push/TOKEN123?status=up&msg=OK&ping=")
        let warnings = n.report(Self.failure)
        #expect(warnings.isEmpty, "\(warnings)")
        let reqs = server.requests
        #expect(reqs.count == 2)
        let post = try #require(reqs.first { $0.method == "POST" })
        #expect(post.path == "/backups-secret-topic")
        #expect(post.headers["title"] == "hs-backup run FAILED on asteria")
        #expect(post.headers["priority"] == "high")
        #expect(post.headers["tags"]?.contains("rotating_light") == true)
        #expect(post.body.contains("No space left on device") && post.body.contains("(12 s)"))
        #expect(post.headers["authorization"] == nil)
        let ping = try #require(reqs.first { $0.method == "GET" })
        #expect(ping.path.hasPrefix("/api/push/TOKEN123?"))
        #expect(ping.query["status"] == "down")
        #expect(ping.query["msg"]?.hasPrefix("FAILED: cannot write") == true)
        #expect(ping.query["ping"] == "12400")
        #expect(ping.path.components(separatedBy: "status=").count == 2, "the URL's own status=up is replaced, not duplicated")
    }

    @Test("success pings up; ntfy only with notifySuccess")
    func successPingsUp() throws {
        let server = try OpsHTTPRecorder()
        let quiet = Notifier(ntfyURL: server.base + "/topic", pingURL: server.base + "/api/push/T")
        #expect(quiet.report(Self.success).isEmpty)
        #expect(server.requests.map(\.method) == ["GET"])
        #expect(server.requests.first?.query["status"] == "up")
        #expect(server.requests.first?.query["msg"] == "OK: 1234 files, 56 MB in 2 archives")

        let loud = Notifier(ntfyURL: server.base + "/topic", notifySuccess: true)
        #expect(loud.report(Self.success).isEmpty)
        let post = try #require(server.requests.last)
        #expect(post.method == "POST" && post.headers["priority"] == "default")
        #expect(post.headers["title"] == "hs-backup run OK on asteria")
    }

    @Test("credentials in the URL become Basic auth; HS_NTFY_TOKEN becomes Bearer")
    func auth() throws {
        let server = try OpsHTTPRecorder()
        let url = server.base.replacingOccurrences(of: "http://", with: "http://backup:s3cr%40t@") + "/topic"
        #expect(Notifier(ntfyURL: url).report(Self.failure).isEmpty)
        #expect(server.requests.last?.headers["authorization"] == "Basic " + Data("backup:s3cr@t".utf8).base64EncodedString())
        // Decoded once: a '%' in a name or password (%25 in the URL) stays a '%'.
        let percent = server.base.replacingOccurrences(of: "http://", with: "http://us%25er:p%2541ss%25@") + "/topic"
        #expect(Notifier(ntfyURL: percent).report(Self.failure).isEmpty)
        #expect(server.requests.last?.headers["authorization"] == "Basic " + Data("us%er:p%41ss%".utf8).base64EncodedString())
        #expect(Notifier(ntfyURL: server.base + "/topic", ntfyToken: "tk_abc").report(Self.failure).isEmpty)
        #expect(server.requests.last?.headers["authorization"] == "Bearer tk_abc")
    }

    @Test("delivery failures are warnings with the URL redacted")
    func failuresAreWarnings() throws {
        let server = try OpsHTTPRecorder()
        let n = Notifier(ntfyURL: server.base + "/fail-topic-SECRET", pingURL: "http://127.0.0.1:1/api/push/SECRETTOKEN", timeout: 3)
        let warnings = n.report(Self.failure)
        #expect(warnings.count == 2, "\(warnings)")
        #expect(warnings.contains { $0.contains("HTTP 500") })
        for w in warnings { #expect(!w.contains("SECRET"), "secret leaked: \(w)") }
        #expect(warnings.allSatisfy { $0.contains("127.0.0.1") })
    }

    @Test("curl carries a body byte for byte (quotes, backslashes, newlines, a leading @, %, non-ASCII) and the headers")
    func curlBodyAndHeaders() throws {
        let server = try OpsHTTPRecorder()
        let body = "@/etc/passwd \"quoted\" back\\slash %s %{http_code}\nline 2\ttab\r\nüñí 日本 \u{1F4BE}\n"
        var request = CurlRequest(method: .post, url: server.base + "/topic?x=[1]", timeout: 5)
        request.headers = [("Title", "a \"title\" with \\ and %"), ("X-Two", "line\nbreak")]
        request.body = Array(body.utf8)
        let answer = try request.send()
        #expect(answer.status == 200 && answer.body == #"{"ok":true}"#, "\(answer)")
        let got = try #require(server.requests.last)
        #expect(got.method == "POST" && got.path == "/topic?x=[1]", "\(got.path): no URL globbing")
        #expect(got.body == body)
        #expect(got.headers["title"] == "a \"title\" with \\ and %")
        #expect(got.headers["x-two"] == "line break", "a control character in a header value cannot add a header")
        #expect(got.headers["expect"] == nil)
        var get = CurlRequest(method: .get, url: server.base + "/fail-here", timeout: 5)
        get.wantedHeader = "content-type"
        let failed = try get.send()
        #expect(failed.status == 500 && failed.body.contains("boom") && failed.header == "application/json", "\(failed)")
    }

    @Test("no secret reaches curl's command line: the URL and headers go through its stdin")
    func curlArgvHoldsNoSecret() throws {
        let server = try OpsHTTPRecorder()
        let bin = try TempDir("hs-curl-argv")
        let real = try #require(Subprocess.which("curl"))
        // A curl first on PATH that records its command line, then runs the real one. Written by
        // a child process (as SchedulingTests does): no write fd of this process can leak into a
        // child another test spawns, so exec of the script cannot fail with ETXTBSY.
        try Subprocess.checked(["sh", "-c", "cat > \"$1\" && chmod 0755 \"$1\"", "sh", bin.sub("curl")],
                               input: Data("#!/bin/sh\nprintf '%s\\n' \"$*\" >> \(bin.sub("argv.log"))\nexec \(real) \"$@\"\n".utf8))
        let path = bin.path + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        let work = try TempDir("hs-curl-run")
        try FileManager.default.createDirectory(atPath: work.sub("src"), withIntermediateDirectories: true)
        let r = try Tools.run("hs-backup", ["run", "--source", work.sub("src"), "--to", work.sub("dest"), "--name", "s",
                                            "--notify", server.base.replacingOccurrences(of: "http://", with: "http://u:PASSSECRET@") + "/TOPICSECRET",
                                            "--notify-success", "--ping", server.base + "/api/push/PUSHSECRET"],
                              environment: ["PATH": path, "HS_NTFY_TOKEN": "TOKENSECRET"])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(server.requests.count == 2, "\(server.requests.map(\.path))")
        #expect(server.requests.contains { $0.path == "/TOPICSECRET" && $0.headers["authorization"]?.hasPrefix("Basic ") == true })
        let argv = try String(contentsOfFile: bin.sub("argv.log"), encoding: .utf8)
        #expect(argv.split(separator: "\n").count == 2 && argv.split(separator: "\n").allSatisfy { $0 == "-q -K -" }, "\(argv)")
        #expect(!(r.stdout + r.stderr).contains("SECRET"))
    }

    @Test("without curl a notification is a warning naming what to install; the backup still succeeds")
    func curlMissing() throws {
        let server = try OpsHTTPRecorder()
        let work = try TempDir("hs-curl-missing")
        try FileManager.default.createDirectory(atPath: work.sub("src"), withIntermediateDirectories: true)
        let r = try Tools.run("hs-backup", ["run", "--source", work.sub("src"), "--to", work.sub("dest"), "--name", "s",
                                            "--ping", server.base + "/api/push/PUSHSECRET"],
                              environment: ["PATH": work.sub("empty-bin")])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(r.stderr.contains("curl is not installed (apt-get install curl)") && !r.stderr.contains("SECRET"), "\(r.stderr)")
        #expect(server.requests.isEmpty)
    }

    @Test("redaction and validation")
    func redaction() throws {
        #expect(Notifier.redact("https://user:pw@ntfy.example.net/topic?auth=x") == "https://ntfy.example.net/…")
        #expect(Notifier.redact("http://kuma:3001/api/push/abc") == "http://kuma:3001/…")
        #expect(Notifier.redact("https://ntfy.sh") == "https://ntfy.sh")
        #expect(throws: NotifierUsageError.self) { try Notifier(ntfyURL: "ntfy.sh/topic").validate() }
        #expect(throws: NotifierUsageError.self) { try Notifier(pingURL: "ftp://kuma/api/push/x").validate() }
        try Notifier(ntfyURL: "https://ntfy.sh/t", pingURL: "http://10.0.0.5:11001/api/push/x").validate()
        let msg = (try? Notifier(ntfyURL: "nope://secret@host/topic").validate()).map { _ in "" }
        #expect(msg == nil)
    }
}
