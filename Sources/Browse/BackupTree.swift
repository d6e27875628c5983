// One backup as a tree the mount can walk without reading its whole manifest for every call:
// the first path of each manifest member (to find the member holding a path by binary
// search), and how many hardlinks name each file (its st_nlink). Both come from one pass over
// the members when the backup is first opened (a walk of each member's entries on two threads,
// no table built); members shared with a backup already opened (same SHA-256) are not decoded
// again. Member tables are kept in a cache bounded by bytes,
// shared by every backup of the mount.
import Backup
import Gzip
import Support
import Synchronization

/// An entry of a backup by place: member and index in it.
package struct EntryRef: Hashable, Sendable {
    package var member: Int
    package var index: Int
}

/// What one pass over a member records (kept per member identity, for every backup).
struct MemberSummary: Sendable {
    var first: [UInt8]
    var last: [UInt8]
    var count: Int
    /// The targets named by hardlink entries of the member.
    var linkTargets: [[UInt8]]
}

/// Decoded manifest members by identity (least recently used dropped past a byte bound), and
/// what one pass over each recorded (kept for every member seen: a few paths each).
package final class MemberTableCache: Sendable {
    private let tables: ByteBoundedCache<String, ManifestTable>
    private let summaries = Mutex<[String: MemberSummary]>([:])

    package init(maxBytes: Int = 96 << 20) { tables = ByteBoundedCache(maxBytes: maxBytes) }

    /// Member `i` of `members`, decoded (or from the cache).
    package func table(_ members: ManifestMembers, _ i: Int) throws -> ManifestTable {
        let key = members.identity(i)
        if let t = tables.get(key) { return t }
        let t = try members.table(i)
        let summary = Self.summarise(t)
        summaries.withLock { $0[key] = summary }
        tables.put(key, t, bytes: t.records.count + t.strings.count)
        return t
    }

    /// The summary of member `i`: recorded when it was decoded, or from one walk over its
    /// entries (checked as `table` checks them, no table built, nothing else kept).
    /// - Parameter decoder: inflates into its reused buffer (one per thread).
    func summary(_ members: ManifestMembers, _ i: Int, decoder: GzipMemberDecoder? = nil) throws -> MemberSummary {
        let key = members.identity(i)
        if let s = summaries.withLock({ $0[key] }) { return s }
        var first: [UInt8]?
        var count = 0
        var links: [[UInt8]] = []
        let last = try members.forEachEntry(i, decoder: decoder) { e, path, link in
            if first == nil { first = Array(path) }
            count += 1
            if e.type == .hardlink { links.append(Array(link)) }
        }
        let s = MemberSummary(first: first ?? [], last: last, count: count, linkTargets: links)
        summaries.withLock { $0[key] = s }
        return s
    }

    private static func summarise(_ t: ManifestTable) -> MemberSummary {
        var links: [[UInt8]] = []
        for k in 0 ..< t.count {
            let e = t.entry(k)
            if e.type == .hardlink { links.append(Array(t.linkBytes(e))) }
        }
        return MemberSummary(first: t.count > 0 ? t.pathBytes(t.entry(0)) : [], last: t.count > 0 ? t.pathBytes(t.entry(t.count - 1)) : [],
                             count: t.count, linkTargets: links)
    }
}

/// One backup, indexed for lookups by path.
package final class BackupTree: Sendable {
    package let id: String
    package let members: ManifestMembers
    private let firstPaths: [[UInt8]]
    private let linkCounts: [[UInt8]: UInt32]
    private let cache: MemberTableCache
    /// Most entries one member may hold (inode numbers give it 14 bits).
    package static let maxEntriesPerMember = 1 << 14

    /// Reads every member once (on a few threads), checking their order across members.
    /// - Throws: `ToolError` when the manifest is damaged.
    package init(id: String, members: ManifestMembers, cache: MemberTableCache) throws {
        self.id = id
        self.members = members
        self.cache = cache
        let n = members.count
        let results = Mutex([MemberSummary?](repeating: nil, count: n))
        let threads = 2
        let pool = WorkPool(threads: threads, name: "hs-mount-index")
        defer { pool.close() }
        try pool.forEach(0 ..< threads, chunk: 1) { t in
            let decoder = GzipMemberDecoder(maxOutput: 2 << 20)
            for i in stride(from: t, to: n, by: threads) {
                let s = try cache.summary(members, i, decoder: decoder)
                results.withLock { $0[i] = s }
            }
        }
        let summaries = results.withLock { $0.map { $0! } }
        var counts: [[UInt8]: UInt32] = [:]
        for (i, s) in summaries.enumerated() {
            guard s.count > 0, s.count <= Self.maxEntriesPerMember else {
                throw ToolError("manifest \(members.name) is damaged (member \(i) holds \(s.count) entries); it cannot be used. Run `hs-backup verify`.")
            }
            if i > 0, (summaries[i - 1].last.withUnsafeBytes { a in s.first.withUnsafeBytes { comparePaths(a, $0) } }) >= 0 {
                throw ToolError("manifest \(members.name) is damaged (entries out of order at \(NameEscape.escape(s.first))); "
                                + "it cannot be used. Run `hs-backup verify`.")
            }
            for t in s.linkTargets { counts[t, default: 0] += 1 }
        }
        firstPaths = summaries.map(\.first)
        linkCounts = counts
    }

    /// The decoded member `m`.
    package func table(_ m: Int) throws -> ManifestTable { try cache.table(members, m) }

    /// How many names the file at `path` has (1 + the hardlinks naming it).
    package func nlink(_ path: [UInt8]) -> UInt32 { 1 + (linkCounts[path] ?? 0) }

    /// The entry with exactly this path.
    package func find(_ path: [UInt8]) throws -> EntryRef? {
        guard let m = lastMember(where: { p in path.withUnsafeBytes { comparePaths(p, $0) } <= 0 }) else { return nil }
        guard let i = try table(m).find(bytes: path) else { return nil }
        return EntryRef(member: m, index: i)
    }

    /// The first entry after `path` (after its whole subtree with `skippingBelow`), nil at the end.
    package func firstAfter(_ path: [UInt8], skippingBelow: Bool) throws -> EntryRef? {
        func before(_ p: UnsafeRawBufferPointer) -> Bool {
            path.withUnsafeBytes { comparePaths(p, $0) } <= 0 || (skippingBelow && BackupPath.isBelow(Array(p), path))
        }
        let m = lastMember(where: before) ?? 0
        let t = try table(m)
        var lo = 0, hi = t.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if t.withPath(t.entry(mid), before) { lo = mid + 1 } else { hi = mid }
        }
        if lo < t.count { return EntryRef(member: m, index: lo) }
        return m + 1 < firstPaths.count ? EntryRef(member: m + 1, index: 0) : nil
    }

    /// The entry after `r` in path order.
    package func next(_ r: EntryRef) throws -> EntryRef? {
        if r.index + 1 < (try table(r.member)).count { return EntryRef(member: r.member, index: r.index + 1) }
        return r.member + 1 < firstPaths.count ? EntryRef(member: r.member + 1, index: 0) : nil
    }

    /// The entries directly in directory `dir` ("" for the top), in path order.
    package func children(_ dir: [UInt8]) throws -> [EntryRef] {
        var out: [EntryRef] = []
        var at = dir.isEmpty ? (firstPaths.isEmpty ? nil : EntryRef(member: 0, index: 0)) : try firstAfter(dir, skippingBelow: false)
        while let r = at {
            let t = try table(r.member)
            let e = t.entry(r.index)
            let path = t.pathBytes(e)
            guard BackupPath.isBelow(path, dir) else { break }
            out.append(r)
            at = e.type == .directory ? try firstAfter(path, skippingBelow: true) : try next(r)
        }
        return out
    }

    /// The entry at `r` with its path and link.
    package func entry(_ r: EntryRef) throws -> (entry: ManifestEntry, path: [UInt8], link: [UInt8]) {
        let t = try table(r.member)
        guard r.index < t.count else { throw ToolError("entry \(r.index) of member \(r.member) is past its end") }
        let e = t.entry(r.index)
        return (e, t.pathBytes(e), Array(t.linkBytes(e)))
    }

    /// The last member whose first path satisfies `before` (a predicate true up to some member).
    private func lastMember(where before: (UnsafeRawBufferPointer) -> Bool) -> Int? {
        var lo = 0, hi = firstPaths.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if firstPaths[mid].withUnsafeBytes(before) { lo = mid + 1 } else { hi = mid }
        }
        return lo == 0 ? nil : lo - 1
    }
}
