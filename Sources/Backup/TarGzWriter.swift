#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Gzip
import Storage
import Support

/// Where an added entry's header sits, resolved once the archive is finished.
struct TarEntryLocation {
    var segment: Int
    var offsetInSegment: Int
}

/// What `TarGzWriter.addFile` read.
struct AddedContent {
    var hash: Digest
    /// Bytes in the archive (the size in the tar header).
    var size: UInt64
    /// The file changed (size or mtime) while it was read; the archive holds what was read.
    var changedWhileRead: Bool
    var location: TarEntryLocation
}

/// Backup's streaming tar.gz writer: ONE POSIX ustar/pax tar stream (one end marker at the
/// very end), cut into gzip members of about `segmentSize` at entry boundaries (and inside
/// big files), members compressed on worker threads and written in order. Segments whose
/// sample does not compress are stored. Readable by gzip, GNU tar, bsdtar, Python tarfile.
///
/// (A compact writer local to Backup so the runner can record member offsets for every entry;
/// the Archive module's general writer/extractor is the one `hs-restore --archive` uses.)
final class TarGzWriter: @unchecked Sendable {
    private let sink: any DestinationWriter
    private let level: Int32
    private let segmentSize: Int
    private var segment: [UInt8] = []
    private var segmentIndex = 0
    private let queue = DispatchQueue(label: "hs-backup.gzip", attributes: .concurrent)
    private let maxInFlight: Int
    private let cond = NSCondition()
    private var done: [Int: [UInt8]] = [:]
    private var nextToWrite = 0
    private var writeError: (any Error)?
    /// Compressed offset of each written member, by segment index.
    private(set) var memberOffsets: [UInt64] = []
    private(set) var bytesOut: UInt64 = 0
    private var readBuffer: [UInt8]

    init(sink: any DestinationWriter, level: Int32 = 1, segmentSize: Int = 1 << 20, threads: Int = max(1, ProcessInfo.processInfo.activeProcessorCount)) {
        self.sink = sink
        self.level = level
        self.segmentSize = segmentSize
        self.maxInFlight = threads * 2 + 1
        segment.reserveCapacity(segmentSize + 64 * 1024)
        readBuffer = [UInt8](repeating: 0, count: 256 * 1024)
    }

    // MARK: entries

    /// Adds a directory, symlink or hardlink entry (no content).
    func addNonFile(path: String, type: ManifestEntryType, mode: UInt32, uid: UInt32, gid: UInt32, mtimeNs: Int64, link: String) throws -> TarEntryLocation {
        let loc = TarEntryLocation(segment: segmentIndex, offsetInSegment: segment.count)
        let flag: UInt8
        switch type {
        case .directory: flag = 0x35
        case .symlink: flag = 0x32
        case .hardlink: flag = 0x31
        case .file: flag = 0x30
        }
        appendHeader(path: type == .directory ? path + "/" : path, flag: flag, mode: mode, uid: uid, gid: gid, size: 0, mtimeNs: mtimeNs, link: link)
        try cutIfFull()
        return loc
    }

    /// Adds a regular file, reading its content from `contentPath` (exactly `size` bytes are
    /// archived: a file that shrank is padded with zeros, one that grew is cut; both reported).
    func addFile(path: String, contentPath: String, size: UInt64, mode: UInt32, uid: UInt32, gid: UInt32, mtimeNs: Int64) throws -> AddedContent {
        let fd = open(contentPath, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        if fd < 0 {
            let err = errno
            throw FileReadError(path: contentPath, errno: err)
        }
        defer { close(fd) }
        var before = stat()
        fstat(fd, &before)
        let loc = TarEntryLocation(segment: segmentIndex, offsetInSegment: segment.count)
        appendHeader(path: path, flag: 0x30, mode: mode, uid: uid, gid: gid, size: size, mtimeNs: mtimeNs, link: "")
        var hasher = SHA256Hasher()
        var left = size
        var changed = false
        while left > 0 {
            let want = Int(min(UInt64(readBuffer.count), left))
            let n = readBuffer.withUnsafeMutableBytes { read(fd, $0.baseAddress!, want) }
            if n < 0 {
                if errno == EINTR { continue }
                let err = errno
                throw FileReadError(path: contentPath, errno: err)
            }
            if n == 0 {
                // Shrank while read: pad with zeros so the stream stays valid.
                changed = true
                let pad = [UInt8](repeating: 0, count: want)
                pad.withUnsafeBytes { hasher.update($0) }
                segment.append(contentsOf: pad)
                left -= UInt64(want)
            } else {
                readBuffer.withUnsafeBytes { raw in
                    let chunk = UnsafeRawBufferPointer(rebasing: raw[0 ..< n])
                    hasher.update(chunk)
                    segment.append(contentsOf: chunk)
                }
                left -= UInt64(n)
            }
            if segment.count >= segmentSize * 2 { try cut() }
        }
        let pad = Int((512 - size % 512) % 512)
        if pad > 0 { segment.append(contentsOf: repeatElement(0, count: pad)) }
        var after = stat()
        fstat(fd, &after)
        if after.st_size != before.st_size || after.st_mtim.tv_sec != before.st_mtim.tv_sec || after.st_mtim.tv_nsec != before.st_mtim.tv_nsec {
            changed = true
        }
        if UInt64(before.st_size) != size { changed = true }
        try cutIfFull()
        return AddedContent(hash: Digest(hasher.finalize()), size: size, changedWhileRead: changed, location: loc)
    }

    /// Writes the end-of-archive marker and the remaining members. Returns the archive size.
    func finish() throws -> UInt64 {
        segment.append(contentsOf: repeatElement(0, count: 1024))
        try cut()
        try drain(until: segmentIndex)
        return bytesOut
    }

    // MARK: tar headers

    private func appendHeader(path: String, flag: UInt8, mode: UInt32, uid: UInt32, gid: UInt32, size: UInt64, mtimeNs: Int64, link: String) {
        let pathBytes = Array(path.utf8)
        let linkBytes = Array(link.utf8)
        let isASCII = { (b: [UInt8]) in b.allSatisfy { $0 < 0x80 } }
        var pax: [(String, [UInt8])] = []
        var name: [UInt8] = pathBytes
        var prefix: [UInt8] = []
        if !isASCII(pathBytes) {
            pax.append(("path", pathBytes)); name = Array(pathBytes.prefix(99))
        } else if pathBytes.count > 100 {
            // Split at a '/' into prefix (<=155) + name (<=100).
            var split: Int?
            for i in stride(from: min(pathBytes.count - 1, 155), through: 1, by: -1) where pathBytes[i] == 0x2F {
                if pathBytes.count - i - 1 <= 100 && pathBytes.count - i - 1 > 0 { split = i }
                break
            }
            if let s = split {
                prefix = Array(pathBytes[0 ..< s]); name = Array(pathBytes[(s + 1)...])
            } else {
                pax.append(("path", pathBytes)); name = Array(pathBytes.prefix(99))
            }
        }
        var linkName = linkBytes
        if !isASCII(linkBytes) || linkBytes.count > 100 { pax.append(("linkpath", linkBytes)); linkName = Array(linkBytes.prefix(99)) }
        if uid > 0o7777777 { pax.append(("uid", Array(String(uid).utf8))) }
        if gid > 0o7777777 { pax.append(("gid", Array(String(gid).utf8))) }
        if size > 0o77777777777 { pax.append(("size", Array(String(size).utf8))) }
        let secs = mtimeNs >= 0 ? mtimeNs / 1_000_000_000 : (mtimeNs - 999_999_999) / 1_000_000_000
        if secs < 0 || secs > 0o77777777777 { pax.append(("mtime", Array(String(secs).utf8))) }
        if !pax.isEmpty {
            var body: [UInt8] = []
            for (k, v) in pax {
                let rest = 1 + k.utf8.count + 1 + v.count + 1
                var len = rest + 1
                while String(len).utf8.count + rest != len { len = String(len).utf8.count + rest }
                body += Array("\(len) \(k)=".utf8) + v + [0x0A]
            }
            appendRawHeader(name: Array("PaxHeaders/\(pathBytes.count)".utf8), prefix: [], flag: 0x78, mode: 0o644, uid: 0, gid: 0, size: UInt64(body.count), mtime: 0, link: [])
            segment += body
            let pad = (512 - body.count % 512) % 512
            segment.append(contentsOf: repeatElement(0, count: pad))
        }
        appendRawHeader(name: name, prefix: prefix, flag: flag, mode: mode, uid: min(uid, 0o7777777), gid: min(gid, 0o7777777),
                        size: size > 0o77777777777 ? 0 : size, mtime: max(0, min(secs, 0o77777777777)), link: linkName)
    }

    private func appendRawHeader(name: [UInt8], prefix: [UInt8], flag: UInt8, mode: UInt32, uid: UInt32, gid: UInt32, size: UInt64, mtime: Int64, link: [UInt8]) {
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ bytes: [UInt8], _ at: Int, _ max: Int) { for (i, b) in bytes.prefix(max).enumerated() { h[at + i] = b } }
        func octal(_ v: UInt64, _ at: Int, _ width: Int) {
            let s = String(v, radix: 8)
            let padded = String(repeating: "0", count: max(0, width - 1 - s.count)) + s
            put(Array(padded.utf8), at, width - 1)
        }
        put(name, 0, 100)
        octal(UInt64(mode & 0o7777), 100, 8)
        octal(UInt64(uid), 108, 8)
        octal(UInt64(gid), 116, 8)
        octal(size, 124, 12)
        octal(UInt64(mtime), 136, 12)
        for i in 148 ..< 156 { h[i] = 0x20 }
        h[156] = flag
        put(link, 157, 100)
        put(Array("ustar\0".utf8), 257, 6)
        put(Array("00".utf8), 263, 2)
        put(prefix, 345, 155)
        let sum = h.reduce(0) { $0 + Int($1) }
        let cs = String(sum, radix: 8)
        put(Array((String(repeating: "0", count: max(0, 6 - cs.count)) + cs).utf8), 148, 6)
        h[154] = 0; h[155] = 0x20
        segment += h
    }

    // MARK: members

    private func cutIfFull() throws {
        if segment.count >= segmentSize { try cut() }
    }

    /// Hands the current segment to a worker, and writes finished members in order.
    private func cut() throws {
        guard !segment.isEmpty else { return }
        let payload = segment
        segment = []
        segment.reserveCapacity(segmentSize + 64 * 1024)
        let index = segmentIndex
        segmentIndex += 1
        let level = self.level
        queue.async { [self] in
            var out: [UInt8] = []
            out.reserveCapacity(payload.count + payload.count / 100 + 64)
            let enc = GzipMemberEncoder()
            payload.withUnsafeBytes { raw in
                let mode: GzipLevel = level <= 0 ? .store : (Self.looksCompressible(raw, encoder: enc) ? .deflate(level) : .store)
                enc.encodeMember(raw, level: mode, into: &out)
            }
            cond.lock(); done[index] = out; cond.broadcast(); cond.unlock()
        }
        try drain(until: segmentIndex - maxInFlight)
    }

    /// Compresses a 32 KiB sample at level 1: store the segment when it saves under 10%.
    static func looksCompressible(_ raw: UnsafeRawBufferPointer, encoder: GzipMemberEncoder) -> Bool {
        let sampleSize = 32 * 1024
        if raw.count <= 4096 { return true }
        let start = raw.count > sampleSize * 2 ? raw.count / 2 - sampleSize / 2 : 0
        let sample = UnsafeRawBufferPointer(rebasing: raw[start ..< min(raw.count, start + sampleSize)])
        var out: [UInt8] = []
        encoder.encodeMember(sample, level: .deflate(1), into: &out)
        return Double(out.count) < Double(sample.count) * 0.9
    }

    /// Writes members in order until member `limit` (exclusive) is written.
    private func drain(until limit: Int) throws {
        while nextToWrite < limit {
            cond.lock()
            while done[nextToWrite] == nil { cond.wait() }
            let member = done.removeValue(forKey: nextToWrite)!
            cond.unlock()
            memberOffsets.append(bytesOut)
            try member.withUnsafeBytes { try sink.write($0) }
            bytesOut += UInt64(member.count)
            nextToWrite += 1
        }
    }

    /// Waits for in-flight compression (call before abandoning a failed archive).
    func abandon() {
        queue.sync(flags: .barrier) {}
    }
}

/// A source file could not be read.
struct FileReadError: Error, CustomStringConvertible {
    var path: String
    var errno: Int32
    var description: String { "cannot read \(path): \(String(cString: strerror(errno)))" }
}
