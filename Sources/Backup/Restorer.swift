#if canImport(Glibc)
import Glibc
#endif
import Archive
import Crypto
import Foundation
import Storage
import Support

/// Options of a restore from a backup set.
package struct RestoreOptions {
    package var destination: any Destination
    package var set: String
    /// An id or "latest".
    package var backup: String = "latest"
    package var target: String
    /// Sub-paths to restore (relative to the backed-up source); empty = everything.
    package var only: [String] = []
    package var force = false
    package var dryRun = false
    /// Identities that decrypt an encrypted set (`--identity`).
    package var identities: [AgeIdentity] = []

    package init(destination: any Destination, set: String, target: String) {
        self.destination = destination
        self.set = set
        self.target = target
    }
}

package struct RestoreSummary: Codable, Sendable {
    package var id: String
    package var target: String
    package var files: Int
    package var directories: Int
    package var symlinks: Int
    package var hardlinks: Int
    package var bytes: UInt64
    package var seconds: Double
    package var dryRun: Bool
    package var warnings: [String]

    enum CodingKeys: String, CodingKey {
        case id, target, files, directories, symlinks, hardlinks, bytes, seconds, warnings
        case dryRun = "dry_run"
    }

    package var line: String {
        (dryRun ? "would restore" : "restored") + " backup \(id) into \(target): \(files) files (\(Format.bytes(bytes))), "
            + "\(directories) directories, \(symlinks) symlinks, \(hardlinks) hardlinks in \(Format.seconds(seconds))"
            + (warnings.isEmpty ? "" : ", \(warnings.count) warnings")
    }
}

/// Restores the tree of one backup with the same engine as `hs-restore --archive`: the
/// manifest (through `ManifestRestorePlan`) says what to create, in manifest order; the
/// content of each file is read with `TarReader` from its archive at the manifest's place
/// (one reader per archive, reading on while the next file lies ahead); `TreeWriter` creates
/// everything with the same rules as for any archive. The archive must hold the path and size
/// the manifest names there, and the content must have the manifest's SHA-256, or the file is
/// not left behind and the restore stops (a backup set altered on the NAS is as hostile as
/// any archive). Hardlinks come after all files; directory metadata last.
package final class Restorer {
    let options: RestoreOptions
    let reporter: Reporter

    package init(options: RestoreOptions, reporter: Reporter) {
        self.options = options
        self.reporter = reporter
    }

    package func run() throws -> RestoreSummary {
        let started = Date()
        let set = BackupSet(destination: options.destination, name: options.set, keys: SetKeys(identities: options.identities))
        let id = try set.resolve(options.backup)
        let keyWarning = set.identityWarning()
        let plan = try ManifestRestorePlan(id: id, only: options.only) { try set.openManifest(id) }
        var summary = RestoreSummary(id: id, target: options.target, files: 0, directories: 0, symlinks: 0, hardlinks: 0,
                                     bytes: 0, seconds: 0, dryRun: options.dryRun, warnings: keyWarning.map { [$0] } ?? [])
        if options.dryRun {
            func count(_ s: RestoreStep) {
                switch s.entry.type {
                case .file: summary.files += 1; summary.bytes += s.entry.size
                case .directory: summary.directories += 1
                case .symlink: summary.symlinks += 1
                default: summary.hardlinks += 1
                }
                if reporter.mode != .json { reporter.info("\(s.entry.type.rawValue)\t\(s.entry.displayPath)") }
            }
            try plan.forEachEntry(count)
            try plan.forEachLink(count)
            summary.seconds = Date().timeIntervalSince(started)
            return summary
        }
        let fresh = try prepare(options.target)
        var policy = ExtractOptions()
        policy.allowNonEmptyTarget = options.force
        let writer: TreeWriter
        do { writer = try TreeWriter(target: options.target, options: policy, fresh: fresh) } catch let e as ArchiveError {
            throw ToolError(e.description)
        }
        defer { writer.close() }
        var readers: [String: (reader: TarReader, label: String)] = [:]   // and the archive's name for messages
        defer { for r in readers.values { r.reader.close() } }
        func label(_ archive: String) -> String { "\(set.location)/\(archive).tar.gz" }
        func source(_ archive: String) throws -> ArchiveSource {
            let rd = try set.openStored(set.archivePath(archive))
            return ArchiveSource(size: rd.size, displayName: label(archive)) { try rd.read(at: $0, count: $1) }
        }
        let dirXattrs = try directoryXattrs(plan, source)
        var done = 0
        func restore(_ step: RestoreStep) throws {
            // The manifest may be altered: its path is checked before anything is read for it.
            _ = try RestorePath.components(step.entry.path, entry: step.entry.displayPath, rule: "parent-traversal")
            guard let c = step.content else {
                var entry = step.entry
                if let x = dirXattrs[entry.path] { entry.xattrs = x }
                try writer.write(entry, content: entry.type == .file ? { _ in } : nil)
                return
            }
            let (reader, label) = try readers[c.archive] ?? {
                let r = (try TarReader(source: source(c.archive)), label(c.archive))
                readers[c.archive] = r
                return r
            }()
            try reader.seek(member: c.member, skip: c.skip)
            guard let h = try reader.next() else {
                throw ArchiveError(.malformed, entry: step.entry.displayPath, "archive \(label) ends where backup \(id) expects the file")
            }
            // (Our archives hold the manifest's path as is; others are normalised first.)
            guard h.path == c.archivedPath || RestorePath.join(RestorePath.split(h.path)) == c.archivedPath, h.type == .file, h.size == step.entry.size else {
                throw ArchiveError(.malformed, entry: step.entry.displayPath,
                                   "archive \(label) does not hold \(TarReader.display(c.archivedPath)) where the manifest says (found \(h.displayPath)); the backup is damaged. Run `hs-backup verify`.")
            }
            var entry = step.entry
            entry.xattrs = h.xattrs   // xattrs and ACLs live in the archive's pax headers
            entry.sparse = h.sparse   // a sparse member: its holes stay holes, its hash is the `SparseHash`
            do {
                try writer.write(entry, expectedSHA256: c.sha256, origin: label) { try reader.readContent($0) }
            } catch var e as ArchiveError {
                if !e.detail.contains(label) { e.detail += " (content from \(label))" }
                throw e
            }
            if step.entry.type == .file {
                done += 1
                if done % 256 == 0 { reporter.progress("restoring: \(done) files") }
            }
        }
        do {
            try plan.forEachEntry(restore)
            try plan.forEachLink(restore)
            try writer.finish()
        } catch let e as ArchiveError {
            reporter.endProgress()
            throw ToolError("restoring backup \(id) into \(options.target): \(e.description)")
        }
        reporter.endProgress()
        let s = writer.summary
        summary.files = s.files; summary.directories = s.directories; summary.symlinks = s.symlinks
        summary.hardlinks = s.hardlinks; summary.bytes = s.bytes
        summary.warnings += s.warnings
        summary.seconds = Date().timeIntervalSince(started)
        return summary
    }

    /// The xattrs/ACLs of directories and symlinks that have some, from the newest archive whose pax
    /// header for the directory carries them (read only when the backup has such directories).
    private func directoryXattrs(_ plan: ManifestRestorePlan, _ source: (String) throws -> ArchiveSource) throws -> [[UInt8]: [(name: [UInt8], value: [UInt8])]] {
        var wanted = plan.directoriesWithXattrs
        let archives = wanted.isEmpty ? [] : plan.archivesNewestFirst
        var found: [[UInt8]: [(name: [UInt8], value: [UInt8])]] = [:]
        for a in archives where !wanted.isEmpty {
            let reader = try TarReader(source: source(a))
            defer { reader.close() }
            while let h = try reader.next() {
                guard h.type == .directory || h.type == .symlink, !h.xattrs.isEmpty else { continue }
                let p = RestorePath.join(RestorePath.split(h.path))
                if wanted.remove(p) != nil { found[p] = h.xattrs }
            }
        }
        return found
    }

    /// Creates the target if needed; returns whether it was empty.
    private func prepare(_ target: String) throws -> Bool {
        var st = stat()
        if lstat(target, &st) == 0 {
            guard st.st_mode & S_IFMT == S_IFDIR else { throw ToolError.usage("target \(target) exists and is not a directory") }
            if let items = try? FileManager.default.contentsOfDirectory(atPath: target), !items.isEmpty {
                guard options.force else {
                    throw ToolError.usage("target \(target) is not empty (\(items.count) entries). Restore into an empty directory, or pass --force to overwrite.")
                }
                return false
            }
            return true
        }
        do { try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true) } catch {
            throw ToolError("cannot create target \(target): \(Sys.strerror(errno))")
        }
        return true
    }
}
