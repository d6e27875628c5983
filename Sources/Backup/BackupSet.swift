import Foundation
import Storage
import Support

/// The files of one backup set in `DEST/SET/`:
/// - `<id>.tar.gz`     the archive of backup `<id>` (absent when nothing changed)
/// - `<id>.manifest`   the commit record: a backup exists if and only if its manifest does
/// - `*.partial`, `*.tmp-<pid>`  temporary names of runs in progress (or killed)
/// - `lock`            see `SetLock`
/// Ids are UTC timestamps `20261127T030000Z` (plus `-N` when taken twice in one second), so
/// names sort by time.
package struct BackupSet {
    package let destination: any Destination
    package let name: String

    package init(destination: any Destination, name: String) {
        self.destination = destination
        self.name = name
    }

    package static func defaultName() -> String {
        let h = SetLock.hostName
        return String(h.split(separator: ".").first ?? Substring(h))
    }

    package func archivePath(_ id: String) -> String { "\(name)/\(id).tar.gz" }
    package func manifestPath(_ id: String) -> String { "\(name)/\(id).manifest" }
    package var location: String { "\(destination.displayName)/\(name)" }

    /// Ids of committed backups, oldest first. Empty when the set does not exist.
    package func committedIDs() throws -> [String] {
        guard let st = try destination.stat(name), st.kind == .directory else { return [] }
        return try destination.list(name)
            .filter { $0.kind == .file && $0.name.hasSuffix(".manifest") }
            .map { String($0.name.dropLast(".manifest".count)) }
            .sorted()
    }

    package func loadManifest(_ id: String) throws -> Manifest {
        let bytes: [UInt8]
        do { bytes = try destination.readAll(manifestPath(id)) } catch {
            throw ToolError("cannot read manifest \(location)/\(id).manifest: \(error)")
        }
        return try Manifest.decode(bytes, name: "\(location)/\(id).manifest")
    }

    /// A manifest's header, after checking the file's checksum (the table is not inflated).
    package func loadHeader(_ id: String) throws -> ManifestHeader {
        let bytes: [UInt8]
        do { bytes = try destination.readAll(manifestPath(id)) } catch {
            throw ToolError("cannot read manifest \(location)/\(id).manifest: \(error)")
        }
        return try Manifest.decodeHeader(bytes, name: "\(location)/\(id).manifest").0
    }

    /// Resolves "latest" or an id to a committed id.
    package func resolve(_ spec: String?) throws -> String {
        let ids = try committedIDs()
        guard !ids.isEmpty else {
            throw ToolError("no backups in \(location). Check --to/--from and --name (default: this host's short name).")
        }
        guard let spec, spec != "latest" else { return ids.last! }
        guard ids.contains(spec) else {
            throw ToolError("backup \(spec) not found in \(location); `hs-backup list` shows the ids (\(ids.suffix(3).joined(separator: ", ")) are the newest).", exitCode: 2)
        }
        return spec
    }

    /// Removes what dead runs left behind: temporary files, and archives whose manifest was
    /// never written (not committed). Only call while holding the set's lock.
    package func cleanUp() throws -> [String] {
        guard let st = try destination.stat(name), st.kind == .directory else { return [] }
        let entries = try destination.list(name)
        let manifests = Set(entries.filter { $0.name.hasSuffix(".manifest") }.map { $0.name.dropLast(".manifest".count) })
        var removed: [String] = []
        for e in entries where e.kind == .file {
            let n = e.name
            var dead = n.hasSuffix(".partial") || n.contains(".tmp-")
            if n.hasSuffix(".tar.gz") && !manifests.contains(n.dropLast(".tar.gz".count)) { dead = true }
            if dead {
                try destination.remove("\(name)/\(n)")
                removed.append(n)
            }
        }
        if !removed.isEmpty { try destination.syncDirectory(name) }
        return removed
    }

    /// A new id for a backup starting at `date`, later than every existing one.
    package func newID(at date: Date, existing: [String]) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        let base = f.string(from: date)
        var id = base
        var n = 1
        let taken = Set(existing)
        while taken.contains(id) { id = String(format: "%@-%02d", base, n); n += 1 }
        return id
    }
}
