import Synchronization

/// The last lines this process wrote to stderr (progress lines left out): the log a monitor
/// gets with the end of a run (Healthchecks keeps a ping's body). Bounded: the newest
/// `capacity` bytes are kept, cut at a line start.
package enum LogTail {
    /// Bytes kept (a Healthchecks server keeps at most 100 kB of a ping's body).
    package static let capacity = 100_000

    private static let text = Mutex<String>("")

    /// Records what was written.
    package static func append(_ s: String) {
        text.withLock { t in
            t += s
            if t.utf8.count > capacity * 2 { t = String(tail(t, maxBytes: capacity)) }
        }
    }

    /// The recorded text, its newest `maxBytes` bytes at most, starting at a line start.
    package static func recent(maxBytes: Int = capacity) -> String {
        text.withLock { tail($0, maxBytes: maxBytes) }
    }

    /// The end of `s` within `maxBytes` UTF-8 bytes, from the first line start in that range
    /// (a single line longer than the limit is cut at a character boundary).
    package static func tail(_ s: String, maxBytes: Int) -> String {
        let bytes = Array(s.utf8)
        guard bytes.count > maxBytes else { return s }
        guard maxBytes > 0 else { return "" }
        var start = bytes.count - maxBytes
        if let nl = bytes[start...].firstIndex(of: UInt8(ascii: "\n")), nl + 1 < bytes.count {
            start = nl + 1
        } else {
            while start < bytes.count && bytes[start] & 0xC0 == 0x80 { start += 1 }
        }
        return String(decoding: bytes[start...], as: UTF8.self)
    }

    /// Forgets what was recorded (tests).
    package static func reset() { text.withLock { $0 = "" } }
}
