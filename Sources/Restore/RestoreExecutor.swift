import Archive
import FoundationEssentials
import Glibc
import Support

/// The one restore executor: entries from any `RestoreSource` into a target directory (or
/// counted and listed, in a dry run), with one target preparation, one `--only` filter, one
/// path normaliser and one damage report for every source.
///
///     let source = try ArchiveStreamSource(FileByteSource(path: "/mnt/backups/io/x.tar.gz"))
///     let executor = RestoreExecutor(target: "/opt/appdata.new", policy: RestorePolicy(),
///                                    selection: PathSelection([Array("plex".utf8)]))
///     let summary = try executor.run(source)
package final class RestoreExecutor {
    package let target: String
    package let policy: RestorePolicy
    package let selection: PathSelection
    /// Splits the normal-form paths of the entries (a directory's components shared by its files,
    /// names left in the paths).
    private var splitter = RestorePath.Splitter()

    package init(target: String, policy: RestorePolicy = RestorePolicy(), selection: PathSelection = .everything) {
        self.target = target
        self.policy = policy
        self.selection = selection
    }

    /// Counts (and hands to `each`) what a restore of `source` would create; reads no content
    /// and writes nothing.
    /// - Throws: `RestoreError` (a refused path, `--only` matching nothing), or the source's
    ///   `ArchiveError` (wrapped as `.source`).
    package func dryRun(_ source: any RestoreSource, each: (TarEntry) -> Void = { _ in }) throws -> RestoreSummary {
        let started = Date()
        var summary = RestoreSummary(source: source.name, target: target, dryRun: true)
        var matched = MatchTracker(selection)
        do {
            while var p = try source.next(content: false) {
                guard try normalise(&p.entry) != nil else { continue }
                let e = p.entry
                guard selection.selects(e.path, isDirectory: e.type == .directory) else { summary.counts.skipped += 1; continue }
                matched.note(e.path)
                summary.counts.count(e)
                each(e)
            }
            try source.finish()
        } catch let e as ArchiveError {
            throw RestoreError.source(e, possiblyWrong: [], more: 0)
        }
        try matched.check(source: source.name, restoredOthers: false)
        summary.warnings = source.warnings
        summary.seconds = Date().timeIntervalSince(started)
        return summary
    }

    /// Restores `source` into the target.
    /// - Parameter onFile: called for each regular file restored (progress).
    /// - Throws: `RestoreError`; for damage found after files were written, `.source` names the
    ///   files written from the damaged part.
    package func run(_ source: any RestoreSource, onFile: ((TarEntry) -> Void)? = nil) throws -> RestoreSummary {
        let started = Date()
        let prepared = try prepareTarget()
        let writer = try TreeWriter(target: target, policy: policy, fresh: prepared.fresh)
        defer { writer.close() }
        writer.deferMissingLinkTargets = !selection.isEmpty
        var recent = RecentFiles()
        writer.onFile = { e in recent.position = max(recent.position, source.position); recent.add(e); onFile?(e) }
        var matched = MatchTracker(selection)
        var top: TarEntry?
        // Directories selected only because an --only path lies below them: written when
        // something below them is, so an --only that matches nothing writes nothing.
        var ancestors: [(entry: TarEntry, parts: RestorePath.Parts)] = []
        // One closure for every file (made per file, it was a heap object allocated and freed each time).
        let readContent: FileJob.Content = { try source.readContent($0) }
        do {
            while var p = try source.next(content: true) {
                guard let (parts, stripped) = try normalise(&p.entry) else { top = selection.isEmpty ? p.entry : top; continue }
                let e = p.entry
                guard selection.selects(e.path, isDirectory: e.type == .directory) else { writer.skip(); continue }
                if !selection.isEmpty {
                    if selection.matches(e.path).isEmpty { ancestors.append((e, parts)); continue }
                    let above = ancestors.filter { RestorePath.isBelow(e.path, $0.entry.path) }
                    for a in above { try writer.write(a.entry, parts: a.parts) }
                    if !above.isEmpty { ancestors.removeAll { RestorePath.isBelow(e.path, $0.entry.path) } }
                }
                matched.note(e.path)
                try writer.write(e, parts: parts, stripped: stripped, expectedSHA256: p.expectedSHA256, origin: p.origin,
                                 content: e.type == .file ? readContent : nil)
                recent.position = source.position
                recent.forget(upTo: source.verifiedUpTo)
            }
            try source.finish()
            try writer.finish()
            if !writer.pendingLinks.isEmpty { try restorePendingLinks(writer, source) }
        } catch let error {
            // The files queued before the failure finish first (`onFile` sees them), then the
            // report names those written from the part of the stream not verified.
            writer.settle()
            throw damageReport(error, recent: &recent, source: source)
        }
        let c = writer.counts
        let wroteSomething = c.files + c.directories + c.symlinks + c.hardlinks + c.fifos > 0
        if !matched.allMatched, prepared.created, !wroteSomething { removeEmptyTarget() }
        try matched.check(source: source.name, restoredOthers: wroteSomething)
        var warnings = source.warnings + writer.warnings
        if let top, policy.applyTopDirectory { warnings += try applyTopDirectory(top, writer) }
        var summary = RestoreSummary(source: source.name, target: target, dryRun: false, counts: writer.counts)
        summary.warnings = warnings + writer.notes.warnings
        summary.seconds = Date().timeIntervalSince(started)
        return summary
    }

    /// Puts the entry's path in normal form (in place: a copy of the entry per entry cost two
    /// outlined copies and a destroy); its parts (parent components, name), and whether a leading "/" was stripped.
    /// nil (the entry unchanged) for the archive's own "." (or an empty name) as a directory.
    /// - Throws: `RestoreError.refused` for "..", NUL bytes, or a non-directory naming the target.
    private func normalise(_ e: inout TarEntry) throws(RestoreError) -> (RestorePath.Parts, Bool)? {
        if RestorePath.isNormalWithoutNUL(e.path) {
            return (splitter.split(e.path), false)
        }
        // "./a/b" (GNU tar of a directory's "."): the rest as it is, when that is normal (checked
        // in place, then the "./" removed in place: no copy of the path per entry).
        if e.path.count > 2 && e.path[0] == UInt8(ascii: ".") && e.path[1] == UInt8(ascii: "/"), RestorePath.isNormalWithoutNUL(e.path[2...]) {
            e.path.removeFirst(2)
            return (splitter.split(e.path), false)
        }
        let (comps, stripped) = try RestorePath.components(e.path)
        if comps.isEmpty {
            if e.type == .directory { return nil }
            throw .refused(.emptyPath, entry: NameEscape.escape(e.path), detail: "an entry other than a directory names the target itself")
        }
        e.path = RestorePath.join(comps)
        return (RestorePath.Parts(parent: Array(comps.dropLast()), nameStart: e.path.count - comps.last!.count), stripped)
    }

    /// Damage (a CRC, a truncation) found after files were written names those files; every
    /// error leaves the target holding what was completed before it.
    private func damageReport(_ error: any Error, recent: inout RecentFiles, source: any RestoreSource) -> any Error {
        let archive: ArchiveError
        switch error {
        case let e as ArchiveError: archive = e
        case RestoreError.source(let e, let wrong, _) where wrong.isEmpty: archive = e
        default: return error
        }
        guard archive.isDamage else { return RestoreError.source(archive, possiblyWrong: [], more: 0) }
        recent.forget(upTo: source.verifiedUpTo)
        return RestoreError.source(archive, possiblyWrong: recent.names, more: recent.more)
    }

    /// Hardlinks whose target `--only` left out: a second pass over the source restores each
    /// target's content at the first link's path and links the others to it.
    private func restorePendingLinks(_ writer: TreeWriter, _ source: any RestoreSource) throws {
        var byTarget: [[UInt8]: [TarEntry]] = [:]
        for p in writer.pendingLinks { var l = p.entry; l.path = p.link; byTarget[p.target, default: []].append(l) }
        try source.revisit(Set(byTarget.keys)) { p in
            guard let links = byTarget.removeValue(forKey: RestorePath.normalised(p.entry.path)) else { return }
            var first = p.entry
            first.path = links[0].path
            try writer.write(first, parts: RestorePath.Parts(first.path), expectedSHA256: p.expectedSHA256, origin: p.origin,
                             content: { try source.readContent($0) })
            for var l in links.dropFirst() {
                l.linkTarget = links[0].path
                try writer.write(l, parts: RestorePath.Parts(l.path))
            }
        }
        try writer.finish()
        if let (t, links) = byTarget.first {
            throw RestoreError.missingLinkTarget(entry: NameEscape.escape(links[0].path), target: NameEscape.escape(t), hint: "is not in the archive")
        }
    }

    /// The archive's "." entry: its mode and mtime (owner as root) go to the target, as GNU
    /// tar does; a warning when that makes the target writable by group or others.
    private func applyTopDirectory(_ top: TarEntry, _ writer: TreeWriter) throws -> [String] {
        try writer.applyTopDirectory(top)
        let m = writer.metadata.mode(top.mode)
        guard m & 0o022 != 0 else { return [] }
        return ["the archive's own '.' entry made \(target) writable by \(m & 0o020 != 0 ? "its group" : "")\(m & 0o022 == 0o022 ? " and " : "")\(m & 0o002 != 0 ? "everyone" : "") (mode \(String(m, radix: 8))), as GNU tar does; pass --no-overwrite-dir to keep the target's own mode and mtime"]
    }

    /// Creates the target if needed.
    /// - Returns: whether it was empty (or absent), and whether this restore created it.
    /// - Throws: `RestoreError.target` when it is not a directory, or not empty without
    ///   `allowNonEmptyTarget`, or cannot be made or listed.
    private func prepareTarget() throws(RestoreError) -> (fresh: Bool, created: Bool) {
        let st: FileStat?
        do { st = try Sys.stat(target) } catch { throw .target(.cannotOpen(error), path: target) }
        guard let st else {
            // mkdir itself, not FileManager: its CocoaError codes are not errnos.
            do { try Sys.makeDirectories(target, mode: 0o777) } catch { throw .target(.cannotCreate(error), path: target) }
            return (true, true)
        }
        guard st.isDirectory else { throw .target(.notADirectory, path: target) }
        // A target that cannot be read is not taken for an empty one (the rule above would not hold).
        let contents: [[UInt8]]
        do { contents = try Sys.directoryNames(target) } catch { throw .target(.cannotList(error), path: target) }
        if !contents.isEmpty && !policy.allowNonEmptyTarget { throw .target(.notEmpty(entries: contents.count), path: target) }
        return (contents.isEmpty, false)
    }

    private func removeEmptyTarget() { _ = rmdir(target) }
}

/// Which `--only` patterns selected something.
private struct MatchTracker {
    let selection: PathSelection
    var seen: [Bool]
    init(_ s: PathSelection) { selection = s; seen = [Bool](repeating: false, count: s.patterns.count) }

    var allMatched: Bool { !seen.contains(false) }

    mutating func note(_ path: [UInt8]) {
        if selection.isEmpty || allMatched { return }
        for i in selection.matches(path) { seen[i] = true }
    }

    func check(source: String, restoredOthers: Bool) throws(RestoreError) {
        let missing = seen.indices.filter { !seen[$0] }.map { selection.shown[$0] }
        if !missing.isEmpty { throw .onlyMatchedNothing(patterns: missing, source: source, restoredOthers: restoredOthers) }
    }
}

/// Names of files written since the last verified point of the stream (bounded).
private struct RecentFiles {
    var names: [String] = []
    var ends: [UInt64] = []
    var more = 0
    /// Source position when the last entry was handed to the writer.
    var position: UInt64 = 0
    mutating func add(_ e: TarEntry) {
        if names.count < 20 { names.append(NameEscape.escape(e.path)); ends.append(position) } else { more += 1 }
    }
    /// Drops files whose content lies before `verified` (their gzip CRC was checked).
    mutating func forget(upTo verified: UInt64) {
        var k = 0
        while k < ends.count && ends[k] <= verified { k += 1 }
        if k > 0 { names.removeFirst(k); ends.removeFirst(k) }
        if names.isEmpty { more = 0 }
    }
}
