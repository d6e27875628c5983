// The sets in a destination (`hs-backup list` without --name) and the checks that a
// destination and a set exist before list, verify and prune touch them.
import Backup
import FoundationEssentials
import Glibc
import Storage
import Support

/// One backup set in a destination (`hs-backup list --json` without `--name`).
package struct SetSummary: Codable, Sendable, Equatable {
    package var name: String
    package var backups: Int
    /// Id of the newest committed backup, nil when the set has none.
    package var latest: String?
    /// Its start time, ISO 8601 in UTC (`...Z`).
    package var latestTime: String?
    /// True while a run holds the set's lock (or a dead run left it).
    package var locked: Bool

    enum CodingKeys: String, CodingKey {
        case name, backups, latest, locked
        case latestTime = "latest_time"
    }
}

package enum BackupSets {
    /// Fails unless the destination's directory exists.
    /// - Parameter option: the option it came from (`copy` reads from `--from`).
    /// - Throws: `ToolError` (exit 1) naming the destination.
    package static func requireDestination(_ dest: any Destination, option: String = "--to") throws {
        guard let st = try dest.stat(""), st.kind == .directory || st.kind == .symlink else {
            throw ToolError("the destination \(NameEscape.escape(dest.displayName)) does not exist (or is not a directory). Check \(option); "
                            + "`hs-backup run` creates it on the first backup.")
        }
    }

    /// Fails unless the destination and the set's directory exist; names the sets there.
    package static func requireSet(_ dest: any Destination, _ name: String, option: String = "--to") throws {
        try requireDestination(dest, option: option)
        if let st = try dest.stat(name), st.kind == .directory { return }
        let sets = try list(dest).map(\.name)
        throw ToolError("no backup set '\(NameEscape.escape(name))' in \(NameEscape.escape(dest.displayName)); "
                        + (sets.isEmpty ? "there are no sets there yet." : "the sets there are: \(sets.map { NameEscape.escape($0) }.joined(separator: ", ")). Choose one with --name."))
    }

    /// The sets in a destination: directories holding at least one manifest or a lock, by name.
    package static func list(_ dest: any Destination, option: String = "--to") throws -> [SetSummary] {
        try requireDestination(dest, option: option)
        var out: [SetSummary] = []
        for entry in try dest.list("") where entry.kind == .directory && !entry.name.hasPrefix(".") {
            let files = try dest.list(entry.name)
            let ids = files.filter { $0.kind == .file && $0.name.hasSuffix(".manifest") }
                .map { String($0.name.dropLast(".manifest".count)) }.sorted()
            let locked = files.contains { $0.name == "lock" }
            guard !ids.isEmpty || locked else { continue }
            let set = BackupSet(destination: dest, name: entry.name)
            let time = ids.last.flatMap { try? set.keylessRecord($0) }.map { Format.time($0.started) }
            out.append(SetSummary(name: entry.name, backups: ids.count, latest: ids.last, latestTime: time, locked: locked))
        }
        return out
    }
}
