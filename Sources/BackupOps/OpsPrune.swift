// Prune: applies a `RetentionPolicy` to a backup set on its Destination.
//
// Reads only each backup's keyless index (kind, parent, start time, the archives it needs; for
// a backup made before indexes, its manifest's plaintext header): no key is needed,
// decides with `Retention.decide` (restic semantics; every archive a kept backup references is
// kept with its backup), and removes the others newest first. For each backup the archive and
// the index are renamed to `.partial`, then the manifest (the commit record) goes, then the
// `.partial` files: a prune stopped at any moment leaves only complete backups plus, at worst,
// `.partial` files that `BackupSet.cleanUpReport` settles (renamed back while the manifest is
// there, removed once it is gone).
//
// Holds the set's lock while removing (`--dry-run` takes no lock and changes nothing). A
// manifest whose header cannot be read is kept and reported, never removed.
import Backup
import FoundationEssentials
import Glibc
import Storage
import Support

/// One backup in a prune report.
package struct PruneEntry: Codable, Sendable, Equatable {
    package var id: String
    package var time: String
    package var kind: String
    /// Why it is kept (empty for removed ones).
    package var reasons: [String]
    /// Bytes of its archive and manifest.
    package var bytes: UInt64
}

/// The outcome of a prune (also the `--json` object).
package struct PruneReport: Codable, Sendable {
    package var set: String
    package var destination: String
    package var dryRun: Bool
    package var kept: [PruneEntry]
    package var removed: [PruneEntry]
    package var bytesFreed: UInt64
    package var warnings: [String]

    enum CodingKeys: String, CodingKey {
        case set, destination, kept, removed, warnings
        case dryRun = "dry_run", bytesFreed = "bytes_freed"
    }

    package var line: String {
        (dryRun ? "prune (dry run): would remove " : "prune: removed ")
            + "\(removed.count) backup\(removed.count == 1 ? "" : "s") (\(Format.bytes(bytesFreed))), kept \(kept.count)"
    }
}

/// Removes backups of a set by a retention policy.
package enum Pruner {
    /// Applies `policy` to the set.
    /// - Parameters:
    ///   - timeZone: decides where days, weeks and months begin; nil: local time (restic uses it too).
    ///   - dryRun: decide and report only.
    /// - Throws: `ToolError.usage` for an empty policy; `ToolError` when the set is locked or
    ///   a removal fails (backups removed before the failure stay removed; all are complete).
    package static func prune(set: BackupSet, policy: RetentionPolicy, dryRun: Bool,
                              timeZone: TimeZone? = nil, reporter: Reporter? = nil) throws -> PruneReport {
        guard !policy.isEmpty else {
            throw ToolError.usage("prune needs a policy: --keep-last N, --keep-hourly/--keep-daily/--keep-weekly/--keep-monthly/--keep-yearly N "
                                  + "and/or --keep-within DURATION (a prune without one would remove every backup)")
        }
        var warnings: [String] = []
        let lock = SetLock(destination: set.destination, set: set.name)
        if !dryRun {
            warnings += try lock.acquire(operation: "prune")
            let cleanup = try set.cleanUpReport()
            if !cleanup.removed.isEmpty { warnings.append("removed leftovers of an interrupted run: \(cleanup.removed.map(NameEscape.escape).joined(separator: ", "))") }
            if !cleanup.completed.isEmpty { warnings.append("completed the commit of \(cleanup.completed.map(NameEscape.escape).joined(separator: ", "))") }
            warnings += cleanup.warnings
        }
        defer { lock.release() }

        let ids = try set.committedIDs()
        var items: [RetentionItem] = []
        var headers: [String: KeylessRecord] = [:]
        var unreadable: [String] = []
        for id in ids {
            do {
                let h = try set.keylessRecord(id)
                headers[id] = h
                items.append(RetentionItem(id: id, date: Date(timeIntervalSince1970: h.started),
                                           kind: h.kind == "full" ? .full : .incremental, parent: h.parent,
                                           requires: Set(h.archives).subtracting([id])))
            } catch {
                unreadable.append(id)
                warnings.append("cannot read manifest \(NameEscape.escape(id)) (\(error)); keeping it. Run `hs-backup verify`.")
            }
        }
        let decision = Retention.decide(items, policy: policy, timeZone: timeZone)
        for m in decision.missingAncestors {
            warnings.append("backup \(NameEscape.escape(m.id)) needs \(NameEscape.escape(m.missing)), which is gone: \(NameEscape.escape(m.id)) cannot be restored completely")
        }

        let sizes = Dictionary((try? set.destination.list(set.name))?.map { ($0.name, $0.size) } ?? [], uniquingKeysWith: { a, _ in a })
        func entry(_ id: String, _ reasons: [String]) -> PruneEntry {
            let h = headers[id]
            let bytes = (sizes["\(id).tar.gz"] ?? 0) + (sizes["\(id).manifest"] ?? 0) + (sizes["\(id).index"] ?? 0)
            return PruneEntry(id: id, time: h.map { Format.time($0.started) } ?? "?", kind: h?.kind ?? "unreadable",
                              reasons: reasons, bytes: bytes)
        }
        var kept = decision.keep.map { entry($0.id, $0.reasons.map(\.description)) }
        kept += unreadable.map { entry($0, ["manifest unreadable"]) }
        var removed: [PruneEntry] = []
        var freed: UInt64 = 0
        for id in decision.remove {
            let e = entry(id, [])
            if !dryRun {
                // The archive first takes its `.partial` name (a prune stopped there leaves a
                // committed backup whose commit the next cleanup completes again), then the
                // manifest, the commit record, goes: from then on the `.partial` archive is
                // provably a leftover, which the next cleanup removes. Never an archive that no
                // manifest accounts for (that is damage, kept and reported).
                do {
                    // Its archive and keyless index, whichever it has.
                    let files = try [set.archivePath(id), set.indexPath(id)].filter { try set.destination.stat($0) != nil }
                    for f in files { try set.destination.rename(f, to: f + ".partial") }
                    try set.destination.remove(set.manifestPath(id))
                    try set.destination.syncDirectory(set.name)
                    for f in files { try set.destination.remove(f + ".partial") }
                } catch {
                    throw ToolError("prune stopped at backup \(id) in \(set.location): \(error). \(removed.count) newer backups were removed before it; every remaining backup is complete. Fix the cause and run prune again.")
                }
                reporter?.progress("removed \(id)")
            }
            removed.append(e)
            freed += e.bytes
        }
        if !dryRun && !removed.isEmpty { try set.destination.syncDirectory(set.name) }
        return PruneReport(set: set.name, destination: set.destination.displayName, dryRun: dryRun,
                           kept: kept, removed: removed, bytesFreed: freed, warnings: warnings)
    }
}
