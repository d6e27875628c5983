import FoundationEssentials
import Support
import Glibc

/// A failure of rclone: what we asked, where, rclone's own words (the tail of its stderr or
/// its error text) and what to do.
package struct RcloneError: Error, CustomStringConvertible, Sendable {
    package enum Kind: Sendable, Equatable {
        /// rclone refused its arguments or the configuration (no such remote, a bad RCLONE_*
        /// variable): exit 2.
        case usage
        /// The file or directory does not exist.
        case notFound
        /// The remote could not be reached or did not answer in time (rclone's exit 5, or a
        /// connection error): a later run may succeed.
        case unreachable
        /// Anything else rclone reported (exit 2, 6, 7, ...).
        case failed
    }

    package var kind: Kind
    /// What was asked (`upload`, `list`, `rename to X`, ...); not escaped (`description` does).
    package var operation: String
    /// `rclone:REMOTE:PATH/file` as shown to people.
    package var location: String
    /// rclone's exit status (`rcat`), the HTTP status of `rclone rcd`, or 0.
    package var status: Int32
    /// rclone's last words, as it said them; not escaped (`description` does: its error text
    /// names the remote's paths, which may hold any byte, so the tail of its stderr is shown on
    /// one line, `\n` between rclone's lines).
    package var detail: String

    /// The toolkit's exit code for this failure (2 for usage, else 1).
    package var exitCode: Int32 { kind == .usage ? 2 : 1 }

    package var description: String {
        var s = "rclone \(NameEscape.escape(operation)) \(NameEscape.escape(location)) failed"
        if status != 0 { s += " (rclone status \(status))" }
        let tail = detail.trimmingWhitespaceAndNewlines()
        if !tail.isEmpty { s += ": " + NameEscape.escape(tail) }
        switch kind {
        case .usage:
            s += ". Check the remote's name (`rclone listremotes`; RCLONE_CONFIG names the config file) and any RCLONE_* variables."
        case .unreachable:
            s += ". The remote did not answer (timeouts: RCLONE_CONTIMEOUT, default 10s here; RCLONE_TIMEOUT, 30s); check the network and the remote, then run again."
        case .notFound, .failed:
            break
        }
        return s
    }

    /// The kind an exit status of the `rclone` command means (rclone's documented codes:
    /// 1 usage, 3 directory not found, 4 file not found, 5 temporary error, ...). rclone 1.60
    /// also exits 1 for any error it did not classify (a lost connection during `rcat`), so 1
    /// is a usage error only when rclone's words say so.
    package static func kind(exitStatus: Int32, stderr: String) -> Kind {
        switch exitStatus {
        case 1 where looksLikeUsage(stderr): return .usage
        case 3, 4: return .notFound
        case 5: return .unreachable
        default: return looksUnreachable(stderr) ? .unreachable : (looksLikeConfig(stderr) ? .usage : .failed)
        }
    }

    /// The kind of an error text `rclone rcd` returned with HTTP `status`.
    package static func kind(httpStatus: Int, error: String) -> Kind {
        if httpStatus == 404 { return .notFound }
        if looksLikeConfig(error) { return .usage }
        return looksUnreachable(error) ? .unreachable : .failed
    }

    static func looksLikeUsage(_ text: String) -> Bool {
        looksLikeConfig(text) || text.contains("Usage:") || text.contains("unknown flag") || text.contains("unknown shorthand flag")
            || text.contains("invalid argument") || text.contains("Command ") && text.contains(" needs ")
    }

    static func looksLikeConfig(_ text: String) -> Bool {
        text.contains("didn't find section in config file") || text.contains("config file not found")
            || text.contains("unknown backend") || text.contains("couldn't find type of fs")
    }

    static func looksUnreachable(_ text: String) -> Bool {
        ["connection refused", "i/o timeout", "no route to host", "connection reset", "couldn't connect",
         "network is unreachable", "broken pipe", "EOF", "timeout", "handshake failed", "connection lost"].contains { text.contains($0) }
    }

    /// The last `lines` non-empty lines of a stderr text.
    package static func tail(_ text: String, lines: Int = 5) -> String {
        text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }
}
