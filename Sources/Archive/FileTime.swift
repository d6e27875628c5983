#if canImport(Glibc)
import Glibc
#endif

/// A file time: seconds since the epoch (the full signed 64-bit range: ext4 and XFS hold
/// years before 1970 and after 2262, where Int64 nanoseconds overflow) and nanoseconds in
/// 0..<1_000_000_000. The one time type of the archive writer, the reader and the manifest.
package struct FileTime: Sendable, Equatable, Hashable, Comparable, CustomStringConvertible {
    package var seconds: Int64
    package var nanoseconds: UInt32

    /// `nanoseconds` above 999_999_999 are clamped.
    package init(seconds: Int64 = 0, nanoseconds: UInt32 = 0) {
        self.seconds = seconds
        self.nanoseconds = min(nanoseconds, 999_999_999)
    }

    /// From nanoseconds since the epoch (floor division: -1 ns is (-1, 999_999_999)).
    package init(totalNanoseconds ns: Int64) {
        let (q, r) = ns.quotientAndRemainder(dividingBy: 1_000_000_000)
        if r < 0 { self.init(seconds: q - 1, nanoseconds: UInt32(r + 1_000_000_000)) } else { self.init(seconds: q, nanoseconds: UInt32(r)) }
    }

    /// From a kernel `timespec` (a nanosecond field out of range is clamped, never trapped on).
    package init(_ t: timespec) {
        self.init(seconds: Int64(t.tv_sec), nanoseconds: UInt32(clamping: min(max(t.tv_nsec, 0), 999_999_999)))
    }

    package var timespec: Glibc.timespec { Glibc.timespec(tv_sec: Int(seconds), tv_nsec: Int(nanoseconds)) }

    package static func < (a: FileTime, b: FileTime) -> Bool {
        a.seconds != b.seconds ? a.seconds < b.seconds : a.nanoseconds < b.nanoseconds
    }

    package var description: String {
        let n = String(nanoseconds)
        return "\(seconds).\(String(repeating: "0", count: 9 - n.count))\(n)"
    }
}
