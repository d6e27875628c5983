import FoundationEssentials
import Glibc

/// One line of /proc/self/mountinfo.
package struct MountInfo: Sendable, Equatable, Codable {
    package var id: Int
    /// "major:minor" of the filesystem (bind mounts of one filesystem share it).
    package var device: String
    /// The directory inside the filesystem that is mounted here ("/" for the whole filesystem).
    package var fsRoot: String
    package var mountPoint: String
    package var fsType: String
    package var source: String

    package init(id: Int, device: String, fsRoot: String, mountPoint: String, fsType: String, source: String) {
        self.id = id
        self.device = device
        self.fsRoot = fsRoot
        self.mountPoint = mountPoint
        self.fsType = fsType
        self.source = source
    }

    /// "/mnt/storage (nfs4 from truenas:/mnt/tank/media)".
    package var describe: String { "\(mountPoint) (\(fsType) from \(source))" }
}

/// The kernel's mount table, as this process sees it (/proc/self/mountinfo). Shared by the
/// storage guard (hs-deploy) and the hardlink probe (hs-linkcheck).
package struct MountTable: Sendable {
    package var mounts: [MountInfo]

    /// Reads /proc/self/mountinfo (or another file in that format, for tests).
    package static func load(from path: String = "/proc/self/mountinfo") throws -> MountTable {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ToolError("cannot read \(path): mount detection needs Linux /proc")
        }
        return MountTable(parsing: text)
    }

    package init(mounts: [MountInfo]) { self.mounts = mounts }

    /// Parses text in /proc/self/mountinfo's format (octal escapes such as `\040` decoded).
    package init(parsing text: String) {
        var out: [MountInfo] = []
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            guard f.count >= 10, let id = Int(f[0]), let sep = f.firstIndex(of: "-"), sep + 2 < f.count else { continue }
            out.append(MountInfo(id: id, device: f[2], fsRoot: Self.unescape(f[3]), mountPoint: Self.unescape(f[4]),
                                 fsType: f[sep + 1], source: Self.unescape(f[sep + 2])))
        }
        mounts = out
    }

    /// mountinfo escapes space, tab, newline and backslash as \ooo.
    static func unescape(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var bytes: [UInt8] = []
        let u = Array(s.utf8)
        var i = 0
        while i < u.count {
            if u[i] == 92, i + 3 < u.count {
                let digits = u[(i + 1)...(i + 3)]
                if digits.count == 3, digits.allSatisfy({ $0 >= 48 && $0 <= 55 }) {
                    let v = digits.reduce(0) { $0 * 8 + Int($1 - 48) }
                    bytes.append(UInt8(truncatingIfNeeded: v))
                    i += 4
                    continue
                }
            }
            bytes.append(u[i])
            i += 1
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The mount that holds an absolute, symlink-free path: the longest mount point that is the
    /// path or one of its parents (the last one listed wins when mounts are stacked).
    package func mount(containing resolvedPath: String) -> MountInfo? {
        var best: MountInfo?
        for m in mounts where Self.isInside(resolvedPath, m.mountPoint) {
            if let b = best, b.mountPoint.count > m.mountPoint.count { continue }
            best = m
        }
        return best
    }

    /// True when `path` is `dir` or below it (component-wise).
    package static func isInside(_ path: String, _ dir: String) -> Bool {
        if dir == "/" { return path.hasPrefix("/") }
        return path == dir || path.hasPrefix(dir + "/")
    }
}

