#if canImport(Glibc)
import Glibc
#endif
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
/// find hardlinks within this one scan; they are never stored.
package final class Scanner {
    let root: String
    let excludes: ExcludeSet
    let provider: (any ContentProvider)?
    private var table = ManifestTable()
    private var warnings: [String] = []
    private var substitutes: [Int: SubstitutedContent] = [:]
    private var inodes: [InodeKey: (UInt32, UInt32, Int)] = [:]
    private var pathBuf: [CChar] = []
    private var progress: ((Int) -> Void)?

    struct InodeKey: Hashable { var dev: UInt64; var ino: UInt64 }

    package init(root: String, excludes: ExcludeSet, provider: (any ContentProvider)? = nil) {
        self.root = root
        self.excludes = excludes
        self.provider = provider
    }

    /// Scans the tree. `progress` is called now and then with the number of entries so far.
    package func scan(progress: ((Int) -> Void)? = nil) throws -> ScanResult {
        self.progress = progress
        let fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd < 0 {
            let err = errno
            throw ToolError("cannot read source directory \(root): \(String(cString: strerror(err))). Check the path given to --source.")
        }
        table.reserve(entries: 1024, stringBytes: 64 * 1024)
        try walk(fd, prefixLength: 0)
        return ScanResult(table: table, warnings: warnings, substitutes: substitutes)
    }

    /// Walks one directory (takes ownership of `fd`). `pathBuf[0..<prefixLength]` holds the
    /// directory's relative path ("" for the root).
    private func walk(_ fd: Int32, prefixLength: Int) throws {
        guard let dir = fdopendir(fd) else { close(fd); return }
        defer { closedir(dir) }
        // Names of this directory in one buffer, then sorted by bytes.
        var names: [UInt8] = []
        var ranges: [(Int, Int)] = []
        while let ent = readdir(dir) {
            withUnsafeBytes(of: ent.pointee.d_name) { raw in
                let n = strlen(raw.baseAddress!.assumingMemoryBound(to: CChar.self))
                if n == 1 && raw[0] == 0x2E { return }
                if n == 2 && raw[0] == 0x2E && raw[1] == 0x2E { return }
                ranges.append((names.count, n))
                names.append(contentsOf: UnsafeRawBufferPointer(rebasing: raw[0 ..< n]))
            }
        }
        names.withUnsafeBytes { nb in
            ranges.sort { a, b in
                comparePaths(UnsafeRawBufferPointer(rebasing: nb[a.0 ..< a.0 + a.1]),
                             UnsafeRawBufferPointer(rebasing: nb[b.0 ..< b.0 + b.1])) < 0
            }
        }
        let dfd = dirfd(dir)
        for (start, len) in ranges {
            // Build "<prefix>/<name>\0" in pathBuf.
            pathBuf.removeSubrange(prefixLength...)
            var nameStart = prefixLength
            if prefixLength > 0 { pathBuf.append(0x2F); nameStart += 1 }
            for i in start ..< start + len { pathBuf.append(CChar(bitPattern: names[i])) }
            pathBuf.append(0)
            let fullLength = pathBuf.count - 1
            let excluded = pathBuf.withUnsafeBufferPointer { excludes.matches(path: $0.baseAddress!, nameStart: nameStart) }
            if excluded { continue }
            var st = stat()
            let rc = pathBuf.withUnsafeBufferPointer { fstatat(dfd, $0.baseAddress! + nameStart, &st, AT_SYMLINK_NOFOLLOW) }
            if rc != 0 {
                let err = errno
                if err != ENOENT { warn("cannot stat \(currentPath(fullLength)): \(String(cString: strerror(err))); skipped") }
                continue
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
                continue
            }
            let (po, pl) = pathBuf.withUnsafeBytes { table.intern(UnsafeRawBufferPointer(rebasing: $0[0 ..< fullLength])) }
            e.pathOffset = po; e.pathLength = pl
            if e.type == .symlink {
                var target = [UInt8](repeating: 0, count: 4096)
                let n = pathBuf.withUnsafeBufferPointer { p in
                    target.withUnsafeMutableBytes { readlinkat(dfd, p.baseAddress! + nameStart, $0.baseAddress!.assumingMemoryBound(to: CChar.self), 4096) }
                }
                if n < 0 { warn("cannot read symlink \(currentPath(fullLength)); skipped"); continue }
                (e.linkOffset, e.linkLength) = target.withUnsafeBytes { table.intern(UnsafeRawBufferPointer(rebasing: $0[0 ..< n])) }
            }
            if e.type == .file {
                if let provider {
                    let rel = currentPath(fullLength)
                    switch try provider.plan(relativePath: rel, absolutePath: root + "/" + rel) {
                    case .asIs: break
                    case .omit: continue
                    case .substitute(let sub):
                        e.size = sub.size
                        substitutes[table.count] = sub
                    }
                }
                if st.st_nlink > 1 {
                    let key = InodeKey(dev: UInt64(st.st_dev), ino: UInt64(st.st_ino))
                    if let first = inodes[key] {
                        e.type = .hardlink
                        e.linkOffset = first.0; e.linkLength = first.1
                    } else {
                        inodes[key] = (e.pathOffset, e.pathLength, table.count)
                    }
                }
            }
            table.append(e)
            if table.count & 4095 == 0 { progress?(table.count) }
            if e.type == .directory {
                let cfd = pathBuf.withUnsafeBufferPointer { openat(dfd, $0.baseAddress! + nameStart, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
                if cfd < 0 {
                    let err = errno
                    warn("cannot read directory \(currentPath(fullLength)): \(String(cString: strerror(err))); its contents are not in this backup")
                    continue
                }
                try walk(cfd, prefixLength: fullLength)
            }
        }
    }

    private func currentPath(_ length: Int) -> String {
        pathBuf.withUnsafeBytes { String(decoding: UnsafeRawBufferPointer(rebasing: $0[0 ..< length]), as: UTF8.self) }
    }

    private func warn(_ s: String) { if warnings.count < 1000 { warnings.append(s) } }
}
