import Archive
import Crypto
import FoundationEssentials
import Glibc
import Restore
import Storage
import Support

/// One line of `hs-backup list`.
package struct BackupListing: Codable, Sendable {
    package var id: String
    package var time: String
    package var kind: String
    package var parent: String?
    /// Nil for an encrypted backup listed without its key (what only its manifest says).
    package var files: Int?
    package var treeBytes: UInt64?
    package var bytesOut: UInt64
    package var seconds: Double?
    package var warnings: Int?
    /// Encrypted (age), by its index.
    package var encrypted = false

    enum CodingKeys: String, CodingKey {
        case id, time, kind, parent, files, seconds, warnings, encrypted
        case treeBytes = "tree_bytes", bytesOut = "bytes_out"
    }
}

/// The result of `hs-backup verify`.
package struct VerifyReport: Codable, Sendable {
    package var backups: [String]
    package var archivesChecked: Int
    package var filesChecked: Int
    /// "archive: path: what" for every damaged file or archive.
    package var damaged: [String]
    /// Encrypted backups checked without their key: by their index only (presence, sizes and
    /// the SHA-256 of the stored bytes), not decrypted.
    package var notDecrypted: [String] = []
    package var ok: Bool { damaged.isEmpty }

    enum CodingKeys: String, CodingKey {
        case backups, damaged
        case notDecrypted = "not_decrypted"
        case archivesChecked = "archives_checked", filesChecked = "files_checked"
    }
}

/// Listing and verification of a backup set.
package enum SetInspector {
    /// The backups of a set, oldest first, and its damage (`BackupSet.contents`): archives no
    /// manifest accounts for, manifests that hold another backup than their name says, or that
    /// cannot be read. `list` exits 1 when there is damage. Encrypted backups are listed from
    /// their keyless index when no identity is given.
    package static func list(destination: any Destination, set name: String,
                             identities: [AgeIdentity] = []) throws -> (backups: [BackupListing], damage: [String]) {
        let set = BackupSet(destination: destination, name: name, keys: SetKeys(identities: identities))
        let contents = try set.contents()
        return (try listing(set, identities: identities), contents.damage.map(\.description)
                    + contents.unreadable.map { "cannot read manifest \(set.manifestName($0)) now; run `hs-backup verify`." })
    }

    private static func listing(_ set: BackupSet, identities: [AgeIdentity]) throws -> [BackupListing] {
        var out: [BackupListing] = []
        for id in try set.committedIDs() {
            if identities.isEmpty, let r = try? set.keylessRecord(id), let index = r.index, index.isEncrypted {
                out.append(BackupListing(id: id, time: Format.time(r.started), kind: r.kind, parent: r.parent,
                                         files: nil, treeBytes: nil, bytesOut: index.archives.first { $0.id == id }?.size ?? 0,
                                         seconds: nil, warnings: nil, encrypted: true))
                continue
            }
            let h: ManifestHeader
            do { h = try set.loadHeader(id) } catch {
                out.append(BackupListing(id: id, time: "?", kind: "damaged", parent: nil, files: 0, treeBytes: 0, bytesOut: 0, seconds: 0, warnings: 0))
                continue
            }
            out.append(BackupListing(id: id, time: Format.time(h.started), kind: h.kind, parent: h.parent,
                                     files: h.files, treeBytes: h.treeBytes, bytesOut: h.bytesOut, seconds: h.seconds, warnings: h.warnings.count,
                                     encrypted: (try? set.readIndex(id))??.isEncrypted ?? false))
        }
        return out
    }

    /// Verifies backups (all when `backup` is nil): every manifest's checksum, every archive
    /// they reference decompresses to the end, and every file's content has the manifest's
    /// SHA-256 at the place the manifest names. Damage is named per file.
    ///
    /// Memory does not grow with the number of files: an archive is read once, front to back,
    /// alongside every manifest that references it, each read as a stream (the entries of
    /// one archive come in the order the archive holds them, as both follow path order).
    package static func verify(destination: any Destination, set name: String, backup: String?, identities: [AgeIdentity] = [],
                               reporter: Reporter) throws -> VerifyReport {
        let set = BackupSet(destination: destination, name: name, keys: SetKeys(identities: identities))
        let ids: [String]
        if let backup { ids = [try set.resolve(backup)] } else {
            ids = try set.committedIDs()
            if ids.isEmpty { throw ToolError("no backups in \(set.location)") }
        }
        var report = VerifyReport(backups: ids, archivesChecked: 0, filesChecked: 0, damaged: [])
        // What no manifest or index accounts for (a manifest's own damage is found by reading
        // it below, a backup's index by checkIndexes).
        report.damaged += try set.contents().damage
            .filter { !$0.file.hasSuffix(".manifest") && !($0.file.hasSuffix(".index") && ids.contains($0.id)) }.map(\.description)
        let keyless = keylessOnly(set, ids)
        var pending = checkIndexes(set, ids, hashing: keyless, report: &report, reporter: reporter)
        report.notDecrypted = ids.filter { keyless.contains($0) }
        if keyless.count == ids.count {
            checkPending(set, pending, report: &report)
            reporter.endProgress()
            return report
        }
        // A first pass over each manifest checks it whole (members, order, archive names)
        // and says which archives it reads.
        var readers: [(id: String, archives: [String])] = []
        for id in ids where !keyless.contains(id) {
            do {
                let m = try set.openManifest(id)
                defer { m.close() }
                while try m.next() != nil {}
                readers.append((id, m.header.archives))
            } catch {
                report.damaged.append("\(NameEscape.escape(id)).manifest: \(error)")
            }
        }
        let archives = Set(readers.flatMap(\.archives)).sorted()
        for a in archives {
            report.archivesChecked += 1
            let streams = readers.filter { $0.archives.contains(a) }.compactMap { r -> ExpectedStream? in
                do { return try ExpectedStream(try set.openManifest(r.id), archive: a) } catch {
                    report.damaged.append("\(NameEscape.escape(r.id)).manifest: \(error)")
                    return nil
                }
            }
            let digest = try verify(archive: a, set: set, streams: streams, hashing: pending[a] != nil, report: &report, reporter: reporter)
            if let digest, let f = pending.removeValue(forKey: a) { compare(set, f, digest: digest, report: &report) }
        }
        checkPending(set, pending, report: &report)
        reporter.endProgress()
        return report
    }

    /// The entries of one manifest that have a place in one archive (files with their content,
    /// directories and symlinks whose header holds their xattrs), in archive order.
    private final class ExpectedStream {
        struct Head {
            var member: UInt64, skip: UInt64
            var path: [UInt8], link: [UInt8]
            var entry: ManifestEntry
            /// The manifest records xattr hashes (format 2 and later).
            var xattrsKnown: Bool
        }
        let reader: ManifestReader
        let archive: String
        private(set) var head: Head?
        var problem: String?

        init(_ reader: ManifestReader, archive: String) throws {
            self.reader = reader
            self.archive = archive
            try advance()
        }

        func advance() throws {
            let previous = head
            head = nil
            while let r = try reader.next() {
                let e = r.entry
                guard e.type != .hardlink, e.archive != ManifestEntry.noArchive, reader.header.archiveID(e.archive) == archive else { continue }
                if let p = previous, (e.memberOffset, e.memberSkip) <= (p.member, p.skip) {
                    problem = "\(reader.header.id).manifest: \(displayPath(r.path)): places in \(archive).tar.gz out of order; the manifest is damaged"
                    reader.close()
                    return
                }
                head = Head(member: e.memberOffset, skip: e.memberSkip, path: r.path, link: r.link, entry: e,
                            xattrsKnown: reader.header.hasXattrHashes)
                return
            }
            reader.close()
        }
    }

    /// Where the tar header `h` disagrees with the manifest entry that places it there: type,
    /// mode, owner, mtime, size, link target, xattrs (by their hash). Empty when it agrees.
    private static func headerMismatches(_ h: TarEntry, _ want: ExpectedStream.Head) -> [String] {
        let e = want.entry
        var out: [String] = []
        let type: ManifestEntryType? = switch h.type {
        case .file: .file
        case .directory: .directory
        case .symlink: .symlink
        default: nil
        }
        if type != e.type { out.append("type \(h.type.rawValue) in the archive, \(e.type.name) in the manifest") }
        if h.mode & 0o7777 != e.mode & 0o7777 {
            out.append("mode \(String(h.mode & 0o7777, radix: 8)) in the archive, \(String(e.mode & 0o7777, radix: 8)) in the manifest")
        }
        if h.uid != e.uid || h.gid != e.gid { out.append("owner \(h.uid):\(h.gid) in the archive, \(e.uid):\(e.gid) in the manifest") }
        if h.mtime != e.mtime { out.append("mtime \(h.mtime) in the archive, \(e.mtime) in the manifest") }
        if e.type == .file && h.size != e.size { out.append("size \(h.size) in the archive, \(e.size) in the manifest") }
        if e.type == .symlink && h.linkTarget != want.link {
            out.append("link target \(displayPath(h.linkTarget)) in the archive, \(displayPath(want.link)) in the manifest")
        }
        if want.xattrsKnown && xattrDigest(h.xattrs) != e.xattrHash { out.append("extended attributes differ from the manifest's") }
        return out
    }

    /// Compares the entry `h` with what each manifest that places an entry there (`wanting`)
    /// records: a later backup's manifest may name another file than the one the archive's own
    /// backup put there (another set's archive under the same id). Manifests that record the
    /// same as an earlier one share its result; one of another backup than the archive's is
    /// named in its messages. The content is read once.
    private static func check(_ h: TarEntry, _ tar: TarReader, archive a: String, against wanting: [ExpectedStream],
                              report: inout VerifyReport) throws {
        let label = "\(a).tar.gz"
        var content: (digest: Digest, size: UInt64)?
        var seen: [ExpectedStream.Head] = []
        for s in wanting {
            guard let want = s.head,
                  !seen.contains(where: { $0.path == want.path && $0.link == want.link && $0.entry == want.entry && $0.xattrsKnown == want.xattrsKnown })
            else { continue }
            seen.append(want)
            let id = s.reader.header.id, whose = id == a ? "" : " (as \(id).manifest records it)"
            if want.path != RestorePath.normalised(h.path) {
                report.damaged.append("\(label): \(displayPath(want.path)): archive holds \(NameEscape.escape(h.path)) at its place" + whose)
                continue
            }
            for m in headerMismatches(h, want) { report.damaged.append("\(label): \(displayPath(want.path)): \(m)" + whose) }
            if want.entry.type == .file && h.type == .file {
                if content == nil {
                    content = try readContent(tar, h)
                    report.filesChecked += 1
                }
                if !contentMatches(content!, h, want.entry) {
                    report.damaged.append("\(label): \(displayPath(want.path)): content does not match its SHA-256" + whose)
                }
            }
        }
    }

    /// Reads the content of the file entry `h`: its hash (the `SparseHash` for a sparse member,
    /// over its map and data) and the bytes stored.
    private static func readContent(_ tar: TarReader, _ h: TarEntry) throws -> (digest: Digest, size: UInt64) {
        var plain: SHA256Hasher? = h.sparse == nil ? SHA256Hasher() : nil
        var sparse: SparseHash? = nil
        if let map = h.sparse { sparse = SparseHash(map: map, realSize: h.size) }
        var size: UInt64 = 0
        try tar.readContent { _, b in
            if plain != nil { plain!.update(b) } else { sparse!.update(b) }
            size += UInt64(b.count)
        }
        if let p = plain.take() { return (Digest(p.finalize()), size) }
        return (Digest(sparse.take()!.finalize()), size)
    }

    /// Whether the content read (`readContent`) is what the manifest entry `e` records: its
    /// size and hash, sparse or not as the archive stores it.
    private static func contentMatches(_ got: (digest: Digest, size: UInt64), _ h: TarEntry, _ e: ManifestEntry) -> Bool {
        let isSparse = e.flags & ManifestEntry.flagSparse != 0
        let stored = h.sparse.map { $0.reduce(UInt64(0)) { $0 + $1.length } } ?? h.size
        return got.digest == e.hash && got.size == stored && isSparse == (h.sparse != nil)
    }

    /// Returns the SHA-256 of the archive's stored bytes (when `hashing`) when the pass read them whole.
    private static func verify(archive a: String, set: BackupSet, streams: [ExpectedStream], hashing: Bool, report: inout VerifyReport,
                               reporter: Reporter) throws -> Digest? {
        let label = "\(a).tar.gz"
        /// Reports and skips every head of every stream for which `before` holds.
        func reportMissing(_ why: String, while before: ((member: UInt64, skip: UInt64)) -> Bool = { _ in true }) throws {
            for s in streams {
                while let h = s.head, before((h.member, h.skip)) {
                    report.damaged.append("\(label): \(displayPath(h.path)): \(why)")
                    try s.advance()
                }
            }
        }
        defer { for s in streams { if let p = s.problem { report.damaged.append(p) } } }
        let hash = ReadHash()
        let rd: any DestinationReader
        do { rd = try set.openArchive(a, stored: { hashing ? HashedReader($0, hash) : $0 }) } catch {
            try reportMissing("archive missing (\(error))")
            return nil
        }
        defer { try? rd.close() }
        let source = ArchiveSource(size: rd.size, displayName: "\(set.location)/\(label)") { try rd.read(at: $0, count: $1) }
        var resumeAt: UInt64 = 0
        while true {
            var failedAfter = resumeAt
            do {
                let tar = try TarReader(source: source, start: ExtractStart(compressedOffset: resumeAt, uncompressedOffset: 0, firstHeaderOffset: 0))
                defer { tar.close() }
                do {
                    while let h = try tar.next() {
                        guard let loc = tar.location(of: h.headerOffset) else { continue }
                        failedAfter = loc.member
                        // A manifest place (member, skip) names a member an archive writer
                        // started; the gzip member holding this header may be a later one of
                        // the same archive member (stored runs are members of their own).
                        func order(_ place: (member: UInt64, skip: UInt64)) -> Int {
                            guard let t = tar.tarOffset(ofMemberAt: place.member) else { return place.member < loc.member ? -1 : 1 }
                            let at = t + place.skip
                            return at < h.headerOffset ? -1 : (at == h.headerOffset ? 0 : 1)
                        }
                        try reportMissing("not readable from the archive", while: { order($0) < 0 })
                        let wanting = streams.filter { $0.head.map { order(($0.member, $0.skip)) == 0 } ?? false }
                        if wanting.isEmpty { continue }
                        try check(h, tar, archive: a, against: wanting, report: &report)
                        for s in wanting { try s.advance() }
                        reporter.progress("verifying \(label): \(report.filesChecked) files")
                    }
                    // End marker: the rest must decompress cleanly too.
                    try tar.drain()
                } catch {
                    failedAfter = max(failedAfter, tar.location(of: tar.position)?.member ?? failedAfter)
                    throw error
                }
                break
            } catch {
                report.damaged.append("\(label): \(error)")
                // Resume at the next member a manifest names beyond the failure; what the
                // manifests place before it could not be read.
                try reportMissing("not readable from the archive", while: { $0.member <= failedAfter })
                guard let next = streams.compactMap({ $0.head?.member }).min() else { break }
                resumeAt = next
            }
        }
        try reportMissing("not readable from the archive")
        return hashing ? hash.digest() : nil
    }
}
