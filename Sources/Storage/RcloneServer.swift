import FoundationEssentials
import Support

#if canImport(Glibc)
import Glibc
#endif

/// The `rclone` program as the toolkit runs it: one `rclone rcd` per destination for every
/// call that is not an upload (list, stat, mkdir, delete, move, hashes, and ranged reads through
/// `--rc-serve`), so no small read starts a process; and `rclone rcat` for uploads.
///
/// - The server listens on 127.0.0.1 on a free port and requires a user and password made at
///   random for it, passed through its environment (never on a command line).
/// - It runs under `sh`, which waits on a socket from this process: when this process ends
///   in any way (SIGKILL included), the socket closes and the shell stops rclone.
/// - Every rclone started gets short network timeouts unless the environment sets its own:
///   `RCLONE_CONTIMEOUT=10s`, `RCLONE_TIMEOUT=30s`, `RCLONE_LOW_LEVEL_RETRIES=3`; every other
///   `RCLONE_*` variable (RCLONE_CONFIG, RCLONE_BWLIMIT, ...) reaches it unchanged.
/// - `--ignore-times` is always set: without it, a move onto a file of the same size and
///   modification second keeps the old file and deletes the new one (rclone 1.60 takes them
///   for equal).
/// - Files are created with umask 077 where rclone creates them itself (the local backend).
package final class RcloneServer: Sendable {
    let process: ChildProcess
    let http: LoopbackHTTP

    /// The variables every rclone gets: the defaults above, under what the environment sets.
    package static var environment: [String: String] {
        let env = ProcessInfo.processInfo.environment
        var out: [String: String] = [:]
        for (k, v) in [("RCLONE_CONTIMEOUT", "10s"), ("RCLONE_TIMEOUT", "30s"), ("RCLONE_LOW_LEVEL_RETRIES", "3")] where env[k] == nil {
            out[k] = v
        }
        return out
    }

    /// The rclone binary: `rclone` on PATH, or HS_RCLONE.
    static var binary: String { ProcessInfo.processInfo.environment["HS_RCLONE"] ?? "rclone" }

    /// Starts `rclone rcd` and waits until it answers (at most 30 s).
    /// - Parameter extra: variables set for rclone over the environment (tests: RCLONE_CONFIG).
    /// - Throws: `RcloneError` (`.usage` when rclone is not installed).
    package static func start(extra: [String: String] = [:]) throws -> RcloneServer {
        guard Subprocess.which(binary) != nil else {
            throw RcloneError(kind: .usage, operation: "start", location: binary, status: 127,
                              detail: "the rclone program is not installed (Debian: apt install rclone)")
        }
        var lastError: (any Error)?
        for _ in 0..<3 {  // a free port may be taken between choosing and binding it
            do { return try startOnce(extra) } catch let e as RcloneError where e.detail.contains("address already in use") {
                lastError = e
            }
        }
        throw lastError!
    }

    private static func startOnce(_ extra: [String: String]) throws -> RcloneServer {
        let port = try freePort()
        let user = randomToken(), password = randomToken()
        var env = environment.merging(extra) { $1 }
        env["RCLONE_RC_USER"] = user
        env["RCLONE_RC_PASS"] = password
        let script = #"umask 077; "$@" & c=$!; read -r line; kill -TERM "$c" 2>/dev/null; wait "$c""#
        let process = try ChildProcess.start(["sh", "-c", script, "hs-rclone", binary, "rcd", "--rc-addr", "127.0.0.1:\(port)",
                                              "--rc-serve", "--ignore-times"], environment: env, input: .stream)
        let server = RcloneServer(process: process, http: LoopbackHTTP(port: port, user: user, password: password))
        let nonce = randomToken()
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if !process.isRunning {
                let r = process.wait()
                throw RcloneError(kind: RcloneError.kind(exitStatus: r.status, stderr: r.stderr), operation: "rcd (start)",
                                  location: "127.0.0.1:\(port)", status: r.status, detail: RcloneError.tail(r.stderr))
            }
            if let r = try? server.call("rc/noop", ["hs": nonce], location: ""), r["hs"] as? String == nonce { return server }
            usleep(50_000)
        }
        server.stop()
        throw RcloneError(kind: .failed, operation: "rcd (start)", location: "127.0.0.1:\(port)", status: 0,
                          detail: "did not answer within 30 s. " + RcloneError.tail(process.stderrTail))
    }

    private init(process: ChildProcess, http: LoopbackHTTP) {
        self.process = process
        self.http = http
    }

    deinit { stop() }

    /// Stops the server (its shell sees end of file and stops rclone). Idempotent.
    package func stop() {
        process.closeInput()
        process.wait()
    }

    /// The last lines rclone wrote to stderr.
    package var stderrTail: String { RcloneError.tail(process.stderrTail) }

    // MARK: - Remote control calls

    /// Calls an rc method (`operations/list`, ...) with JSON parameters.
    /// - Parameters:
    ///   - location: for messages.
    /// - Throws: `RcloneError` with rclone's error text; `.unreachable` when the server itself
    ///   does not answer.
    package func call(_ method: String, _ params: [String: Any], location: String, operation: String? = nil) throws -> [String: Any] {
        let body = Array(try JSONAny.text(params).utf8)
        let response: HTTPResponse
        do {
            response = try http.request("POST", "/" + method, headers: [("Content-Type", "application/json")], body: body)
        } catch {
            throw serverGone(operation ?? method, location, error)
        }
        let json = JSONAny.parse(response.body) as? [String: Any] ?? [:]
        guard response.status == 200 else {
            let text = json["error"] as? String ?? String(decoding: response.body.prefix(300), as: UTF8.self)
            throw RcloneError(kind: RcloneError.kind(httpStatus: response.status, error: text), operation: operation ?? method,
                              location: location, status: Int32(response.status), detail: text)
        }
        return json
    }

    /// Reads `count` bytes at `offset` of the file `path` of `fs` (fewer at its end).
    package func read(fs: String, path: String, offset: UInt64, count: Int, location: String) throws -> [UInt8] {
        guard count > 0 else { return [] }
        let target = "/" + Self.percentEncode("[\(fs)]/" + path)
        let response: HTTPResponse
        do {
            response = try http.request("GET", target, headers: [("Range", "bytes=\(offset)-\(offset + UInt64(count) - 1)")])
        } catch {
            throw serverGone("read", location, error)
        }
        switch response.status {
        case 206: return response.body
        case 200: return Array(response.body.dropFirst(Int(offset)).prefix(count))
        case 416: return []
        default:
            let text = String(decoding: response.body.prefix(300), as: UTF8.self).trimmingWhitespaceAndNewlines()
            throw RcloneError(kind: RcloneError.kind(httpStatus: response.status, error: text), operation: "read", location: location,
                              status: Int32(response.status), detail: text + (response.status >= 500 ? "\n" + stderrTail : ""))
        }
    }

    /// Uploads a small file whole (`operations/uploadfile`, one request).
    /// - Parameter callerChecks: skip rclone's comparison of the remote's hash with the bytes
    ///   received (one more hash command on an SFTP server): the caller checks the upload.
    package func upload(fs: String, path: String, contents: [UInt8], location: String, callerChecks: Bool = false) throws {
        let directory = parentDirectory(path)
        let name = String(path.dropFirst(directory.isEmpty ? 0 : directory.count + 1))
        let boundary = "hs-" + Self.randomToken()
        let quoted = name.replacingScalars("\\", with: "\\\\").replacingScalars("\"", with: "\\\"")
        var body = Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"file0\"; filename=\"\(quoted)\"\r\nContent-Type: application/octet-stream\r\n\r\n".utf8)
        body += contents
        body += Array("\r\n--\(boundary)--\r\n".utf8)
        var query = "fs=\(Self.percentEncode(fs, keepSlash: false))&remote=\(Self.percentEncode(directory, keepSlash: false))"
        if callerChecks { query += "&_config=" + Self.percentEncode(#"{"IgnoreChecksum":true}"#, keepSlash: false) }
        let response: HTTPResponse
        do {
            response = try http.request("POST", "/operations/uploadfile?" + query,
                                        headers: [("Content-Type", "multipart/form-data; boundary=\(boundary)")], body: body)
        } catch {
            throw serverGone("upload", location, error)
        }
        guard response.status == 200 else {
            let json = JSONAny.parse(response.body) as? [String: Any] ?? [:]
            let text = json["error"] as? String ?? String(decoding: response.body.prefix(300), as: UTF8.self)
            throw RcloneError(kind: RcloneError.kind(httpStatus: response.status, error: text), operation: "upload", location: location,
                              status: Int32(response.status), detail: text)
        }
    }

    private func serverGone(_ operation: String, _ location: String, _ error: any Error) -> RcloneError {
        RcloneError(kind: .unreachable, operation: operation, location: location, status: 0,
                    detail: "the local rclone server did not answer (\(error))" + (stderrTail.isEmpty ? "" : "; rclone said: " + stderrTail))
    }

    // MARK: - Helpers

    /// Percent-encodes everything but unreserved characters (and `/` unless told).
    static func percentEncode(_ s: String, keepSlash: Bool = true) -> String {
        var out = ""
        for b in s.utf8 {
            let c = Character(UnicodeScalar(b))
            if (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || "-._~".contains(c) || (keepSlash && b == 0x2f) {
                out.append(c)
            } else {
                out += "%" + hexString([b]).uppercased()  // %XX, upper-case hex as "%%%02X"
            }
        }
        return out
    }

    static func randomToken() -> String {
        var g = SystemRandomNumberGenerator()
        return (0..<4).map { _ in String(g.next() as UInt64, radix: 16) }.joined()
    }

    /// A TCP port on 127.0.0.1 nobody listens on now.
    static func freePort() throws -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw RcloneError(kind: .failed, operation: "start", location: "127.0.0.1", status: 0, detail: "socket() failed") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard ok else {
            throw RcloneError(kind: .failed, operation: "start", location: "127.0.0.1", status: 0,
                              detail: "no free port: \(String(cString: strerror(errno)))")
        }
        return UInt16(bigEndian: addr.sin_port)
    }
}
