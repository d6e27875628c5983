// Healthchecks (healthchecks.io or a self-hosted Healthchecks): the ping protocol.
//
// A run sends `URL/start?rid=RID` when it starts and, when it ends, `URL?rid=RID` for success
// or `URL/<exit code>?rid=RID` for a failure (Healthchecks counts exit status 0 as success and
// any other as a failure); the same run id pairs the two, so Healthchecks measures the run's
// duration and a run that never ends shows as started. The end ping is a POST whose body is
// the summary line and the last lines of the run's log, within the server's
// `Ping-Body-Limit` (a response header of the start ping; 10,000 bytes when the server sends
// none). Exit 3 ("committed, files missing") is a warning, not a failure: the backup exists,
// so the success URL is pinged and the body's first line says `exit 3` and what is missing.
//
// `--ping` is Uptime Kuma's push (GET URL?status=down): Healthchecks counts any GET to a check
// URL as a success, so a Healthchecks URL given to `--ping` is refused (`looksLikeHealthchecks`).
import FoundationEssentials
import Glibc
import Support

/// Healthchecks ping URLs: recognising them, and the URL of each ping.
package enum HealthchecksURL {
    /// The body limit when the server does not send `Ping-Body-Limit`.
    package static let defaultBodyLimit = 10_000

    /// True for a Healthchecks ping URL: host `hc-ping.com`, or a path ending in
    /// `/ping/<uuid>` or `/ping/<ping key>/<slug>` (a self-hosted instance).
    package static func looksLikeHealthchecks(_ url: String) -> Bool {
        guard let c = URLComponents(string: url), let host = c.host?.lowercased() else { return false }
        if host == "hc-ping.com" || host.hasSuffix(".hc-ping.com") { return true }
        let parts = c.path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        guard let ping = parts.lastIndex(of: "ping") else { return false }
        let rest = Array(parts[(ping + 1)...])
        if rest.count == 1 { return UUID(uuidString: rest[0]) != nil }
        if rest.count == 2 {
            let key = rest[0].unicodeScalars.allSatisfy { $0.isASCIIAlphanumeric || $0 == "-" || $0 == "_" }
            let slug = rest[1].unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" || $0 == "_" }
            return key && slug && !rest[0].isEmpty && !rest[1].isEmpty
        }
        return false
    }

    /// The suffixes that make a ping URL a start, failure, log or exit-status ping.
    static func endpointSuffix(of path: String) -> String? {
        guard let last = path.split(separator: "/").last.map(String.init) else { return nil }
        if ["start", "fail", "log"].contains(last) { return last }
        if let n = Int(last), (0...255).contains(n), String(n) == last { return last }
        return nil
    }

    /// Checks a `--healthchecks` value: an http(s) URL with a host, not already a start,
    /// failure, log or exit-status URL.
    /// - Throws: `NotifierUsageError` naming `option`.
    package static func validate(_ url: String, option: String) throws(NotifierUsageError) {
        guard let c = URLComponents(string: url), let scheme = c.scheme?.lowercased(),
              scheme == "http" || scheme == "https", let host = c.host, !host.isEmpty else {
            throw NotifierUsageError(option: option, redacted: URLRedaction.redact(url))
        }
        if let suffix = endpointSuffix(of: c.path) {
            throw NotifierUsageError(option: option, redacted: URLRedaction.redact(url),
                                     reason: "ends in /\(suffix): give the check's ping URL itself (hs-backup adds /start, /fail and the exit code)")
        }
    }

    /// `base` with `/endpoint` added to its path (none for success) and `rid=` set in its query.
    package static func ping(_ base: String, endpoint: String?, runID: String) -> URL? {
        guard var c = URLComponents(string: base) else { return nil }
        if let endpoint {
            c.path = (c.path.hasSuffix("/") ? String(c.path.dropLast()) : c.path) + "/" + endpoint
        }
        var items = (c.queryItems ?? []).filter { $0.name != "rid" }
        items.append(URLQueryItem(name: "rid", value: runID))
        c.queryItems = items
        return c.url
    }

    /// The end ping's endpoint for an exit code: none (success) for 0 and 3, else the code.
    package static func endpoint(forExitCode code: Int32) -> String? {
        code == 0 || code == ExitStatus.filesMissing.rawValue ? nil : String(min(max(code, 1), 255))
    }

    /// The end ping's body: `first` (the summary or the error), then the log's last lines, the
    /// whole within `limit` bytes (the log is cut at its start, never the first line).
    package static func body(first: String, log: String, limit: Int) -> String {
        let head = first.hasSuffix("\n") ? first : first + "\n"
        let headBytes = head.utf8.count
        guard headBytes < limit else { return LogTail.tail(head, maxBytes: limit) }
        let room = limit - headBytes
        let logPart = LogTail.tail(log, maxBytes: room)
        return logPart.isEmpty ? head : head + logPart
    }
}

