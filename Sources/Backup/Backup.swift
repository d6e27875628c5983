// Backup: incremental tar.gz backups of a directory tree (appdata) to a Destination, and
// restores from them.
//
// What it does: `BackupRunner` scans the source (lstat only), compares every entry with the
// previous manifest (size, mtime/ctime ns, mode, uid, gid, type, link target; never device
// numbers; a ctime-only change is settled by comparing SHA-256), streams changed files into
// one tar.gz per backup (`TarGzWriter`: one tar stream cut into gzip members compressed in
// parallel), and writes the manifest (`Manifest`) last as the commit record.
// `ManifestRestoreSource` plans the restore of any backup for the restore executor (module
// Restore), reading only the members it needs (every file's hash is checked); `SetInspector` lists and verifies. `SetLock` keeps runs of one set apart.
//
// What it does not guarantee: consistency of files that change while being read (recorded
// as warnings; databases need a `ContentProvider` that snapshots them), atomicity of a
// `--force` restore into a non-empty directory, or restoring ownership when not run as root.
//
// Seams for other components: `ContentProvider` (per-file content substitution, e.g. SQLite
// snapshots) and `RunHooks` (before/after a run, also on failure) in Hooks.swift.
import Storage
import Support

/// Entry points the executables call.
package enum BackupTool {
    /// Parses and opens DEST (a directory or nfs:// URL; see `DestinationSpec`).
    /// - Parameters:
    ///   - option: the option DEST came from, for messages (`--to`, `--from`).
    ///   - nfsTimeoutSeconds: per-call NFS timeout when the URL has no `timeout=`.
    package static func destination(_ spec: String, option: String = "--to", nfsTimeoutSeconds: Int? = nil) throws -> any Destination {
        try openDestination(spec, option: option, nfsTimeoutSeconds: nfsTimeoutSeconds)
    }

    package static func setName(_ name: String?) throws -> String {
        let n = name ?? BackupSet.defaultName()
        if n.isEmpty || n.contains("/") || n.hasPrefix(".") {
            throw ToolError.usage("invalid set name '\(NameEscape.escape(n))': use a plain name like the host name (no '/', not starting with '.')")
        }
        return n
    }
}
