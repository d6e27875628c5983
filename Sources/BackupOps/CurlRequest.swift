// CurlRequest: the notifications' HTTP requests, sent by curl(1) as a child process.
//
// Why not URLSession: FoundationNetworking links libcurl with gnutls, krb5, ldap, ssh2 and
// p11-kit into every start of every tool (37 shared libraries, gnutls/libtasn1 constructors),
// several milliseconds per run, for the one or two requests a run may send. curl(1) costs
// that only when a notification is actually sent.
//
// Secrets: ping URLs, ntfy topics and tokens are secrets, so nothing of the request is put in
// argv (any user can read /proc/PID/cmdline): the URL, the headers and the body reach curl as
// its configuration on stdin (`curl -q -K -`). `-q` first: no ~/.curlrc. Only http and https,
// also after a redirect (redirects are followed, as URLSession did, at most 5). No globbing
// of `[]{}` in the URL. A body is sent as given (`data-raw`: no `@file`, no newline
// stripping), `Expect:` is off (no 1 s wait on servers without 100-continue).
// The answer: the status, the first 200 bytes of the body (for the warning) and one response
// header (`Ping-Body-Limit` for Healthchecks) through `--write-out` (curl >= 7.84; older
// ones print no header value and the default limit is used).
import FoundationEssentials
import Glibc
import Dispatch
import Support

/// One HTTP request of a notifier.
package struct CurlRequest: Sendable {
    package var method: Method
    package var url: String
    /// Header lines in order, names as given.
    package var headers: [(name: String, value: String)] = []
    /// POST only: the body.
    package var body: [UInt8] = []
    /// Seconds the whole request may take (connect included).
    package var timeout: TimeInterval
    /// A response header whose value `send` returns (name, any case).
    package var wantedHeader: String?

    package enum Method: String, Sendable { case get = "GET", post = "POST" }

    package init(method: Method, url: String, timeout: TimeInterval) {
        self.method = method; self.url = url; self.timeout = timeout
    }

    /// What came back.
    package struct Answer: Sendable, Equatable {
        /// The HTTP status (0: no answer).
        package var status: Int
        /// The start of the response body.
        package var body: String
        /// The value of `wantedHeader` (nil: absent).
        package var header: String?
    }

    /// How a request failed before an HTTP answer: curl's own message (e.g. "Failed to connect
    /// to 127.0.0.1 port 1 ..."), or that curl is missing.
    package struct Failure: Error, CustomStringConvertible {
        package var description: String
    }

    /// curl's configuration for this request (what goes to its stdin).
    package func configuration() -> [UInt8] {
        var out: [UInt8] = []
        func line(_ key: String, _ value: String? = nil) {
            out += Array(key.utf8)
            if let value { out += Array(" = ".utf8); out += Self.quoted(Array(value.utf8)) }
            out.append(0x0A)
        }
        line("url", url)
        line("globoff"); line("silent"); line("show-error"); line("location")
        line("max-redirs", "5")
        line("proto", "=http,https"); line("proto-redir", "=http,https")
        line("max-time", String(max(1, Int(timeout.rounded(.up)))))
        line("connect-timeout", String(max(1, Int(timeout.rounded(.up)))))
        line("header", "Expect:")
        // A header is one line: a control character in a value (none is expected) becomes a space.
        for h in headers { line("header", "\(h.name): " + String(h.value.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? " " : Character($0) })) }
        if method == .post {
            out += Array("data-raw = ".utf8); out += Self.quoted(body); out.append(0x0A)
        }
        // The status and the wanted header after the body, on a line of their own.
        let header = wantedHeader.map { "%header{\($0)}" } ?? ""
        line("write-out", "\(Self.marker)%{http_code} \(header)")
        return out
    }

    /// Starts the write-out line (after the body).
    static let marker = "\nhs-curl-status "

    /// `"…"` with curl's config escapes: backslash, quote, newline, CR, tab. A NUL byte cannot
    /// be carried in curl's configuration: it is sent as the two characters `\0`.
    static func quoted(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x22]
        out.reserveCapacity(bytes.count + 2)
        for b in bytes {
            switch b {
            case 0x5C: out += [0x5C, 0x5C]
            case 0x22: out += [0x5C, 0x22]
            case 0x0A: out += [0x5C, 0x6E]
            case 0x0D: out += [0x5C, 0x72]
            case 0x09: out += [0x5C, 0x74]
            case 0x00: out += [0x5C, 0x5C, 0x30]
            default: out.append(b)
            }
        }
        out.append(0x22)
        return out
    }

    /// Sends the request with curl(1).
    /// - Returns: the answer (any status; the caller judges it).
    /// - Throws: `Failure` when there was no HTTP answer (curl's message), or curl is missing.
    package func send() throws(Failure) -> Answer {
        let child: ChildProcess
        do {
            child = try ChildProcess.start(["curl", "-q", "-K", "-"], input: .stream, captureStdout: true, stderrLimit: 4096)
        } catch {
            throw Failure(description: "curl is not installed (apt-get install curl): \(error)")
        }
        let config = configuration()
        // A curl that stops reading ends with an error we report below.
        try? config.withUnsafeBytes { try child.write($0) }
        child.closeInput()
        // curl ends itself after max-time; this bounds a curl that hangs anyway.
        let killer = DispatchWorkItem { child.signal(SIGKILL) }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout + 5, execute: killer)
        let result = child.wait()
        killer.cancel()
        guard let mark = result.stdout.lastScalarRange(of: Self.marker) else {
            let err = result.stderr.trimmingWhitespaceAndNewlines()
            throw Failure(description: result.status == 128 + SIGKILL ? "no answer within \(Int(timeout)) s"
                          : err.isEmpty ? "curl exited with status \(result.status)" : Self.withoutPrefix(err))
        }
        let tail = result.stdout[mark.upperBound...]
        let parts = tail.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
        let status = Int(parts.first ?? "") ?? 0
        guard result.status == 0, status != 0 else {
            let err = result.stderr.trimmingWhitespaceAndNewlines()
            throw Failure(description: err.isEmpty ? "curl exited with status \(result.status)" : Self.withoutPrefix(err))
        }
        let value = parts.count > 1 ? parts[1].trimmingWhitespaceAndNewlines() : ""
        return Answer(status: status, body: String(result.stdout[..<mark.lowerBound].prefix(200)),
                      header: value.isEmpty ? nil : value)
    }

    /// curl's message without its "curl: (7) " prefix, one line.
    static func withoutPrefix(_ message: String) -> String {
        var m = message.split(separator: "\n").last.map(String.init) ?? message
        if m.hasPrefix("curl: ("), let close = m.firstIndex(of: ")") {
            m = m[m.index(after: close)...].trimmingWhitespace()
        }
        return m
    }
}
