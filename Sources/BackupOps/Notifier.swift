// Notifier: tells people (ntfy) and monitors (Uptime Kuma push) how a backup went.
//
// ntfy: POST the message to the topic URL with `Title`, `Priority` and `Tags` headers, on
// failure, and on success when asked. Credentials in the URL (`https://user:pass@host/topic`)
// become a Basic Authorization header; `HS_NTFY_TOKEN` in the environment becomes a Bearer one.
// Uptime Kuma: GET the push URL with `status=up|down`, `msg=` and `ping=` (any such query items
// already in the URL are replaced), so a backup that fails - or stops running - raises Kuma's alarm.
//
// Not guaranteed: delivery. A notification that fails is a warning returned to the caller; it
// never changes the backup's result or exit code. URLs are redacted in every message (topics
// and push tokens are secrets).
import Backup
import Foundation
import Support
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// How a run ended, as the notifier reports it.
package struct RunReport: Sendable {
    /// How it ended (`ExitStatus`: 3, committed with files missing, is a warning).
    package var status: ExitStatus
    /// True unless the run failed (a backup committed with files missing succeeded).
    package var success: Bool { status.monitor != .failed }
    /// What ran, e.g. "hs-backup run" or "hs-backup verify".
    package var operation: String
    /// The backup set (usually the host name).
    package var set: String
    /// One-line summary or the error message.
    package var message: String
    /// How long it took.
    package var duration: TimeInterval?
    /// A success that still needs a look (e.g. a database archived without a snapshot): posted
    /// to ntfy even without `notifySuccess`.
    package var attention = false

    package init(success: Bool, operation: String, set: String, message: String, duration: TimeInterval? = nil) {
        self.init(status: success ? .success : .failure, operation: operation, set: set, message: message, duration: duration)
    }

    package init(status: ExitStatus, operation: String, set: String, message: String, duration: TimeInterval? = nil) {
        self.status = status; self.operation = operation; self.set = set
        self.message = message; self.duration = duration
    }
}

/// Sends ntfy notifications and Uptime Kuma pushes.
package struct Notifier: Sendable {
    /// ntfy topic URL, e.g. https://ntfy.example.net/backups.
    package var ntfyURL: String?
    /// Also post to ntfy when the run succeeded.
    package var notifySuccess: Bool
    /// Uptime Kuma push URL, e.g. https://kuma.example.net/api/push/TOKEN.
    package var pingURL: String?
    /// Per-request timeout.
    package var timeout: TimeInterval
    /// Bearer token for ntfy (default: $HS_NTFY_TOKEN).
    package var ntfyToken: String?

    package init(ntfyURL: String? = nil, notifySuccess: Bool = false, pingURL: String? = nil,
                 timeout: TimeInterval = 10,
                 ntfyToken: String? = ProcessInfo.processInfo.environment["HS_NTFY_TOKEN"]) {
        self.ntfyURL = ntfyURL; self.notifySuccess = notifySuccess; self.pingURL = pingURL
        self.timeout = timeout; self.ntfyToken = ntfyToken
    }

    /// True when there is nothing to send.
    package var isEmpty: Bool { ntfyURL == nil && pingURL == nil }

    /// Checks that the URLs are http(s) URLs with a host; throws a usage error naming the option.
    package func validate() throws {
        for (option, url) in [("--notify", ntfyURL), ("--ping", pingURL)] {
            guard let url else { continue }
            guard let c = URLComponents(string: url), let scheme = c.scheme?.lowercased(),
                  scheme == "http" || scheme == "https", let host = c.host, !host.isEmpty else {
                throw NotifierUsageError(option: option, redacted: Self.redact(url))
            }
        }
    }

    /// Reports `outcome`: ntfy (on failure, or on success with `notifySuccess`) and the Kuma push.
    /// - Returns: warnings for deliveries that failed (URLs redacted); empty when all went out.
    package func report(_ outcome: RunReport) -> [String] {
        var warnings: [String] = []
        if let ntfyURL, outcome.status.monitor != .ok || notifySuccess || outcome.attention {
            if let w = postNtfy(ntfyURL, outcome) { warnings.append(w) }
        }
        if let pingURL {
            if let w = push(pingURL, outcome) { warnings.append(w) }
        }
        return warnings
    }

    // MARK: ntfy

    /// The headers and body of the ntfy message for `outcome`.
    package static func ntfyMessage(_ outcome: RunReport) -> (headers: [String: String], body: String) {
        let monitor = outcome.status.monitor
        let title = monitor == .failed ? "\(outcome.operation) FAILED on \(outcome.set)"
            : monitor == .warning ? "\(outcome.operation) OK, FILES MISSING on \(outcome.set)"
            : outcome.attention ? "\(outcome.operation) OK with warnings on \(outcome.set)"
            : "\(outcome.operation) OK on \(outcome.set)"
        var body = Self.plainText(outcome.message)
        if let d = outcome.duration { body += " (\(Int(d.rounded())) s)" }
        let headers = [
            "Title": asciiHeader(title),
            "Priority": monitor == .ok ? "default" : "high",
            "Tags": monitor == .failed ? "rotating_light,floppy_disk" : monitor == .warning || outcome.attention ? "warning,floppy_disk" : "white_check_mark,floppy_disk",
        ]
        return (headers, body)
    }

    private func postNtfy(_ url: String, _ outcome: RunReport) -> String? {
        guard var c = URLComponents(string: url) else { return "ntfy: invalid URL \(Self.redact(url))" }
        var request: URLRequest
        var auth: String?
        if let user = c.user {
            let pair = "\(user.removingPercentEncoding ?? user):\(c.password?.removingPercentEncoding ?? "")"
            auth = "Basic " + Data(pair.utf8).base64EncodedString()
            c.user = nil; c.password = nil
        } else if let token = ntfyToken, !token.isEmpty {
            auth = "Bearer " + token
        }
        guard let target = c.url else { return "ntfy: invalid URL \(Self.redact(url))" }
        request = URLRequest(url: target, timeoutInterval: timeout)
        request.httpMethod = "POST"
        let message = Self.ntfyMessage(outcome)
        for (k, v) in message.headers { request.setValue(v, forHTTPHeaderField: k) }
        if let auth { request.setValue(auth, forHTTPHeaderField: "Authorization") }
        request.httpBody = Data(message.body.utf8)
        return send(request, what: "ntfy notification to \(Self.redact(url))")
    }

    // MARK: Uptime Kuma

    /// The push URL for `outcome`: `status`, `msg` and `ping` set (replacing any already there).
    package static func pushURL(_ url: String, _ outcome: RunReport) -> URL? {
        guard var c = URLComponents(string: url) else { return nil }
        var items = (c.queryItems ?? []).filter { !["status", "msg", "ping"].contains($0.name) }
        // Kuma has up and down only: files missing (exit 3) is up, with the warning in the message.
        var msg = outcome.status.monitor == .ok ? "OK" : outcome.status.monitor == .warning ? "WARNING: \(outcome.status.meaning)" : "FAILED"
        msg += ": " + Self.plainText(outcome.message)
        if msg.count > 200 { msg = String(msg.prefix(197)) + "..." }
        items.append(URLQueryItem(name: "status", value: outcome.success ? "up" : "down"))
        items.append(URLQueryItem(name: "msg", value: msg))
        items.append(URLQueryItem(name: "ping", value: outcome.duration.map { String(Int(($0 * 1000).rounded())) } ?? ""))
        c.queryItems = items
        // URLComponents leaves '+' alone; servers decode it as a space.
        c.percentEncodedQuery = c.percentEncodedQuery?.replacingOccurrences(of: "+", with: "%2B")
        return c.url
    }

    private func push(_ url: String, _ outcome: RunReport) -> String? {
        guard let target = Self.pushURL(url, outcome) else { return "ping: invalid URL \(Self.redact(url))" }
        var request = URLRequest(url: target, timeoutInterval: timeout)
        request.httpMethod = "GET"
        return send(request, what: "Uptime Kuma push to \(Self.redact(url))")
    }

    // MARK: HTTP

    /// The User-Agent of every request: `hs-backup/<homeServerVersion>`.
    package static let userAgent = "hs-backup/\(homeServerVersion)"

    private func send(_ request: URLRequest, what: String) -> String? {
        var request = request
        request.setValue(Self.userAgent, forHTTPHeaderField: "User-Agent")
        let box = ResultBox()
        let config = URLSessionConfiguration.ephemeral
        config.timeoutIntervalForRequest = timeout
        config.timeoutIntervalForResource = timeout
        let session = URLSession(configuration: config)
        defer { session.finishTasksAndInvalidate() }
        let done = DispatchSemaphore(value: 0)
        let task = session.dataTask(with: request) { data, response, error in
            if let error {
                box.set("\(what) failed: \(Self.redactError(HumanError.describe(error)))")
            } else if let http = response as? HTTPURLResponse, !(200..<300).contains(http.statusCode) {
                let text = data.map { String(decoding: $0.prefix(200), as: UTF8.self) } ?? ""
                box.set("\(what) failed: HTTP \(http.statusCode) \(text.trimmingCharacters(in: .whitespacesAndNewlines))")
            }
            done.signal()
        }
        task.resume()
        if done.wait(timeout: .now() + timeout + 5) == .timedOut {
            task.cancel()
            return "\(what) failed: no answer within \(Int(timeout)) s"
        }
        return box.value
    }

    // MARK: Redaction

    /// `scheme://host[:port]/…`: never the path (ntfy topic, Kuma token), query or credentials.
    package static func redact(_ url: String) -> String {
        guard let c = URLComponents(string: url), let scheme = c.scheme, let host = c.host else { return "<url>" }
        let port = c.port.map { ":\($0)" } ?? ""
        let hasMore = !(c.path.isEmpty || c.path == "/") || c.query != nil
        return "\(scheme)://\(host)\(port)\(hasMore ? "/…" : "")"
    }

    /// URLSession errors can quote the URL; keep only the text before it.
    private static func redactError(_ text: String) -> String {
        var out = text
        while let r = out.range(of: #"https?://[^\s"']+"#, options: .regularExpression) {
            out.replaceSubrange(r, with: redact(String(out[r])))
        }
        return out
    }

    /// The message with any control or bidi character that reached it escaped as in names
    /// (`NameEscape`): names are escaped where they are put into messages; this keeps a
    /// notification one honest text whatever slipped through (no forged lines, no escape
    /// sequences in a phone's notification or a Kuma event).
    static func plainText(_ s: String) -> String {
        var out = ""
        for u in s.unicodeScalars {
            let v = u.value
            if v < 0x20 || v == 0x7F || (0x80 ... 0x9F).contains(v) || (0x202A ... 0x202E).contains(v) || (0x2066 ... 0x2069).contains(v) {
                out += NameEscape.escape(Array(String(u).utf8))
            } else {
                out.unicodeScalars.append(u)
            }
        }
        return out
    }

    private static func asciiHeader(_ s: String) -> String {
        String(s.unicodeScalars.map { $0.isASCII && $0.value >= 0x20 ? Character($0) : "?" })
    }
}

/// A `--notify`/`--ping` value that is not an http(s) URL.
package struct NotifierUsageError: Error, CustomStringConvertible {
    package var option: String
    package var redacted: String
    package var description: String {
        "\(option) \(redacted): not an http(s) URL; give e.g. \(option == "--ping" ? "https://kuma.example.net/api/push/TOKEN" : "https://ntfy.example.net/backups")"
    }
}

private final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var _value: String?
    func set(_ v: String) { lock.lock(); _value = v; lock.unlock() }
    var value: String? { lock.lock(); defer { lock.unlock() }; return _value }
}
