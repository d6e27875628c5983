import Archive
import Foundation
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
    package static func verify(destination: any Destination, set name: String, backup: String?, reporter: Reporter) throws -> VerifyReport {
        let set = BackupSet(destination: destination, name: name)
        let ids: [String]
        if let backup { ids = [try set.resolve(backup)] } else {
            ids = try set.committedIDs()
            if ids.isEmpty { throw ToolError("no backups in \(set.location)") }
        }
        var report = VerifyReport(backups: ids, archivesChecked: 0, filesChecked: 0, damaged: [])
        // archive id -> [(memberOffset, skip)] -> (path, hash, size) expected by some manifest
        struct Expect: Hashable { var member: UInt64; var skip: UInt64 }
        var expected: [String: [Expect: ([UInt8], Digest, UInt64)]] = [:]
        for id in ids {
            do {
                let m = try set.openManifest(id)
                defer { m.close() }
                while let r = try m.next() {
                    let e = r.entry
                    guard e.type == .file, let a = m.header.archiveID(e.archive) else { continue }
                    expected[a, default: [:]][Expect(member: e.memberOffset, skip: e.memberSkip)] = (r.path, e.hash, e.size)
                }
            } catch {
                report.damaged.append("\(id).manifest: \(error)")
                continue
            }
        }
        for (a, exp) in expected.sorted(by: { $0.key < $1.key }) {
            report.archivesChecked += 1
            let label = "\(a).tar.gz"
            let rd: any DestinationReader
            do { rd = try destination.open(set.archivePath(a)) } catch {
                for (_, v) in exp.sorted(by: { $0.value.0.lexicographicallyPrecedes($1.value.0) }) { report.damaged.append("\(label): \(displayPath(v.0)): archive missing (\(error))") }
                continue
            }
            defer { try? rd.close() }
            let source = ArchiveSource(size: rd.size, displayName: "\(set.location)/\(label)") { try rd.read(at: $0, count: $1) }
            var seen = Set<Expect>()
            // Member starts named by manifests, to resume after damage.
            let starts = Set(exp.keys.map(\.member)).sorted()
            var resumeAt: UInt64 = 0
            outer: while true {
                var failedAfter = resumeAt
                do {
                    let tar = try TarReader(source: source, start: ExtractStart(compressedOffset: resumeAt, uncompressedOffset: 0, firstHeaderOffset: 0))
                    defer { tar.close() }
                    do {
                        while let h = try tar.next() {
                            guard let loc = tar.location(of: h.headerOffset) else { continue }
                            failedAfter = loc.member
                            let key = Expect(member: loc.member, skip: loc.skip)
                            guard let want = exp[key] else { continue }
                            var hasher = SHA256Hasher()
                            var size: UInt64 = 0
                            try tar.readContent { _, b in hasher.update(b); size += UInt64(b.count) }
                            seen.insert(key)
                            report.filesChecked += 1
                            let got = Digest(hasher.finalize())
                            if want.0 != RestorePath.join(RestorePath.split(h.path)) {
                                report.damaged.append("\(label): \(displayPath(want.0)): archive holds \(h.displayPath) at its place")
                            } else if got != want.1 || size != want.2 || h.sparse != nil {
                                report.damaged.append("\(label): \(displayPath(want.0)): content does not match its SHA-256")
                            }
                            reporter.progress("verifying \(label): \(report.filesChecked) files")
                        }
                        // End marker: the rest must decompress cleanly too.
                        try tar.drain()
                    } catch {
                        failedAfter = max(failedAfter, tar.location(of: tar.position)?.member ?? failedAfter)
                        throw error
                    }
                    break outer
                } catch {
                    report.damaged.append("\(label): \(error)")
                    // Resume at the next member a manifest names beyond the failure.
                    guard let next = starts.first(where: { $0 > failedAfter }) else { break outer }
                    resumeAt = next
                }
            }
            for (k, v) in exp where !seen.contains(k) {
                report.damaged.append("\(label): \(displayPath(v.0)): not readable from the archive")
            }
        }
        reporter.endProgress()
        return report
    }
}
