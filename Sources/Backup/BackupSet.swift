#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import Storage
import Support

/// The files of one backup set in `DEST/SET/`:
/// - `<id>.tar.gz`     the archive of backup `<id>` (absent when nothing changed)
/// - `<id>.manifest`   the commit record: a backup exists if and only if its manifest does
/// - `*.partial`, `*.tmp-<pid>`  temporary names of runs in progress (or killed)
/// - `lock`            see `SetLock`
/// Ids are UTC timestamps `20261127T030000Z` that sort by name (`BackupID` has the rule).
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

    /// Where the archive `id`, which a committed manifest names, is stored now: `archivePath(id)`,
    /// or `<id>.tar.gz.partial` when a run or a copy stopped between its manifest's rename (the
    /// commit) and its archive's. Such an archive is whole (it was closed and synced before the
    /// manifest was renamed): readers take it under that name, and the next run's cleanup gives
    /// it its final name (`cleanUpReport`). Only for archives that committed manifests name.
    package func storedArchivePath(_ id: String) throws -> String {
        let path = archivePath(id)
        if try destination.stat(path) != nil { return path }
        let partial = path + ".partial"
        return try destination.stat(partial) != nil ? partial : path
    }

    /// Opens the archive `id` that a committed manifest names, where it is stored now
    /// (`storedArchivePath`), decrypting an encrypted set's by chunk (`openStored`).
    package func openArchive(_ id: String, stored: (any DestinationReader) -> any DestinationReader = { $0 }) throws -> any DestinationReader {
        try openStored(storedArchivePath(id), stored: stored)
    }
    package func manifestPath(_ id: String) -> String { "\(name)/\(id).manifest" }
    package var location: String { NameEscape.escape("\(destination.displayName)/\(name)") }   // for messages: escaped

    /// Ids of committed backups, oldest first. Empty when the set does not exist.
    package func committedIDs() throws -> [String] {
        try files().map(Self.committedIDs) ?? []
    }

    /// The committed ids among `files` (names of the set directory's files), oldest first.
    package static func committedIDs(_ files: [String]) -> [String] {
        files.filter { $0.hasSuffix(".manifest") }.map { String($0.dropLast(".manifest".count)) }.sorted()
    }

    /// The names of the set directory's files; nil when the set directory does not exist.
    func files() throws -> [String]? {
        guard let st = try destination.stat(name), st.kind == .directory else { return nil }
        return try destination.list(name).filter { $0.kind == .file }.map(\.name)
    }

    /// "DEST/SET/ID.manifest", for messages (escaped: an id is a file name in the set
    /// directory, which anyone who can write there chooses).
    package func manifestName(_ id: String) -> String { "\(location)/\(NameEscape.escape(id)).manifest" }

    /// The manifest file of backup `id`, decrypted as it is read when it is an age file
    /// (`openStored`, with this command's identities).
    /// - Throws: `EncryptionError` (no identity given, or none that decrypts it; exit 2),
    ///   else `ManifestError(.unreadable)`.
    func openManifestFile(_ id: String) throws -> any DestinationReader {
        do { return try openStored(manifestPath(id)) } catch let e as EncryptionError { throw e } catch {
            throw ManifestError(.unreadable("\(error)"), name: manifestName(id))
        }
    }

    /// The manifest of backup `id`, whole, in memory (small manifests and tests).
    /// - Throws: `ManifestError` (also when it holds another backup than `id`).
    package func loadManifest(_ id: String) throws -> Manifest {
        let bytes: [UInt8]
        do {
            let r = try openManifestFile(id)
            defer { try? r.close() }
            bytes = try Manifest.readFully({ try r.read(at: $0, count: $1) }, at: 0, count: Int(r.size))
        } catch let e as EncryptionError { throw e } catch let e as ManifestError { throw e } catch {
            throw ManifestError(.unreadable("\(error)"), name: manifestName(id))
        }
        let m = try Manifest.decode(bytes, name: manifestName(id))
        try checkID(m.header, id)
        return m
    }

    /// The manifest of backup `id` as a stream of entries (format 3 is read member by member).
    /// - Throws: `ManifestError` (also when it holds another backup than `id`).
    package func openManifest(_ id: String) throws -> ManifestReader {
        let r = try openManifestFile(id)
        do {
            let m = try ManifestReader(size: r.size, name: manifestName(id), read: { try r.read(at: $0, count: $1) },
                                       onClose: { try? r.close() })
            try checkID(m.header, id)
            return m
        } catch {
            try? r.close()
            throw error
        }
    }

    /// A manifest's header, checked (format 3: the header's own SHA-256, read from the end of
    /// the file; older formats: the whole file's checksum). The entries are not read.
    /// - Throws: `ManifestError` (also when it holds another backup than `id`).
    package func loadHeader(_ id: String) throws -> ManifestHeader {
        let name = manifestName(id)
        let r = try openManifestFile(id)
        defer { try? r.close() }
        let header: ManifestHeader
        let head = try Manifest.readFully({ try r.read(at: $0, count: $1) }, at: 0, count: Manifest.magic3.count)
        if head == Manifest.magic3 {
            header = try Manifest.readHeader3(size: r.size, name: name) { try r.read(at: $0, count: $1) }.0
        } else {
            let bytes = try Manifest.readFully({ try r.read(at: $0, count: $1) }, at: 0, count: Int(r.size))
            header = try Manifest.decodeHeader(bytes, name: name).0
        }
        try checkID(header, id)
        return header
    }

    /// A manifest's header: what cleanup and prune need from every manifest without reading
    /// their entries (format 1/2: the header JSON at the start, without the file's checksum).
    /// - Throws: `ManifestError` (also when it holds another backup than `id`).
    package func peekHeader(_ id: String) throws -> ManifestHeader {
        let name = manifestName(id)
        let r = try openManifestFile(id)
        defer { try? r.close() }
        let magic = Manifest.magic
        let head = try r.read(at: 0, count: magic.count + 4)
        let header: ManifestHeader
        if head.starts(with: Manifest.magic3) {
            header = try Manifest.readHeader3(size: r.size, name: name) { try r.read(at: $0, count: $1) }.0
        } else {
            guard head.count == magic.count + 4, Array(head.prefix(magic.count)) == magic else {
                throw Manifest.damaged(name, "not a manifest file")
            }
            let len = head.suffix(4).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
            guard len > 0, len < 64 << 20 else { throw Manifest.damaged(name, "header length \(len)") }
            var json: [UInt8] = []
            while json.count < len {
                let chunk = try r.read(at: UInt64(magic.count + 4 + json.count), count: len - json.count)
                if chunk.isEmpty { throw Manifest.damaged(name, "truncated") }
                json += chunk
            }
            do { header = try JSONDecoder().decode(ManifestHeader.self, from: Data(json)) } catch {
                throw Manifest.damaged(name, "the header is not valid JSON")
            }
        }
        try checkID(header, id)
        return header
    }

    /// A manifest is the backup its file name says, or it is damage.
    func checkID(_ header: ManifestHeader, _ id: String) throws {
        guard header.id == id else { throw ManifestError(.wrongID(holds: header.id), name: manifestName(id)) }
    }

    /// Resolves "latest" or an id to a committed id. `latest` is the newest id present: when
    /// that is not a sound committed backup (its manifest is gone and its archive is there, or
    /// its manifest holds another backup or cannot be read), it is refused rather than silently
    /// meaning an older backup.
    /// An id that names no committed backup but has files in the set (its archive or index) is
    /// a backup whose manifest is missing: damage (exit 1, `manifestMissing`), not a mistyped
    /// id (exit 2).
    package func resolve(_ spec: String?) throws -> String {
        let files = try files() ?? []
        let ids = Self.committedIDs(files)
        let latest = spec == nil || spec == "latest"
        // `latest` with no committed backup: the newest id that has files, if any.
        if let asked = latest ? (ids.isEmpty ? Self.idsPresent(files).last : nil) : spec, !ids.contains(asked) {
            // Not `.partial`: a run or prune stopped half-way, not a lost manifest.
            let left = files.filter { $0 == "\(asked).tar.gz" || $0 == "\(asked).index" }
            if !left.isEmpty {
                let shown = NameEscape.escape(asked)
                throw ToolError((latest ? "the newest backup, \(shown)," : "backup \(shown)") + " cannot be read: " + manifestMissing(asked, left: left))
            }
        }
        guard !ids.isEmpty else {
            throw ToolError("no backups in \(location). Check --to/--from and --name (default: this host's short name).")
        }
        guard let spec, spec != "latest" else {
            let c = try contents()
            // A commit stopped between the manifest's rename and the archive's is a whole backup
            // (`storedArchivePath`): it is `latest`.
            guard let newest = c.newestID, c.records[newest] != nil else {
                let why = c.damage.first { $0.id == c.newestID }?.what ?? "its manifest cannot be read"
                throw ToolError("the newest backup in \(location), \(c.newestID ?? "?"), is not usable: \(why). `latest` would mean an older backup: "
                                + "give --backup ID to use one (`hs-backup list` shows them) and run `hs-backup verify`.")
            }
            return newest
        }
        guard ids.contains(spec) else {
            throw ToolError("backup \(NameEscape.escape(spec)) not found in \(location); `hs-backup list` shows the ids "
                            + "(\(ids.suffix(3).map(NameEscape.escape).joined(separator: ", ")) are the newest).", exitCode: 2)
        }
        return spec
    }

    /// What a command says of backup `id` whose manifest is missing while `left` (its archive,
    /// its index: names in the set directory) is still there: the damage and what to do.
    package func manifestMissing(_ id: String, left: [String]) -> String {
        "its manifest \(NameEscape.escape(id)).manifest is missing (\(left.map(NameEscape.escape).joined(separator: ", ")) \(left.count == 1 ? "is" : "are") still in \(location)). "
            + "Put the manifest back from another copy of the set (one `hs-backup copy` made); `hs-backup verify` names the set's damage"
    }

    /// What `cleanUpReport` did.
    package struct Cleanup: Sendable, Equatable {
        /// Files removed (names in the set directory).
        package var removed: [String] = []
        /// Commits completed: `<id>.tar.gz.partial` renamed to `<id>.tar.gz` (its manifest was
        /// committed when the run stopped).
        package var completed: [String] = []
        /// Things left alone that a person should look at (damage, unreadable manifests).
        package var warnings: [String] = []
    }

    /// Finishes what dead runs left behind, removing only what is provably a leftover
    /// (`SetContents`): a `.partial` file of a backup that was never committed, `*.tmp-*`. An
    /// archive still named `<id>.tar.gz.partial` whose manifest is committed gets its final
    /// name (the run stopped between the two renames). Anything else that no manifest accounts
    /// for is damage: reported, never removed (a lost manifest must not cost its archive too).
    /// Only call while holding the set's lock.
    package func cleanUpReport() throws -> Cleanup {
        try cleanUpListing().report
    }

    /// `cleanUpReport`, and the names of the set directory's files after it (nil: no set
    /// directory), from the one listing it made: a backup run lists the set once (issue 23).
    package func cleanUpListing() throws -> (report: Cleanup, files: [String]?) {
        var out = Cleanup()
        let c = try contents()
        var after = c.files.map { Set($0) }
        for id in c.toComplete {
            try destination.rename(archivePath(id) + ".partial", to: archivePath(id))
            out.completed.append(id)
            after?.remove("\(id).tar.gz.partial"); after?.insert("\(id).tar.gz")
        }
        for id in c.indexesToComplete {
            try destination.rename(indexPath(id) + ".partial", to: indexPath(id))
            if !out.completed.contains(id) { out.completed.append(id) }
            after?.remove("\(id).index.partial"); after?.insert("\(id).index")
        }
        for n in c.leftovers {
            try destination.remove("\(name)/\(n)")
            out.removed.append(n)
            after?.remove(n)
        }
        if !c.unreadable.isEmpty {
            out.warnings.append("cannot read the manifest of \(c.unreadable.map(NameEscape.escape).joined(separator: ", ")) in \(location); what it needs is unknown. Run `hs-backup verify`.")
        }
        out.warnings += c.damage.map { "\($0) It is kept. Run `hs-backup verify`." }
        if !out.removed.isEmpty || !out.completed.isEmpty { try destination.syncDirectory(name) }
        return (out, after.map { Array($0) })
    }

    /// What the set directory holds, judged without a key: each backup by its keyless index
    /// (also one still named `.partial`), or, for a backup made before indexes, its manifest's
    /// plaintext header (`keylessRecord`); entries are not read.
    package func contents() throws -> SetContents {
        var c = SetContents()
        guard let files = try files() else { return c }
        c.files = files
        let manifests = Self.committedIDs(files)
        let names = Set(files)
        for id in manifests {
            do {
                let partialIndex = !names.contains("\(id).index") && names.contains("\(id).index.partial")
                c.records[id] = try judgedRecord(id, partialIndex: partialIndex)
            } catch let e as ManifestError where e.isDamage {
                c.damage.append(SetDamage(id: id, file: "\(id).manifest", what: e.what))
            } catch let e as IndexError where e.isDamage {
                c.damage.append(SetDamage(id: id, file: "\(id).index", what: "\(e)"))
            } catch {
                c.unreadable.append(id)
            }
        }
        let referenced = Set(c.records.values.flatMap(\.archives))
        var present = Set(manifests)
        for f in files {
            if f.hasSuffix(".tar.gz") {
                let id = String(f.dropLast(".tar.gz".count))
                present.insert(id)
                if !referenced.contains(id) && c.unreadable.isEmpty {
                    c.damage.append(SetDamage(id: id, file: f, what: "archive \(location)/\(NameEscape.escape(f)) belongs to no backup: no manifest accounts for it"
                                                + (manifests.contains(id) ? "" : " (its manifest \(NameEscape.escape(id)).manifest is missing)")))
                }
            } else if f.hasSuffix(".tar.gz.partial") {
                let id = String(f.dropLast(".tar.gz.partial".count))
                // Its backup wrote it (an archive is named after the backup that wrote it).
                if c.records[id]?.archives.contains(id) == true {
                    c.toComplete.append(id)
                    present.insert(id)
                } else if !manifests.contains(id) {
                    c.leftovers.append(f)
                }
            } else if f.hasSuffix(".index.partial") {
                let id = String(f.dropLast(".index.partial".count))
                if c.records[id] != nil {
                    c.indexesToComplete.append(id)
                } else if !manifests.contains(id) {
                    c.leftovers.append(f)
                }
            } else if f.hasSuffix(".index") {
                let id = String(f.dropLast(".index".count))
                if !manifests.contains(id) {
                    c.damage.append(SetDamage(id: id, file: f, what: "index \(location)/\(NameEscape.escape(f)) belongs to no backup (its manifest \(NameEscape.escape(id)).manifest is missing)"))
                }
            } else if f.hasSuffix(".partial") || f.scalarRange(of: ".tmp-") != nil {
                c.leftovers.append(f)
            }
        }
        c.newestID = present.filter { BackupID.seconds(of: $0) != nil }.max()
        c.damage.sort { $0.file < $1.file }
        return c
    }

    /// One committed backup as `contents` judges it: its keyless record, its manifest checked
    /// to be the backup its name says: by its header when this command can read it (a plaintext
    /// set, or an identity that decrypts it), else by the size its index records (a manifest
    /// copied over another is found without a key too).
    /// - Throws: `ManifestError` / `IndexError` for damage, anything else when it cannot be read now.
    private func judgedRecord(_ id: String, partialIndex: Bool) throws -> KeylessRecord {
        let record = try keylessRecord(id, partialIndex: partialIndex)
        guard let index = record.index else { return record }  // read from the manifest's header: checked
        do { _ = try peekHeader(id) } catch is EncryptionError {
            let size = try destination.stat(manifestPath(id))?.size
            guard size == index.manifest.size else {
                throw ManifestError(.damaged("\(size.map { "\($0) bytes" } ?? "gone") where its index records \(index.manifest.size) bytes: "
                                             + "it is not the manifest of backup \(id)"), name: manifestName(id))
            }
        }
        return record
    }

    /// Every backup id that has a file in the set directory: committed manifests, archives
    /// (also those no manifest accounts for) and the keyless index files of encrypted sets,
    /// newest last. A new id must sort after all of them (`BackupID.next`).
    package func idsPresent() throws -> [String] {
        try files().map(Self.idsPresent) ?? []
    }

    /// `idsPresent` among `files` (names of the set directory's files).
    package static func idsPresent(_ files: [String]) -> [String] {
        var ids = Set<String>()
        for f in files {
            for suffix in [".manifest", ".tar.gz", ".index"] where f.hasSuffix(suffix) {
                let id = String(f.dropLast(suffix.count))
                if BackupID.seconds(of: id) != nil { ids.insert(id) }
            }
        }
        return ids.sorted()
    }
}

/// The id rule, in one place. An id is the UTC time `20261127T030000Z` at which a backup
/// was started, as the sortable name of its files; ids sort by name and that order is the
/// order of the backups (`latest`, `--keep-last` and every retention rule follow it).
/// A new backup's id is the later of the clock and the newest id present plus one second,
/// so it always sorts last, also when the clock is behind (a host before NTP sync, an RTC
/// without battery): such a run is never refused, its manifest records the real clock
/// (`ManifestHeader.started`) and a warning says the clock is behind. Ids written by older
/// versions with a `-NN` suffix (two backups in one second) stay valid and sort in place.
package enum BackupID {
    /// The id of a backup started at `clock` in a set whose newest id is `newest`.
    package static func next(clock: Date, newest: String?) -> String {
        var t = Int64(clock.timeIntervalSince1970.rounded(.down))
        if let newest, let n = seconds(of: newest) { t = max(t, n + 1) }
        return format(t)
    }

    /// The warning for a run whose clock is behind the newest backup (nil when it is not):
    /// behind the newest backup's own recorded start when known (`newestStarted`), else more
    /// than a minute behind its id (ids of quick successive runs may run ahead of the clock
    /// by a few seconds).
    package static func clockWarning(clock: Date, newest: String?, newestStarted: Double?, id: String) -> String? {
        guard let newest, let n = seconds(of: newest) else { return nil }
        let now = clock.timeIntervalSince1970
        let behind = newestStarted.map { now < $0 - 1 } ?? (now < Double(n) - 60)
        guard behind else { return nil }
        return "the clock of this host (\(Format.time(now))) is behind the newest backup \(newest)"
            + (newestStarted.map { " (taken at \(Format.time($0)))" } ?? "")
            + ": this backup is \(id) so that it sorts after it, and its manifest records the real clock. "
            + "Check the host's time synchronisation (timedatectl; NTP)."
    }

    /// `20261127T030000Z` for a time in seconds since the epoch (UTC).
    package static func format(_ seconds: Int64) -> String {
        // gmtime_r's fields by arithmetic: glibc's gmtime_r and timegm read /etc/localtime at
        // their first call in a process, which UTC never needs (issue 23).
        let days = seconds >= 0 ? seconds / 86_400 : -((-seconds - 1) / 86_400) - 1
        let secondOfDay = Int(seconds - days * 86_400)
        let (year, month, day) = civil(fromDays: days)
        // As String(format: "%04d%02d%02dT%02d%02d%02dZ", ...) printed it, without Foundation's
        // CVarArg boxing (its first use costs ~0.3 ms per start; issue 23).
        func digits(_ v: Int, _ width: Int) -> String {
            let s = String(v.magnitude)
            return (v < 0 ? "-" : "") + String(repeating: "0", count: max(0, width - s.count - (v < 0 ? 1 : 0))) + s
        }
        return digits(Int(year), 4) + digits(month, 2) + digits(day, 2) + "T"
            + digits(secondOfDay / 3600, 2) + digits(secondOfDay / 60 % 60, 2) + digits(secondOfDay % 60, 2) + "Z"
    }

    /// The proleptic Gregorian date of a day counted from 1970-01-01 (H. Hinnant's
    /// `civil_from_days`).
    static func civil(fromDays z0: Int64) -> (year: Int64, month: Int, day: Int) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = Int(doy - (153 * mp + 2) / 5 + 1)
        let month = Int(mp < 10 ? mp + 3 : mp - 9)
        return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    /// Days from 1970-01-01 to a proleptic Gregorian date (`days_from_civil`); linear in `day`,
    /// so a day past the month's end counts on into the next month, as `timegm` normalises it.
    static func days(year y0: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// The time an id names (seconds since the epoch, UTC), ignoring an older `-NN` suffix;
    /// nil for a name that is not an id.
    package static func seconds(of id: String) -> Int64? {
        let b = Array(id.utf8)
        guard b.count >= 16, b[8] == UInt8(ascii: "T"), b[15] == UInt8(ascii: "Z") else { return nil }
        if b.count > 16 {
            guard b[16] == UInt8(ascii: "-"), b.count > 17, b[17...].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        }
        func number(_ r: Range<Int>) -> Int32? {
            var v: Int32 = 0
            for i in r { guard b[i] >= 0x30 && b[i] <= 0x39 else { return nil }; v = v * 10 + Int32(b[i] - 0x30) }
            return v
        }
        guard let y = number(0 ..< 4), let mo = number(4 ..< 6), let d = number(6 ..< 8),
              let h = number(9 ..< 11), let mi = number(11 ..< 13), let s = number(13 ..< 15),
              (1 ... 12).contains(mo), (1 ... 31).contains(d), h < 24, mi < 60, s < 61 else { return nil }
        // What timegm gives for these fields (see `format` for why not timegm).
        return days(year: Int64(y), month: Int64(mo), day: Int64(d)) * 86_400 + Int64(h) * 3600 + Int64(mi) * 60 + Int64(s)
    }
}

/// A set directory as `BackupSet.contents` judges it.
package struct SetContents: Sendable {
    /// Sound backups by id (their id is their file name), as the keyless commands know them.
    package var records: [String: KeylessRecord] = [:]
    /// Manifests that could not be read now (I/O): nothing they need is judged.
    package var unreadable: [String] = []
    /// What no backup accounts for, or a manifest that is not the backup it names.
    package var damage: [SetDamage] = []
    /// Backups whose manifest is committed and whose archive still has its `.partial` name.
    package var toComplete: [String] = []
    /// Backups whose manifest is committed and whose keyless index still has its `.partial` name.
    package var indexesToComplete: [String] = []
    /// Files that are provably leftovers of runs that never committed.
    package var leftovers: [String] = []
    /// The newest id that has a manifest or an archive.
    package var newestID: String?
    /// The names of the set directory's files as listed (nil: no set directory).
    package var files: [String]?
}

/// Damage in a set directory: reported by verify and list (exit 1), never cleaned up.
package struct SetDamage: Sendable, Equatable, CustomStringConvertible {
    /// The backup id the file names.
    package var id: String
    /// The file, in the set directory.
    package var file: String
    /// What is wrong, for people (names in it escaped).
    package var what: String
    package var description: String { what + "." }
}
