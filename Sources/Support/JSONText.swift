/// JSON text written by hand, where `JSONEncoder`'s reflection costs too much (a one-file
/// backup's start-up, issue 23) or the output is streamed (the browse commands' `--json`).
/// One escaper for every caller: the manifest header, the set lock and `--json`.
package enum JSONText {
    /// A JSON string literal of `s`: `"` and `\` escaped with a backslash, control characters as
    /// \b \t \n \f \r or \u00xx (lower-case hex), everything else as it is (UTF-8), as
    /// swift-foundation's `JSONEncoder` writes strings. `escapingSlashes`: "/" as "\/" too, as
    /// `JSONEncoder` does without `.withoutEscapingSlashes` (the manifest header's bytes).
    package static func string(_ s: String, escapingSlashes: Bool) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u.value {
            case 0x22: out += "\\\""
            case 0x5C: out += "\\\\"
            case 0x2F where escapingSlashes: out += "\\/"
            case 0x08: out += "\\b"
            case 0x09: out += "\\t"
            case 0x0A: out += "\\n"
            case 0x0C: out += "\\f"
            case 0x0D: out += "\\r"
            case 0 ..< 0x20:
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }

    /// `string(s, escapingSlashes: false)`: what `--json` and the lock write ("/" as it is).
    package static func string(_ s: String) -> String { string(s, escapingSlashes: false) }

    /// `{"k":v,...}` from already encoded values, in the given order, or with `sortedKeys` in the
    /// keys' UTF-8 byte order (as `JSONEncoder`'s `.sortedKeys`). Keys are escaped like values.
    package static func object(_ fields: [(String, String)], sortedKeys: Bool = false, escapingSlashes: Bool = false) -> String {
        let ordered = sortedKeys ? fields.sorted { $0.0.utf8.lexicographicallyPrecedes($1.0.utf8) } : fields
        return "{" + Format.join(ordered.map { string($0.0, escapingSlashes: escapingSlashes) + ":" + $0.1 }, separator: ",") + "}"
    }

    /// `[a,b,...]` from already encoded values.
    package static func array(_ items: [String]) -> String { "[" + Format.join(items, separator: ",") + "]" }

    /// A finite double as `JSONEncoder` writes it: its shortest description, "3" for 3.0. A
    /// non-finite one throws, as `JSONEncoder`'s default `.throw` strategy does.
    package static func double(_ v: Double) throws -> String {
        guard v.isFinite else { throw NonFiniteNumber(value: v) }
        var s = v.description
        if s.hasSuffix(".0") { s.removeLast(2) }
        return s
    }

    /// A NaN or an infinity, which JSON cannot hold.
    package struct NonFiniteNumber: Error, CustomStringConvertible {
        package let value: Double
        package var description: String { "\(value) cannot be written as a JSON number" }
    }
}
