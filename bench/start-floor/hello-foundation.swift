// The same hello importing Foundation and calling what every hs-* tool calls from it at start
// (bench/backup-bench.sh, sparse rows): Date, ProcessInfo, JSONEncoder, String(format:). The
// difference to hello.swift is what a binary that links Foundation costs at start.
import Foundation

struct Holder: Codable { var host: String; var pid: Int32; var started: Double }
let json = try JSONEncoder().encode(Holder(host: ProcessInfo.processInfo.hostName, pid: getpid(), started: Date().timeIntervalSince1970))
print(String(format: "hello %d", json.count))
