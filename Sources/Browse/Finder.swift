// `hs-backup find`: every backup of a set that holds a path matching a glob, as one timeline
// per path (which backups hold which version, and where it is absent), so a person sees when a
// file changed and when it went away.
//
// All manifests are read side by side in path order (a merge), member by member: memory is a
// member's matches per backup, whatever the number of files. Backups of one set share most
// manifest members (an incremental copies the unchanged ones, named by their SHA-256), and the
// matches of a member are kept by that name, so a member shared by 30 backups is decoded once.
import Backup
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
    private let cache = ByteBoundedCache<String, MatchStream.Member>(maxBytes: 32 << 20)

    /// - Parameters:
    ///   - patterns: globs as `--exclude` takes them: without `/` they match a name at any depth,
    ///     with `/` whole components at any depth, a leading `/` anchors at the backup's root.
    package init(set: BackupSet, ids: [String], patterns: [String]) {
        self.set = set
        self.ids = ids
        self.patterns = ExcludeSet(patterns: patterns, includeDefaults: false)
    }

    /// Calls `body` for every matching path, in path order.
    /// - Returns: how many paths matched.
    @discardableResult
    package func run(progress: (Int, Int) -> Void = { _, _ in }, _ body: (FoundPath) throws -> Void) throws -> Int {
        let streams = try ids.map { MatchStream(members: try set.manifestMembers($0)) }
        for s in streams { try s.advance(self) }
        var found = 0
        while true {
            var minimum: MatchStream.Match?
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

    /// The matches of member `i` of `members`, decoded or from the cache.
    fileprivate func matches(_ members: ManifestMembers, _ i: Int) throws -> MatchStream.Member {
        membersRead += 1
        let key = members.identity(i)
        if let m = cache.get(key) { return m }
        membersDecoded += 1
        let table = try members.table(i)
        var list: [MatchStream.Match] = []
        var scratch: [CChar] = []
        for k in 0 ..< table.count {
            let e = table.entry(k)
            let hit = table.withPath(e) { p -> Bool in
                scratch.removeAll(keepingCapacity: true)
                var nameStart = 0
                for (j, b) in p.enumerated() {
                    scratch.append(CChar(bitPattern: b))
                    if b == UInt8(ascii: "/") { nameStart = j + 1 }
                }
                scratch.append(0)
                return patterns.matches(path: scratch, nameStart: nameStart)
            }
            if hit { list.append(.init(path: table.pathBytes(e), entry: e, link: Array(table.linkBytes(e)))) }
        }
        let first = table.count > 0 ? table.pathBytes(table.entry(0)) : []
        let last = table.count > 0 ? table.pathBytes(table.entry(table.count - 1)) : []
        let m = MatchStream.Member(matches: list, first: first, last: last)
        cache.put(key, m, bytes: m.bytes)
        return m
    }
}

/// The matches of one backup's manifest, member by member.
private final class MatchStream {
    struct Match {
        var path: [UInt8]
        var entry: ManifestEntry
        var link: [UInt8]
    }
    struct Member {
        var matches: [Match]
        var first: [UInt8]
        var last: [UInt8]
        var bytes: Int { matches.reduce(first.count + last.count + 64) { $0 + $1.path.count + $1.link.count + 200 } }
    }

    let members: ManifestMembers
    private var index = -1
    private var current = Member(matches: [], first: [], last: [])
    private var position = 0
    private var previousLast: [UInt8]?

    init(members: ManifestMembers) { self.members = members }

    var head: Match? { position < current.matches.count ? current.matches[position] : nil }

    /// Moves to the next match (reading on through members without any).
    func advance(_ finder: Finder) throws {
        if index >= 0 { position += 1 }
        while position >= current.matches.count {
            index += 1
            guard index < members.count else { current = Member(matches: [], first: [], last: []); position = 0; return }
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

