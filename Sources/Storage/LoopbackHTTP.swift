import FoundationEssentials
import Support
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A response of `LoopbackHTTP`.
struct HTTPResponse: Sendable {
    var status: Int
    /// Header names in lower case.
    var headers: [String: String]
    var body: [UInt8]
}

/// Why a request to the local rclone server failed below HTTP (no status line).
struct LoopbackHTTPError: Error, CustomStringConvertible {
    var what: String
    var errno: Int32
    var description: String { errno == 0 ? what : "\(what): \(String(cString: strerror(errno)))" }
}

/// A small HTTP/1.1 client for one server on 127.0.0.1 (the `rclone rcd` a destination runs):
/// keep-alive connections pooled, bodies by Content-Length or chunked, Basic authorization on
/// every request. Not a general client: no TLS, no redirects, no proxies. Synchronous; safe
/// from several threads (each request takes its own connection from the pool).
final class LoopbackHTTP: Sendable {
    let port: UInt16
    private let authorization: String
    private let idle = Mutex<[Int32]>([])
    /// How long one read or write on a connection may block.
    let timeoutSeconds: Int

    init(port: UInt16, user: String, password: String, timeoutSeconds: Int = 300) {
        self.port = port
        self.authorization = "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()
        self.timeoutSeconds = timeoutSeconds
    }

    deinit { for fd in idle.withLock({ $0 }) { close(fd) } }

    /// Sends one request and reads the whole response.
    /// - Parameters:
    ///   - path: already percent-encoded, starting with `/`.
    /// - Throws: `LoopbackHTTPError` when the server cannot be reached or the answer is cut.
    func request(_ method: String, _ path: String, headers: [(String, String)] = [], body: [UInt8] = []) throws -> HTTPResponse {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nAuthorization: \(authorization)\r\n"
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        head += "Content-Length: \(body.count)\r\n\r\n"
        let message = Array(head.utf8) + body
        // A pooled connection the server closed meanwhile fails at once: retry once on a new one.
        if let fd = idle.withLock({ $0.popLast() }) {
            if let r = try? exchange(fd, message) { return r }
        }
        return try exchange(try connect(), message)
    }

    private func exchange(_ fd: Int32, _ message: [UInt8]) throws -> HTTPResponse {
        do {
            try sendAll(fd, message)
            var reader = BufferedSocket(fd: fd)
            let response = try reader.readResponse()
            if response.headers["connection"]?.lowercased() == "close" { close(fd) } else { idle.withLock { $0.append(fd) } }
            return response
        } catch {
            close(fd)
            throw error
        }
    }

    private func connect() throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw LoopbackHTTPError(what: "socket", errno: errno) }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 {
            let e = errno
            close(fd)
            throw LoopbackHTTPError(what: "connect to 127.0.0.1:\(port)", errno: e)
        }
        return fd
    }

    private func sendAll(_ fd: Int32, _ bytes: [UInt8]) throws {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw LoopbackHTTPError(what: "send to 127.0.0.1:\(port)", errno: errno == EAGAIN ? ETIMEDOUT : errno)
            }
            off += n
        }
    }
}

/// Reads an HTTP/1.1 response from a socket.
private struct BufferedSocket {
    let fd: Int32
    var buffer: [UInt8] = []
    var start = 0

    init(fd: Int32) { self.fd = fd }

    mutating func fill() throws {
        if start > 0 && start == buffer.count { buffer.removeAll(keepingCapacity: true); start = 0 }
        var chunk = [UInt8](repeating: 0, count: 256 << 10)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 {
                throw LoopbackHTTPError(what: "no answer from the local rclone server", errno: errno == EAGAIN ? ETIMEDOUT : errno)
            }
            if n == 0 { throw LoopbackHTTPError(what: "the local rclone server closed the connection", errno: 0) }
            buffer += chunk[0..<n]
            return
        }
    }

    mutating func line() throws -> String {
        while true {
            if let i = buffer[start...].firstIndex(of: 10) {
                var end = i
                if end > start && buffer[end - 1] == 13 { end -= 1 }
                let s = String(decoding: buffer[start..<end], as: UTF8.self)
                start = i + 1
                return s
            }
            try fill()
        }
    }

    mutating func bytes(_ n: Int) throws -> [UInt8] {
        while buffer.count - start < n { try fill() }
        let out = Array(buffer[start..<(start + n)])
        start += n
        return out
    }

    mutating func readResponse() throws -> HTTPResponse {
        let statusLine = try line()
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            throw LoopbackHTTPError(what: "the local rclone server sent no HTTP status line ('\(statusLine.prefix(80))')", errno: 0)
        }
        var headers: [String: String] = [:]
        while true {
            let l = try line()
            if l.isEmpty { break }
            guard let colon = l.firstIndex(of: ":") else { continue }
            headers[l[..<colon].lowercased()] = l[l.index(after: colon)...].trimmingWhitespace()
        }
        var body: [UInt8] = []
        if headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
            while true {
                let sizeLine = try line()
                guard let size = Int(sizeLine.split(separator: ";").first ?? "", radix: 16) else {
                    throw LoopbackHTTPError(what: "bad chunk size '\(sizeLine.prefix(20))' from the local rclone server", errno: 0)
                }
                if size == 0 {
                    while try !line().isEmpty {}  // trailers
                    break
                }
                body += try bytes(size)
                _ = try line()
            }
        } else if let length = headers["content-length"].flatMap({ Int($0) }) {
            body = try bytes(length)
        } else if status != 204 && status != 304 {
            headers["connection"] = "close"
            while true {
                do { try fill() } catch let e as LoopbackHTTPError where e.errno == 0 { break }
            }
            body = Array(buffer[start...])
        }
        return HTTPResponse(status: status, headers: headers, body: body)
    }
}
