// The --json contract ("exactly one JSON object on stdout, also on failure") for a run that a
// signal stops: cron, systemd and monitoring parse stdout, and a SIGTERM (a timeout, a
// shutdown) left it empty. Every test runs the built tools and signals them mid-work.
import Foundation
import Support
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The one object on stdout, or nil when stdout is not exactly one JSON object.
private func onlyObject(_ stdout: String) -> [String: Any]? {
    (try? JSONSerialization.jsonObject(with: Data(stdout.utf8))) as? [String: Any]
}

/// Waits until `caught` holds while `run` works, stops it (SIGSTOP) so it cannot finish before
/// the signal lands, and sends `sig`; false when `caught` never held (the run is then let go).
func stopMidWork(_ run: RunningTool, with sig: Int32, _ caught: () -> Bool) -> Bool {
    let seen = waitFor(120) { caught() }
    kill(run.process.processIdentifier, SIGSTOP)
    guard seen, caught() else {
        kill(run.process.processIdentifier, SIGCONT)
        return false
    }
    kill(run.process.processIdentifier, sig)
    kill(run.process.processIdentifier, SIGCONT)
    return true
}

private func signalName(_ sig: Int32) -> String { sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP" : "signal \(sig)" }

@Suite("--json when a signal stops the run", .serialized)
struct SignalJSONTests {
    @Test("hs-backup run --json stopped by SIGTERM/SIGINT prints one error object with exit_code 128+N", arguments: [SIGTERM, SIGINT])
    func runStopped(_ sig: Int32) throws {
        let dir = try TempDir("hs-sigjson")
        let src = try bigSource(dir, megabytes: 384, text: true)
        let setDir = dir.sub("nas/io")
        let run = try RunningTool("hs-backup", ["run", "--source", src, "--to", dir.sub("nas"), "--name", "io", "--json"],
                                  environment: ["HS_BACKUP_SQLITE_CAPTURE": "0"])
        try #require(stopMidWork(run, with: sig) { filesIn(setDir).contains { $0.hasSuffix(".partial") } },
                     "the backup was not caught writing: \(run.stderr)")
        let status = run.wait(upTo: 60)
        #expect(status == 128 + sig, "\(String(describing: status)) \(run.stderr)")
        let object = onlyObject(run.stdout)
        #expect(object?["exit_code"] as? Int == Int(128 + sig), "stdout: '\(run.stdout)'")
        #expect((object?["error"] as? String)?.contains("stopped by \(signalName(sig))") == true, "stdout: '\(run.stdout)'")
        #expect(filesIn(setDir).isEmpty, "left behind: \(filesIn(setDir))")
    }

    @Test("hs-backup copy --json and hs-restore --json stopped by SIGTERM print one error object; without --json stdout stays empty")
    func copyAndRestoreStopped() throws {
        let dir = try TempDir("hs-sigjson")
        let src = try bigSource(dir, megabytes: 256, text: true)
        let made = try Tools.run("hs-backup", ["run", "--source", src, "--to", dir.sub("nas"), "--name", "io", "-q"],
                                 environment: ["HS_BACKUP_SQLITE_CAPTURE": "0"])
        try #require(made.status == 0, "\(made.stderr)")

        let copy = try RunningTool("hs-backup", ["copy", "--from", dir.sub("nas"), "--to", dir.sub("offsite"), "--json"])
        try #require(stopMidWork(copy, with: SIGTERM) { filesIn(dir.sub("offsite/io")).contains { $0.hasSuffix(".partial") } },
                     "the copy was not caught writing: \(copy.stderr)")
        #expect(copy.wait(upTo: 60) == 143, "\(copy.stderr)")
        let copyObject = onlyObject(copy.stdout)
        #expect(copyObject?["exit_code"] as? Int == 143, "stdout: '\(copy.stdout)'")
        #expect((copyObject?["error"] as? String)?.contains("stopped by SIGTERM") == true, "stdout: '\(copy.stdout)'")

        // A restore writes each file under a temporary name (`.hs-restore.PID.N.part`) first.
        func restoring(_ target: String) -> Bool {
            FileManager.default.enumerator(atPath: target)?.contains { ($0 as? String)?.hasSuffix(".part") == true } ?? false
        }
        for json in [true, false] {
            let target = dir.sub("restored-\(json)")
            let restore = try RunningTool(Tools.path("hs-restore"), ["--from", dir.sub("nas"), "--name", "io", "--to", target] + (json ? ["--json"] : []))
            try #require(stopMidWork(restore, with: SIGTERM) { restoring(target) }, "the restore was not caught writing: \(restore.stderr)")
            // As before: stopped by the signal itself (a calling shell script sees it and stops too); the shell shows 143.
            _ = restore.wait(upTo: 60)
            #expect(restore.process.terminationReason == .uncaughtSignal && restore.process.terminationStatus == SIGTERM,
                    "\(restore.process.terminationReason) \(restore.process.terminationStatus) \(restore.stderr)")
            if json {
                let object = onlyObject(restore.stdout)
                #expect(object?["exit_code"] as? Int == 143, "stdout: '\(restore.stdout)'")
                #expect((object?["error"] as? String)?.contains("stopped by SIGTERM") == true, "stdout: '\(restore.stdout)'")
            } else {
                #expect(restore.stdout.isEmpty, "stdout: '\(restore.stdout)'")
            }
        }
    }

    /// The longest time before a run's signal guard existed: opening the destination, up to the
    /// NFS timeout (60 s) on a NAS that does not answer. A signal then killed the run with no
    /// object on stdout and nothing sent to the monitors (and prune and copy likewise).
    @Test("hs-backup run, prune and copy --json stopped while an NFS destination does not answer print one error object; run reports down",
          arguments: [SIGTERM, SIGINT, SIGHUP])
    func stoppedWhileOpening(_ sig: Int32) throws {
        let s = try SilentServer()
        let http = try OpsHTTPRecorder()
        let dir = try TempDir("hs-sigjson")
        try Tree.write(dir.sub("appdata/x.txt"), "x\n")
        let url = "nfs://127.0.0.1/backups?nfsport=\(s.port)&mountport=\(s.port)"
        for command in [["run", "--source", dir.sub("appdata"), "--to", url], ["prune", "--to", url, "--keep-last", "1"],
                        ["copy", "--from", url, "--to", dir.sub("offsite")]] {
            let before = s.accepted
            let run = try RunningTool("hs-backup", command + ["--name", "io", "--json", "--ping", http.base + "/api/push/" + command[0]],
                                      environment: ["HS_BACKUP_SQLITE_CAPTURE": "0"])
            try #require(waitFor(30) { s.accepted > before }, "\(command[0]) did not reach the server: \(run.stderr)")
            kill(run.process.processIdentifier, sig)
            let status = run.wait(upTo: 30)
            #expect(run.process.terminationReason == .exit && status == 128 + sig,
                    "\(command[0]): \(run.process.terminationReason) \(String(describing: status)) \(run.stderr)")
            let object = onlyObject(run.stdout)
            #expect(object?["exit_code"] as? Int == Int(128 + sig), "\(command[0]): stdout: '\(run.stdout)'")
            #expect((object?["error"] as? String)?.contains("stopped by \(signalName(sig))") == true, "\(command[0]): stdout: '\(run.stdout)'")
        }
        for command in ["run", "prune", "copy"] {
            #expect(http.requests.contains { $0.method == "GET" && $0.path.hasPrefix("/api/push/\(command)?") && $0.query["status"] == "down" },
                    "\(command) did not report down: \(http.requests.map(\.path))")
        }
    }

    /// Every other command that waits on something that may not answer: a destination (the
    /// NFS timeout, 60 s per call), hs-deploy's `docker compose`, hs-provision's queries of the
    /// host. A signal then (systemd's TimeoutStopSec, a shutdown, Ctrl-C) killed them with
    /// nothing on stdout for --json and the signal's own status, where `run`, `prune` and
    /// `copy` print the failure object and exit 128 + N; `--dry-run` of prune and copy too.
    /// Those that report to monitors (--ping) report the stop as down, as `run` does.
    @Test("every long-running command of the five tools stopped while what it waits on does not answer prints one error object and exits 128+N",
          arguments: [SIGTERM, SIGINT, SIGHUP])
    func everyCommandStoppedWhileWaiting(_ sig: Int32) throws {
        let s = try SilentServer()
        let http = try OpsHTTPRecorder()
        let dir = try TempDir("hs-sigjson")
        try Tree.write(dir.sub("appdata/x.txt"), "x\n")
        try FileManager.default.createDirectory(atPath: dir.sub("mnt"), withIntermediateDirectories: true)
        let url = "nfs://127.0.0.1/backups?nfsport=\(s.port)&mountport=\(s.port)"
        let media = "nfs://127.0.0.1/media?nfsport=\(s.port)&mountport=\(s.port)"
        func ping(_ name: String) -> [String] { ["--ping", http.base + "/api/push/" + name] }
        // The programs hs-deploy and hs-provision run, standing in for a docker or a dpkg that
        // hangs. (Without the descriptors it inherits: one of them tells Foundation's Process
        // that the tool is still running.)
        let fake = dir.sub("bin")
        let called = dir.sub("called")
        try Tree.write(fake + "/hang", "#!/bin/sh\necho \"$0\" >> '\(called)'\n"
                       + "exec python3 -c 'import os, time; os.closerange(3, 65536); time.sleep(60)' </dev/null >/dev/null 2>&1\n")
        try Subprocess.checked(["chmod", "+x", fake + "/hang"])
        for name in ["docker", "dpkg", "dpkg-query", "systemctl", "getent", "tailscale", "pct", "qm", "git"] {
            try FileManager.default.createSymbolicLink(atPath: fake + "/" + name, withDestinationPath: "hang")
        }
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let hanging = ["PATH": fake + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        // (tool, arguments, whether it reports to monitors, what it waits on: the NFS server or a hanging program)
        let commands: [(String, [String], Bool, Bool)] = [
            ("hs-backup", ["run", "--dry-run", "--source", dir.sub("appdata"), "--to", url, "--name", "io", "--json"], false, true),
            ("hs-backup", ["prune", "--dry-run", "--to", url, "--name", "io", "--keep-last", "1", "--json"] + ping("prune-dry"), true, true),
            ("hs-backup", ["copy", "--dry-run", "--from", url, "--to", dir.sub("offsite"), "--json"] + ping("copy-dry"), true, true),
            ("hs-backup", ["verify", "--to", url, "--name", "io", "--json"] + ping("verify"), true, true),
            ("hs-backup", ["list", "--to", url, "--json"], false, true),
            ("hs-backup", ["ls", "--to", url, "--name", "io", "--json"], false, true),
            ("hs-backup", ["find", "--to", url, "--name", "io", "--json", "config.xml"], false, true),
            ("hs-backup", ["diff", "--to", url, "--name", "io", "--json", "latest", "latest"], false, true),
            ("hs-backup", ["dump", "--to", url, "--name", "io", "config.xml"], false, true),
            ("hs-backup", ["mount", "--to", url, "--name", "io", "--json", dir.sub("mnt")], false, true),
            ("hs-linkcheck", [media, "--json"], false, true),
            ("hs-deploy", ["--down", "io", "--repo", repo, "--json"], false, false),
            ("hs-provision", ["plan", "--inventory", repo + "/Tests/ProvisioningTests/Fixtures/inventory.yml", "--host", "io", "--json"], false, false),
        ]
        for (tool, arguments, monitored, nfs) in commands {
            let what = "\(tool) \(arguments[0])"
            let before = s.accepted
            try? FileManager.default.removeItem(atPath: called)
            let run = try RunningTool(tool, arguments, environment: nfs ? ["HS_BACKUP_SQLITE_CAPTURE": "0"] : hanging)
            try #require(waitFor(30) { nfs ? s.accepted > before : FileManager.default.fileExists(atPath: called) },
                         "\(what) did not reach what it waits on: \(run.stderr)")
            kill(run.process.processIdentifier, sig)
            let status = run.wait(upTo: 30)
            #expect(run.process.terminationReason == .exit && status == 128 + sig,
                    "\(what): \(run.process.terminationReason) \(String(describing: status)) \(run.stderr)")
            if arguments.contains("--json") {
                let object = onlyObject(run.stdout)
                #expect(object?["exit_code"] as? Int == Int(128 + sig), "\(what): stdout: '\(run.stdout)'")
                #expect((object?["error"] as? String)?.contains("stopped by \(signalName(sig))") == true, "\(what): stdout: '\(run.stdout)'")
            } else {
                #expect(run.stdout.isEmpty, "\(what): stdout: '\(run.stdout)'")
            }
            if monitored {
                let name = arguments.first { $0.hasPrefix(http.base) }.map { String($0.dropFirst(http.base.count)) } ?? "?"
                #expect(waitFor(10) { http.requests.contains { $0.path.hasPrefix(name + "?") && $0.query["status"] == "down" } },
                        "\(what) did not report down: \(http.requests.map(\.path))")
            }
        }
        // hs-restore dies of the signal itself (a calling shell script stops too), after its object.
        let before = s.accepted
        let restore = try RunningTool("hs-restore", ["--from", url, "--name", "io", "--to", dir.sub("restored"), "--json"])
        try #require(waitFor(30) { s.accepted > before }, "hs-restore did not reach the server: \(restore.stderr)")
        kill(restore.process.processIdentifier, sig)
        _ = restore.wait(upTo: 30)
        #expect(restore.process.terminationReason == .uncaughtSignal && restore.process.terminationStatus == sig,
                "hs-restore: \(restore.process.terminationReason) \(restore.process.terminationStatus) \(restore.stderr)")
        #expect(onlyObject(restore.stdout)?["exit_code"] as? Int == Int(128 + sig), "hs-restore: stdout: '\(restore.stdout)'")
    }

    /// A restore stopped by a signal removes the files it was writing under temporary names
    /// (`.hs-restore.PID.N.part`): a migration stopped halfway left them among appdata.
    @Test("hs-restore --from and --archive stopped mid-file remove their .part files and still die of the signal",
          arguments: [SIGTERM, SIGINT, SIGHUP])
    func restoreRemovesParts(_ sig: Int32) throws {
        let dir = try TempDir("hs-sigjson")
        let src = try bigSource(dir, megabytes: 256, text: true)
        try Subprocess.checked(["cp", src + "/app/big.bin", src + "/app/big2.bin"])
        let made = try Tools.run("hs-backup", ["run", "--source", src, "--to", dir.sub("nas"), "--name", "io", "-q"],
                                 environment: ["HS_BACKUP_SQLITE_CAPTURE": "0"])
        try #require(made.status == 0, "\(made.stderr)")
        let archive = try #require(filesIn(dir.sub("nas/io")).first { $0.hasSuffix(".tar.gz") })
        func parts(_ target: String) -> [String] {
            (FileManager.default.enumerator(atPath: target)?.allObjects as? [String] ?? []).filter { $0.contains(".hs-restore.") }
        }
        for (name, source) in [("from", ["--from", dir.sub("nas"), "--name", "io"]), ("archive", ["--archive", dir.sub("nas/io/" + archive)])] {
            for json in [true, false] {
                let target = dir.sub("restored-\(name)-\(json)")
                let restore = try RunningTool(Tools.path("hs-restore"), source + ["--to", target] + (json ? ["--json"] : []))
                try #require(stopMidWork(restore, with: sig) { !parts(target).isEmpty }, "the restore was not caught writing: \(restore.stderr)")
                _ = restore.wait(upTo: 60)
                #expect(restore.process.terminationReason == .uncaughtSignal && restore.process.terminationStatus == sig,
                        "\(name): \(restore.process.terminationReason) \(restore.process.terminationStatus) \(restore.stderr)")
                #expect(parts(target).isEmpty, "\(name): left behind: \(parts(target))")
                #expect(restore.stderr.contains("removed the files it was writing"), "\(name): \(restore.stderr)")
                if json {
                    let object = onlyObject(restore.stdout)
                    #expect(object?["exit_code"] as? Int == Int(128 + sig), "\(name): stdout: '\(restore.stdout)'")
                    let message = object?["error"] as? String ?? ""
                    #expect(message.contains("stopped by \(signalName(sig))") && message.contains("removed the files it was writing")
                            && !message.contains("are left"), "\(name): stdout: '\(restore.stdout)'")
                } else {
                    #expect(restore.stdout.isEmpty, "\(name): stdout: '\(restore.stdout)'")
                }
            }
        }
    }

    /// With --force, files that exist are replaced through temporary names by the writer threads
    /// too (small files, in parallel): a signal comes while several are being written.
    @Test("hs-restore --force over many small files stopped mid-way leaves no .part file")
    func forcedRestoreRemovesParts() throws {
        let dir = try TempDir("hs-sigjson")
        let src = dir.sub("appdata")
        try smallFilesSource(src, dirs: 200, files: 150, size: "1500")
        let made = try Tools.run("hs-backup", ["run", "--source", src, "--to", dir.sub("nas"), "--name", "io", "-q"],
                                 environment: ["HS_BACKUP_SQLITE_CAPTURE": "0"])
        try #require(made.status == 0, "\(made.stderr)")
        let target = dir.sub("restored")
        let first = try Tools.run("hs-restore", ["--from", dir.sub("nas"), "--name", "io", "--to", target])
        try #require(first.status == 0, "\(first.stderr)")
        for sig in [SIGTERM, SIGINT] {
            let restore = try RunningTool(Tools.path("hs-restore"), ["--from", dir.sub("nas"), "--name", "io", "--to", target, "--force", "--json"])
            let started = Date()
            try #require(stopMidWork(restore, with: sig) { Date().timeIntervalSince(started) > 0.5 && restore.process.isRunning },
                         "the restore was not caught writing: \(restore.stderr)")
            _ = restore.wait(upTo: 60)
            #expect(restore.process.terminationReason == .uncaughtSignal && restore.process.terminationStatus == sig,
                    "\(restore.process.terminationReason) \(restore.process.terminationStatus) \(restore.stderr)")
            let left = (FileManager.default.enumerator(atPath: target)?.allObjects as? [String] ?? []).filter { $0.contains(".hs-restore.") }
            #expect(left.isEmpty, "left behind: \(left)")
            #expect(onlyObject(restore.stdout)?["exit_code"] as? Int == Int(128 + sig), "stdout: '\(restore.stdout)'")
        }
    }
}
