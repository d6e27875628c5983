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
    static let regularType: UInt8 = 8  // DT_REG
}

/// The names of one directory in one buffer (no Array per name), sorted in component order.
struct DirectoryNames {
    /// The names one after the other (no separators).
    var bytes: [UInt8] = []
    /// Each name's place in `bytes` and its `d_type`, in component order once read; `key` is
    /// its first 8 bytes big-endian, zero-padded (`DirectoryReader.sortKey`).
    var items: [(start: UInt32, length: UInt32, type: UInt8, key: UInt64)] = []
    var count: Int { items.count }

    /// Calls `body` with name `i`'s bytes and type.
    func withName<R>(_ i: Int, _ body: (UnsafeRawBufferPointer, UInt8) throws -> R) rethrows -> R {
        let it = items[i]
        return try bytes.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[Int(it.start) ..< Int(it.start) + Int(it.length)]), it.type) }
    }

    /// Name `i` as a value of its own.
    subscript(i: Int) -> DirectoryName { withName(i) { DirectoryName(bytes: Array($0), type: $1) } }
}

/// Reads directories with getdents64 into a reusable buffer (no `DIR` allocation and no
/// fstat/fcntl per directory, as `fdopendir` does).
enum DirectoryReader {
    /// Reads the names of the directory open as `fd` (without `.` and `..`) into `out`
    /// (replacing what it held), sorted in component order. Returns an errno when reading
    /// failed (the names read before are kept), nil otherwise. Moves `fd`'s read offset.
    static func readNames(_ fd: Int32, into out: inout DirectoryNames, buffer: inout [UInt8]) -> Int32? {
        if buffer.isEmpty { buffer = [UInt8](repeating: 0, count: 32 * 1024) }
        out.bytes.removeAll(keepingCapacity: true)
        out.items.removeAll(keepingCapacity: true)
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
                        out.items.append((UInt32(out.bytes.count), UInt32(len), raw[off + 18],
                                          Self.sortKey(UnsafeRawBufferPointer(rebasing: raw[start ..< end]))))
                        out.bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: raw[start ..< end]))
                    }
                    off += reclen
                }
                return true
            }
            if !complete { failure = EIO; break }
        }
        // Component order (`comparePaths`) of names, which hold no "/": the bytes compared
        // unsigned (memcmp), then the shorter first. The first 8 bytes decide most pairs as one
        // integer compare (`sortKey`); memcmp only compares the rest when they are equal.
        out.bytes.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }
            out.items.sort { a, b in
                if a.key != b.key { return a.key < b.key }
                let n = Int(min(a.length, b.length))
                if n > 8 {
                    let c = memcmp(base + Int(a.start) + 8, base + Int(b.start) + 8, n - 8)
                    if c != 0 { return c < 0 }
                }
                return a.length < b.length
            }
        }
        return failure
    }

    /// A name's first 8 bytes as a big-endian integer, zero-padded when shorter: keys compare as
    /// those bytes do (unsigned). When two keys are equal, so are the first min(8, length) bytes
    /// of both names, and a name shorter than 8 bytes is a prefix of the other (names hold no
    /// NUL byte, so padding never equals a real byte): what is left to compare is the bytes
    /// after the 8th, then the lengths.
    static func sortKey(_ name: UnsafeRawBufferPointer) -> UInt64 {
        if name.count >= 8 { return UInt64(bigEndian: name.loadUnaligned(as: UInt64.self)) }
        var k: UInt64 = 0
        let n = name.count
        for i in 0 ..< n { k |= UInt64(name[i]) << (56 - 8 * UInt64(i)) }
        return k
    }

    /// Appends the names of the directory open as `fd` to `out`, sorted in component order
    /// (see the other `readNames`).
    static func readNames(_ fd: Int32, into out: inout [DirectoryName], buffer: inout [UInt8]) -> Int32? {
        var names = DirectoryNames()
        let failure = readNames(fd, into: &names, buffer: &buffer)
        for i in 0 ..< names.count { out.append(names[i]) }
        return failure
    }

    static func readNames(_ fd: Int32, into out: inout [DirectoryName]) -> Int32? {
        var buffer: [UInt8] = []
        return readNames(fd, into: &out, buffer: &buffer)
    }
}
