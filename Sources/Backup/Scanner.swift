#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Support

/// What a scan found: the tree as a manifest table (no archive references yet) and any
/// problems that did not stop it.
package struct ScanResult: Sendable {
    package var table: ManifestTable
    package var warnings: [String]
    /// Entries whose content the content provider replaced (entry index -> plan).
    package var substitutes: [Int: SubstitutedContent]
}

/// Walks a source directory with lstat only (openat + readdir + fstatat, no symlink is ever
/// followed) and produces entries sorted in component order. Device numbers are used only to
/// find hardlinks within this one scan; they are never stored. The top-level directories are
/// walked in parallel (sequentially when a content provider is set) and joined in order.
package final class Scanner {
    let root: String
    let excludes: ExcludeSet
    let provider: (any ContentProvider)?
    package var threads = max(1, ProcessInfo.processInfo.activeProcessorCount)

    package init(root: String, excludes: ExcludeSet, provider: (any ContentProvider)? = nil) {
        self.root = root
        self.excludes = excludes
        self.provider = provider
    }

    /// Scans the tree. `progress` is called now and then with the number of entries so far.
    package func scan(progress: (@Sendable (Int) -> Void)? = nil) throws -> ScanResult {
        let rfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard rfd >= 0, let dir = fdopendir(rfd) else {
            let err = errno
            throw ToolError("cannot read source directory \(root): \(String(cString: strerror(err))). Check the path given to --source.")
        }
        defer { closedir(dir) }
        let fd = dirfd(dir)
        let names = ScanWorker.readNames(dir)
        var parts: [ScanWorker?]
        if provider != nil || threads == 1 || names.count < 2 {
            let w = ScanWorker(root: root, excludes: excludes, provider: provider, progress: progress)
            for n in names { try w.process(fd, name: n, prefixLength: 0) }
            parts = [w]
        } else {
            let slots = ResultSlots<ScanWorker>(count: names.count)
            let errors = ResultSlots<any Error>(count: 1)
            let (root, excludes) = (self.root, self.excludes)
            DispatchQueue.concurrentPerform(iterations: names.count) { i in
                let w = ScanWorker(root: root, excludes: excludes, provider: nil, progress: nil)
                do { try w.process(fd, name: names[i], prefixLength: 0) } catch { errors.set(0, error) }
                slots.set(i, w)
            }
            if let e = errors.values[0] { throw e }
            parts = slots.values
        }
        // Join in order, rebasing string offsets; then resolve hardlinks in path order.
        var table = ManifestTable()
        var warnings: [String] = []
        var substitutes: [Int: SubstitutedContent] = [:]
        var linkCandidates: [(Int, UInt64, UInt64)] = []
        let totalEntries = parts.reduce(0) { $0 + ($1?.table.count ?? 0) }
        let totalStrings = parts.reduce(0) { $0 + ($1?.table.strings.count ?? 0) }
        table.reserve(entries: totalEntries, stringBytes: totalStrings)
        for k in parts.indices {
            guard let w = parts[k] else { continue }
            parts[k] = nil  // free each part's buffers as soon as it is joined
            let base = UInt32(table.strings.count)
            let first = table.count
            _ = table.intern(w.table.strings)
            for i in 0 ..< w.table.count {
                var e = w.table.entry(i)
                e.pathOffset += base
                if e.linkLength > 0 || e.type == .symlink { e.linkOffset += base }
                table.append(e)
            }
            warnings += w.warnings
            for (k, v) in w.substitutes { substitutes[first + k] = v }
            for (k, dev, ino) in w.links { linkCandidates.append((first + k, dev, ino)) }
        }
        var firstOf: [ScanWorker.InodeKey: Int] = [:]
        for (i, dev, ino) in linkCandidates {
            let key = ScanWorker.InodeKey(dev: dev, ino: ino)
            if let f = firstOf[key] {
                var e = table.entry(i)
                let t = table.entry(f)
                e.type = .hardlink
                e.linkOffset = t.pathOffset; e.linkLength = t.pathLength
                table.set(i, e)
            } else {
                firstOf[key] = i
            }
        }
        return ScanResult(table: table, warnings: Array(warnings.prefix(1000)), substitutes: substitutes)
    }
}

/// Walks one part of the tree into its own table.
final class ScanWorker: @unchecked Sendable {
    let root: String
    let excludes: ExcludeSet
    let provider: (any ContentProvider)?
    let progress: (@Sendable (Int) -> Void)?
    var table = ManifestTable()
    var warnings: [String] = []
    var substitutes: [Int: SubstitutedContent] = [:]
    /// Regular files with more than one link: (entry index, dev, ino).
    var links: [(Int, UInt64, UInt64)] = []
    private var pathBuf: [CChar] = []

    package struct InodeKey: Hashable { var dev: UInt64; var ino: UInt64 }

    init(root: String, excludes: ExcludeSet, provider: (any ContentProvider)?, progress: (@Sendable (Int) -> Void)?) {
        self.root = root
        self.excludes = excludes
        self.provider = provider
        self.progress = progress
    }

    /// The names in a directory (without . and ..), sorted bytewise.
    /// Reads the names of the directory open as `dir`.
    static func readNames(_ dir: OpaquePointer) -> [[UInt8]] {
        var out: [[UInt8]] = []
        while let ent = readdir(dir) {
            withUnsafeBytes(of: ent.pointee.d_name) { raw in
                let n = strlen(raw.baseAddress!.assumingMemoryBound(to: CChar.self))
                if n == 1 && raw[0] == 0x2E { return }
                if n == 2 && raw[0] == 0x2E && raw[1] == 0x2E { return }
                out.append(Array(UnsafeRawBufferPointer(rebasing: raw[0 ..< n])))
            }
        }
        out.sort { a, b in a.withUnsafeBytes { x in b.withUnsafeBytes { y in comparePaths(x, y) < 0 } } }
        return out
    }

    /// Processes one name in directory `dfd` whose relative path is `pathBuf[0..<prefixLength]`.
    func process(_ dfd: Int32, name: [UInt8], prefixLength: Int) throws {
        try name.withUnsafeBytes { try process(dfd, name: $0, prefixLength: prefixLength) }
    }

    func process(_ dfd: Int32, name: UnsafeRawBufferPointer, prefixLength: Int) throws {
        // Build "<prefix>/<name>\0" in pathBuf.
        pathBuf.removeSubrange(prefixLength...)
        var nameStart = prefixLength
        if prefixLength > 0 { pathBuf.append(0x2F); nameStart += 1 }
        for b in name { pathBuf.append(CChar(bitPattern: b)) }
        pathBuf.append(0)
        let fullLength = pathBuf.count - 1
        let excluded = pathBuf.withUnsafeBufferPointer { excludes.matches(path: $0.baseAddress!, nameStart: nameStart) }
        if excluded { return }
        var st = stat()
        let rc = pathBuf.withUnsafeBufferPointer { fstatat(dfd, $0.baseAddress! + nameStart, &st, AT_SYMLINK_NOFOLLOW) }
        if rc != 0 {
            let err = errno
            if err != ENOENT { warn("cannot stat \(currentPath(fullLength)): \(String(cString: strerror(err))); skipped") }
            return
        }
        var e = ManifestEntry()
        e.mode = UInt32(st.st_mode) & 0o7777
        e.uid = st.st_uid
        e.gid = st.st_gid
        e.mtimeNs = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        e.ctimeNs = Int64(st.st_ctim.tv_sec) * 1_000_000_000 + Int64(st.st_ctim.tv_nsec)
        let kind = st.st_mode & S_IFMT
        switch kind {
        case S_IFREG: e.type = .file; e.size = UInt64(st.st_size)
        case S_IFDIR: e.type = .directory
        case S_IFLNK: e.type = .symlink
        default:
            warn("\(currentPath(fullLength)) is a socket, FIFO or device; skipped")
            return
        }
        let (po, pl) = pathBuf.withUnsafeBytes { table.intern(UnsafeRawBufferPointer(rebasing: $0[0 ..< fullLength])) }
        e.pathOffset = po; e.pathLength = pl
        if e.type == .symlink {
            var target = [UInt8](repeating: 0, count: 4096)
            let n = pathBuf.withUnsafeBufferPointer { p in
                target.withUnsafeMutableBytes { readlinkat(dfd, p.baseAddress! + nameStart, $0.baseAddress!.assumingMemoryBound(to: CChar.self), 4096) }
            }
            if n < 0 { warn("cannot read symlink \(currentPath(fullLength)); skipped"); return }
            (e.linkOffset, e.linkLength) = target.withUnsafeBytes { table.intern(UnsafeRawBufferPointer(rebasing: $0[0 ..< n])) }
        }
        if e.type == .file {
            if let provider {
                let rel = currentPath(fullLength)
                switch try provider.plan(relativePath: rel, absolutePath: root + "/" + rel) {
                case .asIs: break
                case .omit: return
                case .substitute(let sub):
                    e.size = sub.size
                    substitutes[table.count] = sub
                }
            }
            if st.st_nlink > 1 { links.append((table.count, UInt64(st.st_dev), UInt64(st.st_ino))) }
        }
        table.append(e)
        if table.count & 4095 == 0 { progress?(table.count) }
        if e.type == .directory {
            let cfd = pathBuf.withUnsafeBufferPointer { openat(dfd, $0.baseAddress! + nameStart, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            if cfd < 0 {
                let err = errno
                warn("cannot read directory \(currentPath(fullLength)): \(String(cString: strerror(err))); its contents are not in this backup")
                return
            }
            try walk(cfd, prefixLength: fullLength)
        }
    }

    /// Walks one directory (takes ownership of `fd`).
    private func walk(_ fd: Int32, prefixLength: Int) throws {
        guard let dir = fdopendir(fd) else { close(fd); return }
        defer { closedir(dir) }
        let dfd = dirfd(dir)
        for n in ScanWorker.readNames(dir) { try process(dfd, name: n, prefixLength: prefixLength) }
    }

    private func currentPath(_ length: Int) -> String {
        pathBuf.withUnsafeBytes { String(decoding: UnsafeRawBufferPointer(rebasing: $0[0 ..< length]), as: UTF8.self) }
    }

    private func warn(_ s: String) { if warnings.count < 1000 { warnings.append(s) } }
}
