// `hs-backup diff`: what changed between two backups, from their manifests alone: the two
// are walked side by side in path order. A member that both manifests hold (same SHA-256:
// the later backup copied it from the earlier one) holds the same entries on both sides and
// is skipped without being decoded, so a small change in a large tree reads little.
import Backup
import Support

/// One kind of change of an entry present in both backups.
package enum DiffAspect: String, CaseIterable, Sendable {
    case type, content, mode, owner, xattrs, mtime
}

/// One path that differs.
package struct DiffItem: Sendable {
    package var path: [UInt8]
    package var old: (entry: ManifestEntry, link: [UInt8])?
    package var new: (entry: ManifestEntry, link: [UInt8])?
    /// For a path in both: what changed (never empty).
    package var aspects: [DiffAspect]

    /// `+` added, `-` removed, `M` type or content changed, `U` metadata only.
    package var letter: String {
        if old == nil { return "+" }
        if new == nil { return "-" }
        return aspects.contains(.type) || aspects.contains(.content) ? "M" : "U"
    }

    /// What changed, for people: `content`, `mode 0644 -> 0600`, `owner 0:0 -> 1000:1000`,
    /// `type file -> symlink`, `xattrs changed`, `mtime`.
    package var details: [String] {
        guard let o = old?.entry, let n = new?.entry else { return [] }
        return aspects.map { a in
            switch a {
            case .type: "type \(o.type.name) -> \(n.type.name)"
            case .content: o.type == .file ? "content" : "target \(NameEscape.escape(old!.link)) -> \(NameEscape.escape(new!.link))"
            case .mode: "mode \(EntryText.octalMode(o.mode)) -> \(EntryText.octalMode(n.mode))"
            case .owner: "owner \(o.uid):\(o.gid) -> \(n.uid):\(n.gid)"
            case .xattrs: "xattrs changed"
            case .mtime: "mtime"
            }
        }
    }
}

/// Counts of a diff.
package struct DiffSummary: Sendable, Equatable {
    package var added = 0, removed = 0, changed = 0
    package var aspects: [DiffAspect: Int] = [:]
    package var membersSkipped = 0
}

/// Compares two backups of one set.
package struct Differ {
    package var set: BackupSet
    package var from: String
    package var to: String

    package init(set: BackupSet, from: String, to: String) {
        self.set = set; self.from = from; self.to = to
    }

    /// What changed in `old` -> `new` (same path), or [] when nothing did.
    package static func aspects(_ o: ManifestEntry, _ oldLink: [UInt8], _ n: ManifestEntry, _ newLink: [UInt8],
                                xattrsComparable: Bool) -> [DiffAspect] {
        if o.type != n.type { return [.type] }
        var out: [DiffAspect] = []
        switch o.type {
        case .file: if o.size != n.size || o.hash != n.hash { out.append(.content) }
        case .symlink, .hardlink: if oldLink != newLink { out.append(.content) }
        case .directory: break
        }
        if o.mode & 0o7777 != n.mode & 0o7777 { out.append(.mode) }
        if o.uid != n.uid || o.gid != n.gid { out.append(.owner) }
        if xattrsComparable && o.xattrHash != n.xattrHash { out.append(.xattrs) }
        if o.type != .directory && o.mtime != n.mtime { out.append(.mtime) }
        return out
    }

    /// Calls `body` for every path that differs, in path order.
    package func run(_ body: (DiffItem) throws -> Void) throws -> DiffSummary {
        let a = MemberCursor(try set.manifestMembers(from)), b = MemberCursor(try set.manifestMembers(to))
        let xattrs = a.members.header.hasXattrHashes && b.members.header.hasXattrHashes
        var summary = DiffSummary()
        func emit(_ item: DiffItem) throws {
            if item.old == nil { summary.added += 1 } else if item.new == nil { summary.removed += 1 } else {
                summary.changed += 1
                for x in item.aspects { summary.aspects[x, default: 0] += 1 }
            }
            try body(item)
        }
        while true {
            if let x = a.identityAtStart, x == b.identityAtStart {
                a.skipMember(); b.skipMember(); summary.membersSkipped += 1
                continue
            }
            let ea = try a.current(), eb = try b.current()
            guard ea != nil || eb != nil else { break }
            let c: Int
            if let ea, let eb { c = ea.path.withUnsafeBytes { p in eb.path.withUnsafeBytes { comparePaths(p, $0) } } } else { c = ea == nil ? 1 : -1 }
            if c < 0 {
                try emit(DiffItem(path: ea!.path, old: (ea!.entry, ea!.link), new: nil, aspects: []))
                a.step()
            } else if c > 0 {
                try emit(DiffItem(path: eb!.path, old: nil, new: (eb!.entry, eb!.link), aspects: []))
                b.step()
            } else {
                let x = Self.aspects(ea!.entry, ea!.link, eb!.entry, eb!.link, xattrsComparable: xattrs)
                if !x.isEmpty { try emit(DiffItem(path: ea!.path, old: (ea!.entry, ea!.link), new: (eb!.entry, eb!.link), aspects: x)) }
                a.step(); b.step()
            }
        }
        return summary
    }
}

/// Walks a manifest's entries member by member; a member not yet decoded can be skipped.
final class MemberCursor {
    let members: ManifestMembers
    private var member = 0
    private var table: ManifestTable?
    private var index = 0
    private var previousLast: [UInt8]?

    init(_ members: ManifestMembers) { self.members = members }

    /// The identity of the member about to be read, when no entry of it was read yet.
    var identityAtStart: String? { table == nil && member < members.count ? members.identity(member) : nil }

    func skipMember() {
        member += 1; table = nil; index = 0; previousLast = nil
    }

    /// The entry at the cursor, nil at the end.
    func current() throws -> (path: [UInt8], entry: ManifestEntry, link: [UInt8])? {
        while true {
            if table == nil {
                guard member < members.count else { return nil }
                let t = try members.table(member)
                if let p = previousLast, t.count > 0,
                   (p.withUnsafeBytes { a in t.withPath(t.entry(0)) { comparePaths(a, $0) } }) >= 0 {
                    throw ToolError("manifest \(members.name) is damaged (entries out of order at "
                                    + "\(NameEscape.escape(t.pathBytes(t.entry(0))))); it cannot be used. Run `hs-backup verify`.")
                }
                table = t; index = 0
            }
            let t = table!
            if index < t.count {
                let e = t.entry(index)
                return (t.pathBytes(e), e, Array(t.linkBytes(e)))
            }
            previousLast = t.count > 0 ? t.pathBytes(t.entry(t.count - 1)) : previousLast
            member += 1; table = nil
        }
    }

    func step() { index += 1 }
}
