/// Untyped JSON as JSONSerialization gave it, for rclone's remote-control calls, whose
/// parameters and answers are open dictionaries (FoundationEssentials has no JSONSerialization;
/// hs-backup and hs-restore link it only: issue 23). Objects are `[String: Any]`, arrays
/// `[Any]`, numbers `Int64` when integral and in range, else `Double`, `true`/`false` `Bool`,
/// null `JSONAny.null`.
package enum JSONAny {
    package struct Null: Sendable, Equatable {}
    package static let null = Null()

    /// JSON text of `value` (the kinds above; `Int` and `[String]` too).
    package static func text(_ value: Any) throws -> String {
        switch value {
        case let s as String: return JSONText.string(s)
        case let b as Bool: return b ? "true" : "false"
        case let i as Int: return String(i)
        case let i as Int64: return String(i)
        case let d as Double: return try JSONText.double(d)
        case is Null: return "null"
        case let o as [String: Any]: return "{" + (try o.map { try JSONText.string($0.key) + ":" + text($0.value) }).joined(separator: ",") + "}"
        case let a as [Any]: return JSONText.array(try a.map(text))
        default: throw NotJSON(detail: "\(type(of: value)) is not a JSON value")
        }
    }

    /// The value of JSON text; nil when it is not JSON.
    package static func parse(_ bytes: [UInt8]) -> Any? {
        var p = Parser(b: bytes)
        guard let v = p.value() else { return nil }
        p.skipSpace()
        return p.i == bytes.count ? v : nil
    }

    package struct NotJSON: Error, CustomStringConvertible {
        package var detail: String
        package var description: String { detail }
    }

    private struct Parser {
        let b: [UInt8]
        var i = 0
        var depth = 0

        mutating func skipSpace() {
            while i < b.count, b[i] == 0x20 || b[i] == 0x09 || b[i] == 0x0A || b[i] == 0x0D { i += 1 }
        }

        mutating func literal(_ word: String) -> Bool {
            let w = Array(word.utf8)
            guard b.count - i >= w.count, b[i ..< i + w.count].elementsEqual(w) else { return false }
            i += w.count
            return true
        }

        mutating func value() -> Any? {
            skipSpace()
            guard i < b.count, depth < 512 else { return nil }
            switch b[i] {
            case UInt8(ascii: "{"):
                i += 1; depth += 1; defer { depth -= 1 }
                var o: [String: Any] = [:]
                skipSpace()
                if i < b.count, b[i] == UInt8(ascii: "}") { i += 1; return o }
                while true {
                    skipSpace()
                    guard let k = string() else { return nil }
                    skipSpace()
                    guard i < b.count, b[i] == UInt8(ascii: ":") else { return nil }
                    i += 1
                    guard let v = value() else { return nil }
                    o[k] = v
                    skipSpace()
                    guard i < b.count else { return nil }
                    if b[i] == UInt8(ascii: "}") { i += 1; return o }
                    guard b[i] == UInt8(ascii: ",") else { return nil }
                    i += 1
                }
            case UInt8(ascii: "["):
                i += 1; depth += 1; defer { depth -= 1 }
                var a: [Any] = []
                skipSpace()
                if i < b.count, b[i] == UInt8(ascii: "]") { i += 1; return a }
                while true {
                    guard let v = value() else { return nil }
                    a.append(v)
                    skipSpace()
                    guard i < b.count else { return nil }
                    if b[i] == UInt8(ascii: "]") { i += 1; return a }
                    guard b[i] == UInt8(ascii: ",") else { return nil }
                    i += 1
                }
            case UInt8(ascii: "\""): return string()
            case UInt8(ascii: "t"): return literal("true") ? true : nil
            case UInt8(ascii: "f"): return literal("false") ? false : nil
            case UInt8(ascii: "n"): return literal("null") ? JSONAny.null : nil
            default: return number()
            }
        }

        mutating func number() -> Any? {
            let start = i
            func digits() -> Int { let s = i; while i < b.count, b[i] >= 0x30, b[i] <= 0x39 { i += 1 }; return i - s }
            if i < b.count, b[i] == UInt8(ascii: "-") { i += 1 }
            let intStart = i
            guard digits() > 0, b[intStart] != 0x30 || i - intStart == 1 else { return nil }
            var integral = true
            if i < b.count, b[i] == UInt8(ascii: ".") { i += 1; integral = false; guard digits() > 0 else { return nil } }
            if i < b.count, b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E") {
                i += 1; integral = false
                if i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") { i += 1 }
                guard digits() > 0 else { return nil }
            }
            let text = String(decoding: b[start ..< i], as: UTF8.self)
            if integral, let n = Int64(text) { return n }
            return Double(text)
        }

        mutating func hex4() -> UInt32? {
            guard b.count - i >= 4 else { return nil }
            var v: UInt32 = 0
            for _ in 0 ..< 4 {
                let c = b[i]
                let d: UInt8
                switch c {
                case 0x30 ... 0x39: d = c - 0x30
                case 0x41 ... 0x46: d = c - 0x41 + 10
                case 0x61 ... 0x66: d = c - 0x61 + 10
                default: return nil
                }
                v = v << 4 | UInt32(d)
                i += 1
            }
            return v
        }

        mutating func string() -> String? {
            guard i < b.count, b[i] == UInt8(ascii: "\"") else { return nil }
            i += 1
            var out: [UInt8] = []
            while i < b.count {
                let c = b[i]
                i += 1
                switch c {
                case UInt8(ascii: "\""):
                    return String(validating: out, as: UTF8.self)
                case UInt8(ascii: "\\"):
                    guard i < b.count else { return nil }
                    let e = b[i]
                    i += 1
                    switch e {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                    case UInt8(ascii: "b"): out.append(0x08)
                    case UInt8(ascii: "f"): out.append(0x0C)
                    case UInt8(ascii: "n"): out.append(0x0A)
                    case UInt8(ascii: "r"): out.append(0x0D)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "u"):
                        guard var u = hex4() else { return nil }
                        if (0xD800 ..< 0xDC00).contains(u) {
                            guard literal("\\u"), let low = hex4(), (0xDC00 ..< 0xE000).contains(low) else { return nil }
                            u = 0x10000 + (u - 0xD800) << 10 + (low - 0xDC00)
                        }
                        guard let scalar = Unicode.Scalar(u) else { return nil }
                        out.append(contentsOf: Array(String(scalar).utf8))
                    default: return nil
                    }
                default:
                    guard c >= 0x20 else { return nil }
                    out.append(c)
                }
            }
            return nil
        }
    }
}
