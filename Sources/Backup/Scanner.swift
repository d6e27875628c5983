#if canImport(Glibc)
import Glibc
#endif
import Archive
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
/// find hardlinks within this one scan; they are never stored.
///
/// The walk is split into units: each entry of the root, and each entry of every top-level
/// directory (with everything below it). Units run on several threads and are joined in
/// order, so the result does not depend on the number of threads.
package final class Scanner {
    let root: String
    let excludes: ExcludeSet
    let provider: (any ContentProvider)?
    /// The previous backup's table, when it recorded provider decisions: a regular file that
    /// is unchanged since then (type, size, mtime, ctime, mode, owner) and that the provider
    /// left alone then is not shown to the provider again (which would open it).
    let previous: ManifestTable?
    package var threads = max(1, ProcessInfo.processInfo.activeProcessorCount)
    /// Do not descend into mount points (directories on another file system than their
    /// parent); each one skipped is named in a warning. Without it every mount point crossed
    /// is named in a warning.
    package var oneFileSystem = false
    /// Directories left out of the scan by identity (the destination and its set directory,
    /// when inside the source), with the name to say so once.
    package var skipDirectories: [(dev: UInt64, ino: UInt64, name: String)] = []
    /// Read extended attributes (and ACLs) to fill `ManifestEntry.xattrHash`.
    package var readXattrs = true
    /// At most this many directories are held open to split the walk into units (bounds fds).
    static let maxOpenDirectories = 512
    /// A directory with at most this many entries is split further down (up to `maxSplitDepth`).
    static let expandBelow = 8
    static let maxSplitDepth = 6

    package init(root: String, excludes: ExcludeSet, provider: (any ContentProvider)? = nil, previous: ManifestTable? = nil) {
        self.root = root
        self.excludes = excludes
        self.provider = provider
        self.previous = previous
    }

    /// Scans the tree. `progress` is called now and then with the number of entries so far.
    package func scan(progress: (@Sendable (Int) -> Void)? = nil) throws -> ScanResult {
        let fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            let err = errno
            throw ToolError("cannot read source directory \(root): \(String(cString: strerror(err))). Check the path given to --source.")
        }
        defer { close(fd) }
        var rootStat = stat()
        guard fstat(fd, &rootStat) == 0 else {
            throw ToolError("cannot stat source directory \(root): \(String(cString: strerror(errno))). Check the path given to --source.")
        }
        let rootDev = UInt64(rootStat.st_dev)
        var rootNames: [DirectoryName] = []
        if let err = DirectoryReader.readNames(fd, into: &rootNames) {
            throw ToolError("cannot read source directory \(root): \(String(cString: strerror(err))). Check the path given to --source.")
        }
        let names = rootNames
        let counter = ScanCounter(progress: progress)
        let context = ScanContext(root: root, rootBytes: Array(root.utf8), excludes: excludes, provider: provider, previous: previous,
                                  counter: counter, oneFileSystem: oneFileSystem, skipDirectories: skipDirectories, readXattrs: readXattrs)

        // The top of the tree on this thread, entry by entry without descending: a directory
        // with few entries (a chain like Plex's `Library/Application Support/Plex Media Server/
        // Metadata`) is opened and its entries handled the same way, down to `maxSplitDepth`;
        // the entries of any other directory become units, walked on all threads. So a tree
        // whose data sits below a few levels of single directories still splits into many
        // units (for speed, and so no unit holds most of the tree while the parts are joined).
        let top = ScanWorker(context)
        var units: [ScanUnit] = []
        // In path order: (entry range in `top`, range of units) pieces.
        var segments: [(Range<Int>, Range<Int>)] = []
        var opened: [Int32] = []
        defer { for d in opened { close(d) } }
        // Decisions depend on the tree only, never on the thread count, so the same tree always
        // gives the same table layout (the next manifest can then reuse unchanged parts).
        func expand(_ dirFd: Int32, prefix: [UInt8], dev: UInt64, names: [DirectoryName], depth: Int) throws {
            for n in names {
                let first = top.table.count
                let firstUnit = units.count
                if opened.count >= Self.maxOpenDirectories {
                    // Enough directories held open: this entry is walked whole as one unit.
                    units.append(ScanUnit(parent: dirFd, prefix: prefix, name: n, parentDev: dev, descend: true))
                    segments.append((first ..< first, firstUnit ..< units.count))
                    continue
                }
                let r = try top.process(dirFd, prefix: prefix, name: n, parentDev: dev)
                segments.append((first ..< top.table.count, firstUnit ..< firstUnit))
                guard let (dfd, childPrefix, childDev) = r else { continue }
                opened.append(dfd)
                let children = top.readNames(dfd, path: displayPath(childPrefix))
                if children.count <= Self.expandBelow && depth + 1 < Self.maxSplitDepth {
                    try expand(dfd, prefix: childPrefix, dev: childDev, names: children, depth: depth + 1)
                } else {
                    let u = units.count
                    for c in children { units.append(ScanUnit(parent: dfd, prefix: childPrefix, name: c, parentDev: childDev, descend: true)) }
                    segments.append((top.table.count ..< top.table.count, u ..< units.count))
                }
            }
        }
        if names.count < Self.maxOpenDirectories {
            try expand(fd, prefix: [], dev: rootDev, names: names, depth: 0)
        } else {
            let first = top.table.count
            for n in names { units.append(ScanUnit(parent: fd, prefix: [], name: n, parentDev: rootDev, descend: true)) }
            segments.append((first ..< first, 0 ..< units.count))
        }
        let parts = ResultSlots<ScanWorker>(count: units.count)
        let failure = ResultSlots<any Error>(count: 1)
        let frozen = units
        let work: @Sendable (Int) -> Void = { i in
            let w = ScanWorker(context)
            do { try w.run(frozen[i]) } catch { failure.set(0, error) }
            parts.set(i, w)
        }
        if threads > 1 && frozen.count > 1 {
            DispatchQueue.concurrentPerform(iterations: frozen.count) { work($0) }
        } else {
            for i in frozen.indices { work(i) }
        }
        if let e = failure.values[0] { throw e }

        // Join in order, rebasing string offsets; then resolve hardlinks in path order.
        var workers = parts.takeAll()
        var table = ManifestTable()
        var warnings = top.warnings
        var substitutes: [Int: SubstitutedContent] = [:]
        var linkCandidates: [(Int, UInt64, UInt64)] = []
        let totalEntries = top.table.count + workers.reduce(0) { $0 + ($1?.table.count ?? 0) }
        let totalStrings = top.table.strings.count + workers.reduce(0) { $0 + ($1?.table.strings.count ?? 0) }
        table.reserve(entries: totalEntries, stringBytes: totalStrings)
        let topBase = table.intern(top.table.strings).0
        func append(_ w: ScanWorker, _ range: Range<Int>, base: UInt32) {
            let first = table.count
            for i in range {
                var e = w.table.entry(i)
                e.pathOffset += base
                if e.linkLength > 0 || e.type == .symlink { e.linkOffset += base }
                table.append(e)
            }
            for (k, v) in w.substitutes where range.contains(k) { substitutes[first + k - range.lowerBound] = v }
            for (k, dev, ino) in w.links where range.contains(k) { linkCandidates.append((first + k - range.lowerBound, dev, ino)) }
        }
        for (entries, unitRange) in segments {
            append(top, entries, base: topBase)
            for u in unitRange {
                guard let w = workers[u] else { continue }
                workers[u] = nil  // free each part's buffers as soon as it is joined
                let base = table.intern(w.table.strings).0
                append(w, 0 ..< w.table.count, base: base)
                if warnings.count < 1000 { warnings += w.warnings }
            }
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

/// One piece of the walk: `name` in the directory open as `parent`, whose relative path is
/// `prefix`; `descend` walks everything below it.
struct ScanUnit: Sendable {
    var parent: Int32
    var prefix: [UInt8]
    var name: DirectoryName
    /// The file system (st_dev) of `parent`: a directory on another one is a mount point.
    var parentDev: UInt64
    var descend: Bool
}

/// What every unit of one scan shares.
struct ScanContext: @unchecked Sendable {
    let root: String
    let rootBytes: [UInt8]
    let excludes: ExcludeSet
    let provider: (any ContentProvider)?
    let previous: ManifestTable?
    let counter: ScanCounter
    let oneFileSystem: Bool
    let skipDirectories: [(dev: UInt64, ino: UInt64, name: String)]
    let readXattrs: Bool
}

/// Counts entries across threads and reports progress now and then.
final class ScanCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var total = 0
    private var reported = 0
    let progress: (@Sendable (Int) -> Void)?
    init(progress: (@Sendable (Int) -> Void)?) { self.progress = progress }
    func add(_ n: Int) {
        guard let progress else { return }
        lock.lock(); defer { lock.unlock() }
        total += n
        if total - reported >= 4096 { reported = total; progress(total) }
    }
}

/// Walks one part of the tree into its own table.
final class ScanWorker: @unchecked Sendable {
    let context: ScanContext
    var table = ManifestTable()
    var warnings: [String] = []
    var substitutes: [Int: SubstitutedContent] = [:]
    /// Regular files with more than one link: (entry index, dev, ino).
    var links: [(Int, UInt64, UInt64)] = []
    private var pathBuf: [CChar] = []
    /// getdents64 buffer, reused for every directory of this worker.
    private var direntBuffer: [UInt8] = []
    private var uncounted = 0
    /// Where the last lookup in the previous table ended (lookups come in path order).
    private var previousCursor = 0

    package struct InodeKey: Hashable { var dev: UInt64; var ino: UInt64 }

    init(_ context: ScanContext) {
        self.context = context
    }

    /// The names in the directory open as `fd`, whose relative path is `path` (for a warning;
    /// `fd` stays open, its read offset moves, which does not matter to the *at calls made
    /// with it).
    func readNames(_ fd: Int32, path: @autoclosure () -> String) -> [DirectoryName] {
        var names: [DirectoryName] = []
        if let err = DirectoryReader.readNames(fd, into: &names, buffer: &direntBuffer) {
            warn("cannot read directory \(path()): \(String(cString: strerror(err))); its contents are not in this backup")
        }
        return names
    }

    func run(_ unit: ScanUnit) throws {
        pathBuf = unit.prefix.map { CChar(bitPattern: $0) }
        _ = try process(unit.parent, name: unit.name, prefixLength: pathBuf.count, parentDev: unit.parentDev, descend: unit.descend)
        flushCount()
        // Many units are held until the join: give back what array growth over-allocated,
        // and the getdents buffer.
        table.shrinkToFit()
        direntBuffer = []
    }

    /// Processes one name in directory `dfd` whose relative path is `prefix`, without
    /// descending (see `process(_:name:prefixLength:parentDev:descend:)`).
    func process(_ dfd: Int32, prefix: [UInt8], name: DirectoryName, parentDev: UInt64) throws -> (Int32, [UInt8], UInt64)? {
        pathBuf = prefix.map { CChar(bitPattern: $0) }
        return try process(dfd, name: name, prefixLength: pathBuf.count, parentDev: parentDev, descend: false)
    }

    /// Processes one name in directory `dfd` whose relative path is `pathBuf[0..<prefixLength]`.
    /// `parentDev` is the file system of `dfd`. When the entry is a directory and `descend` is
    /// false, returns its open fd, path and st_dev (the caller closes it); otherwise walks it.
    @discardableResult
    func process(_ dfd: Int32, name: DirectoryName, prefixLength: Int, parentDev: UInt64, descend: Bool = true) throws -> (Int32, [UInt8], UInt64)? {
        // Build "<prefix>/<name>\0" in pathBuf.
        pathBuf.removeSubrange(prefixLength...)
        var nameStart = prefixLength
        if prefixLength > 0 { pathBuf.append(0x2F); nameStart += 1 }
        for b in name.bytes { pathBuf.append(CChar(bitPattern: b)) }
        pathBuf.append(0)
        let fullLength = pathBuf.count - 1
        let excluded = pathBuf.withUnsafeBufferPointer { context.excludes.matches(path: $0.baseAddress!, nameStart: nameStart) }
        if excluded { return nil }
        var st = stat()
        // A directory (as readdir says) is opened first and stat'ed through its fd: one path
        // lookup instead of two. Anything else, or a directory that cannot be opened (or was
        // replaced meanwhile), is stat'ed by name.
        var dirFd: Int32 = -1
        if name.type == DirectoryName.directoryType {
            dirFd = pathBuf.withUnsafeBufferPointer { openat(dfd, $0.baseAddress! + nameStart, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            if dirFd >= 0 && (fstat(dirFd, &st) != 0 || st.st_mode & S_IFMT != S_IFDIR) { close(dirFd); dirFd = -1 }
        }
        if dirFd < 0 {
            let rc = pathBuf.withUnsafeBufferPointer { fstatat(dfd, $0.baseAddress! + nameStart, &st, AT_SYMLINK_NOFOLLOW) }
            if rc != 0 {
                let err = errno
                if err != ENOENT { warn("cannot stat \(currentPath(fullLength)): \(String(cString: strerror(err))); skipped") }
                return nil
            }
        }
        defer { if dirFd >= 0 { close(dirFd) } }
        var e = ManifestEntry()
        e.mode = UInt32(st.st_mode) & 0o7777
        e.uid = st.st_uid
        e.gid = st.st_gid
        e.mtime = FileTime(st.st_mtim)
        e.ctime = FileTime(st.st_ctim)
        let kind = st.st_mode & S_IFMT
        var mountPoint = false
        switch kind {
        case S_IFREG: e.type = .file; e.size = UInt64(clamping: st.st_size)
        case S_IFDIR:
            e.type = .directory
            if let skip = context.skipDirectories.first(where: { $0.dev == UInt64(st.st_dev) && $0.ino == UInt64(st.st_ino) }) {
                warn("the destination \(skip.name) is inside the source (at \(currentPath(fullLength))); it is left out of the backup")
                return nil
            }
            if UInt64(st.st_dev) != parentDev {
                mountPoint = true
                if context.oneFileSystem {
                    warn("\(currentPath(fullLength)) is a mount point (another file system); its contents are not in this backup (--one-file-system)")
                } else {
                    warn("\(currentPath(fullLength)) is a mount point (another file system); its contents are archived too. Use --one-file-system to leave them out")
                }
            }
        case S_IFLNK: e.type = .symlink
        default:
            warn("\(currentPath(fullLength)) is a socket, FIFO or device; skipped")
            return nil
        }
        let (po, pl) = pathBuf.withUnsafeBytes { table.intern(UnsafeRawBufferPointer(rebasing: $0[0 ..< fullLength])) }
        e.pathOffset = po; e.pathLength = pl
        if context.readXattrs {
            // Most files have none: listxattrat relative to the directory says so without a
            // walk of the absolute path; anything else is read by path as before.
            if dirFd >= 0 {
                e.xattrHash = xattrHash(.fd(dirFd))
            } else if !pathBuf.withUnsafeBufferPointer({ XattrAt.certainlyNone(dfd, $0.baseAddress! + nameStart) }) {
                e.xattrHash = absolutePath(fullLength) { xattrHash(.path($0)) }
            }
        }
        if e.type == .symlink {
            var target = [UInt8](repeating: 0, count: 4096)
            let n = pathBuf.withUnsafeBufferPointer { p in
                target.withUnsafeMutableBytes { readlinkat(dfd, p.baseAddress! + nameStart, $0.baseAddress!.assumingMemoryBound(to: CChar.self), 4096) }
            }
            if n < 0 { warn("cannot read symlink \(currentPath(fullLength)); skipped"); return nil }
            (e.linkOffset, e.linkLength) = target.withUnsafeBytes { table.intern(UnsafeRawBufferPointer(rebasing: $0[0 ..< n])) }
        }
        if e.type == .file {
            // The provider API takes Strings: a name that is not UTF-8 is archived as it is.
            if let provider = context.provider, let rel = utf8Path(fullLength), !unchangedAndNotTheProvidersBusiness(e) {
                switch try provider.plan(relativePath: rel, absolutePath: context.root + "/" + rel, size: e.size) {
                case .asIs: break
                case .asIsAskAgain: e.flags |= ManifestEntry.flagAskProvider
                case .omit: return nil
                case .substitute(let sub):
                    e.size = sub.size
                    e.flags |= ManifestEntry.flagAskProvider
                    substitutes[table.count] = sub
                }
            }
            if st.st_nlink > 1 { links.append((table.count, UInt64(st.st_dev), UInt64(st.st_ino))) }
        }
        table.append(e)
        uncounted += 1
        if uncounted >= 1024 { flushCount() }
        if e.type == .directory {
            let cfd = dirFd >= 0 ? dirFd : pathBuf.withUnsafeBufferPointer { openat(dfd, $0.baseAddress! + nameStart, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            dirFd = -1
            if cfd < 0 {
                let err = errno
                warn("cannot read directory \(currentPath(fullLength)): \(String(cString: strerror(err))); its contents are not in this backup")
                return nil
            }
            if mountPoint && context.oneFileSystem { close(cfd); return nil }
            if !descend { return (cfd, pathBuf[0 ..< fullLength].map { UInt8(bitPattern: $0) }, UInt64(st.st_dev)) }
            try walk(cfd, prefixLength: fullLength, dev: UInt64(st.st_dev))
        }
        return nil
    }

    /// True when the previous backup has this regular file with the same type, size, mtime,
    /// ctime, mode and owner, and the provider neither substituted it nor asked to see it again.
    private func unchangedAndNotTheProvidersBusiness(_ e: ManifestEntry) -> Bool {
        guard let prev = context.previous else { return false }
        // pathBuf holds this entry's path and a terminating NUL.
        let found: Int? = pathBuf.withUnsafeBytes { all in
            prev.find(UnsafeRawBufferPointer(rebasing: all[0 ..< all.count - 1]), from: previousCursor)
        }
        guard let i = found else { return false }
        previousCursor = i + 1
        let p = prev.entry(i)
        return p.type == .file && p.flags & ManifestEntry.flagAskProvider == 0 && p.size == e.size
            && p.mtime == e.mtime && p.ctime == e.ctime && p.mode == e.mode && p.uid == e.uid && p.gid == e.gid
    }

    /// Walks one directory (takes ownership of `fd`).
    private func walk(_ fd: Int32, prefixLength: Int, dev: UInt64) throws {
        defer { close(fd) }
        let names = readNames(fd, path: currentPath(prefixLength))
        for n in names { try process(fd, name: n, prefixLength: prefixLength, parentDev: dev, descend: true) }
    }

    private var absBuf: [CChar] = []
    /// Calls `body` with "<root>/<path of the current entry>" as a C string.
    private func absolutePath<R>(_ length: Int, _ body: (UnsafePointer<CChar>) -> R) -> R {
        absBuf.removeAll(keepingCapacity: true)
        for b in context.rootBytes { absBuf.append(CChar(bitPattern: b)) }
        absBuf.append(0x2F)
        absBuf.append(contentsOf: pathBuf[0 ..< length])
        absBuf.append(0)
        return absBuf.withUnsafeBufferPointer { body($0.baseAddress!) }
    }

    /// The current entry's path when it is valid UTF-8 (nil otherwise).
    private func utf8Path(_ length: Int) -> String? {
        pathBuf.withUnsafeBytes { String(validating: UnsafeRawBufferPointer(rebasing: $0[0 ..< length]), as: UTF8.self) }
    }

    private func flushCount() {
        if uncounted > 0 { context.counter.add(uncounted); uncounted = 0 }
    }

    /// The current entry's path for a message (bytes that are not UTF-8 shown as \xNN).
    private func currentPath(_ length: Int) -> String {
        pathBuf.withUnsafeBytes { displayPath(UnsafeRawBufferPointer(rebasing: $0[0 ..< length])) }
    }

    private func warn(_ s: String) { if warnings.count < 1000 { warnings.append(s) } }
}

/// A path for display: valid UTF-8 as it is, every other byte as `\xNN` (names are bytes;
/// only what a person reads is escaped).
package func displayPath(_ bytes: some Collection<UInt8>) -> String {
    let b = Array(bytes)
    if let s = b.withUnsafeBufferPointer({ String(validating: $0, as: UTF8.self) }) { return s }
    var out = ""
    var parser = Unicode.UTF8.ForwardParser()
    var it = b.makeIterator()
    var rest = b[...]
    while true {
        switch parser.parseScalar(from: &it) {
        case .valid(let enc):
            out.unicodeScalars.append(Unicode.UTF8.decode(enc))
            rest = rest.dropFirst(enc.count)
        case .error(let length):
            for x in rest.prefix(length) { out += "\\x" + String(x, radix: 16, uppercase: false).leftPadded(2) }
            rest = rest.dropFirst(length)
        case .emptyInput:
            return out
        }
    }
}

extension String {
    fileprivate func leftPadded(_ n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}

/// A 64-bit digest of a file's extended attributes (names and values, sorted by name); 0 when
/// it has none. The corresponding libc calls are `llistxattr`/`flistxattr` and `lgetxattr`/`fgetxattr`.
func xattrHash(_ source: XattrSource) -> UInt64 {
    let attrs = readXattrs(source)
    guard !attrs.isEmpty else { return 0 }
    var h = SHA256Hasher()
    for (name, value) in attrs {
        h.update(Array(name.utf8) + [0])
        var n = UInt64(value.count).littleEndian
        withUnsafeBytes(of: &n) { h.update($0) }
        h.update(value)
    }
    let d = h.finalize()
    let v = d.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    return v == 0 ? 1 : v
}
