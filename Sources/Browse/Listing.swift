// `hs-backup ls`: the entries of one backup, from its manifest alone (no archive is read).
import Backup
import Support

/// A path inside a backup as the person gave it, made relative and clean: a leading `/` or
/// `./`, `.` components, repeated and trailing slashes dropped; `..` is refused. Empty: the root.
package enum BackupPath {
    /// - Throws: `ToolError.usage` for a path with a `..` component.
    package static func normalise(_ bytes: [UInt8]) throws -> [UInt8] {
        let slash = UInt8(ascii: "/"), dot = UInt8(ascii: ".")
        var parts: [ArraySlice<UInt8>] = []
        for c in bytes.split(separator: slash, omittingEmptySubsequences: true) {
            if c.count == 1 && c.first == dot { continue }
            if c.count == 2 && c.allSatisfy({ $0 == dot }) {
                throw ToolError.usage("the path \(NameEscape.escape(bytes)) has a '..' component; give the path inside the backup "
                                      + "as `hs-backup ls` prints it, e.g. radarr/config.xml.")
            }
            parts.append(c)
        }
        return Array(parts.joined(separator: [slash]))
    }

    /// True when `path` lies below the directory `dir` ("" is the root, below which everything lies).
    package static func isBelow(_ path: [UInt8], _ dir: [UInt8]) -> Bool {
        dir.isEmpty || (path.count > dir.count && path[dir.count] == UInt8(ascii: "/") && path.starts(with: dir))
    }

    /// True when `path` is a direct child of `dir`.
    package static func isChild(_ path: [UInt8], of dir: [UInt8]) -> Bool {
        guard isBelow(path, dir) else { return false }
        let start = dir.isEmpty ? 0 : dir.count + 1
        return !path[start...].contains(UInt8(ascii: "/"))
    }
}

/// Lists one backup's entries as `ls` prints them.
package struct Listing {
    package var set: BackupSet
    /// An id or `latest` (nil: latest).
    package var backup: String?
    /// Normalised (`BackupPath`); empty for the root.
    package var path: [UInt8] = []
    /// Everything below `path`, not only its direct entries.
    package var recursive = false

    package init(set: BackupSet, backup: String?) {
        self.set = set; self.backup = backup
    }

    /// Streams the entries: a directory's entries (all below it with `recursive`), or the one
    /// entry when `path` is not a directory. Reads the manifest only up to the end of `path`.
    /// - Returns: the backup id and how many entries were listed.
    /// - Throws: `ToolError` when the backup or the path does not exist (exit 1), or the
    ///   manifest is damaged.
    @discardableResult
    package func run(_ body: (ManifestRecord) throws -> Void) throws -> (id: String, count: Int) {
        let id = try set.resolve(backup)
        let reader = try set.openManifest(id)
        defer { reader.close() }
        var count = 0
        var found = path.isEmpty
        var isDirectory = path.isEmpty
        while let r = try reader.next() {
            if !found {
                if r.path == path {
                    found = true
                    isDirectory = r.entry.type == .directory
                    if !isDirectory { try body(r); count += 1; break }
                    continue
                }
                let c = r.path.withUnsafeBytes { a in path.withUnsafeBytes { comparePaths(a, $0) } }
                if c > 0 { break }
                continue
            }
            guard BackupPath.isBelow(r.path, path) else { break }
            if recursive || BackupPath.isChild(r.path, of: path) { try body(r); count += 1 }
        }
        guard found else {
            throw ToolError("no \(NameEscape.escape(path)) in backup \(id) of \(set.location); `hs-backup ls --backup \(id)` "
                            + "lists its top level, `hs-backup find PATTERN` searches every backup.")
        }
        return (id, count)
    }
}
