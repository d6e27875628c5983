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
    /// The keys this command holds (SetKeys.swift): recipients to write, identities to read.
    package var keys = SetKeys()

    package init(destination: any Destination, name: String, keys: SetKeys = SetKeys()) {
        self.destination = destination
        self.name = name
        self.keys = keys
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
        do {
            let r = try openStored(manifestPath(id))
            defer { try? r.close() }
            bytes = try Manifest.readFully({ try r.read(at: $0, count: $1) }, at: 0, count: Int(r.size))
        } catch let e as EncryptionError { throw e } catch {
            throw ToolError("cannot read manifest \(location)/\(id).manifest: \(error)")
        }
        return try Manifest.decode(bytes, name: "\(location)/\(id).manifest")
    }

    /// The manifest of backup `id` as a stream of entries (format 3 is read member by member).
    package func openManifest(_ id: String) throws -> ManifestReader {
        let r: any DestinationReader
        do { r = try openStored(manifestPath(id)) } catch let e as EncryptionError { throw e } catch {
            throw ToolError("cannot read manifest \(location)/\(id).manifest: \(error)")
        }
        do {
            return try ManifestReader(size: r.size, name: "\(location)/\(id).manifest", read: { try r.read(at: $0, count: $1) },
                                      onClose: { try? r.close() })
        } catch {
            try? r.close()
            throw error
        }
    }

    /// A manifest's header, checked (format 3: the header's own SHA-256, read from the end of
    /// the file; older formats: the whole file's checksum). The entries are not read.
    package func loadHeader(_ id: String) throws -> ManifestHeader {
        let name = "\(location)/\(id).manifest"
        let r: any DestinationReader
        do { r = try openStored(manifestPath(id)) } catch let e as EncryptionError { throw e } catch {
            throw ToolError("cannot read manifest \(name): \(error)")
        }
        defer { try? r.close() }
        let head = try Manifest.readFully({ try r.read(at: $0, count: $1) }, at: 0, count: Manifest.magic3.count)
        if head == Manifest.magic3 {
            return try Manifest.readHeader3(size: r.size, name: name) { try r.read(at: $0, count: $1) }.0
        }
        let bytes = try Manifest.readFully({ try r.read(at: $0, count: $1) }, at: 0, count: Int(r.size))
        return try Manifest.decodeHeader(bytes, name: name).0
    }

    /// A manifest's header: what cleanup and prune need from every manifest without reading
    /// their entries (format 1/2: the header JSON at the start, without the file's checksum).
    package func peekHeader(_ id: String) throws -> ManifestHeader {
        let r = try openStored(manifestPath(id))
        defer { try? r.close() }
        let magic = Manifest.magic
        let head = try r.read(at: 0, count: magic.count + 4)
        if head.starts(with: Manifest.magic3) {
            return try Manifest.readHeader3(size: r.size, name: "\(location)/\(id).manifest") { try r.read(at: $0, count: $1) }.0
        }
        guard head.count == magic.count + 4, Array(head.prefix(magic.count)) == magic else {
            throw ToolError("\(location)/\(id).manifest is not a manifest")
        }
        let len = head.suffix(4).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        guard len > 0, len < 64 << 20 else { throw ToolError("\(location)/\(id).manifest: header length \(len)") }
        var json: [UInt8] = []
        while json.count < len {
            let chunk = try r.read(at: UInt64(magic.count + 4 + json.count), count: len - json.count)
            if chunk.isEmpty { throw ToolError("\(location)/\(id).manifest is truncated") }
            json += chunk
        }
        do { return try JSONDecoder().decode(ManifestHeader.self, from: Data(json)) } catch {
            throw ToolError("\(location)/\(id).manifest: the header is not valid JSON")
        }
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

    /// What `cleanUpReport` did.
    package struct Cleanup: Sendable, Equatable {
        /// Files removed (names in the set directory).
        package var removed: [String] = []
        /// Things left alone that a person should look at (orphan archives, unreadable manifests).
        package var warnings: [String] = []
    }

    /// Removes what dead runs left behind: temporary files (`*.partial`, `*.tmp-*`), and an
    /// archive that no committed manifest references AND that is newer than every committed
    /// backup (a run that died between renaming its archive and writing its manifest).
    ///
    /// A committed manifest's whole chain is sacred: an archive that any readable manifest
    /// references is never removed, whatever its own manifest's state. An unreferenced archive
    /// older than the newest backup (an orphan: its manifest was removed by hand, or by a prune
    /// that stopped half-way) is reported and kept. When a manifest cannot be read, no archive
    /// is removed (what it references is unknown). Only call while holding the set's lock.
    package func cleanUpReport() throws -> Cleanup {
        var out = Cleanup()
        guard let st = try destination.stat(name), st.kind == .directory else { return out }
        let entries = try destination.list(name)
        let committed = entries.filter { $0.kind == .file && $0.name.hasSuffix(".manifest") }
            .map { String($0.name.dropLast(".manifest".count)) }.sorted()
        var referenced = Set(committed)
        var unreadable: [String] = []
        for id in committed {
            do { referenced.formUnion(try keylessRecord(id).archives) } catch { unreadable.append(id) }
        }
        if !unreadable.isEmpty {
            out.warnings.append("cannot read the manifest of \(unreadable.joined(separator: ", ")) in \(location): no archive is removed by this cleanup. Run `hs-backup verify`.")
        }
        let newest = committed.last
        for e in entries where e.kind == .file {
            let n = e.name
            if n.hasSuffix(".partial") || n.contains(".tmp-") {
                try destination.remove("\(name)/\(n)")
                out.removed.append(n)
                continue
            }
            if n.hasSuffix(".index") {
                // The keyless index is written just before its manifest's rename: without the
                // manifest it is a leftover by the same rule as an archive, or damage.
                let id = String(n.dropLast(".index".count))
                if committed.contains(id) { continue }
                if unreadable.isEmpty, newest.map({ id > $0 }) ?? true {
                    try destination.remove("\(name)/\(n)")
                    out.removed.append(n)
                } else {
                    out.warnings.append("index \(location)/\(n) belongs to no backup (its manifest is gone); it is kept. Run `hs-backup verify`.")
                }
                continue
            }
            guard n.hasSuffix(".tar.gz") else { continue }
            let id = String(n.dropLast(".tar.gz".count))
            if referenced.contains(id) { continue }
            if unreadable.isEmpty, newest.map({ id > $0 }) ?? true {
                try destination.remove("\(name)/\(n)")
                out.removed.append(n)
            } else {
                out.warnings.append("archive \(location)/\(n) belongs to no backup (its manifest is gone and no backup reads it); it is kept. Remove it by hand if it is not needed.")
            }
        }
        if !out.removed.isEmpty { try destination.syncDirectory(name) }
        return out
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
