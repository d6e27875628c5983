internal import CShims
import FoundationEssentials
import Glibc

// Facts about this process read once (issue 23: a backup of one small file is mostly start-up).
extension Sys {
    /// The processors this process may use, read once per process: the CPUs of its affinity
    /// mask (`sched_getaffinity`, which a cpuset restricts), at most the CPU quota of its
    /// cgroup rounded up (v2 `cpu.max`, v1 `cpu.cfs_quota_us`/`cpu.cfs_period_us`), at least 1:
    /// what `ProcessInfo.activeProcessorCount` counts on Linux, without creating
    /// `ProcessInfo.processInfo` (issue 23: that and its lookups were ~2% of a one-file backup's
    /// CPU). Only thread counts depend on it.
    package static let processorCount: Int = {
        var n = Int(cshims_affinity_cpu_count())
        if n < 1 { n = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))) }
        if let quota = cgroupCPUQuota() { n = min(n, quota) }
        return max(1, n)
    }()

    /// The cgroup's CPU quota in whole CPUs (rounded up), or nil when there is none.
    static func cgroupCPUQuota() -> Int? {
        func numbers(_ path: String) -> [Int]? {
            guard let text = readSmallFile(path) else { return nil }
            let fields = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
            let values = fields.compactMap { Int($0) }
            return values.count == fields.count ? values : nil   // "max" (no quota): nil
        }
        var quota: Int?, period: Int?
        if let v = numbers("/sys/fs/cgroup/cpu.max"), v.count == 2 {
            (quota, period) = (v[0], v[1])
        } else if let q = numbers("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")?.first,
                  let p = numbers("/sys/fs/cgroup/cpu/cpu.cfs_period_us")?.first {
            (quota, period) = (q, p)
        }
        guard let quota, let period, quota > 0, period > 0 else { return nil }
        return max(1, (quota + period - 1) / period)
    }

    /// A small file's text (at most 4 KiB), or nil when it cannot be read.
    static func readSmallFile(_ path: String) -> String? {
        let fd = retry { Glibc.open(path, O_RDONLY | O_CLOEXEC) }
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = buf.withUnsafeMutableBytes { b in retry { Glibc.read(fd, b.baseAddress!, b.count) } }
        guard n >= 0 else { return nil }
        return String(decoding: buf[..<n], as: UTF8.self)
    }

    /// One environment variable (`getenv`), or nil when it is not set.
    /// `ProcessInfo.processInfo.environment` builds a dictionary of the whole environment at every
    /// call; use it where the whole environment is needed.
    package static func environment(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }
}
