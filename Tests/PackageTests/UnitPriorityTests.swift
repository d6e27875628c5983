// The units' Nice= and IOSchedulingClass= must hold for every thread of the job, not only the
// first: Swift's libdispatch renices its worker threads to imitate quality-of-service classes
// (nice 0 and -4 seen for a backup started at nice 10), which a root service can do unless
// CAP_SYS_NICE is out of its bounding set. No systemd runs as PID 1 here, so the test applies
// what systemd applies for the unit's settings (Nice= -> nice, IOSchedulingClass=idle ->
// ionice -c3, CapabilityBoundingSet=~CAP_SYS_NICE -> setpriv --bounding-set -sys_nice) and
// reads every thread's nice and I/O class while a real backup runs.
import Foundation
import Support
import Testing
import TestSupport

@Suite("systemd units: Nice= and the idle I/O class hold for every thread of a job")
struct UnitPriorityTests {
    static let unitDirectory = ReleasePackage.repoRoot + "/scripts/package/systemd"

    /// `[Service]` settings of a unit file (last value of a key wins; no drop-ins here).
    static func settings(_ unit: String) throws -> [String: String] {
        var out: [String: String] = [:]
        for line in try String(contentsOfFile: unitDirectory + "/" + unit, encoding: .utf8).split(separator: "\n") {
            guard !line.hasPrefix("#"), let eq = line.firstIndex(of: "=") else { continue }
            out[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        return out
    }

    /// The command prefix that applies a unit's priority settings as systemd does.
    static func prefix(_ s: [String: String]) -> [String] {
        var argv: [String] = []
        if let caps = s["CapabilityBoundingSet"] {
            // Only the form the units use: ~CAP_A CAP_B (drop these).
            if caps.hasPrefix("~") {
                let drop = caps.dropFirst().split(separator: " ").map { "-" + $0.lowercased().replacingOccurrences(of: "cap_", with: "") }
                argv += ["setpriv", "--bounding-set", drop.joined(separator: ","), "--inh-caps", drop.joined(separator: ",")]
            }
        }
        if s["IOSchedulingClass"] == "idle" { argv += ["ionice", "-c3"] }
        if let n = s["Nice"] { argv += ["nice", "-n", n] }
        return argv
    }

    @Test("every job unit with Nice= also drops CAP_SYS_NICE and runs in the idle I/O class")
    func everyNiceUnitDropsSysNice() throws {
        let units = try FileManager.default.contentsOfDirectory(atPath: Self.unitDirectory).filter { $0.hasSuffix(".service") }.sorted()
        var niced = 0
        for u in units {
            let s = try Self.settings(u)
            guard s["Nice"] != nil else { continue }
            niced += 1
            #expect(s["CapabilityBoundingSet"] == "~CAP_SYS_NICE", "\(u): Nice= without CapabilityBoundingSet=~CAP_SYS_NICE")
            #expect(s["IOSchedulingClass"] == "idle", "\(u)")
        }
        #expect(niced >= 8, "units with Nice=: \(niced)")
    }

    @Test("hs-backup run under hs-backup.service's settings: every thread at nice >= 10, I/O class idle")
    func everyThreadOfABackupKeepsTheUnitsPriority() throws {
        let work = try TempDir("hs-unit-priority")
        // Enough data (40 MiB in 2000 files) that the worker threads exist while we look.
        for d in 0 ..< 40 {
            for f in 0 ..< 50 {
                var bytes = [UInt8](repeating: 0, count: 20_000)
                for i in stride(from: 0, to: bytes.count, by: 8) { bytes[i] = UInt8(truncatingIfNeeded: d &* 31 &+ f &* 7 &+ i) }
                try Data(bytes).write(to: URL(fileURLWithPath: work.sub("src/d\(d)/f\(f)")).creatingParents())
            }
        }
        let argv = Self.prefix(try Self.settings("hs-backup.service"))
            + [Tools.path("hs-backup"), "run", "-q", "--source", work.sub("src"), "--to", work.sub("dest"), "--name", "t"]
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = argv
        p.environment = ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HS_CONFIG": "/dev/null"]
        try p.run()
        var seen: [Int32: (nice: Int, io: String)] = [:]
        let exe = URL(fileURLWithPath: Tools.path("hs-backup")).resolvingSymlinksInPath().path
        while p.isRunning {
            // The same pid is env, setpriv, ionice and nice before it is hs-backup: look only then.
            guard (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(p.processIdentifier)/exe")) == exe else {
                usleep(2_000)
                continue
            }
            for t in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(p.processIdentifier)/task")) ?? [] {
                guard let tid = Int32(t), let stat = try? String(contentsOfFile: "/proc/\(p.processIdentifier)/task/\(t)/stat", encoding: .utf8),
                      let close = stat.lastIndex(of: ")") else { continue }
                // Fields after "comm)": state is field 3, nice field 19.
                let fields = stat[stat.index(after: close)...].split(separator: " ")
                guard fields.count > 17, let nice = Int(fields[16]) else { continue }
                let io = (try? Subprocess.run(["ionice", "-p", t]))?.stdout.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
                if let old = seen[tid], old.nice <= nice && !io.isEmpty { continue }
                seen[tid] = (nice, io.isEmpty ? seen[tid]?.io ?? "" : io)
            }
            usleep(20_000)
        }
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "\(argv.joined(separator: " ")) exited \(p.terminationStatus)")
        #expect(seen.count >= 3, "only \(seen.count) threads seen: the check needs the worker threads")
        let below = seen.filter { $0.value.nice < 10 }
        #expect(below.isEmpty, "threads below the unit's Nice=10 (tid: nice): \(below.mapValues(\.nice))")
        let notIdle = seen.filter { !$0.value.io.isEmpty && $0.value.io != "idle" }
        #expect(notIdle.isEmpty, "threads not in the idle I/O class: \(notIdle.mapValues(\.io))")
    }
}

private extension URL {
    func creatingParents() throws -> URL {
        try FileManager.default.createDirectory(at: deletingLastPathComponent(), withIntermediateDirectories: true)
        return self
    }
}
