#if canImport(Glibc)
import Glibc
import Support
#endif

/// One name read from a directory, with the type readdir reported for it.
struct DirectoryName: Sendable {
    var bytes: [UInt8]
    /// `d_type`: a hint only (DT_UNKNOWN on some filesystems, stale if the entry is replaced).
    var type: UInt8
    static let directoryType: UInt8 = 4  // DT_DIR
}

/// Reads directories with getdents64 into a reusable buffer (no `DIR` allocation and no
/// fstat/fcntl per directory, as `fdopendir` does).
enum DirectoryReader {
    /// Appends the names of the directory open as `fd` (without `.` and `..`), sorted in
    /// component order, to `out`. Returns an errno when reading failed (the names read
    /// before are kept), nil otherwise. Moves `fd`'s read offset.
    static func readNames(_ fd: Int32, into out: inout [DirectoryName], buffer: inout [UInt8]) -> Int32? {
        if buffer.isEmpty { buffer = [UInt8](repeating: 0, count: 32 * 1024) }
        let first = out.count
        var failure: Int32?
        while true {
            let n: Int
            do { n = try buffer.withUnsafeMutableBytes { (b: UnsafeMutableRawBufferPointer) throws(SysError) in try Sys.getdents64(fd, into: b) } } catch let e as SysError {
                failure = e.errno
                break
            } catch {
                failure = EIO
                break
            }
            if n == 0 { break }
            let complete = buffer.withUnsafeBytes { raw -> Bool in
                var off = 0
                while off + 19 < n {
                    // struct linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type, char name[].
                    let reclen = Int(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: off + 16, as: UInt16.self)))
                    guard reclen > 19, off + reclen <= n else { return false }
                    let start = off + 19
                    var end = start
                    while end < off + reclen && raw[end] != 0 { end += 1 }
                    let len = end - start
                    let dot = len == 1 && raw[start] == 0x2E
                    let dotdot = len == 2 && raw[start] == 0x2E && raw[start + 1] == 0x2E
                    if len > 0 && !dot && !dotdot {
                        out.append(DirectoryName(bytes: Array(raw[start ..< end]), type: raw[off + 18]))
                    }
                    off += reclen
                }
                return true
            }
            if !complete { failure = EIO; break }
        }
        out[first...].sort { a, b in a.bytes.withUnsafeBytes { x in b.bytes.withUnsafeBytes { y in comparePaths(x, y) < 0 } } }
        return failure
    }

    static func readNames(_ fd: Int32, into out: inout [DirectoryName]) -> Int32? {
        var buffer: [UInt8] = []
        return readNames(fd, into: &out, buffer: &buffer)
    }
}
