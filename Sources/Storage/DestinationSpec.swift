#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import NFS
import Support

/// A parsed DEST argument (`--to`, `--from`): the one place that decides what a destination
/// string means. Every malformed value is a usage error (exit 2) that quotes the value and
/// shows a valid example, and nothing is written before a value is accepted:
/// - empty or blank (an unset `HS_BACKUP_DEST` in cron);
/// - a scheme other than `nfs://` (`smb://`, `NFS://`, `nfs:/x`, `nfs:x`), and `nfs//x`, which
///   would otherwise become a local directory named like the URL;
/// - a relative path when not run from a terminal (under cron the current directory is
///   whatever the crontab's `cd` left, e.g. a git checkout);
/// - an nfs:// URL that does not parse, asks for `version=4`, or has a bad `timeout=`.
package enum DestinationSpec: Sendable, Equatable {
    /// A directory (absolute, or relative when run interactively).
    case local(String)
    /// An NFS export reached through libnfs.
    case nfs(NFSURL)
    /// A remote of the `rclone` binary: `rclone:REMOTE:PATH`.
    case rclone(RcloneRemote)

    /// Examples shown in every message.
    package static let examples = "a directory like /mnt/backups, a URL like nfs://truenas/mnt/tank/backups or an rclone remote like rclone:b2:bucket/backups"

    /// True when stdin and stderr are terminals (a person typing, not cron or systemd).
    package static var isInteractive: Bool { isatty(STDIN_FILENO) == 1 && isatty(STDERR_FILENO) == 1 }

    /// Parses a DEST value.
    /// - Parameters:
    ///   - option: the option it came from, for messages (`--to`).
    ///   - allowRelative: accept a relative directory (default: only when interactive).
    /// - Throws: `ToolError.usage` (exit 2).
    package static func parse(_ value: String, option: String = "--to", allowRelative: Bool = isInteractive) throws -> DestinationSpec {
        func bad(_ why: String) -> ToolError {
            ToolError.usage("\(option) '\(NameEscape.escape(value))': \(why). Give \(examples).")
        }
        // What `trimmingCharacters(in: .whitespaces)` would remove (tab and the Unicode space
        // separators), looked at without Foundation's CharacterSet (issue 23: start-up).
        let scalars = value.unicodeScalars
        if scalars.allSatisfy(isBlank) {
            throw bad("the destination is empty (in cron: is HS_BACKUP_DEST set in the .env file the crontab reads?)")
        }
        if value.hasPrefix("nfs://") {
            let url: NFSURL
            do { url = try NFSURL(value) } catch let e as NFSError { throw bad(NameEscape.escape(e.detail)) }
            if url.version != 3 {
                throw bad("NFSv4 is not supported for backups (libnfs 4.0 moves file data over NFSv4 only in 2 KiB pieces); use version=3 (the default; the same export serves NFSv3)")
            }
            return .nfs(url)
        }
        if value.hasPrefix("rclone:") {
            let fs = String(value.dropFirst("rclone:".count))
            guard let remote = RcloneRemote(fs: fs) else { throw bad(RcloneRemote.problem(fs) ?? "not REMOTE:PATH") }
            return .rclone(remote)
        }
        if let why = urlProblem(value) { throw bad(why) }
        if scalars.first.map(isBlank) == true || scalars.last.map(isBlank) == true {
            throw bad("the destination has leading or trailing spaces")
        }
        if !value.hasPrefix("/") && !allowRelative {
            throw bad("a relative path depends on the current directory (under cron that is not where you think); give an absolute path")
        }
        return .local(value)
    }
}

extension DestinationSpec {
    /// A scalar of `CharacterSet.whitespaces` (CoreFoundation's list: tab, the space separators
    /// and ZERO WIDTH SPACE; `blankIsFoundationWhitespace` compares every scalar).
    static func isBlank(_ s: Unicode.Scalar) -> Bool { s.isFoundationWhitespace }

    /// Why `value`, given where a directory or an `nfs://` URL is expected, is a URL the tools
    /// cannot use: a misspelled NFS URL (`NFS://`, `nfs:/x`, `nfs:x`, `nfs//x`) or another
    /// scheme (`smb://`). Nil for a well-spelled `nfs://` URL and for anything that does not
    /// look like a URL. The one rule for every argument that takes "a directory or nfs:// URL"
    /// (`--to`/`--from` through `parse`, hs-linkcheck's root), so a typo is never taken for a
    /// local directory named like the URL.
    package static func urlProblem(_ value: String) -> String? {
        if value.hasPrefix("nfs://") { return nil }
        if value.hasPrefix("rclone:") {
            return "rclone:REMOTE:PATH is for backup destinations (--to, --from); here give a directory or an nfs:// URL"
        }
        let lower = value.lowercased()
        if lower.hasPrefix("rclone:") || lower.hasPrefix("rclone//") || lower.hasPrefix("rclone/") {
            return "this looks like a misspelled rclone destination; write it exactly as rclone:REMOTE:PATH (lower case)"
        }
        if lower.hasPrefix("nfs:") || lower.hasPrefix("nfs//") {
            return "this looks like a misspelled NFS URL; write it exactly as nfs://SERVER/PATH (lower case, two slashes)"
        }
        if let colon = value.firstIndex(of: ":"), value[..<colon].allSatisfy({ $0.isLetter || $0.isNumber || "+.-".contains($0) }),
           value[..<colon].first?.isLetter == true {
            return "unknown scheme '\(value[..<colon]):'; only directories, nfs:// URLs and rclone:REMOTE:PATH are supported (other remotes: set one up with `rclone config`)"
        }
        return nil
    }
}

/// Parses and opens a destination argument (see `DestinationSpec` for what is accepted).
/// NFS URLs are mounted at once; rclone remotes are asked what they can do (which reaches them).
/// - Parameters:
///   - nfsTimeoutSeconds: the per-call timeout for an nfs:// URL without `timeout=`
///     (default 60 s).
/// - Throws: `ToolError.usage` (exit 2) for a malformed value or a remote rclone does not
///   know; `NFSError` when the server cannot be reached or refuses the export; `RcloneError`
///   when an rclone remote cannot be reached.
package func openDestination(_ spec: String, option: String = "--to", nfsTimeoutSeconds: Int? = nil) throws -> any Destination {
    switch try DestinationSpec.parse(spec, option: option) {
    case .local(let path):
        return LocalDestination(root: path)
    case .nfs(let url):
        var options = NFSClient.Options()
        if let t = nfsTimeoutSeconds { options.timeoutMilliseconds = Int32(t) * 1000 }
        do {
            return try NFSDestination(url: url.string, options: options)
        } catch let e as NFSError where e.kind == .invalidURL || e.kind == .unsupported {
            throw ToolError.usage(e.description)
        }
    case .rclone(let remote):
        do {
            return try RcloneDestination(remote)
        } catch let e as RcloneError where e.kind == .usage {
            throw ToolError.usage("\(option) '\(NameEscape.escape(spec))': \(e.description)")
        }
    }
}
