internal import CShims
import FoundationEssentials
import Glibc
import Synchronization

/// How a tool talks to its user: progress on a terminal, one summary line when not a
/// terminal (cron mails whatever is printed), or a single JSON object with `--json`.
package enum OutputMode: Sendable, Equatable {
    case terminal
    case plain
    case json

    /// The mode for this process: `.json` when asked, `.terminal` when stderr is a TTY.
    package static func detect(json: Bool) -> OutputMode {
        if json { return .json }
        return isatty(STDERR_FILENO) == 1 ? .terminal : .plain
    }
}

/// Writes progress, warnings and results according to an `OutputMode`.
package final class Reporter: Sendable {
    package let mode: OutputMode
    private let progressState = Mutex((last: Date.distantPast, shown: false))

    package init(mode: OutputMode) { self.mode = mode }

    /// A transient progress line (terminal only), rate-limited to 10 per second.
    package func progress(_ line: @autoclosure () -> String, force: Bool = false) {
        guard mode == .terminal, Self.verbosity != .quiet else { return }
        let now = Date()
        let show = progressState.withLock { s in
            guard force || now.timeIntervalSince(s.last) >= 0.1 else { return false }
            s.last = now
            s.shown = true
            return true
        }
        if show { Self.writeStderr("\r\u{1B}[2K" + line()) }
    }

    /// Clears a progress line, if one is shown.
    package func endProgress() {
        let shown = progressState.withLock { s in defer { s.shown = false }; return s.shown }
        if shown { Self.writeStderr("\r\u{1B}[2K") }
    }

    /// A line for humans on stdout (not printed in JSON mode).
    package func info(_ line: String) {
        guard mode != .json, Self.verbosity != .quiet else { return }
        endProgress()
        Self.writeStdout(line + "\n")
    }

    /// A warning on stderr (always; in JSON mode the caller also puts it in the object).
    package func warning(_ line: String) {
        endProgress()
        Self.writeStderr("warning: " + HumanError.scrub(line) + "\n")
    }

    /// An error on stderr.
    package func error(_ line: String) {
        endProgress()
        Self.writeStderr("error: " + HumanError.scrub(line) + "\n")
    }

    /// True when `--json` is on the command line (also for failures found while parsing).
    package static var jsonRequested: Bool { CommandLine.arguments.dropFirst().contains("--json") }

    /// Verbosity from `-q/--quiet` and `-v/--verbose` (set once by the entry point).
    nonisolated(unsafe) package static var verbosity: Verbosity = .normal

    package enum Verbosity: Sendable { case quiet, normal, verbose }

    /// The failure object of `--json`: `{"error": "...", "exit_code": N}`.
    package static func emitJSONError(_ message: String, exitCode: Int32) {
        if let text = failureJSON(message, exitCode: exitCode) { writeJSONObject(text) }
    }

    private static func failureJSON(_ message: String, exitCode: Int32) -> String? {
        struct Failure: Encodable { var error: String; var exit_code: Int32 }
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? enc.encode(Failure(error: message, exit_code: exitCode))).map { String(decoding: $0, as: UTF8.self) + "\n" }
    }

    /// Whether stdout's JSON object was printed, and whether a signal is ending the process
    /// (`emitStoppedBySignal`): the run's own object and the signal's are printed by different
    /// threads, and stdout must get exactly one of them. A Monitor for its timed lock: a writer
    /// stuck on a full stdout must not keep a signal from ending the process.
    private static let jsonObjectState = Monitor((written: false, stopped: false))

    private static func writeJSONObject(_ text: String) {
        jsonObjectState.withLock { s in
            // A signal's object is on stdout and the process is exiting.
            guard !s.stopped else { return }
            writeStdout(text)
            s.written = true
        }
    }

    /// For the thread that handles SIGINT, SIGTERM and SIGHUP (SignalWatch's, not a signal
    /// handler), before its cleanup: from now on the run prints no JSON object (a failure the
    /// cleanup causes in the run, a removed `.partial`, would otherwise print its own object and
    /// exit code instead of the signal's). Waits up to 5 s for an object being printed.
    package static func holdJSONForSignal() {
        _ = jsonObjectState.withLock(within: 5) { s in s.stopped = true }
    }

    /// With `--json`: the failure object of a run that `sig` stopped (exit code 128 + `sig`), for
    /// the thread that handles the signal, just before it ends the process. Nothing when the
    /// run's own object was printed before `holdJSONForSignal` (or is being printed: it waits up
    /// to 5 s for that write); after it, the run prints none.
    package static func emitStoppedBySignal(_ sig: Int32, _ detail: String) {
        guard jsonRequested else { return }
        let message = "stopped by \(signalName(sig)) (signal \(sig)) before it finished" + detail
        _ = jsonObjectState.withLock(within: 5) { s in
            if !s.written, let text = failureJSON(message, exitCode: 128 + sig) {
                writeStdout(text)
                s.written = true
            }
            s.stopped = true
        }
    }

    /// "SIGTERM" for 15 (the signals the tools handle), else "signal N".
    package static func signalName(_ sig: Int32) -> String {
        switch sig {
        case SIGHUP: "SIGHUP"
        case SIGINT: "SIGINT"
        case SIGTERM: "SIGTERM"
        default: "signal \(sig)"
        }
    }

    /// Extra detail, shown only with `-v/--verbose` (stderr).
    package func detail(_ line: String) {
        guard Self.verbosity == .verbose else { return }
        endProgress()
        Self.writeStderr(line + "\n")
    }

    /// Prints one JSON object on stdout (JSON mode) from an Encodable value. Keys are
    /// `snake_case` in every tool (`fsType` is written `fs_type`), so scripts see one style.
    package func emitJSON(_ value: some Encodable) {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        enc.keyEncodingStrategy = .convertToSnakeCase
        if let data = try? enc.encode(value) {
            Self.writeJSONObject(String(decoding: data, as: UTF8.self) + "\n")
        }
    }

    package static func writeStdout(_ s: String) { write(1, s, "standard output") }

    package static func writeStderr(_ s: String) {
        write(2, s, "standard error")
        if !s.hasPrefix("\r") { LogTail.append(s) }
    }

    /// All of `s`, or the process stops with the reason, as FileHandle's `write(_:)` did (a
    /// full disk under a redirect must not pass for a complete report).
    private static func write(_ fd: Int32, _ s: String, _ name: String) {
        do { try Sys.writeAll(fd, Array(s.utf8), shown: name) }
        catch { fatalError("cannot write to \(name): \(Sys.strerror(error.errno))") }
    }
}

/// Human formatting helpers shared by the tools.
package enum Format {
    /// 1536 -> "1.5 KiB".
    package static func bytes(_ n: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n)
        var i = 0
        while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
        return i == 0 ? "\(n) B" : fixed1(v) + " " + units[i]
    }

    /// Seconds with one decimal: "3.2s".
    package static func seconds(_ s: Double) -> String { fixed1(s) + "s" }

    /// `v` with one decimal, exactly as `String(format: "%.1f", v)` (glibc's printf): without
    /// Foundation's CVarArg boxing, whose first use in a process costs more than a backup of
    /// one small file spends formatting (issue 23).
    package static func fixed1(_ v: Double) -> String { fixed(v, decimals: 1) }

    /// `v` with `decimals` decimals (0...20), as `String(format: "%.Nf", v)`.
    package static func fixed(_ v: Double, decimals: Int) -> String {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 400) { buf in
            let n = Int(cshims_format_fixed(buf.baseAddress!, Int32(buf.count), v, Int32(min(max(decimals, 0), 20))))
            return String(decoding: UnsafeRawBufferPointer(start: buf.baseAddress!, count: min(max(n, 0), buf.count - 1)), as: UTF8.self)
        }
    }
}

extension Format {
    /// `items.joined(separator: separator)` as a loop: the standard library's `joined` is
    /// generic code whose first call in a process looks its types up at run time (~0.2 ms of a
    /// one-file backup, issue 23).
    package static func join(_ items: [String], separator: String) -> String {
        var out = ""
        for i in items.indices {
            if i > 0 { out += separator }
            out += items[i]
        }
        return out
    }

    /// The one way the tools show a point in time: ISO 8601 in UTC, marked `Z`
    /// (`2026-11-29T03:00:00Z`), the same as backup ids.
    /// As Foundation's ISO8601DateFormatter printed it (`TextTests.time` compares them): the
    /// time rounded to the millisecond, then the second it falls in; as ICU's calendar, Julian
    /// dates before 1582-10-15 and years before 1 as years of the era; "" for NaN.
    package static func time(_ secondsSinceEpoch: Double) -> String {
        guard secondsSinceEpoch.isFinite, abs(secondsSinceEpoch) < 1e15 else { return "" }
        let ms = (secondsSinceEpoch * 1000 + 0.5).rounded(.down)
        var t = time_t((ms / 1000).rounded(.down))
        var tm = tm()
        guard gmtime_r(&t, &tm) != nil else { return "" }
        var (year, month, day) = (Int(tm.tm_year) + 1900, Int(tm.tm_mon) + 1, Int(tm.tm_mday))
        if t < -12_219_292_800 {
            // The Julian calendar from the Julian day number (valid from 4713 BC on).
            let c = (Int(t) - Int(tm.tm_hour) * 3600 - Int(tm.tm_min) * 60 - Int(tm.tm_sec)) / 86400 + 2_440_588 + 32082
            let d = (4 * c + 3) / 1461, e = c - 1461 * d / 4, m = (5 * e + 2) / 153
            (year, month, day) = (d - 4800 + m / 10, m + 3 - 12 * (m / 10), e - (153 * m + 2) / 5 + 1)
        }
        return padded(year > 0 ? year : 1 - year, 4) + "-" + padded(month, 2) + "-" + padded(day, 2) + "T"
            + padded(Int(tm.tm_hour), 2) + ":" + padded(Int(tm.tm_min), 2) + ":" + padded(Int(tm.tm_sec), 2) + "Z"
    }

    /// `v` in decimal, zero-padded to `width` digits (`%0*d` for a value >= 0).
    package static func padded(_ v: Int, _ width: Int) -> String {
        let s = String(v)
        return String(repeating: "0", count: max(0, width - s.count)) + s
    }
}
