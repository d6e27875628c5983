// Throughput of the NFS writer against nfs-cp and a local fsync'd write, same data, same run,
// against a fresh nfs-ganesha. Run through bench/nfs-throughput.sh; prints a table.
// Environment: HS_BENCH_MIB (default 100), HS_BENCH_RUNS (default 5).
import Foundation
import NFS
import Storage
import Support
import TestSupport

func benchmark() throws {
    let mib = Int(ProcessInfo.processInfo.environment["HS_BENCH_MIB"] ?? "100") ?? 100
    let runs = Int(ProcessInfo.processInfo.environment["HS_BENCH_RUNS"] ?? "5") ?? 5
    let g = try GaneshaServer()
    let tmp = try TempDir("nfs-bench")
    let source = tmp.sub("source.bin")
    try Subprocess.checked(["sh", "-c", "head -c \(mib << 20) /dev/urandom > '\(source)'"])
    let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: source)))

    func writeAll(_ w: any DestinationWriter) throws {
        try bytes.withUnsafeBytes { all in
            var off = 0
            while off < all.count {
                let n = min(4 << 20, all.count - off)
                try w.write(UnsafeRawBufferPointer(rebasing: all[off..<(off + n)]))
                off += n
            }
        }
        try w.sync()
        try w.close()
    }
    func nfs(depth: Int, stable: Bool = false) throws -> NFSDestination {
        var o = NFSClient.Options()
        o.writePipelineDepth = depth
        o.stableWrites = stable
        return try NFSDestination(url: g.url(), options: o)
    }
    let local = LocalDestination(root: tmp.sub("local"))
    try local.makeDirectories("")
    let d1 = try nfs(depth: 1), d2 = try nfs(depth: 2), d4 = try nfs(depth: 4), d8 = try nfs(depth: 8), ds = try nfs(depth: 1, stable: true)
    let reader = try NFSClient(url: g.url())

    // Interleaved rounds, so drifting load on the shared machine hits every contender alike.
    var t: [String: [Double]] = [:]
    func time(_ key: String, _ body: () throws -> Void) rethrows {
        let start = Date()
        try body()
        t[key, default: []].append(Date().timeIntervalSince(start))
    }
    for i in 0..<runs {
        try time("local") { try writeAll(try local.create("local-\(i).bin")) }
        try time("nfs-cp") {
            let r = try Subprocess.run(["nfs-cp", source, g.url(path: "nfs-cp-\(i).bin")])
            if !r.succeeded { throw ToolError("nfs-cp failed: \(r.stderr)") }
        }
        try time("d1") { try writeAll(try d1.create("d1-\(i)")) }
        try time("d2") { try writeAll(try d2.create("d2-\(i)")) }
        try time("d4") { try writeAll(try d4.create("d4-\(i)")) }
        try time("d8") { try writeAll(try d8.create("d8-\(i)")) }
        try time("stable") { try writeAll(try ds.create("s-\(i)")) }
        try time("nfs-cp read") {
            let r = try Subprocess.run(["nfs-cp", g.url(path: "d8-\(i)"), tmp.sub("back-\(i).bin")])
            if !r.succeeded { throw ToolError("nfs-cp failed: \(r.stderr)") }
        }
        try time("read") {
            let f = try reader.open("nfs-cp-\(i).bin")
            var buf = [UInt8](repeating: 0, count: 4 << 20)
            var off: UInt64 = 0
            while true {
                let n = try buf.withUnsafeMutableBytes { try f.read(into: $0, at: off) }
                if n == 0 { break }
                off += UInt64(n)
            }
            try f.close()
        }
    }
    func med(_ k: String) -> Double { let v = t[k]!.sorted(); return v[v.count / 2] }
    let tLocal = med("local"), tCp = med("nfs-cp"), t1 = med("d1"), t2 = med("d2"), t4 = med("d4"), t8 = med("d8")
    let tStable = med("stable"), tCpRead = med("nfs-cp read"), tRead = med("read")

    func row(_ name: String, _ t: Double, _ ref: Double, _ refName: String) -> String {
        let mbps = Double(mib) / t
        return name.padding(toLength: 52, withPad: " ", startingAt: 0)
            + String(format: "%7.3f s %8.1f MiB/s   %.2fx %@", t, mbps, t / ref, refName)
    }
    var lines = ["NFS throughput, \(mib) MiB, median of \(runs), ganesha on 127.0.0.1 (2 shared cores)"]
    lines.append(row("local write+fsync (LocalDestination)", tLocal, tLocal, "local"))
    lines.append(row("nfs-cp local -> nfs (reference)", tCp, tLocal, "local"))
    lines.append(row("NFSDestination write+COMMIT, depth 8", t8, tCp, "nfs-cp"))
    lines.append(row("NFSDestination write+COMMIT, depth 1 (default)", t1, tCp, "nfs-cp"))
    lines.append(row("NFSDestination write+COMMIT, depth 2", t2, tCp, "nfs-cp"))
    lines.append(row("NFSDestination write+COMMIT, depth 4", t4, tCp, "nfs-cp"))
    lines.append(row("NFSDestination stableWrites (FILE_SYNC), depth 1", tStable, tCp, "nfs-cp"))
    lines.append(row("nfs-cp nfs -> local file (reference)", tCpRead, tCpRead, "nfs-cp read"))
    lines.append(row("NFSFile.read into memory, read depth 4", tRead, tCpRead, "nfs-cp read"))
    lines.append(String(format: "NFSDestination (default, depth 1) vs local write+fsync: %.2fx", t1 / tLocal))
    print(lines.joined(separator: "\n"))
}

do {
    try benchmark()
} catch {
    FileHandle.standardError.write(Data("nfs-bench: \(error)\n".utf8))
    exit(1)
}
