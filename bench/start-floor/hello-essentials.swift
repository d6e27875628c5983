// The hello of hello-foundation.swift importing FoundationEssentials only (swift-foundation's core:
// Date, ProcessInfo, JSONEncoder, Data; no FoundationInternationalization/ICU, no String(format:),
// FileHandle, Thread or JSONSerialization): what a tool written against it would pay at start
// (bench/backup-bench.sh, sparse rows).
import FoundationEssentials
import Glibc

struct Holder: Codable { var host: String; var pid: Int32; var started: Double }
let json = try JSONEncoder().encode(Holder(host: ProcessInfo.processInfo.hostName, pid: getpid(), started: Date().timeIntervalSince1970))
print("hello \(json.count)")
