// Monitoring that tells the truth: Healthchecks pings, the --ping refusal of Healthchecks URLs,
// and the Prometheus file, against a real loopback HTTP recorder and the built hs-backup.
import Backup
import BackupOps
import Foundation
import Support
import TestSupport
import Testing

@Suite("Monitoring: Healthchecks, --ping refusal, Prometheus metrics")
struct MonitoringTests {
    /// An environment without the host's configuration file.
    static let isolated = ["HS_CONFIG": "/dev/null"]

    @Test("--ping given a Healthchecks URL is refused naming --healthchecks, and nothing is sent",
          arguments: ["/ping/0b5a3c4e-7f1d-4a2b-9c3d-5e6f7a8b9c0d", "/ping/Xk2-ping-key_123/nightly-backup"])
    func pingRefusesHealthchecksURL(path: String) throws {
        let server = try OpsHTTPRecorder()
        let work = try TempDir("hs-hc-refuse")
        // A run that fails (DEST lies below a regular file): today this sends GET URL?status=down,
        // which Healthchecks counts as a success, and exits 1.
        try FileManager.default.createDirectory(atPath: work.sub("src"), withIntermediateDirectories: true)
        try Data("x".utf8).write(to: URL(fileURLWithPath: work.sub("src/a")))
        try Data().write(to: URL(fileURLWithPath: work.sub("file")))
        let r = try Tools.run("hs-backup", ["run", "--source", work.sub("src"), "--to", work.sub("file/dest"),
                                            "--ping", server.base + path], environment: Self.isolated)
        #expect(r.status == 2, "exit \(r.status): \(r.stderr)")
        #expect(r.stderr.contains("--healthchecks"), "\(r.stderr)")
        #expect(!r.stderr.contains("0b5a3c4e") && !r.stderr.contains("Xk2-ping-key"), "the ping key is a secret: \(r.stderr)")
        #expect(server.requests.isEmpty, "sent: \(server.requests.map { "\($0.method) \($0.path)" })")
    }

    @Test("the hc-ping.com host is recognised whatever the path; Kuma push URLs are not")
    func healthchecksURLRecognition() {
        #expect(HealthchecksURL.looksLikeHealthchecks("https://hc-ping.com/0b5a3c4e-7f1d-4a2b-9c3d-5e6f7a8b9c0d"))
        #expect(HealthchecksURL.looksLikeHealthchecks("https://HC-PING.COM/key/slug"))
        #expect(HealthchecksURL.looksLikeHealthchecks("http://hc.example.net:8000/ping/0b5a3c4e-7f1d-4a2b-9c3d-5e6f7a8b9c0d"))
        #expect(HealthchecksURL.looksLikeHealthchecks("https://hc.example.net/ping/abcdefghijklmnopqrstuv/backup-io"))
        #expect(!HealthchecksURL.looksLikeHealthchecks("https://kuma.example.net/api/push/0b5a3c4e7f"))
        #expect(!HealthchecksURL.looksLikeHealthchecks("https://kuma.example.net/ping/notauuid"))
        #expect(!HealthchecksURL.looksLikeHealthchecks("https://example.net/ping/a/b/c"))
    }

    static let uuid = "0b5a3c4e-7f1d-4a2b-9c3d-5e6f7a8b9c0d"

    /// A source with a few files, a destination, and a file in place of a destination (a run
    /// that fails with exit 1).
    static func fixture(_ work: TempDir) throws -> (source: String, dest: String, badDest: String) {
        try Tree.write(work.sub("src/app/config.xml"), "<Config/>\n")
        try Tree.write(work.sub("src/app/data.txt"), String(repeating: "line\n", count: 100))
        try Data().write(to: URL(fileURLWithPath: work.sub("file")))
        return (work.sub("src"), work.sub("dest"), work.sub("file/dest"))
    }

    @Test("Healthchecks: /start then success for a good run, /start then /1 for a failed one, paired by rid, log as body")
    func healthchecksProtocol() throws {
        let server = try OpsHTTPRecorder()
        let work = try TempDir("hs-hc")
        let f = try Self.fixture(work)
        let hc = server.base + "/ping/" + Self.uuid
        let good = try Tools.run("hs-backup", ["run", "--source", f.source, "--to", f.dest, "--name", "io", "--healthchecks", hc],
                                 environment: Self.isolated)
        #expect(good.status == 0, "\(good.stderr)")
        let first = server.requests
        #expect(first.count == 2, "\(first.map(\.path))")
        guard first.count == 2 else { return }
        #expect(first[0].path.hasPrefix("/ping/\(Self.uuid)/start?rid="), "\(first[0].path)")
        let rid = try #require(first[0].query["rid"])
        #expect(UUID(uuidString: rid) != nil)
        #expect(first[1].method == "POST")
        #expect(first[1].path == "/ping/\(Self.uuid)?rid=\(rid)", "success is the check URL itself: \(first[1].path)")
        #expect(first[1].body.hasPrefix("hs-backup run on io: exit 0 (ok): "), "\(first[1].body)")

        let bad = try Tools.run("hs-backup", ["run", "--source", f.source, "--to", f.badDest, "--name", "io", "--healthchecks", hc],
                                environment: Self.isolated)
        #expect(bad.status == 1, "\(bad.stderr)")
        let second = Array(server.requests.dropFirst(2))
        #expect(second.count == 2, "\(second.map(\.path))")
        guard second.count == 2 else { return }
        let rid2 = try #require(second[0].query["rid"])
        #expect(second[0].path == "/ping/\(Self.uuid)/start?rid=\(rid2)")
        #expect(rid2 != rid, "each run has its own run id")
        #expect(second[1].path == "/ping/\(Self.uuid)/1?rid=\(rid2)", "a failure is /<exit code>: \(second[1].path)")
        #expect(second[1].body.contains("exit 1 (FAILED)") && second[1].body.contains("cannot create the backup set directory"),
                "\(second[1].body)")
    }

    @Test("Healthchecks: the end ping's body stays within the server's Ping-Body-Limit and keeps the log's last lines")
    func healthchecksBodyLimit() throws {
        let server = try OpsHTTPRecorder(pingBodyLimit: 300)
        LogTail.reset()
        for i in 0..<50 { LogTail.append("warning: line \(i) of the log\n") }
        let n = Notifier(healthchecksURL: server.base + "/ping/" + Self.uuid)
        #expect(n.start().isEmpty)
        var report = RunReport(success: false, operation: "hs-backup verify", set: "io", message: "2 problems", duration: 1)
        report.exitCode = 1
        #expect(n.report(report).isEmpty)
        let end = try #require(server.requests.last)
        #expect(end.body.utf8.count <= 300, "\(end.body.utf8.count) bytes")
        #expect(end.body.hasPrefix("hs-backup verify on io: exit 1 (FAILED): 2 problems\n"), "\(end.body)")
        #expect(end.body.hasSuffix("warning: line 49 of the log\n"), "the newest lines are kept: \(end.body)")
        #expect(!end.body.contains("line 0 of"), "the oldest lines go first")
        // Every kept log line is whole.
        for line in end.body.split(separator: "\n").dropFirst() { #expect(line.hasPrefix("warning: line "), "\(line)") }
    }

    @Test("exit 3 (committed, files missing) is a warning for every monitor: Healthchecks success with exit 3 in the body, Kuma up with WARNING, metrics exit code 3 with the success time")
    func exitThreeIsAWarning() throws {
        let server = try OpsHTTPRecorder()
        let work = try TempDir("hs-exit3")
        let metrics = work.sub("m.prom")
        var n = Notifier(ntfyURL: server.base + "/topic", pingURL: server.base + "/api/push/T",
                         healthchecksURL: server.base + "/ping/" + Self.uuid, metricsFile: metrics)
        n.metricsCommand = "run"
        var report = RunReport(success: true, operation: "hs-backup run", set: "io",
                               message: "backup 20261201T030000Z committed, 2 files missing: app/a.db, app/b", duration: 4, exitCode: 3)
        report.metrics = RunMetrics(files: 10, bytesRead: 100, bytesWritten: 50, backupsKept: 3, filesMissing: 2)
        #expect(n.report(report).isEmpty)
        let reqs = server.requests
        let hc = try #require(reqs.last { $0.path.hasPrefix("/ping/") && !$0.path.contains("/start") })
        #expect(hc.path == "/ping/\(Self.uuid)?rid=\(n.session.runID)", "exit 3 pings the success URL: \(hc.path)")
        #expect(hc.body.hasPrefix("hs-backup run on io: exit 3 (committed, files missing): "), "\(hc.body)")
        let kuma = try #require(reqs.first { $0.path.hasPrefix("/api/push/") })
        #expect(kuma.query["status"] == "up")
        #expect(kuma.query["msg"]?.hasPrefix("WARNING: ") == true)
        let ntfy = try #require(reqs.first { $0.path == "/topic" })
        #expect(ntfy.headers["tags"]?.contains("warning") == true, "exit 3 is posted to ntfy as a warning")
        let text = try String(contentsOfFile: metrics, encoding: .utf8)
        #expect(text.contains("hs_backup_last_exit_code{set=\"io\",command=\"run\"} 3\n"))
        #expect(text.contains("hs_backup_last_files_missing{set=\"io\",command=\"run\"} 2\n"))
        #expect(!text.contains("hs_backup_last_success_timestamp_seconds{set=\"io\",command=\"run\"} 0\n"))
    }

    @Test("metrics: one file per set and command, the last success kept across a failed run, served by a real node_exporter without a scrape error")
    func metricsThroughNodeExporter() throws {
        let work = try TempDir("hs-metrics")
        let f = try Self.fixture(work)
        let dir = work.sub("textfile")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // The directory comes from the configuration file (HS_METRICS_DIR).
        try "HS_METRICS_DIR=\(dir)\n".write(toFile: work.sub("conf"), atomically: true, encoding: .utf8)
        let env = ["HS_CONFIG": work.sub("conf")]
        let good = try Tools.run("hs-backup", ["run", "--source", f.source, "--to", f.dest, "--name", "io"], environment: env)
        #expect(good.status == 0, "\(good.stderr)")
        let runFile = dir + "/hs_backup_io_run.prom"
        let firstSuccess = MetricsFile.previousSuccess(at: runFile)
        #expect(firstSuccess > 1_700_000_000, "\(firstSuccess)")
        sleep(1)
        let bad = try Tools.run("hs-backup", ["run", "--source", f.source, "--to", f.badDest, "--name", "io"], environment: env)
        #expect(bad.status == 1)
        #expect(MetricsFile.previousSuccess(at: runFile) == firstSuccess, "a failed run keeps the last success time")
        let verify = try Tools.run("hs-backup", ["verify", "--to", f.dest, "--name", "io"], environment: env)
        #expect(verify.status == 0, "\(verify.stderr)")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        #expect(files == ["hs_backup_io_run.prom", "hs_backup_io_verify.prom"], "no temporary file left: \(files)")
        let runText = try String(contentsOfFile: runFile, encoding: .utf8)
        #expect(runText.contains("hs_backup_last_exit_code{set=\"io\",command=\"run\"} 1\n"))
        #expect(runText.contains("hs_backup_backups{set=\"io\",command=\"run\"} 1\n"), "\(runText)")
        for line in runText.split(separator: "\n") where !line.hasPrefix("#") {
            #expect(line.split(separator: " ").count == 2, "no sample timestamp: \(line)")
        }

        let port = try Daemon.freePorts(1)[0]
        let exporter = Process()
        exporter.executableURL = URL(fileURLWithPath: "/usr/bin/prometheus-node-exporter")
        exporter.arguments = ["--web.listen-address=127.0.0.1:\(port)", "--collector.disable-defaults", "--collector.textfile",
                              "--collector.textfile.directory=\(dir)"]
        exporter.standardError = FileHandle.nullDevice
        try exporter.run()
        defer { exporter.terminate(); exporter.waitUntilExit() }
        var body = ""
        for _ in 0..<50 {
            if let r = try? Subprocess.run(["curl", "-fsS", "http://127.0.0.1:\(port)/metrics"]), r.succeeded { body = r.stdout; break }
            usleep(100_000)
        }
        #expect(body.contains("node_textfile_scrape_error 0"), "\(body.split(separator: "\n").filter { $0.contains("textfile") })")
        #expect(body.contains("hs_backup_last_exit_code{command=\"run\",set=\"io\"} 1"))
        #expect(body.contains("hs_backup_last_exit_code{command=\"verify\",set=\"io\"} 0"))
        let served = body.split(separator: "\n").first { $0.hasPrefix("hs_backup_last_success_timestamp_seconds{command=\"run\",set=\"io\"} ") }
        #expect(served.flatMap { $0.split(separator: " ").last }.flatMap { Double($0) } == firstSuccess,
                "\(served ?? "no sample")")
    }

    @Test("notify-failure: how a unit ended, and which failures hs-backup already posted itself")
    func unitFailureEnding() throws {
        let exited = UnitFailure.Ending(systemctlShow: "Result=exit-code\nExecMainCode=1\nExecMainStatus=2\n")
        #expect(exited == UnitFailure.Ending(result: "exit-code", code: 1, status: 2))
        #expect(exited.words == "exit status 2")
        let killed = UnitFailure.Ending(systemctlShow: "Result=signal\nExecMainCode=2\nExecMainStatus=9\n")
        #expect(killed.words == "killed by signal 9")
        #expect(UnitFailure.Ending(systemctlShow: "Result=timeout\nExecMainCode=2\nExecMainStatus=15").words == "timeout, killed by signal 15")
        let one = UnitFailure.Ending(result: "exit-code", code: 1, status: 1)
        #expect(UnitFailure.reportedByTheTool(unit: "hs-backup.service", one))
        #expect(UnitFailure.reportedByTheTool(unit: "hs-backup@media.service", one))
        #expect(!UnitFailure.reportedByTheTool(unit: "hs-deploy-pull.service", one), "hs-deploy does not notify itself")
        #expect(!UnitFailure.reportedByTheTool(unit: "hs-backup.service", exited), "exit 2 may come before the notifier exists")
        #expect(!UnitFailure.reportedByTheTool(unit: "hs-backup.service", killed))
        try UnitFailure.validate(unit: "hs-backup@media.service")
        #expect(throws: ToolError.self) { try UnitFailure.validate(unit: "x; rm -rf /") }
        let r = try Tools.run("hs-backup", ["notify-failure", "bad name!"], environment: Self.isolated)
        #expect(r.status == 2 && r.stderr.contains("is not a systemd unit name"), "\(r.stderr)")
    }
}
