import Foundation

// Facts about this process read once (issue 23: a backup of one small file is mostly start-up).
extension Sys {
    /// `ProcessInfo.activeProcessorCount`, read once per process: Foundation reads the cgroup
    /// files (/sys/fs/cgroup/cpu.max ...) again at every call, and a run asked six times.
    package static let processorCount: Int = ProcessInfo.processInfo.activeProcessorCount

    /// One environment variable (`getenv`), or nil when it is not set.
    /// `ProcessInfo.processInfo.environment` builds a dictionary of the whole environment at every
    /// call; use it where the whole environment is needed.
    package static func environment(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }
}
