// The browse subcommands of hs-backup as the command line runs them: each takes an opened
// destination and a set, prints to stdout (text, or one JSON object with `--json`) and
// returns the exit code. Argument parsing lives in the executable.
import Backup
import FoundationEssentials
import Glibc
import Storage
import Support

/// What every browse command gets: where the set is, how to print.
package final class BrowseContext {
    package let destination: any Destination
    package let set: BackupSet
    package let json: Bool
    package let reporter: Reporter
    package let out = LineWriter()
    /// The JSON object being streamed, once begun (a failure closes it).
    package var stream: StreamedJSON?

    package init(destination: any Destination, set: String, keys: SetKeys = SetKeys(), json: Bool, reporter: Reporter) {
        self.destination = destination
        self.set = BackupSet(destination: destination, name: set, keys: keys)
        self.json = json
        self.reporter = reporter
    }

    /// The JSON members every browse command starts with.
    var head: [(String, String)] {
        [("destination", JSONText.string(destination.displayName)), ("set", JSONText.string(set.name))]
    }

    /// Runs a command's body; a failure after a JSON object was begun closes that object with
    /// the error (the caller's `toolMain` then must not print a second one).
    package func run(_ body: (BrowseContext) throws -> Int32) throws -> Int32 {
        do {
            let code = try body(self)
            try out.flush()
            return code
        } catch {
            let code = (error as? ToolError)?.exitCode ?? 1
            try? out.flush()
            if let s = stream, s.fail(HumanError.describe(error), exitCode: code) {
                Reporter.writeStderr("error: \(HumanError.describe(error))\n")
                return code
            }
            throw error
        }
    }
}

package enum BrowseCommands {
    /// `hs-backup ls`.
    package static func ls(_ c: BrowseContext, backup: String?, path: [UInt8], recursive: Bool) throws -> Int32 {
        var listing = Listing(set: c.set, backup: backup)
        listing.path = try BackupPath.normalise(path)
        listing.recursive = recursive
        let id = try c.set.resolve(backup)
        listing.backup = id
        if c.json {
            c.stream = try StreamedJSON(out: c.out, head: c.head + [("backup", JSONText.string(id)), ("path", JSONText.name(listing.path))],
                                        arrayKey: "entries")
        }
        let (_, n) = try listing.run { r in
            if let s = c.stream {
                try s.item(JSONText.object(EntryText.jsonFields(r.entry, path: r.path, link: r.link)))
            } else {
                try c.out.line(EntryText.line(r.entry, path: r.path, link: r.link))
            }
        }
        try c.stream?.finish([("count", "\(n)")])
        return 0
    }

    /// `hs-backup find`.
    package static func find(_ c: BrowseContext, patterns: [String]) throws -> Int32 {
        let ids = try c.set.committedIDs()
        guard !ids.isEmpty else { throw ToolError("no backups in \(c.set.location); nothing to search.") }
        let damage = findDamage(c.set, ids)
        for d in damage { c.reporter.warning(d) }
        let finder = Finder(set: c.set, ids: ids, patterns: patterns)
        if c.json {
            c.stream = try StreamedJSON(out: c.out, head: c.head + [("patterns", JSONText.array(patterns.map(JSONText.string))),
                                                                   ("backups", JSONText.array(ids.map(JSONText.string)))],
                                        arrayKey: "matches")
        }
        let width = ids.map(\.count).max()! * 2 + 4
        let n = try finder.run(progress: { found, _ in c.reporter.progress("find: \(found) paths matched") }) { f in
            if let s = c.stream {
                let runs = f.runs.compactMap { r -> String? in
                    guard let v = r.version else { return nil }
                    return JSONText.object([("first", JSONText.string(ids[r.first])), ("last", JSONText.string(ids[r.last]))]
                                           + EntryText.jsonFields(v.entry, path: f.path, link: v.link).filter { $0.0 != "path" })
                }
                try s.item(JSONText.object([("path", JSONText.name(f.path)), ("versions", JSONText.array(runs))]))
                return
            }
            c.reporter.endProgress()
            try c.out.line(NameEscape.escape(f.path))
            for r in f.runs {
                let span = r.first == r.last ? ids[r.first] : ids[r.first] + " .. " + ids[r.last]
                guard let v = r.version else {
                    try c.out.line("  " + EntryText.left(span, width) + "  absent")
                    continue
                }
                let e = v.entry
                var s = "  " + EntryText.left(span, width) + "  " + EntryText.modeString(e.type, e.mode) + "  "
                s += EntryText.left("\(e.uid)/\(e.gid)", 11) + EntryText.right(String(e.size), 12) + "  " + EntryText.time(e.mtime)
                if e.type == .file || e.type == .hardlink, !e.hash.isZero { s += "  sha256 " + String(e.hash.hex.prefix(16)) }
                if e.type == .symlink { s += "  -> " + NameEscape.escape(v.link) }
                if e.xattrHash != 0 { s += "  xattrs " + String(String(e.xattrHash, radix: 16).prefix(8)) }
                try c.out.line(s)
            }
        }
        c.reporter.endProgress()
        if let s = c.stream {
            try s.finish([("paths", "\(n)")] + (damage.isEmpty ? [] : [("damage", JSONText.array(damage.map(JSONText.string)))]))
        } else {
            try c.out.line("\(n) path\(n == 1 ? "" : "s") matched in \(ids.count) backup\(ids.count == 1 ? "" : "s") (\(ids.first!) .. \(ids.last!))"
                           + (damage.isEmpty ? "" : "; the set is damaged (see the warnings): the answer may be incomplete"))
        }
        c.reporter.detail("find: read \(finder.membersRead) manifest members, decoded \(finder.membersDecoded)")
        return damage.isEmpty ? 0 : 1
    }

    /// The set's damage as `list` reports it, for `find`, which searches every backup: a backup
    /// whose manifest is missing (its archive or index still there) is not searched, so the
    /// answer leaves it out and find exits 1, as it does when a manifest is damaged (that one
    /// stops it when read).
    private static func findDamage(_ set: BackupSet, _ ids: [String]) -> [String] {
        guard let contents = try? set.contents() else { return [] }
        var out: [String] = [], named = Set<String>()
        for d in contents.damage {
            if !ids.contains(d.id) && BackupID.seconds(of: d.id) != nil {
                if named.insert(d.id).inserted {
                    let left = contents.damage.filter { $0.id == d.id }.map(\.file)
                    out.append("backup \(d.id) is not searched: " + set.manifestMissing(d.id, left: left))
                }
            } else {
                out.append("damaged: \(d)")
            }
        }
        return out
    }

    /// `hs-backup diff`.
    package static func diff(_ c: BrowseContext, from: String, to: String) throws -> Int32 {
        let a = try c.set.resolve(from), b = try c.set.resolve(to)
        if c.json {
            c.stream = try StreamedJSON(out: c.out, head: c.head + [("from", JSONText.string(a)), ("to", JSONText.string(b))],
                                        arrayKey: "changes")
        }
        let summary = try Differ(set: c.set, from: a, to: b).run { item in
            if let s = c.stream {
                let status = item.old == nil ? "added" : item.new == nil ? "removed" : "changed"
                let type = (item.new ?? item.old)!.entry.type.name
                try s.item(JSONText.object([("path", JSONText.name(item.path)), ("status", JSONText.string(status)),
                                            ("type", JSONText.string(type)),
                                            ("what", JSONText.array(item.aspects.map { JSONText.string($0.rawValue) }))]))
                return
            }
            let d = item.details
            let slash = (item.new ?? item.old)!.entry.type == .directory ? "/" : ""
            try c.out.line(item.letter + "  " + NameEscape.escape(item.path) + slash + (d.isEmpty ? "" : "  (" + d.joined(separator: ", ") + ")"))
        }
        if let s = c.stream {
            let counts = DiffAspect.allCases.map { ($0.rawValue, "\(summary.aspects[$0] ?? 0)") }
            try s.finish([("added", "\(summary.added)"), ("removed", "\(summary.removed)"), ("changed", "\(summary.changed)"),
                          ("changed_by", JSONText.object(counts))])
        } else {
            let parts = DiffAspect.allCases.compactMap { a in summary.aspects[a].map { "\(a.rawValue) \($0)" } }
            try c.out.line("diff \(a) -> \(b): \(summary.added) added, \(summary.removed) removed, \(summary.changed) changed"
                           + (parts.isEmpty ? "" : " (" + parts.joined(separator: ", ") + ")"))
        }
        c.reporter.detail("diff: \(summary.membersSkipped) manifest members shared, not read")
        return 0
    }
}

extension BrowseCommands {
    /// `hs-backup dump`: the bytes on stdout (a directory as a tar stream, never to a terminal).
    package static func dump(_ c: BrowseContext, backup: String?, path: [UInt8]) throws -> Int32 {
        let id = try c.set.resolve(backup)
        let p = try BackupPath.normalise(path)
        let summary = try Dump(set: c.set, id: id, path: p).run(beforeTar: {
            if isatty(STDOUT_FILENO) == 1 {
                throw ToolError.usage("\(p.isEmpty ? "the backup" : NameEscape.escape(p)) is a directory: dump writes it as a tar stream, "
                                      + "not to a terminal. Pipe it: hs-backup dump ... | tar -xf - -C DIR, or redirect it to a file.")
            }
        }) { try c.out.write(bytes: $0) }
        try c.out.flush()
        c.reporter.detail("dumped \(p.isEmpty ? "backup \(id)" : NameEscape.escape(p)) from backup \(id): "
                          + (summary.isTar ? "tar stream of \(summary.entries) entries, " : "") + Format.bytes(summary.bytes))
        return 0
    }

    /// `hs-backup mount`: serves until unmounted; says where it mounted and how to leave.
    package static func mount(destination: any Destination, keys: SetKeys = SetKeys(), onlySet: String?, options: FuseMount.Options,
                              cacheMiB: Int, json: Bool, reporter: Reporter) throws -> Int32 {
        // Before the sets are read: without libfuse3 there is nothing to serve them with.
        try LibFuse.load()
        let tree = MountTree(destination: destination, keys: keys, onlySet: onlySet, cacheBytes: cacheMiB << 20)
        let sets = try tree.sets()
        if let only = onlySet, try BackupSet(destination: destination, name: only).committedIDs().isEmpty {
            throw ToolError("no backups in \(NameEscape.escape("\(destination.displayName)/\(only)")); nothing to mount. `hs-backup list --to \(NameEscape.escape(destination.displayName))` shows the sets.")
        }
        // Each set's newest manifest is opened before anything is mounted: an encrypted set
        // without --identity (or with a key that is not one of its recipients) is refused here,
        // saying what to do, rather than answering EIO to every read in the mount. (Damage is
        // left to the mount: the other backups stay readable.)
        for name in sets {
            let set = BackupSet(destination: destination, name: name, keys: keys)
            guard let newest = try set.committedIDs().last else { continue }
            do { _ = try set.manifestMembers(newest) } catch let e as EncryptionError { throw e } catch {}
        }
        let mount = FuseMount(tree: tree, options: options)
        let mp = options.mountpoint, shownMP = NameEscape.escape(mp)
        let signal = try mount.run {
            if json {
                Reporter.writeStdout(JSONText.object([("mountpoint", JSONText.string(mp)), ("destination", JSONText.string(destination.displayName)),
                                                      ("sets", JSONText.array(sets.map(JSONText.string)))]) + "\n")
            } else {
                Reporter.writeStderr("mounted \(NameEscape.escape(destination.displayName)) (\(sets.count) set\(sets.count == 1 ? "" : "s"): \(sets.map { NameEscape.escape($0) }.joined(separator: ", "))) "
                                     + "read-only at \(shownMP)\(options.allowOther ? " for every user (permissions checked)" : ", for this user only"). "
                                     + "Leave with Ctrl-C or: fusermount3 -u \(shownMP)\n")
            }
        }
        if !json { Reporter.writeStderr("unmounted \(mp)" + (signal > 0 ? " (signal \(signal))" : "") + "\n") }
        return 0
    }
}
