// Notifier: tells people (ntfy) and monitors (Uptime Kuma push) how a backup went.
//
// ntfy: POST the message to the topic URL with `Title`, `Priority` and `Tags` headers, on
// failure, and on success when asked. Credentials in the URL (`https://user:pass@host/topic`)
// become a Basic Authorization header; `HS_NTFY_TOKEN` in the environment becomes a Bearer one.
// Uptime Kuma: GET the push URL with `status=up|down`, `msg=` and `ping=` (any such query items
// already in the URL are replaced), so a backup that fails - or stops running - raises Kuma's alarm.
// A Healthchecks URL given as the Kuma push URL is refused (Healthchecks counts that GET as a
// success). Healthchecks: `/start` when the run starts, the end ping with the log (see
// Healthchecks.swift). Prometheus: the metrics file (MetricsFile.swift).
// Exit 3 (committed, files missing) is a warning everywhere: ntfy posts it (warning tags), Kuma
// gets `up` with a message starting "WARNING", Healthchecks the success URL with `exit 3` in the
// body, the metrics `last_exit_code 3`.
//
// Not guaranteed: delivery. A notification that fails is a warning returned to the caller; it
// never changes the backup's result or exit code. URLs are redacted in every message (topics
// and push tokens are secrets).
import Backup
import FoundationEssentials
import Glibc
import Support
import Synchronization

/// How a run ended, as the notifier reports it.
package struct RunReport: Sendable {
    /// True when the backup (or verify/prune) succeeded.
    package var success: Bool
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
    /// The exit code the tool ends with (0, 1, 2, 3, 128+signal).
    package var exitCode: Int32
    /// What the run measured, for the metrics file.
    package var metrics = RunMetrics()

    package init(success: Bool, operation: String, set: String, message: String, duration: TimeInterval? = nil,
                 exitCode: Int32? = nil) {
        self.success = success; self.operation = operation; self.set = set
        self.message = message; self.duration = duration
        self.exitCode = exitCode ?? (success ? 0 : 1)
        if self.exitCode == ExitStatus.filesMissing.rawValue { attention = true }
    }

    /// A report for a run that ends with `status` (3, committed with files missing, counts as
    /// a success that needs attention: `ExitStatus.monitor`).
    package init(status: ExitStatus, operation: String, set: String, message: String, duration: TimeInterval? = nil) {
        self.init(success: status.monitor != .failed, operation: operation, set: set, message: message, duration: duration,
                  exitCode: status.rawValue)
    }

    /// How the run ends, by the toolkit's exit statuses.
    package var status: ExitStatus { ExitStatus(rawValue: exitCode) ?? (success ? .success : .failure) }
}

/// The hs-backup commands that report to monitors, with their configuration keys.
package enum MonitoredJob: String, Sendable, CaseIterable {
    case run, verify, prune, copy

    /// The Uptime Kuma push URL's key (HS_KUMA_BACKUP for run).
    package var kumaKey: ConfigKey {
        switch self { case .run: .kumaBackup; case .verify: .kumaVerify; case .prune: .kumaPrune; case .copy: .kumaCopy }
    }

    /// The Healthchecks URL's key.
    package var healthchecksKey: ConfigKey {
        switch self {
        case .run: .healthchecksBackup; case .verify: .healthchecksVerify; case .prune: .healthchecksPrune; case .copy: .healthchecksCopy
        }
    }
}

/// One run's state shared by every copy of its `Notifier`: the Healthchecks run id, whether
/// the start was sent, the server's body limit, when the run started.
package final class MonitorSession: Sendable {
    struct State { var started: Date?; var bodyLimit = HealthchecksURL.defaultBodyLimit; var runID: String? }
    let state = Mutex(State())
    package init() {}

    /// The Healthchecks run id, made at its first use: a UUID opens /dev/urandom, which a run
    /// without Healthchecks does not need (two per backup run, issue 23).
    package var runID: String {
        state.withLock { s in
            if let id = s.runID { return id }
            let id = UUID().uuidString.lowercased()
            s.runID = id
            return id
        }
    }

    /// When `Notifier.start` was first called (nil: not yet).
    package var started: Date? { state.withLock { $0.started } }
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
    /// Bearer token for ntfy (default: HS_NTFY_TOKEN from the environment or the configuration file).
    package var ntfyToken: String?
    /// Healthchecks ping URL (https://hc-ping.com/UUID or a self-hosted /ping/UUID).
    package var healthchecksURL: String?
    /// Prometheus text file to write after the run, and the command it is for (run, verify, ...).
    package var metricsFile: String?
    package var metricsCommand = "run"
    /// How each URL was given, for messages: the flag or the configuration key.
    package var ntfyName = "--notify", pingName = "--ping", healthchecksName = "--healthchecks"
    /// This run's shared state (the Healthchecks run id and start).
    package let session = MonitorSession()

    package init(ntfyURL: String? = nil, notifySuccess: Bool = false, pingURL: String? = nil,
                 healthchecksURL: String? = nil, metricsFile: String? = nil, timeout: TimeInterval = 10,
                 ntfyToken: String? = (try? ToolConfiguration.get())?.value(.ntfyToken)?.value) {
        self.ntfyURL = ntfyURL; self.notifySuccess = notifySuccess; self.pingURL = pingURL
        self.healthchecksURL = healthchecksURL; self.metricsFile = metricsFile
        self.timeout = timeout; self.ntfyToken = ntfyToken
    }

    /// True when there is nothing to send or write.
    package var isEmpty: Bool { ntfyURL == nil && pingURL == nil && healthchecksURL == nil && metricsFile == nil }

    /// This notifier for a dry run: people and Kuma hear of it, Healthchecks and the metrics
    /// file (which record real runs) do not.
    package func forDryRun() -> Notifier {
        var n = self
        n.healthchecksURL = nil
        n.metricsFile = nil
        return n
    }

    /// Checks that the URLs are http(s) URLs with a host, and that the Kuma push URL is not a
    /// Healthchecks URL; throws a usage error naming the option (or configuration key).
    package func validate() throws(NotifierUsageError) {
        for (option, url) in [(ntfyName, ntfyURL), (pingName, pingURL)] {
            guard let url else { continue }
            guard let c = URLComponents(string: url), let scheme = c.scheme?.lowercased(),
                  scheme == "http" || scheme == "https", let host = c.host, !host.isEmpty else {
                throw NotifierUsageError(option: option, redacted: Self.redact(url))
            }
        }
        if let pingURL, HealthchecksURL.looksLikeHealthchecks(pingURL) {
            throw NotifierUsageError(option: pingName, redacted: Self.redact(pingURL), reason:
                "is a Healthchecks URL; \(pingName) sends Uptime Kuma's GET ?status=down, which Healthchecks counts as a success, "
                + "so a failed run would look good. Give it to --healthchecks (configuration: HS_HEALTHCHECKS_BACKUP, _VERIFY, _PRUNE, _COPY)")
        }
        if let healthchecksURL { try HealthchecksURL.validate(healthchecksURL, option: healthchecksName) }
    }

    /// Marks the start of the run (once): Healthchecks gets `/start?rid=`, and its
    /// `Ping-Body-Limit` is kept for the end ping.
    /// - Returns: warnings for a start ping that failed.
    package func start() -> [String] {
        let first = session.state.withLock { s -> Bool in
            guard s.started == nil else { return false }
            s.started = Date()
            return true
        }
        guard first, let healthchecksURL, let url = HealthchecksURL.ping(healthchecksURL, endpoint: "start", runID: session.runID) else { return [] }
        var request = CurlRequest(method: .get, url: url.absoluteString, timeout: timeout)
        request.wantedHeader = "ping-body-limit"
        let answer = send(request, what: "Healthchecks start ping to \(Self.redact(healthchecksURL))")
        if let limit = answer.header.flatMap(Int.init), limit > 0 {
            session.state.withLock { $0.bodyLimit = limit }
        }
        return answer.warning.map { [$0] } ?? []
    }

    /// Reports `outcome`: ntfy (on failure, or on success with `notifySuccess`, or a success that
    /// needs attention), the Kuma push, the Healthchecks end ping and the metrics file.
    /// - Returns: warnings for deliveries that failed (URLs redacted); empty when all went out.
    package func report(_ outcome: RunReport) -> [String] {
        var warnings = start()
        if let ntfyURL, !outcome.success || notifySuccess || outcome.attention {
            if let w = postNtfy(ntfyURL, outcome) { warnings.append(w) }
        }
        if let pingURL {
            if let w = push(pingURL, outcome) { warnings.append(w) }
        }
        if let healthchecksURL, let w = finishHealthchecks(healthchecksURL, outcome) { warnings.append(w) }
        if let metricsFile {
            let started = session.state.withLock { $0.started } ?? Date()
            let duration = outcome.duration ?? Date().timeIntervalSince(started)
            if let w = MetricsFile.write(path: metricsFile, set: outcome.set, command: metricsCommand, exitCode: outcome.exitCode,
                                         endedAt: Date(), duration: duration, metrics: outcome.metrics) { warnings.append(w) }
        }
        return warnings
    }

    // MARK: Healthchecks

    /// The end ping's first body line: the exit code and the summary or error.
    package static func healthchecksFirstLine(_ outcome: RunReport) -> String {
        let what = outcome.status == .filesMissing ? ExitStatus.filesMissing.meaning
            : outcome.exitCode == 0 ? "ok" : "FAILED"
        return "\(outcome.operation) on \(outcome.set): exit \(outcome.exitCode) (\(what)): \(plainText(outcome.message))"
    }

    private func finishHealthchecks(_ base: String, _ outcome: RunReport) -> String? {
        let endpoint = HealthchecksURL.endpoint(forExitCode: outcome.exitCode)
        guard let url = HealthchecksURL.ping(base, endpoint: endpoint, runID: session.runID) else {
            return "Healthchecks: invalid URL \(Self.redact(base))"
        }
        let limit = session.state.withLock { $0.bodyLimit }
        var request = CurlRequest(method: .post, url: url.absoluteString, timeout: timeout)
        request.headers.append(("Content-Type", "text/plain; charset=utf-8"))
        request.body = Array(HealthchecksURL.body(first: Self.healthchecksFirstLine(outcome), log: LogTail.recent(), limit: limit).utf8)
        return send(request, what: "Healthchecks ping to \(Self.redact(base))").warning
    }

    // MARK: ntfy

    /// The headers and body of the ntfy message for `outcome`.
    package static func ntfyMessage(_ outcome: RunReport) -> (headers: [String: String], body: String) {
        let monitor = outcome.status.monitor
        let title = monitor == .failed ? "\(outcome.operation) FAILED on \(outcome.set)"
            : monitor == .warning ? "\(outcome.operation) OK, FILES MISSING on \(outcome.set)"
            : outcome.attention ? "\(outcome.operation) OK with warnings on \(outcome.set)"
            : "\(outcome.operation) OK on \(outcome.set)"
        var body = plainText(outcome.message)
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
        var auth: String?
        if let user = c.user {
            // `user` and `password` are percent-decoded already: decoded again, a '%' in them
            // (%25 in the URL) began an escape, and a password that then did not decode was sent empty.
            let pair = "\(user):\(c.password ?? "")"
            auth = "Basic " + Data(pair.utf8).base64EncodedString()
            c.user = nil; c.password = nil
        } else if let token = ntfyToken, !token.isEmpty {
            auth = "Bearer " + token
        }
        guard let target = c.url else { return "ntfy: invalid URL \(Self.redact(url))" }
        var request = CurlRequest(method: .post, url: target.absoluteString, timeout: timeout)
        let message = Self.ntfyMessage(outcome)
        // URLSession's default for a body, kept: ntfy reads the body as the message either way.
        request.headers.append(("Content-Type", "application/x-www-form-urlencoded"))
        for k in message.headers.keys.sorted() { request.headers.append((k, message.headers[k]!)) }
        if let auth { request.headers.append(("Authorization", auth)) }
        request.body = Array(message.body.utf8)
        return send(request, what: "ntfy notification to \(Self.redact(url))").warning
    }

    // MARK: Uptime Kuma

    /// The push URL for `outcome`: `status`, `msg` and `ping` set (replacing any already there).
    package static func pushURL(_ url: String, _ outcome: RunReport) -> URL? {
        guard var c = URLComponents(string: url) else { return nil }
        var items = (c.queryItems ?? []).filter { !["status", "msg", "ping"].contains($0.name) }
        // Kuma has up and down only: files missing (exit 3) is up, with the warning in the message.
        let monitor = outcome.status.monitor
        var msg = monitor == .failed ? "FAILED" : monitor == .warning ? "WARNING: \(ExitStatus.filesMissing.meaning)" : "OK"
        msg += ": " + plainText(outcome.message)
        if msg.count > 200 { msg = String(msg.prefix(197)) + "..." }
        items.append(URLQueryItem(name: "status", value: outcome.success ? "up" : "down"))
        items.append(URLQueryItem(name: "msg", value: msg))
        items.append(URLQueryItem(name: "ping", value: outcome.duration.map { String(Int(($0 * 1000).rounded())) } ?? ""))
        c.queryItems = items
        // URLComponents leaves '+' alone; servers decode it as a space.
        c.percentEncodedQuery = c.percentEncodedQuery?.replacingScalars("+", with: "%2B")
        return c.url
    }

    private func push(_ url: String, _ outcome: RunReport) -> String? {
        guard let target = Self.pushURL(url, outcome) else { return "ping: invalid URL \(Self.redact(url))" }
        let request = CurlRequest(method: .get, url: target.absoluteString, timeout: timeout)
        return send(request, what: "Uptime Kuma push to \(Self.redact(url))").warning
    }

    // MARK: HTTP

    /// The User-Agent of every request: `hs-backup/<homeServerVersion>`.
    package static let userAgent = "hs-backup/\(homeServerVersion)"

    /// Sends `request` (curl(1), `CurlRequest`); a transport error or a non-2xx answer is a warning.
    /// - Returns: the warning (nil when delivered) and the wanted response header's value.
    private func send(_ request: CurlRequest, what: String) -> (warning: String?, header: String?) {
        var request = request
        request.headers.append(("User-Agent", Self.userAgent))
        do {
            let answer = try request.send()
            guard (200..<300).contains(answer.status) else {
                return ("\(what) failed: HTTP \(answer.status) \(answer.body.trimmingWhitespaceAndNewlines())", answer.header)
            }
            return (nil, answer.header)
        } catch {
            return ("\(what) failed: \(Self.redactError(error.description))", nil)
        }
    }

    // MARK: Redaction

    /// `scheme://host[:port]/…` (`URLRedaction.redact`, the one rule for secret URLs).
    package static func redact(_ url: String) -> String { URLRedaction.redact(url) }

    /// curl's messages can quote a URL (a redirect's target): redacted like the others.
    private static func redactError(_ text: String) -> String {
        var out = text
        // Scalar by scalar, as NSRegularExpression matched.
        let url = try! Regex(#"https?://[^\s"']+"#).matchingSemantics(.unicodeScalar)
        while let r = out.firstRange(of: url) {
            out.replaceSubrange(r, with: redact(String(out[r])))
        }
        return out
    }

    /// The message with any control, format or line separator character that reached it
    /// escaped as in names (`NameEscape`): names are escaped where they are put into messages;
    /// this keeps a notification one honest text whatever slipped through (no forged lines, no
    /// escape sequences in a phone's notification or a Kuma event).
    static func plainText(_ s: String) -> String {
        var out = ""
        for u in s.unicodeScalars {
            if NameEscape.escapes(u) {
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

/// A `--notify`/`--ping`/`--healthchecks` value (or configuration key) that cannot be used.
package struct NotifierUsageError: Error, CustomStringConvertible {
    package var option: String
    package var redacted: String
    /// What is wrong; nil: not an http(s) URL.
    package var reason: String?

    package init(option: String, redacted: String, reason: String? = nil) {
        self.option = option; self.redacted = redacted; self.reason = reason
    }

    package var description: String {
        if let reason { return "\(option) \(redacted): \(reason)" }
        let example = option.contains("ping") || option.contains("KUMA") ? "https://kuma.example.net/api/push/TOKEN"
            : option.contains("ealthchecks") || option.contains("HEALTHCHECKS") ? "https://hc-ping.com/UUID"
            : "https://ntfy.example.net/backups"
        return "\(option) \(redacted): not an http(s) URL; give e.g. \(example)"
    }
}
