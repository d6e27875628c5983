import Archive
import Foundation
import Restore
import Storage
import Support

/// One line of `hs-backup list`.
package struct BackupListing: Codable, Sendable {
    package var id: String
    package var time: String
    package var kind: String
    package var parent: String?
    package var files: Int
    package var treeBytes: UInt64
    package var bytesOut: UInt64
    package var seconds: Double
    package var warnings: Int

    enum CodingKeys: String, CodingKey {
        case id, time, kind, parent, files, seconds, warnings
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
    package var ok: Bool { damaged.isEmpty }

    enum CodingKeys: String, CodingKey {
        case backups, damaged
        case archivesChecked = "archives_checked", filesChecked = "files_checked"
    }
}

/// Listing and verification of a backup set.
package enum SetInspector {
    package static func list(destination: any Destination, set name: String) throws -> [BackupListing] {
        let set = BackupSet(destination: destination, name: name)
        var out: [BackupListing] = []
        for id in try set.committedIDs() {
            let h: ManifestHeader
            do { h = try set.loadHeader(id) } catch {
                out.append(BackupListing(id: id, time: "?", kind: "damaged", parent: nil, files: 0, treeBytes: 0, bytesOut: 0, seconds: 0, warnings: 0))
                continue
            }
            let f = ISO8601DateFormatter()
            out.append(BackupListing(id: id, time: f.string(from: Date(timeIntervalSince1970: h.started)), kind: h.kind, parent: h.parent,
                                     files: h.files, treeBytes: h.treeBytes, bytesOut: h.bytesOut, seconds: h.seconds, warnings: h.warnings.count))
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
    package static func verify(destination: any Destination, set name: String, backup: String?, reporter: Reporter) throws -> VerifyReport {
        let set = BackupSet(destination: destination, name: name)
        let ids: [String]
        if let backup { ids = [try set.resolve(backup)] } else {
            ids = try set.committedIDs()
            if ids.isEmpty { throw ToolError("no backups in \(set.location)") }
        }
        var report = VerifyReport(backups: ids, archivesChecked: 0, filesChecked: 0, damaged: [])
        // A first pass over each manifest checks it whole (members, order, archive names)
        // and says which archives it reads.
        var readers: [(id: String, archives: [String])] = []
        for id in ids {
            do {
                let m = try set.openManifest(id)
                defer { m.close() }
                while try m.next() != nil {}
                readers.append((id, m.header.archives))
            } catch {
                report.damaged.append("\(id).manifest: \(error)")
            }
        }
        let archives = Set(readers.flatMap(\.archives)).sorted()
        for a in archives {
            report.archivesChecked += 1
            let streams = readers.filter { $0.archives.contains(a) }.compactMap { r -> ExpectedStream? in
                do { return try ExpectedStream(try set.openManifest(r.id), archive: a) } catch {
                    report.damaged.append("\(r.id).manifest: \(error)")
                    return nil
                }
            }
            try verify(archive: a, set: set, streams: streams, report: &report, reporter: reporter)
        }
        reporter.endProgress()
        return report
    }

    /// The files of one manifest whose content is in one archive, in archive order.
    private final class ExpectedStream {
        let reader: ManifestReader
        let archive: String
        private(set) var head: (member: UInt64, skip: UInt64, path: [UInt8], hash: Digest, size: UInt64)?
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
                guard e.type == .file, reader.header.archiveID(e.archive) == archive else { continue }
                if let p = previous, (e.memberOffset, e.memberSkip) <= (p.member, p.skip) {
                    problem = "\(reader.header.id).manifest: \(displayPath(r.path)): places in \(archive).tar.gz out of order; the manifest is damaged"
                    reader.close()
                    return
                }
                head = (e.memberOffset, e.memberSkip, r.path, e.hash, e.size)
                return
            }
            reader.close()
        }
    }

    private static func verify(archive a: String, set: BackupSet, streams: [ExpectedStream], report: inout VerifyReport, reporter: Reporter) throws {
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
        let rd: any DestinationReader
        do { rd = try set.destination.open(set.archivePath(a)) } catch {
            try reportMissing("archive missing (\(error))")
            return
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
                        guard let want = wanting.first?.head else { continue }
                        var hasher = SHA256Hasher()
                        var size: UInt64 = 0
                        try tar.readContent { _, b in hasher.update(b); size += UInt64(b.count) }
                        report.filesChecked += 1
                        let got = Digest(hasher.finalize())
                        if want.path != RestorePath.normalised(h.path) {
                            report.damaged.append("\(label): \(displayPath(want.path)): archive holds \(h.displayPath) at its place")
                        } else if got != want.hash || size != want.size || h.sparse != nil {
                            report.damaged.append("\(label): \(displayPath(want.path)): content does not match its SHA-256")
                        }
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
    }
}
