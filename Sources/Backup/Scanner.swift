#if canImport(Glibc)
import Glibc
#endif
import Archive
import FoundationEssentials
import Dispatch
import Support
import Synchronization

/// One entry of a scan: the entry (its string offsets unused) with its path and link bytes,
/// the directory it was found in (still open: the entry is read through it, never by path)
/// and its identity as the scan saw it.
package struct ScannedEntry: Sendable {
    package var entry: ManifestEntry
    package var path: [UInt8]
    package var link: [UInt8]
    /// A regular file (or hardlink) whose inode has several links.
    package var multiLink = false
    /// The directory that holds the entry, as the scan opened it.
    package var parent: DirectoryHandle
    /// Device and inode the scan saw (compared when the entry is opened for reading).
    package var identity: ScanIdentity
    /// A small regular file's content, read by the walker through the descriptor its scan
    /// stat came from (`Scanner.readsSmallFiles`), or why it could not be read; nil: not read.
    var content: Result<PrefetchedContent, LeftOutError>? = nil

    /// The entry's own name (the last component of `path`).
    package var name: ArraySlice<UInt8> { path[(path.lastIndex(of: 0x2F).map { $0 + 1 } ?? 0)...] }
}

/// A directory the scan opened (`openat(parent, name, O_DIRECTORY | O_NOFOLLOW)`), shared by
/// the entries found in it until the last of them is read: every entry is opened, stat'ed
/// and its xattrs read relative to it, never through a path string. So a directory renamed
/// or swapped for a symlink after the scan opened it is still read where the scan saw it, and
/// no path is too long. Closed when the last reference goes.
package final class DirectoryHandle: Sendable {
    package let fd: Int32
    /// Handles open right now (bounds what the scan holds ahead of the reader).
    package static var openCount: Int { open.load(ordering: .relaxed) }
    private static let open = Atomic<Int>(0)

    /// Takes ownership of `fd`.
    package init(fd: Int32) {
        self.fd = fd
        Self.open.add(1, ordering: .relaxed)
    }

    deinit {
        Glibc.close(fd)
        Self.open.subtract(1, ordering: .relaxed)
    }
}

/// A whole scan collected in memory (`Scanner.scan()`, for small trees and tests).
package struct ScanResult: Sendable {
    package var table: ManifestTable
    package var warnings: [String]
}

/// Walks a source directory with lstat only (openat + readdir + fstatat, no symlink is ever
/// followed) and produces entries sorted in component order, as a stream (`start()`): memory
/// holds a bounded number of entries whatever the size of the tree (plus the names of the
/// directories being walked and one path per multiply-linked inode). Device numbers are used
/// only to find hardlinks within this one scan; they are never stored.
///
/// The walk is split into units: each entry of the root, and each entry of every top-level
/// directory (with everything below it). Units run on several threads, at most a few ahead of
/// the reader, and are read in order, so the result does not depend on the number of threads.
package final class Scanner {
    let root: String
    let excludes: ExcludeSet
    /// Walker threads, at most. Not bound by the core count: with a cold cache every `fstatat`
    /// and `getdents64` waits on the disk and a waiting walker uses no core, so more walkers
    /// keep more reads in flight. One per core walk at first; the others join once a walker
    /// finds that the walk reads from the disk (`ScanStream.walkReadsDisk`): with a warm cache
    /// they would only add context switches. Memory does not grow with them: what the walkers
    /// hand ahead of the reader is bounded as a whole (`ScanStream.maxQueuedEntries`,
    /// `maxQueuedChunks`), and each walker's unfilled chunk is smaller the more walkers there are.
    package var threads = Scanner.defaultWalkers
    /// Walkers that start at once (the others wait for the disk, see `threads`).
    package var startingThreads = Scanner.startingWalkers
    /// Four walkers per core, 4 to 16; `HS_SCAN_WALKERS` sets the number and starts them all
    /// at once (for measurements).
    package static let defaultWalkers: Int = walkersFromEnvironment ?? min(16, max(4, 4 * Sys.processorCount))
    static let startingWalkers: Int = walkersFromEnvironment ?? max(1, Sys.processorCount)
    private static let walkersFromEnvironment: Int? = {
        guard let v = Sys.environment("HS_SCAN_WALKERS"), let n = Int(v), n >= 1 else { return nil }
        return min(n, 64)
    }()
    /// Do not descend into mount points (directories on another file system than their
    /// parent); each one skipped is named in a warning. Without it every mount point crossed
    /// is named in a warning.
    package var oneFileSystem = false
    /// Directories left out of the scan by identity (the destination and its set directory,
    /// when inside the source), with the name to say so once.
    package var skipDirectories: [(dev: UInt64, ino: UInt64, name: String)] = []
    /// Read extended attributes (and ACLs) to fill `ManifestEntry.xattrHash`.
    package var readXattrs = true
    /// Read no xattrs: every entry gets the flag `ManifestEntry.flagXattrsUnread` and the
    /// reader settles it (an incremental compares the ctime with the previous backup first:
    /// any xattr or ACL change updates the ctime, so most entries need no syscall for them).
    package var xattrsLeftToReader = false
    /// Read no xattrs of regular files: they get `ManifestEntry.flagXattrsUnread` and the
    /// reader settles it, from the descriptor it reads the content through (`flistxattr`:
    /// no lookup of the name per file, and the attributes are those of the inode archived).
    package var fileXattrsLeftToReader = false
    /// The walkers open each regular file they find (`SourceFile.openAt`), take its scan stat
    /// from that descriptor (`fstat`: one name lookup per file, not `fstatat` here and `openat`
    /// again to read it), and read a small one whole there (`ScanContentReads`), with its
    /// xattrs when they are left to the reader. For a full backup (everything is read).
    package var readsSmallFiles = false
    /// With `readsSmallFiles`: tell incompressible content (`PrefetchedContent.incompressible`).
    package var detectIncompressible = true
    /// Directories whose contents are left out but for the marker (`--exclude-caches`,
    /// `--exclude-if-present`; ExcludeMarkers.swift).
    package var markers = ExcludeMarkers()
    /// At most this many directories are held open to split the walk into units (bounds fds).
    static let maxOpenDirectories = 512
    /// A directory with at most this many entries is split further down (up to `maxSplitDepth`).
    static let expandBelow = 8
    static let maxSplitDepth = 6

    package init(root: String, excludes: ExcludeSet) {
        self.root = root
        self.excludes = excludes
    }

    /// Scans the whole tree into memory.
    package func scan(progress: (@Sendable (Int) -> Void)? = nil) throws -> ScanResult {
        let stream = try start(progress: progress)
        defer { stream.close() }
        var table = ManifestTable()
        while let s = try stream.next() { table.append(s.entry, path: s.path, link: s.link) }
        return ScanResult(table: table, warnings: stream.warnings)
    }

    /// Starts the walk; read the entries with `next()` and `close()` the stream when done.
    /// `progress` is called now and then with the number of entries so far.
    package func start(progress: (@Sendable (Int) -> Void)? = nil) throws -> ScanStream {
        ScanLimits.raiseOpenFileLimit()
        let fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            let err = errno
            throw ToolError("cannot read source directory \(NameEscape.escape(root)): \(Sys.strerror(err)). Check the path given to --source.")
        }
        var rootStat = stat()
        guard fstat(fd, &rootStat) == 0 else {
            close(fd)
            throw ToolError("cannot stat source directory \(NameEscape.escape(root)): \(Sys.strerror(errno)). Check the path given to --source.")
        }
        let rootDev = UInt64(rootStat.st_dev)
        let rootDir = DirectoryHandle(fd: fd)
        var rootNames: [DirectoryName] = []
        if let err = DirectoryReader.readNames(fd, into: &rootNames) {
            throw ToolError("cannot read source directory \(NameEscape.escape(root)): \(Sys.strerror(err)). Check the path given to --source.")
        }
        let names = rootNames
        let counter = ScanCounter(progress: progress)
        let context = ScanContext(root: root, rootBytes: Array(root.utf8), excludes: excludes,
                                  counter: counter, oneFileSystem: oneFileSystem, skipDirectories: skipDirectories, readXattrs: readXattrs,
                                  xattrsLeftToReader: xattrsLeftToReader, fileXattrsLeftToReader: fileXattrsLeftToReader,
                                  markers: markers,
                                  contentReads: readsSmallFiles ? ScanContentReads(detectIncompressible: detectIncompressible) : nil)

        // The top of the tree on this thread, entry by entry without descending: a directory
        // with few entries (a chain like Plex's `Library/Application Support/Plex Media Server/
        // Metadata`) is opened and its entries handled the same way, down to `maxSplitDepth`;
        // the entries of any other directory become units, walked on all threads. So a tree
        // whose data sits below a few levels of single directories still splits into many
        // units. Decisions depend on the tree only, never on the thread count.
        let top = ScanWorker(context)
        var units: [ScanUnit] = []
        // In path order: (entry range in `top`, range of units) pieces.
        var segments: [(Range<Int>, Range<Int>)] = []
        var opened: [DirectoryHandle] = [rootDir]
        func expand(_ dir: DirectoryHandle, prefix: [UInt8], dev: UInt64, names: [DirectoryName], depth: Int) {
            for n in names {
                let first = top.table.count
                let firstUnit = units.count
                if opened.count >= Self.maxOpenDirectories {
                    // Enough directories held open: this entry is walked whole as one unit.
                    units.append(ScanUnit(parent: dir, prefix: prefix, name: n, parentDev: dev, descend: true))
                    segments.append((first ..< first, firstUnit ..< units.count))
                    continue
                }
                let r = top.process(dir, prefix: prefix, name: n, parentDev: dev)
                segments.append((first ..< top.table.count, firstUnit ..< firstUnit))
                guard let (child, childPrefix, childDev) = r else { continue }
                opened.append(child)
                let children = top.readNames(child.fd, path: displayPath(childPrefix))
                if children.count <= Self.expandBelow && depth + 1 < Self.maxSplitDepth {
                    expand(child, prefix: childPrefix, dev: childDev, names: children, depth: depth + 1)
                } else {
                    let u = units.count
                    for c in children { units.append(ScanUnit(parent: child, prefix: childPrefix, name: c, parentDev: childDev, descend: true)) }
                    segments.append((top.table.count ..< top.table.count, u ..< units.count))
                }
            }
        }
        if names.count < Self.maxOpenDirectories {
            expand(rootDir, prefix: [], dev: rootDev, names: names, depth: 0)
        } else {
            for n in names { units.append(ScanUnit(parent: rootDir, prefix: [], name: n, parentDev: rootDev, descend: true)) }
            segments.append((0 ..< 0, 0 ..< units.count))
        }
        return ScanStream(context: context, top: top, units: units, segments: segments, openDirectories: opened, threads: threads,
                          startingThreads: startingThreads)
    }
}

/// The entries of a running scan, in path order (`Scanner.start`). Not thread-safe: read it
/// from one thread. Hardlinks are resolved here: the first path of an inode with several
/// links is a file, later ones are hardlinks to it.
package final class ScanStream: @unchecked Sendable {
    private let context: ScanContext
    private let top: ScanWorker
    private let units: [ScanUnit]
    private let segments: [(Range<Int>, Range<Int>)]
    private var openDirectories: [DirectoryHandle]
    /// What the walkers and the reader share.
    private struct Shared {
        var queues: [[ScanChunk]]
        var finished: [Bool]
        var nextUnit = 0
        var readingUnit = 0
        var cancelled = false
        var failure: (any Error)?
        /// Entries in the chunks queued for units ahead of the reader, and their number.
        var queuedAhead = (chunks: 0, entries: 0)
        /// First units of the runs taken, in order; `runHead` is the first not behind the reader.
        var runFirsts: [Int] = []
        var runHead = 0

        /// Runs taken whose first unit the reader has not reached yet.
        mutating func runsAhead() -> Int {
            while runHead < runFirsts.count && runFirsts[runHead] <= readingUnit { runHead += 1 }
            if runHead > 1024 { runFirsts.removeFirst(runHead); runHead = 0 }
            return runFirsts.count - runHead
        }

        /// Whether a chunk of `n` entries for unit `u` may be queued now (`push`).
        func hasRoom(_ u: Int, entries n: Int, aheadPerRun: Int) -> Bool {
            if u == readingUnit { return queues[u].count < ScanStream.maxReadingChunks }
            return queues[u].count < aheadPerRun && queuedAhead.chunks < ScanStream.maxQueuedChunks
                && (queuedAhead.entries + n <= ScanStream.maxQueuedEntries || queuedAhead.chunks == 0)
        }

        /// The reader moves to unit `u` (false: it was reading it already); the chunks queued
        /// for it are no longer ahead of the reader.
        mutating func startReading(_ u: Int) -> Bool {
            guard readingUnit != u else { return false }
            readingUnit = u
            for c in queues[u] { queuedAhead.chunks -= 1; queuedAhead.entries -= c.table.count }
            return true
        }
    }
    private let shared: Monitor<Shared>
    private let exited = DispatchSemaphore(value: 0)
    private let threadCount: Int
    /// Runs started ahead of the one being read, at most.
    private let maxAhead: Int
    /// Chunks and entries queued for units ahead of the one being read, at most (all walkers
    /// together, whatever their number): what the scan holds ahead of its reader.
    static let maxQueuedChunks = 12
    static let maxQueuedEntries = 8 * 1024
    /// Chunks queued for the unit being read, at most (its walker waits for the reader).
    static let maxReadingChunks = 4
    // Reader state.
    private var segment = 0
    private var topIndex = 0
    private var unitIndex = -1
    private var chunk: ScanChunk?
    private var chunkIndex = 0
    private var linkAt: [Int: (UInt64, UInt64)] = [:]
    private var firstPathOf: [ScanWorker.InodeKey: [UInt8]] = [:]
    private var closed = false
    /// Problems that did not stop the scan (at most 1000), so far.
    package private(set) var warnings: [String]

    init(context: ScanContext, top: ScanWorker, units: [ScanUnit], segments: [(Range<Int>, Range<Int>)],
         openDirectories: [DirectoryHandle], threads: Int, startingThreads: Int) {
        self.context = context
        self.top = top
        self.units = units
        self.segments = segments
        self.openDirectories = openDirectories
        self.warnings = top.warnings
        var ends = Array(repeating: 0, count: units.count)
        for (_, r) in segments { for u in r { ends[u] = r.upperBound } }
        unitsEnd = ends
        shared = Monitor(Shared(queues: Array(repeating: [], count: units.count), finished: Array(repeating: false, count: units.count)))
        threadCount = units.isEmpty ? 0 : max(1, min(threads, units.count))
        // Enough runs for every walker to have one ahead; the memory they hand over is bounded
        // by `maxQueuedChunks`/`maxQueuedEntries`, not by this.
        maxAhead = 2 * threadCount + 2
        chunkEntries = ScanWorker.chunkEntries(walkers: threadCount)
        startingCount = min(threadCount, max(1, startingThreads))
        for k in 0 ..< threadCount {
            startThread(stackSize: 1 << 20) { [self] in self.workerLoop(k) }
        }
    }

    deinit { close() }

    /// Stops the walk (if still running) and closes the directories it held open.
    package func close() {
        guard !closed else { return }
        closed = true
        shared.withLock { $0.cancelled = true }
        shared.wakeAll()
        for _ in startingCount ..< threadCount { waiting.signal() }
        for _ in 0 ..< threadCount { exited.wait() }
        openDirectories = []
    }

    /// A worker takes a run of consecutive units at a time: one unit after a run that gave
    /// many entries, twice as many (up to `maxRun`) after one that gave few. The entries of a
    /// run go out as the chunks of its first unit, so a tree of many tiny directories (one
    /// poster each) is not handed to the reader, and the reader woken, once per directory.
    private func workerLoop(_ index: Int) {
        defer { exited.signal() }
        // A walker beyond the starting ones waits until the walk reads from the disk (or the end).
        if index >= startingCount { waiting.wait() }
        var length = 1
        var watching = index < startingCount && startingCount < threadCount
        while true {
            let run: Range<Int>? = shared.withLock(until: { s in s.cancelled || s.nextUnit >= units.count || s.runsAhead() < maxAhead }) { s in
                if s.cancelled || s.nextUnit >= units.count { return nil }
                let first = s.nextUnit
                // Within one segment: the top entries between segments come between their units.
                s.nextUnit = min(unitsEnd[first], first + length)
                s.runFirsts.append(first)
                return first ..< s.nextUnit
            }
            guard let run else { return }
            let w = ScanWorker(context, chunkEntries: chunkEntries)
            w.output = { [self] chunk in try push(run.lowerBound, chunk) }
            // Only the walkers that start at once read files (`ScanContentReads`): those that
            // join on a cold cache stat by name (the pass reads those files), so the memory the
            // contents take does not grow with the number of walkers (their malloc arenas).
            w.readsContent = index < startingCount
            var failed: (any Error)?
            do {
                for u in run { try w.run(units[u]) }
                try w.finish()
            } catch is ScanCancelled { return } catch { failed = error }
            shared.withLock { s in
                if let failed, s.failure == nil { s.failure = failed }
                for u in run { s.finished[u] = true }
            }
            shared.wakeAll()
            length = w.produced < Self.smallRun ? min(length * 2, Self.maxRun) : 1
            if watching && Self.walkReadsDisk(blocks: context.contentReads == nil ? 1 : Self.diskBlocksWithContentReads) {
                // The cache is cold: the other walkers join (each waits on the disk, not a core).
                watching = false
                if !othersStarted.exchange(true, ordering: .relaxed) {
                    for _ in startingCount ..< threadCount { waiting.signal() }
                }
            }
        }
    }

    /// Walkers that start at once; the others wait on `waiting`.
    private var startingCount = 0
    private let waiting = DispatchSemaphore(value: 0)
    private let othersStarted = Atomic<Bool>(false)

    /// Whether this thread has read at least `blocks` 512-byte blocks from the disk
    /// (`getrusage(RUSAGE_THREAD)`: blocks read in, counted when the kernel submits the read; a
    /// walk of a warm cache reads none).
    static func walkReadsDisk(blocks: Int) -> Bool {
        var u = rusage()
        // RUSAGE_THREAD (1, Linux): glibc defines it only under _GNU_SOURCE, not imported.
        guard getrusage(__rusage_who_t(1), &u) == 0 else { return false }
        return u.ru_inblock >= blocks
    }
    /// The walkers that read small files (`ScanContentReads`, a full backup) also start the
    /// kernel's readahead of the few files whose pages it dropped from a warm cache (seen on a
    /// busy machine: a handful of 200,000), which counts as blocks read in: they call the others
    /// only after 8 MiB. On a cold cache that comes within the first few thousand files.
    static let diskBlocksWithContentReads = 16384

    /// A run that gave fewer entries than this doubles the next one's length.
    static let smallRun = 256
    static let maxRun = 64
    /// Per unit, the end of its segment's unit range (a run never goes past it).
    private let unitsEnd: [Int]

    /// Hands a chunk of unit `u` to the reader; waits while the unit being read has
    /// `maxReadingChunks` queued, or, for a unit ahead of the reader, while it has 2 queued or
    /// all the units ahead hold `maxQueuedChunks`/`maxQueuedEntries`. A chunk queued ahead is
    /// counted in `queuedAhead` until the reader takes it.
    private func push(_ u: Int, _ chunk: ScanChunk) throws {
        let n = chunk.table.count
        try shared.withLock(until: { s in s.cancelled || s.hasRoom(u, entries: n, aheadPerRun: aheadChunksPerRun()) }) { s throws(ScanCancelled) in
            if s.cancelled { throw ScanCancelled() }
            s.queues[u].append(chunk)
            if u != s.readingUnit { s.queuedAhead.chunks += 1; s.queuedAhead.entries += n }
        }
        shared.wakeAll()
    }

    /// Chunks one run ahead of the reader may have queued: the walkers ahead share
    /// `maxQueuedChunks` (at least 2 each). With only the starting walkers busy (a warm cache:
    /// one walks the run being read, the other the next) the one ahead may fill it all; a cap
    /// of 2 chunks there held that walker after ~1,000 entries until the reader reached its
    /// run, so the walkers took turns instead of walking side by side.
    private func aheadChunksPerRun() -> Int {
        let walking = othersStarted.load(ordering: .relaxed) ? threadCount : startingCount
        return max(2, Self.maxQueuedChunks / max(1, walking - 1))
    }

    /// Chunk size of each walker (`ScanWorker.chunkEntries(walkers:)`).
    private let chunkEntries: Int

    /// The next entry in path order, or nil at the end.
    package func next() throws -> ScannedEntry? {
        guard try advance() else { return nil }
        return current()
    }

    // The entry `advance()` moved to: its table (a chunk's or the top's) and index there.
    private var currentTable = ManifestTable()
    private var currentIndex = 0
    private var currentFromTop = false
    /// The entry `advance()` moved to (a hardlink's type already set), its link's bytes when
    /// they are not the table's (a hardlink: its first path), whether its inode has several
    /// links, and the whole entry once `current()` built it.
    package private(set) var currentEntry = ManifestEntry()
    private var currentLinkBytes: [UInt8]?
    private var currentMultiLink = false
    private var currentScanned: ScannedEntry?

    /// Moves to the next entry in path order (false at the end), read in place: its entry is
    /// `currentEntry`, its path and link bytes `withCurrent`, and `current()` makes a
    /// `ScannedEntry` of it only for an entry that is read or kept.
    package func advance() throws -> Bool {
        currentScanned = nil
        while true {
            if let c = chunk {
                if chunkIndex < c.table.count {
                    let i = chunkIndex
                    chunkIndex += 1
                    moveTo(i, fromTop: false)
                    return true
                }
                chunk = nil
            }
            guard segment < segments.count else { return false }
            let (entries, unitRange) = segments[segment]
            if unitIndex < 0 {
                // The top entries of this segment first.
                if topIndex < entries.count {
                    let i = entries.lowerBound + topIndex
                    topIndex += 1
                    currentTable = top.table
                    moveTo(i, fromTop: true)
                    return true
                }
                unitIndex = unitRange.lowerBound
            }
            if unitIndex >= unitRange.upperBound {
                segment += 1; topIndex = 0; unitIndex = -1
                continue
            }
            // The next chunk of the current unit.
            let u = unitIndex
            if shared.withLock({ $0.startReading(u) }) { shared.wakeAll() }
            let next = try shared.withLock(until: { s in !s.queues[u].isEmpty || s.finished[u] || s.failure != nil }) { s in
                if let f = s.failure { throw f }
                return s.queues[u].isEmpty ? nil : s.queues[u].removeFirst()
            }
            guard let c = next else {
                unitIndex += 1
                continue
            }
            shared.wakeAll()
            if c.contentBytes > 0 { context.contentReads?.release(c.contentBytes) }
            if warnings.count < 1000 { warnings += c.warnings.prefix(1000 - warnings.count) }
            linkAt = [:]
            for (k, dev, ino) in c.links { linkAt[k] = (dev, ino) }
            chunk = c
            chunkIndex = 0
            chunkParents = ParentRuns(runs: c.parents)
            currentTable = c.table
        }
    }

    private var topLinks: [Int: (UInt64, UInt64)]?
    private lazy var topParents = ParentRuns(runs: top.parents)
    private var chunkParents = ParentRuns(runs: [])

    /// Makes entry `i` of `currentTable` the current one. Hardlinks are resolved here, in
    /// path order: the first path of an inode with several links is a file, later ones link to it.
    private func moveTo(_ i: Int, fromTop: Bool) {
        currentIndex = i
        currentFromTop = fromTop
        currentEntry = currentTable.entry(i)
        currentLinkBytes = nil
        let key: (UInt64, UInt64)?
        if fromTop {
            if topLinks == nil { topLinks = Dictionary(top.links.map { ($0.0, ($0.1, $0.2)) }, uniquingKeysWith: { a, _ in a }) }
            key = topLinks?[i]
        } else {
            key = linkAt.isEmpty ? nil : linkAt[i]
        }
        currentMultiLink = key != nil
        if let (dev, ino) = key {
            let k = ScanWorker.InodeKey(dev: dev, ino: ino)
            if let first = firstPathOf[k] {
                currentEntry.type = .hardlink
                currentLinkBytes = first
            } else {
                firstPathOf[k] = currentTable.pathBytes(currentEntry)
            }
        }
    }

    /// Calls `body` with the current entry's path and link bytes (valid only during the call).
    package func withCurrent<R>(_ body: (_ path: UnsafeRawBufferPointer, _ link: UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let e = currentEntry
        return try currentTable.strings.withUnsafeBytes { s in
            let path = UnsafeRawBufferPointer(rebasing: s[Int(e.pathOffset) ..< Int(e.pathOffset) + Int(e.pathLength)])
            if let l = currentLinkBytes { return try l.withUnsafeBytes { try body(path, $0) } }
            return try body(path, UnsafeRawBufferPointer(rebasing: s[Int(e.linkOffset) ..< Int(e.linkOffset) + Int(e.linkLength)]))
        }
    }

    /// The current entry as a `ScannedEntry` (its path and link copied, its directory and
    /// identity as the scan saw them); built once per entry.
    package func current() -> ScannedEntry {
        if let s = currentScanned { return s }
        let s = makeCurrent()
        currentScanned = s
        return s
    }

    /// The current entry as a `ScannedEntry`, for its last use (the pass queues it): the one
    /// `current()` built, handed over, or a new one not kept (no copy kept here, so its arrays
    /// and content are not retained twice). After this, `current()` would rebuild it without
    /// the content the walker read (the pass then reads the file itself).
    package func takeCurrent() -> ScannedEntry {
        if let s = currentScanned {
            currentScanned = nil
            return s
        }
        return makeCurrent()
    }

    private func makeCurrent() -> ScannedEntry {
        let i = currentIndex
        let e = currentEntry
        let parent = currentFromTop ? topParents.dir(at: i) : chunkParents.dir(at: i)
        let identity = currentFromTop ? top.identities[i] : chunk!.identities[i]
        var content: Result<PrefetchedContent, LeftOutError>?
        if !currentFromTop, i < chunk!.contents.count {
            // Moved out: the pass owns it from here.
            content = chunk!.contents[i]
            chunk!.contents[i] = nil
        }
        return ScannedEntry(entry: e, path: currentTable.pathBytes(e), link: currentLinkBytes ?? Array(currentTable.linkBytes(e)),
                            multiLink: currentMultiLink, parent: parent, identity: identity, content: content)
    }
}

/// Which directory holds each entry of a table: runs of consecutive entries with the same
/// parent, looked up in order (a cursor; a lookup behind it starts over).
struct ParentRuns {
    var runs: [(start: Int, dir: DirectoryHandle)]
    private var cursor = 0

    init(runs: [(start: Int, dir: DirectoryHandle)]) { self.runs = runs }

    mutating func dir(at i: Int) -> DirectoryHandle {
        if runs[cursor].start > i { cursor = 0 }
        while cursor + 1 < runs.count && runs[cursor + 1].start <= i { cursor += 1 }
        return runs[cursor].dir
    }
}

/// How much a scan holds open ahead of its reader.
enum ScanLimits {
    /// Raises the soft limit on open files to the hard one (once): a scan holds a directory
    /// open until its entries are read.
    static func raiseOpenFileLimit() {
        _ = raised
    }
    private static let raised: Bool = {
        var l = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &l) == 0, l.rlim_cur < l.rlim_max else { return false }
        l.rlim_cur = l.rlim_max
        return setrlimit(Int32(RLIMIT_NOFILE.rawValue), &l) == 0
    }()

    /// A worker hands its entries over once they reference this many directories (the
    /// chunks queued ahead of the reader, and the batches the pass holds, hold them open).
    /// From the open-file limit: the chunks in flight (queued ahead and for the unit being
    /// read, one per walker being filled or handed over, and the pass's batches) stay well below it.
    static let directoriesPerChunk: Int = {
        var l = rlimit()
        let limit = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &l) == 0 ? Int(clamping: l.rlim_cur) : 1024
        return max(16, min(256, (limit - 512) / (ScanStream.maxQueuedChunks + ScanStream.maxReadingChunks + 2 * Scanner.defaultWalkers + 12)))
    }()
}

struct ScanCancelled: Error {}

/// Entries of one unit handed from a worker to the reader.
struct ScanChunk {
    var table: ManifestTable
    /// Regular files with more than one link: (entry index in `table`, dev, ino).
    var links: [(Int, UInt64, UInt64)]
    var warnings: [String]
    /// The directory holding each entry (runs: first entry index, directory).
    var parents: [(start: Int, dir: DirectoryHandle)]
    /// Device and inode of each entry, as stat'ed by the scan.
    var identities: [ScanIdentity]
    /// With `ScanContentReads`: each entry's content as read by the walker (nil: not read);
    /// empty without. `contentBytes` is their size.
    var contents: [Result<PrefetchedContent, LeftOutError>?] = []
    var contentBytes = 0
}

/// One piece of the walk: `name` in the directory open as `parent`, whose relative path is
/// `prefix`; `descend` walks everything below it.
struct ScanUnit: Sendable {
    var parent: DirectoryHandle
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
    let counter: ScanCounter
    let oneFileSystem: Bool
    let skipDirectories: [(dev: UInt64, ino: UInt64, name: String)]
    let readXattrs: Bool
    let xattrsLeftToReader: Bool
    let fileXattrsLeftToReader: Bool
    let markers: ExcludeMarkers
    let contentReads: ScanContentReads?
}

/// Small files read by the walkers (`Scanner.readsSmallFiles`), bounded in bytes: the chunks
/// not yet taken by the reader hold at most about `limit` (a walker that finds it reached stats
/// the next files by name, as without content reads, and the pass reads those: so a tree of
/// larger small files is read partly here, partly by the pass, and the memory does not grow
/// with the number of walkers), a chunk is handed over at `chunkBytes`, files up to
/// `maxFileSize` (larger ones are read by the pass).
final class ScanContentReads: Sendable {
    static let maxFileSize: UInt64 = 1 << 20
    static let limit = 2 << 20
    static let chunkBytes = 256 << 10
    let detectIncompressible: Bool
    private let held = Atomic<Int>(0)

    init(detectIncompressible: Bool) { self.detectIncompressible = detectIncompressible }

    var hasRoom: Bool { held.load(ordering: .relaxed) < Self.limit }
    func add(_ n: Int) { held.add(n, ordering: .relaxed) }
    /// The reader took a chunk holding `n` bytes of content.
    func release(_ n: Int) { held.subtract(n, ordering: .relaxed) }
}

/// Counts entries across threads and reports progress now and then.
final class ScanCounter: Sendable {
    private let counts = Mutex((total: 0, reported: 0))
    let progress: (@Sendable (Int) -> Void)?
    init(progress: (@Sendable (Int) -> Void)?) { self.progress = progress }
    func add(_ n: Int) {
        guard let progress else { return }
        counts.withLock { c in
            c.total += n
            if c.total - c.reported >= 4096 { c.reported = c.total; progress(c.total) }
        }
    }
}

/// Walks one part of the tree into its own table.
final class ScanWorker: @unchecked Sendable {
    let context: ScanContext
    var table = ManifestTable()
    var warnings: [String] = []
    /// Regular files with more than one link: (entry index, dev, ino).
    var links: [(Int, UInt64, UInt64)] = []
    /// The directory of each entry of `table` (runs) and each entry's device and inode.
    var parents: [(start: Int, dir: DirectoryHandle)] = []
    var identities: [ScanIdentity] = []
    /// Contents read (parallel to `table`, in a unit's worker with `ScanContentReads`).
    var contents: [Result<PrefetchedContent, LeftOutError>?] = []
    var contentBytes = 0
    /// This worker reads small files when the scan does (`ScanContentReads`).
    var readsContent = false
    /// Directories referenced by the entries held (a chunk goes out at `directoriesPerChunk`).
    private var directoriesHeld = 0
    /// Receives the entries so far every `chunkEntries` entries (and at the end of `run`);
    /// nil keeps everything in `table` (the top of the tree).
    var output: ((ScanChunk) throws -> Void)?
    let chunkEntries: Int
    /// 1024 entries per chunk for up to 4 walkers, fewer for more (512 at 8, 256 at 16): the
    /// chunks the walkers fill hold about as many entries in all, whatever their number.
    static func chunkEntries(walkers: Int) -> Int { max(256, min(1024, 4096 / max(1, walkers))) }
    private var pathBuf: [CChar] = []
    /// getdents64 buffer, reused for every directory of this worker.
    private var direntBuffer: [UInt8] = []
    private var uncounted = 0

    package struct InodeKey: Hashable { var dev: UInt64; var ino: UInt64 }

    init(_ context: ScanContext, chunkEntries: Int = 1024) {
        self.context = context
        self.chunkEntries = chunkEntries
    }

    /// The names in the directory open as `fd`, whose relative path is `path` (for a warning;
    /// `fd` stays open, its read offset moves, which does not matter to the *at calls made
    /// with it).
    func readNames(_ fd: Int32, path: @autoclosure () -> String) -> [DirectoryName] {
        var names = DirectoryNames()
        readNames(fd, into: &names, path: path())
        return (0 ..< names.count).map { names[$0] }
    }

    /// The same into one buffer (`walk`: no Array per name).
    func readNames(_ fd: Int32, into names: inout DirectoryNames, path: @autoclosure () -> String) {
        if let err = DirectoryReader.readNames(fd, into: &names, buffer: &direntBuffer) {
            warn("cannot read directory \(path()): \(Sys.strerror(err)); its contents are not in this backup")
        }
    }

    /// Walks `unit`; its entries stay in `table` after the last full chunk went out: several
    /// units can share one chunk, and `finish()` hands out the rest.
    func run(_ unit: ScanUnit) throws {
        pathBuf = unit.prefix.map { CChar(bitPattern: $0) }
        _ = try process(unit.parent, name: unit.name, prefixLength: pathBuf.count, parentDev: unit.parentDev, descend: unit.descend)
    }

    @discardableResult
    func process(_ dir: DirectoryHandle, name: DirectoryName, prefixLength: Int, parentDev: UInt64, descend: Bool = true) throws -> (DirectoryHandle, [UInt8], UInt64)? {
        try name.bytes.withUnsafeBytes {
            try process(dir, name: $0, type: name.type, prefixLength: prefixLength, parentDev: parentDev, descend: descend)
        }
    }

    /// Hands out the entries still held (after the last `run`).
    func finish() throws {
        flushCount()
        direntBuffer = []
        try flushChunk()
    }

    /// Entries handed out so far (all of them after `finish()`).
    private(set) var produced = 0

    private func flushChunk() throws {
        guard let output, !(table.count == 0 && warnings.isEmpty) else { return }
        table.shrinkToFit()
        let c = ScanChunk(table: table, links: links, warnings: warnings, parents: parents, identities: identities,
                          contents: contents, contentBytes: contentBytes)
        produced += table.count
        table = ManifestTable()
        links = []
        warnings = []
        parents = []
        identities = []
        contents = []
        contentBytes = 0
        directoriesHeld = 0
        try output(c)
    }

    /// Processes one name in directory `dfd` whose relative path is `prefix`, without
    /// descending (see `process(_:name:prefixLength:parentDev:descend:)`).
    func process(_ dir: DirectoryHandle, prefix: [UInt8], name: DirectoryName, parentDev: UInt64) -> (DirectoryHandle, [UInt8], UInt64)? {
        pathBuf = prefix.map { CChar(bitPattern: $0) }
        // Without an output nothing throws.
        return try! process(dir, name: name, prefixLength: pathBuf.count, parentDev: parentDev, descend: false)
    }

    /// Processes one name in directory `dir` whose relative path is `pathBuf[0..<prefixLength]`.
    /// `parentDev` is the file system of `dir`. When the entry is a directory and `descend` is
    /// false, returns it open, its path and st_dev; otherwise walks it.
    /// (`name` is the entry's bytes and `type` readdir's `d_type` for it.)
    @discardableResult
    func process(_ dir: DirectoryHandle, name: UnsafeRawBufferPointer, type: UInt8, prefixLength: Int, parentDev: UInt64,
                 descend: Bool = true) throws -> (DirectoryHandle, [UInt8], UInt64)? {
        let dfd = dir.fd
        // Build "<prefix>/<name>\0" in pathBuf.
        pathBuf.removeSubrange(prefixLength...)
        var nameStart = prefixLength
        if prefixLength > 0 { pathBuf.append(0x2F); nameStart += 1 }
        pathBuf.append(contentsOf: name.bindMemory(to: CChar.self))
        pathBuf.append(0)
        let fullLength = pathBuf.count - 1
        let excluded = pathBuf.withUnsafeBufferPointer { context.excludes.matches(path: $0.baseAddress!, nameStart: nameStart) }
        if excluded { return nil }
        let reads = output != nil && readsContent ? context.contentReads : nil
        guard let (st, opened, fileFd) = statEntry(dfd, nameStart: nameStart, type: type, fullLength: fullLength, reads: reads) else { return nil }
        var dirFd = opened
        defer { if fileFd >= 0 { close(fileFd) } }
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
            // Left to the reader (see `xattrsLeftToReader`, `fileXattrsLeftToReader`), or read
            // here: most entries have none, and listxattrat relative to the directory says so
            // without a walk of the absolute path; anything else is read through the directory.
            if context.xattrsLeftToReader || (context.fileXattrsLeftToReader && e.type == .file) {
                e.flags |= ManifestEntry.flagXattrsUnread
            } else if dirFd >= 0 {
                e.xattrHash = xattrHash(.fd(dirFd))
            } else if !pathBuf.withUnsafeBufferPointer({ XattrAt.certainlyNone(dfd, $0.baseAddress! + nameStart) }) {
                e.xattrHash = pathBuf.withUnsafeBufferPointer { xattrHash(.at(dfd, $0.baseAddress! + nameStart)) }
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
            if st.st_nlink > 1 { links.append((table.count, UInt64(st.st_dev), UInt64(st.st_ino))) }
        }
        if let reads {
            var content: Result<PrefetchedContent, LeftOutError>?
            if fileFd >= 0 && st.st_nlink == 1 && e.size > 0 && e.size <= ScanContentReads.maxFileSize {
                content = readContent(fileFd, size: e.size, xattrs: e.flags & ManifestEntry.flagXattrsUnread != 0, reads)
                if case .success = content { contentBytes += Int(e.size) }
            }
            contents.append(content)
        }
        table.append(e)
        identities.append(ScanIdentity(dev: UInt64(st.st_dev), ino: UInt64(st.st_ino)))
        if parents.last?.dir !== dir {
            parents.append((table.count - 1, dir))
            directoriesHeld += 1
        }
        uncounted += 1
        if uncounted >= 1024 { flushCount() }
        if output != nil && (table.count >= chunkEntries || directoriesHeld >= ScanLimits.directoriesPerChunk
                             || contentBytes >= ScanContentReads.chunkBytes) { try flushChunk() }
        if e.type == .directory {
            let cfd = dirFd >= 0 ? dirFd : pathBuf.withUnsafeBufferPointer { openat(dfd, $0.baseAddress! + nameStart, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            dirFd = -1
            if cfd < 0 {
                let err = errno
                warn("cannot read directory \(currentPath(fullLength)): \(Sys.strerror(err)); its contents are not in this backup")
                return nil
            }
            if mountPoint && context.oneFileSystem { close(cfd); return nil }
            let child = DirectoryHandle(fd: cfd)
            if !context.markers.isEmpty,
               let marker = context.markers.marker(in: cfd, path: currentPath(fullLength), warn: warn) {
                // A cache or marked directory: only the marker goes in with it.
                try process(child, name: DirectoryName(bytes: marker, type: 0), prefixLength: fullLength,
                            parentDev: UInt64(st.st_dev), descend: true)
                return nil
            }
            if !descend { return (child, pathBuf[0 ..< fullLength].map { UInt8(bitPattern: $0) }, UInt64(st.st_dev)) }
            try walk(child, prefixLength: fullLength, dev: UInt64(st.st_dev))
        }
        return nil
    }

    /// The stat of `name` (at `nameStart` in `pathBuf`, `fullLength` its end) in directory `dfd`.
    /// A directory (as readdir says) is opened first and stat'ed through its fd: one path lookup
    /// instead of two. So is a regular file when the walkers read small files and have room
    /// (`reads`), opened the way it is read (`SourceFile.openAt`). Anything else, or an entry that
    /// cannot be opened so or is of another type by then (swapped since readdir: closed unread),
    /// is stat'ed by name. Returns the stat and the descriptor opened (-1: none), which the caller
    /// closes, or nil when it cannot be stat'ed (warned, unless it vanished).
    private func statEntry(_ dfd: Int32, nameStart: Int, type: UInt8, fullLength: Int,
                           reads: ScanContentReads?) -> (stat, dirFd: Int32, fileFd: Int32)? {
        var st = stat()
        if type == DirectoryName.directoryType {
            let fd = pathBuf.withUnsafeBufferPointer { openat(dfd, $0.baseAddress! + nameStart, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            if fd >= 0 {
                if fstat(fd, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR { return (st, fd, -1) }
                close(fd)
            }
        } else if type == DirectoryName.regularType, let reads, reads.hasRoom {
            let fd = (try? pathBuf.withUnsafeBufferPointer { n throws(SysError) in try SourceFile.openAt(dfd, n.baseAddress! + nameStart) }) ?? -1
            if fd >= 0 {
                if fstat(fd, &st) == 0 && st.st_mode & S_IFMT == S_IFREG { return (st, -1, fd) }
                close(fd)
            }
        }
        guard pathBuf.withUnsafeBufferPointer({ fstatat(dfd, $0.baseAddress! + nameStart, &st, AT_SYMLINK_NOFOLLOW) }) == 0 else {
            let err = errno
            if err != ENOENT { warn("cannot stat \(currentPath(fullLength)): \(Sys.strerror(err)); skipped") }
            return nil
        }
        return (st, -1, -1)
    }

    /// Reads the small regular file open as `fd` (its `fstat` is the scan's) whole, as the
    /// pass's read-ahead does (`ArchiveWriter.read`: the fstat after the read gives the size and
    /// mtime the pass compares with the scan), and its xattrs from the same descriptor if asked.
    /// From the page cache only: a walker never waits on the disk for content (so its disk
    /// reads are the walk's own, `walkReadsDisk`), and a file not all cached, or whose read
    /// fails, is left to the pass (nil), which reads it and applies the `LeftOut` rules.
    private func readContent(_ fd: Int32, size: UInt64, xattrs: Bool, _ reads: ScanContentReads) -> Result<PrefetchedContent, LeftOutError>? {
        switch ArchiveWriter.read(openFile: fd, size: size, detectIncompressible: reads.detectIncompressible, cachedOnly: true) {
        case .failure: return nil
        case .success(var c):
            if xattrs { c.xattrs = Archive.readXattrs(.fd(fd)) }
            reads.add(Int(size))
            return .success(c)
        }
    }

    /// Walks one directory.
    private func walk(_ dir: DirectoryHandle, prefixLength: Int, dev: UInt64) throws {
        var names = DirectoryNames()
        readNames(dir.fd, into: &names, path: currentPath(prefixLength))
        for i in 0 ..< names.count {
            _ = try names.withName(i) { try process(dir, name: $0, type: $1, prefixLength: prefixLength, parentDev: dev, descend: true) }
        }
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

/// A path for display: escaped by the toolkit's one rule (`NameEscape`: controls, format
/// characters, line separators, backslashes and bytes that are not UTF-8), never raw bytes.
package func displayPath(_ bytes: some Collection<UInt8>) -> String { NameEscape.escape(bytes) }

/// A 64-bit digest of a file's extended attributes (names and values, sorted by name); 0 when
/// it has none. The corresponding libc calls are `llistxattr`/`flistxattr` and `lgetxattr`/`fgetxattr`.
func xattrHash(_ source: XattrSource) -> UInt64 {
    xattrDigest(readXattrs(source).map { (Array($0.name.utf8), $0.value) })
}

/// The digest `ManifestEntry.xattrHash` keeps, of a set of extended attributes as read from a
/// file or from a tar header (names as bytes; sorted by name here, a name given twice counts
/// once): SHA-256 over each name, a NUL, the value's length (u64 little-endian) and the value,
/// first 8 bytes little-endian; 0 for none (1 if the digest happens to be 0).
func xattrDigest(_ attrs: [(name: [UInt8], value: [UInt8])]) -> UInt64 {
    guard !attrs.isEmpty else { return 0 }
    var h = SHA256Hasher()
    var last: [UInt8]?
    for (name, value) in attrs.sorted(by: { $0.name.lexicographicallyPrecedes($1.name) }) where name != last {
        last = name
        h.update(name + [0])
        var n = UInt64(value.count).littleEndian
        withUnsafeBytes(of: &n) { h.update($0) }
        h.update(value)
    }
    let d = h.finalize()
    let v = d.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    return v == 0 ? 1 : v
}
