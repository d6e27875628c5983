// How the browse commands print: many lines (a listing may have a million), so through one
// buffered writer instead of a write per line, with names escaped (`NameEscape`), times in UTC
// marked Z as everywhere else, and JSON streamed as one object whose arrays are written as the
// entries come (a failure half way closes the object with its "error").
#if canImport(Glibc)
import Glibc
#endif
import Archive
import Backup
import Support

/// Lines for stdout, written in 64 KiB blocks.
package final class LineWriter {
    private var buffer: [UInt8] = []
    private let fd: Int32
    /// The file descriptor written to (1: stdout).
    package init(fd: Int32 = STDOUT_FILENO) {
        self.fd = fd
        buffer.reserveCapacity(80 << 10)
    }

    deinit { try? flush() }

    package func write(_ s: String) throws {
        var s = s
        s.withUTF8 { buffer.append(contentsOf: $0) }
        if buffer.count >= 64 << 10 { try flush() }
    }

    package func line(_ s: String) throws { try write(s); try write("\n") }

    package func write(bytes: [UInt8]) throws {
        if buffer.count + bytes.count > 256 << 10 { try flush() }
        if bytes.count >= 64 << 10 {
            buffer += bytes
            try flush()
        } else {
            buffer += bytes
        }
    }

    /// Writes what is buffered.
    /// - Throws: `ToolError` when stdout is closed or full (a pipe whose reader went away).
    package func flush() throws {
        var done = 0
        while done < buffer.count {
            let n = buffer.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 {
                if errno == EINTR { continue }
                let why = String(cString: strerror(errno))
                buffer.removeAll(keepingCapacity: true)
                throw ToolError("cannot write the output: \(why)")
            }
            done += n
        }
        buffer.removeAll(keepingCapacity: true)
    }
}

/// JSON text for the streamed objects (keys in snake_case as every tool's `--json`); the escaper
/// is Support's `JSONText`.
extension JSONText {
    /// A name (bytes) as a JSON string: its escaped form, which `NameArgument` takes back.
    package static func name(_ bytes: some Collection<UInt8>) -> String { string(NameEscape.escape(bytes)) }
}

/// Entry fields as the browse commands show them.
package enum EntryText {
    /// `2026-11-27T03:00:00Z`, or with nanoseconds `2026-11-27T03:00:00.123456789Z`.
    package static func time(_ t: FileTime, nanoseconds: Bool = false) -> String {
        var tm = Glibc.tm()
        var secs = time_t(t.seconds)
        guard gmtime_r(&secs, &tm) != nil else { return "\(t.seconds)s" }
        func pad(_ v: Int32, _ n: Int) -> String {
            let s = String(v)
            return s.count >= n ? s : String(repeating: "0", count: n - s.count) + s
        }
        var s = pad(tm.tm_year + 1900, 4) + "-" + pad(tm.tm_mon + 1, 2) + "-" + pad(tm.tm_mday, 2) + "T"
            + pad(tm.tm_hour, 2) + ":" + pad(tm.tm_min, 2) + ":" + pad(tm.tm_sec, 2)
        if nanoseconds && t.nanoseconds != 0 { s += "." + pad(Int32(t.nanoseconds), 9) }
        return s + "Z"
    }

    /// The one-letter type as `tar -tv` shows it: `-` file, `d` directory, `l` symlink, `h` hardlink.
    package static func typeLetter(_ t: ManifestEntryType) -> String {
        switch t {
        case .file: "-"
        case .directory: "d"
        case .symlink: "l"
        case .hardlink: "h"
        }
    }

    /// `drwxr-xr-x` (with s/S, t/T for setuid, setgid, sticky).
    package static func modeString(_ type: ManifestEntryType, _ mode: UInt32) -> String {
        var s = typeLetter(type)
        let bits: [(UInt32, Character)] = [(0o400, "r"), (0o200, "w"), (0o100, "x"), (0o40, "r"), (0o20, "w"), (0o10, "x"),
                                           (0o4, "r"), (0o2, "w"), (0o1, "x")]
        for (i, (b, c)) in bits.enumerated() {
            let set = mode & b != 0
            var ch: Character = set ? c : "-"
            if i == 2 && mode & 0o4000 != 0 { ch = set ? "s" : "S" }
            if i == 5 && mode & 0o2000 != 0 { ch = set ? "s" : "S" }
            if i == 8 && mode & 0o1000 != 0 { ch = set ? "t" : "T" }
            s.append(ch)
        }
        return s
    }

    /// `0644`.
    package static func octalMode(_ mode: UInt32) -> String {
        let s = String(mode & 0o7777, radix: 8)
        return String(repeating: "0", count: max(0, 4 - s.count)) + s
    }

    /// Left-padded to `width`.
    package static func right(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
    }

    /// Right-padded to `width`.
    package static func left(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : s + String(repeating: " ", count: width - s.count)
    }
}

/// One JSON object on stdout whose array is written entry by entry. A failure after the
/// array began closes it with `"error"` and `"exit_code"`, so a consumer still gets exactly
/// one object.
package final class StreamedJSON {
    private let out: LineWriter
    private var first = true
    private var open = false

    /// Writes `{head..., "arrayKey": [`.
    package init(out: LineWriter, head: [(String, String)], arrayKey: String) throws {
        self.out = out
        var s = "{"
        for (k, v) in head { s += JSONText.string(k) + ":" + v + "," }
        try out.write(s + JSONText.string(arrayKey) + ":[")
        open = true
    }

    package func item(_ json: String) throws {
        try out.write(first ? json : "," + json)
        first = false
    }

    /// Writes `], tail...}`.
    package func finish(_ tail: [(String, String)]) throws {
        var s = "]"
        for (k, v) in tail { s += "," + JSONText.string(k) + ":" + v }
        try out.line(s + "}")
        try out.flush()
        open = false
    }

    /// Closes the object with the failure, when the array was begun and not finished.
    /// - Returns: false when there was nothing to close (the caller reports as usual).
    package func fail(_ message: String, exitCode: Int32) -> Bool {
        guard open else { return false }
        open = false
        try? out.line("],\"error\":" + JSONText.string(message) + ",\"exit_code\":\(exitCode)}")
        try? out.flush()
        return true
    }
}

extension EntryText {
    /// `-rw-r--r--  1000/1000     1234  2026-11-27T03:00:00Z  radarr/config.xml` (as `tar -tv`:
    /// `-> target` for a symlink, `link to target` for a hardlink).
    package static func line(_ e: ManifestEntry, path: [UInt8], link: [UInt8]) -> String {
        let owner = left("\(e.uid)/\(e.gid)", 11)
        var s = modeString(e.type, e.mode) + "  " + owner
        s += right(String(e.size), 12) + "  " + time(e.mtime) + "  " + NameEscape.escape(path)
        if e.type == .symlink { s += " -> " + NameEscape.escape(link) }
        if e.type == .hardlink { s += " link to " + NameEscape.escape(link) }
        return s
    }

    /// The entry's fields as JSON members (path, type, mode, uid, gid, size, mtime with ns,
    /// link for links, sha256 for files).
    package static func jsonFields(_ e: ManifestEntry, path: [UInt8], link: [UInt8]) -> [(String, String)] {
        var f: [(String, String)] = [("path", JSONText.name(path)), ("type", JSONText.string(e.type.name)),
                                     ("mode", JSONText.string(octalMode(e.mode))), ("uid", "\(e.uid)"), ("gid", "\(e.gid)"),
                                     ("size", "\(e.size)"), ("mtime", JSONText.string(time(e.mtime, nanoseconds: true)))]
        if e.type == .symlink || e.type == .hardlink { f.append(("link", JSONText.name(link))) }
        if e.type == .file || e.type == .hardlink, !e.hash.isZero { f.append(("sha256", JSONText.string(e.hash.hex))) }
        return f
    }
}
