// `hs-backup find`: every backup of a set that holds a path matching a glob, as one timeline
// per path (which backups hold which version, and where it is absent), so a person sees when a
// file changed and when it went away.
//
// All manifests are read side by side in path order (a merge), member by member: memory is a
// member's matches per backup, whatever the number of files. Backups of one set share most
// manifest members (an incremental copies the unchanged ones, named by their SHA-256), and the
// matches of a member are kept by that name, so a member shared by 30 backups is decoded once.
// The distinct members are decoded ahead on two threads (`MemberPrefetch`), in about the order
// the merge needs them; a member is walked entry by entry (no table built) and only a matching
// entry is kept.
import Backup
import Gzip
import Support

/// One version of a matched path in one backup.
package struct FoundVersion: Equatable, Sendable {
    package var entry: ManifestEntry
    package var link: [UInt8]

    package static func == (a: FoundVersion, b: FoundVersion) -> Bool {
        let x = a.entry, y = b.entry
        return x.type == y.type && x.mode == y.mode && x.uid == y.uid && x.gid == y.gid && x.size == y.size
            && x.mtime == y.mtime && x.hash == y.hash && x.xattrHash == y.xattrHash && a.link == b.link
    }
}

/// A matched path and its version in each backup (nil: not in that backup), oldest first.
package struct FoundPath: Sendable {
    package var path: [UInt8]
    package var versions: [FoundVersion?]

    /// Runs of backups holding one version: (first index, last index, version or nil for absent).
    package var runs: [(first: Int, last: Int, version: FoundVersion?)] {
        var out: [(first: Int, last: Int, version: FoundVersion?)] = []
        for (i, v) in versions.enumerated() {
            if let l = out.last, l.version == v { out[out.count - 1].last = i } else { out.append((i, i, v)) }
        }
        return out
    }
}

/// Finds paths matching globs in every backup of a set.
package final class Finder {
    package let set: BackupSet
    package let ids: [String]
    private let patterns: ExcludeSet
    /// Members decoded (the rest were shared with a member already read).
    package private(set) var membersDecoded = 0
    package private(set) var membersRead = 0
    private let cache = ByteBoundedCache<String, MemberMatches>(maxBytes: 32 << 20)
    private let threads: Int
    private var prefetch: MemberPrefetch?
    private var scratch = MatchScratch()

    /// - Parameters:
    ///   - patterns: globs as `--exclude` takes them: without `/` they match a name at any depth,
    ///     with `/` whole components at any depth, a leading `/` anchors at the backup's root.
    ///   - threads: threads decoding members ahead of the merge (0: the merge decodes them).
    package init(set: BackupSet, ids: [String], patterns: [String], threads: Int = 2) {
        self.set = set
        self.ids = ids
        self.patterns = ExcludeSet(patterns: patterns, includeDefaults: false)
        self.threads = threads
    }

    /// Calls `body` for every matching path, in path order.
    /// - Returns: how many paths matched.
    @discardableResult
    package func run(progress: (Int, Int) -> Void = { _, _ in }, _ body: (FoundPath) throws -> Void) throws -> Int {
        let manifests = try ids.map { try set.manifestMembers($0) }
        let prefetch = threads > 0 ? MemberPrefetch(manifests, patterns: patterns, threads: threads) : nil
        self.prefetch = prefetch
        defer { prefetch?.stop(); self.prefetch = nil }
        let streams = manifests.map { MatchStream(members: $0) }
        for s in streams { try s.advance(self) }
        var found = 0
        while true {
            var minimum: Match?
            for s in streams {
                guard let h = s.head else { continue }
                if let m = minimum, (h.path.withUnsafeBytes { a in m.path.withUnsafeBytes { comparePaths(a, $0) } }) >= 0 { continue }
                minimum = h
            }
            guard let m = minimum else { break }
            var versions = [FoundVersion?](repeating: nil, count: streams.count)
            for (k, s) in streams.enumerated() where s.head?.path == m.path {
                versions[k] = FoundVersion(entry: s.head!.entry, link: s.head!.link)
                try s.advance(self)
            }
            try body(FoundPath(path: m.path, versions: versions))
            found += 1
            if found % 64 == 0 { progress(found, membersRead) }
        }
        return found
    }

    /// The matches of member `i` of `members`: from the cache, decoded ahead, or decoded here.
    fileprivate func matches(_ members: ManifestMembers, _ i: Int) throws -> MemberMatches {
        membersRead += 1
        let key = members.identity(i)
        if let m = cache.get(key) { return m }
        membersDecoded += 1
        let m = try prefetch?.take(key) ?? MemberMatches(members, i, patterns: patterns, scratch: &scratch)
        cache.put(key, m, bytes: m.bytes)
        return m
    }
}

/// A matching entry of a member.
struct Match: Sendable {
    var path: [UInt8]
    var entry: ManifestEntry
    var link: [UInt8]
}

/// What a reusing decoder of members needs: an inflate buffer and a C string of the path.
struct MatchScratch: ~Copyable {
    let decoder = GzipMemberDecoder(maxOutput: 2 << 20)
    var path: [UInt8] = []
}

/// The matching entries of one manifest member, with its first and last paths (to check the
/// order across members).
struct MemberMatches: Sendable {
    var matches: [Match]
    var first: [UInt8]
    var last: [UInt8]
    var bytes: Int { matches.reduce(first.count + last.count + 64) { $0 + $1.path.count + $1.link.count + 200 } }

    static let none = MemberMatches(matches: [], first: [], last: [])

    init(matches: [Match], first: [UInt8], last: [UInt8]) {
        self.matches = matches; self.first = first; self.last = last
    }

    /// Walks member `i` of `members` (checked as `ManifestMembers.table` checks it) and keeps
    /// the entries whose path `patterns` matches.
    init(_ members: ManifestMembers, _ i: Int, patterns: ExcludeSet, scratch: inout MatchScratch) throws {
        var list: [Match] = []
        var first: [UInt8]?
        var cpath = scratch.path
        defer { scratch.path = cpath }
        let last = try members.forEachEntry(i, decoder: scratch.decoder) { e, path, link in
            if first == nil { first = Array(path) }
            // The path as a C string for fnmatch (a copy into one reused buffer).
            cpath.removeAll(keepingCapacity: true)
            cpath.append(contentsOf: path)
            cpath.append(0)
            let nameStart = path.lastIndex(of: UInt8(ascii: "/")).map { $0 + 1 } ?? 0
            let hit = cpath.withUnsafeBufferPointer {
                $0.withMemoryRebound(to: CChar.self) { patterns.matches(path: $0.baseAddress!, nameStart: nameStart) }
            }
            if hit {
                list.append(Match(path: Array(path), entry: e, link: Array(link)))
            }
        }
        self.init(matches: list, first: first ?? [], last: last)
    }
}

/// The matches of one backup's manifest, member by member.
private final class MatchStream {
    let members: ManifestMembers
    private var index = -1
    private var current = MemberMatches.none
    private var position = 0
    private var previousLast: [UInt8]?

    init(members: ManifestMembers) { self.members = members }

    var head: Match? { position < current.matches.count ? current.matches[position] : nil }

    /// Moves to the next match (reading on through members without any).
    func advance(_ finder: Finder) throws {
        if index >= 0 { position += 1 }
        while position >= current.matches.count {
            index += 1
            guard index < members.count else { current = .none; position = 0; return }
            current = try finder.matches(members, index)
            position = 0
            // Members are read one by one: their order is checked across them here.
            if let p = previousLast, !current.first.isEmpty,
               (p.withUnsafeBytes { a in current.first.withUnsafeBytes { comparePaths(a, $0) } }) >= 0 {
                throw ToolError("manifest \(members.name) is damaged (entries out of order at \(NameEscape.escape(current.first)));"
                                + " it cannot be used. Run `hs-backup verify`.")
            }
            if !current.last.isEmpty { previousLast = current.last }
        }
    }
}

/// Decodes the distinct members of a set of manifests ahead of a merge that reads them all, on
/// `threads` threads, in the order of member indexes across the manifests (members of backups
/// of one set cover about the same paths at the same index: the order a path-order merge needs
/// them in). At most `window` results wait to be taken. A member the merge asks for that no
/// thread has started is left to the merge (`take` returns nil), so the merge never waits for
/// a member that is not being decoded.
private final class MemberPrefetch: Sendable {
    private struct Job: Sendable {
        var members: ManifestMembers
        var index: Int
        var key: String
    }
    private struct State {
        var next = 0
        var ready: [String: Result<MemberMatches, any Error>] = [:]
        var readyBytes = 0
        var running: Set<String> = []
        var claimed: Set<String> = []
        var stopped = false
    }
    private static var roomFreed: Int { 0 }
    private static var decoded: Int { 1 }
    private let monitor = Monitor(State(), conditions: 2)
    private let jobs: [Job]
    private let pool: WorkPool
    private static let window = 8
    private static let maxReadyBytes = 16 << 20

    init(_ manifests: [ManifestMembers], patterns: ExcludeSet, threads: Int) {
        var jobs: [Job] = []
        var seen: Set<String> = []
        for i in 0 ..< (manifests.map(\.count).max() ?? 0) {
            for m in manifests where i < m.count {
                let key = m.identity(i)
                if seen.insert(key).inserted { jobs.append(Job(members: m, index: i, key: key)) }
            }
        }
        self.jobs = jobs
        pool = WorkPool(threads: threads, name: "find-decode")
        for _ in 0 ..< threads {
            // Each thread loops over the jobs; a job's error is handed to the merge with its
            // result. A new pool refuses nothing; if it did, the merge would decode those members.
            do { try pool.submit { [self] in work(patterns) } } catch { break }
        }
    }

    private func work(_ patterns: ExcludeSet) {
        var scratch = MatchScratch()
        let jobs = jobs
        while true {
            let job: Job? = monitor.withLock(waitingOn: Self.roomFreed, until: { s in
                s.stopped || s.next >= jobs.count || (s.ready.count < Self.window && s.readyBytes < Self.maxReadyBytes)
            }) { s in
                while s.next < jobs.count, s.claimed.contains(jobs[s.next].key) { s.next += 1 }
                guard !s.stopped, s.next < jobs.count else { return nil }
                let j = jobs[s.next]
                s.next += 1
                s.claimed.insert(j.key)
                s.running.insert(j.key)
                return j
            }
            guard let job else { return }
            let result = Result { try MemberMatches(job.members, job.index, patterns: patterns, scratch: &scratch) }
            monitor.withLock { s in
                s.running.remove(job.key)
                s.ready[job.key] = result
                s.readyBytes += (try? result.get())?.bytes ?? 0
            }
            monitor.wakeAll(Self.decoded)
        }
    }

    /// The matches of the member named `key` when a thread decoded it (waiting while one is
    /// decoding it); nil when none started it (the caller decodes it: no thread will).
    func take(_ key: String) throws -> MemberMatches? {
        let r = monitor.withLock(waitingOn: Self.decoded, until: { !$0.running.contains(key) }) { s -> Result<MemberMatches, any Error>? in
            guard let r = s.ready.removeValue(forKey: key) else {
                s.claimed.insert(key)
                return nil
            }
            s.readyBytes -= (try? r.get())?.bytes ?? 0
            return r
        }
        monitor.wakeAll(Self.roomFreed)
        return try r?.get()
    }

    /// Stops the threads (after the member each is decoding) and waits for them.
    func stop() {
        monitor.withLock { $0.stopped = true }
        monitor.wakeAll(Self.roomFreed)
        pool.close()
    }
}
