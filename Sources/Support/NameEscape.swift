// Names shown to a person: file names are bytes (any byte but NUL and `/` in a component),
// and a terminal, a cron mail or a log line must not be driven by them. One escaping, used by
// every tool, every notification and every warning a manifest stores, with its exact inverse
// so a name printed by one command can be given back to another (`--only`, `ls`, `dump`).
// `--json` keeps JSON's own escaping and is not made from this.

/// Reversible escaping of file names for people (GNU tar's `--quoting-style=escape`, with
/// `\xNN` for bytes).
///
/// Escaped, byte by byte: the backslash itself (`\\`); C0 controls (`\n`, `\t`, `\r`, others
/// `\xNN`); DEL (`\x7f`); bytes that are not part of valid UTF-8 (`\xNN`); and every character
/// of the general categories Cc, Cf, Zl and Zp (`escapedScalars`: C1 controls, the bidi marks,
/// embeddings, overrides and isolates, zero-width spaces and joiners, the word joiner, the BOM,
/// the soft hyphen, U+2028/U+2029 that some terminals and mail readers break lines on, tag
/// characters...), each as the `\xNN` of its UTF-8 bytes: a name must not hide part of itself,
/// look like another name, or start a line. Everything else, printable UTF-8 included
/// (accented and CJK media names), stays as it is.
///
/// `unescape(escape(b)) == b` for every byte string `b`.
package enum NameEscape {
    /// The escaped form of `bytes`, for a person to read.
    package static func escape(_ bytes: some Collection<UInt8>) -> String { escape(Array(bytes)) }

    /// The escaped form of `bytes` (see the type's comment). A name of printable ASCII (the
    /// common case: a restore shows every entry's name in its messages) is only scanned.
    package static func escape(_ b: [UInt8]) -> String {
        let plain = b.withUnsafeBufferPointer { p in !p.contains { $0 < 0x20 || $0 >= 0x7F || $0 == 0x5C } }
        if plain { return String(decoding: b, as: UTF8.self) }
        var out = ""
        out.reserveCapacity(b.count)
        var i = 0
        while i < b.count {
            let c = b[i]
            if c < 0x80 {
                switch c {
                case 0x5C: out += "\\\\"
                case 0x0A: out += "\\n"
                case 0x09: out += "\\t"
                case 0x0D: out += "\\r"
                case 0x00 ..< 0x20, 0x7F: appendHex(c, to: &out)
                default: out.unicodeScalars.append(Unicode.Scalar(c))
                }
                i += 1
                continue
            }
            let n = validSequenceLength(b, at: i)
            if n == 0 {
                appendHex(c, to: &out)
                i += 1
                continue
            }
            let scalar = decode(b, at: i, length: n)
            if shouldEscape(scalar) {
                for k in i ..< i + n { appendHex(b[k], to: &out) }
            } else {
                out.unicodeScalars.append(Unicode.Scalar(scalar)!)
            }
            i += n
        }
        return out
    }

    /// The escaped form of a name given as a String (already valid UTF-8): only controls,
    /// format and line/paragraph separator characters and backslashes are escaped.
    package static func escape(_ name: String) -> String { escape(Array(name.utf8)) }

    /// A malformed escape sequence in a name given by a person.
    package struct MalformedEscape: Error, CustomStringConvertible, Equatable {
        package var text: String
        package var offset: Int
        package var description: String {
            "'\(text)' has a backslash that starts no escape at character \(offset + 1): names are given as "
                + "the tools print them (\\\\ for a backslash, \\n, \\t, \\r, \\xNN for any byte)"
        }
    }

    /// The bytes of an escaped name: the inverse of `escape`.
    /// - Throws: `MalformedEscape` for a backslash that is not followed by `\`, `n`, `t`, `r`
    ///   or `x` and two hex digits.
    package static func unescape(_ text: String) throws(MalformedEscape) -> [UInt8] {
        let s = Array(text.utf8)
        guard s.contains(0x5C) else { return s }
        var out: [UInt8] = []
        out.reserveCapacity(s.count)
        var i = 0
        while i < s.count {
            let c = s[i]
            guard c == 0x5C else { out.append(c); i += 1; continue }
            guard i + 1 < s.count else { throw MalformedEscape(text: text, offset: characterOffset(s, i)) }
            switch s[i + 1] {
            case 0x5C: out.append(0x5C); i += 2
            case UInt8(ascii: "n"): out.append(0x0A); i += 2
            case UInt8(ascii: "t"): out.append(0x09); i += 2
            case UInt8(ascii: "r"): out.append(0x0D); i += 2
            case UInt8(ascii: "x"):
                guard i + 3 < s.count, let hi = hexValue(s[i + 2]), let lo = hexValue(s[i + 3]) else {
                    throw MalformedEscape(text: text, offset: characterOffset(s, i))
                }
                out.append(hi << 4 | lo)
                i += 4
            default:
                throw MalformedEscape(text: text, offset: characterOffset(s, i))
            }
        }
        return out
    }

    /// True when `escape` would change `bytes` (some byte needs escaping).
    package static func needsEscaping(_ bytes: some Collection<UInt8>) -> Bool {
        escape(bytes).utf8.elementsEqual(bytes) == false
    }

    // MARK: - Helpers

    private static let hexDigits = Array("0123456789abcdef".utf8)

    private static func appendHex(_ b: UInt8, to out: inout String) {
        out += "\\x"
        out.unicodeScalars.append(Unicode.Scalar(hexDigits[Int(b >> 4)]))
        out.unicodeScalars.append(Unicode.Scalar(hexDigits[Int(b & 0xF)]))
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0") ... UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a") ... UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A") ... UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// True for a scalar `escape` shows as `\xNN` (C0 controls and DEL included): what a
    /// message must not carry raw (`Notifier` cleans a notification by the same rule).
    package static func escapes(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || scalar.value == 0x7F || shouldEscape(scalar.value)
    }

    /// The scalars above U+007F of the general categories Cc (the C1 controls), Cf (format),
    /// Zl and Zp, as Swift 6.3's Unicode tables have them (`NameEscapeTests` checks this list
    /// against the toolchain's, so a newer Unicode shows up as a failing test, not as a name
    /// printed differently by another build). Written out rather than asked of
    /// `Unicode.Scalar.Properties` so that the escaped form of a name is fixed and documented.
    package static let escapedScalars: [ClosedRange<UInt32>] = [
        0x0080 ... 0x009F, 0x00AD ... 0x00AD, 0x0600 ... 0x0605, 0x061C ... 0x061C, 0x06DD ... 0x06DD,
        0x070F ... 0x070F, 0x0890 ... 0x0891, 0x08E2 ... 0x08E2, 0x180E ... 0x180E, 0x200B ... 0x200F,
        0x2028 ... 0x202E, 0x2060 ... 0x2064, 0x2066 ... 0x206F, 0xFEFF ... 0xFEFF, 0xFFF9 ... 0xFFFB,
        0x110BD ... 0x110BD, 0x110CD ... 0x110CD, 0x13430 ... 0x1343F, 0x1BCA0 ... 0x1BCA3,
        0x1D173 ... 0x1D17A, 0xE0001 ... 0xE0001, 0xE0020 ... 0xE007F,
    ]

    /// `escapedScalars` holds `v` (a scalar above U+007F); the list is sorted.
    private static func shouldEscape(_ v: UInt32) -> Bool {
        for r in escapedScalars {
            if v < r.lowerBound { return false }
            if v <= r.upperBound { return true }
        }
        return false
    }

    /// Length of the valid UTF-8 sequence starting at `i` (a lead byte >= 0x80), or 0.
    /// Valid means shortest form, no surrogates, at most U+10FFFF (RFC 3629).
    private static func validSequenceLength(_ b: [UInt8], at i: Int) -> Int {
        let c = b[i]
        func cont(_ k: Int, _ range: ClosedRange<UInt8> = 0x80 ... 0xBF) -> Bool { k < b.count && range.contains(b[k]) }
        switch c {
        case 0xC2 ... 0xDF: return cont(i + 1) ? 2 : 0
        case 0xE0: return cont(i + 1, 0xA0 ... 0xBF) && cont(i + 2) ? 3 : 0
        case 0xE1 ... 0xEC, 0xEE ... 0xEF: return cont(i + 1) && cont(i + 2) ? 3 : 0
        case 0xED: return cont(i + 1, 0x80 ... 0x9F) && cont(i + 2) ? 3 : 0
        case 0xF0: return cont(i + 1, 0x90 ... 0xBF) && cont(i + 2) && cont(i + 3) ? 4 : 0
        case 0xF1 ... 0xF3: return cont(i + 1) && cont(i + 2) && cont(i + 3) ? 4 : 0
        case 0xF4: return cont(i + 1, 0x80 ... 0x8F) && cont(i + 2) && cont(i + 3) ? 4 : 0
        default: return 0
        }
    }

    private static func decode(_ b: [UInt8], at i: Int, length n: Int) -> UInt32 {
        var v = UInt32(b[i]) & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07)
        for k in 1 ..< n { v = v << 6 | UInt32(b[i + k] & 0x3F) }
        return v
    }

    private static func characterOffset(_ s: [UInt8], _ byteOffset: Int) -> Int {
        String(decoding: s[..<byteOffset], as: UTF8.self).count
    }
}

/// Option values that name files, as the person typed them.
///
/// argv reaches Swift as `String`: a name that is not UTF-8 arrives with U+FFFD in place of
/// its bytes. `bytes(of:)` takes the value back to the exact bytes: from `CommandLine.unsafeArgv`
/// when a raw argument decodes to the value (as `--only VALUE`, `--only=VALUE` or a positional
/// argument), otherwise by `NameEscape.unescape` (the form the tools print).
package enum NameArgument {
    /// The raw bytes of every command-line argument (argv[1...]).
    package static var rawArguments: [[UInt8]] {
        (1 ..< Int(CommandLine.argc)).compactMap { i in
            CommandLine.unsafeArgv[i].map { p in Array(UnsafeBufferPointer(start: UnsafeRawPointer(p).assumingMemoryBound(to: UInt8.self), count: strlenBytes(p))) }
        }
    }

    /// The bytes `value` stands for. `raw` defaults to this process's arguments.
    /// - Throws: `NameEscape.MalformedEscape` for a value with a malformed escape.
    package static func bytes(of value: String, raw: [[UInt8]]? = nil) throws(NameEscape.MalformedEscape) -> [UInt8] {
        if value.unicodeScalars.contains("\u{FFFD}") {
            for arg in raw ?? rawArguments {
                var candidates = [arg[...]]
                if let eq = arg.firstIndex(of: UInt8(ascii: "=")), arg.first == UInt8(ascii: "-") {
                    candidates.append(arg[(eq + 1)...])
                }
                for c in candidates where String(decoding: c, as: UTF8.self) == value && String(validating: c, as: UTF8.self) == nil {
                    return Array(c)
                }
            }
        }
        return try NameEscape.unescape(value)
    }

    private static func strlenBytes(_ p: UnsafeMutablePointer<CChar>) -> Int {
        var n = 0
        while p[n] != 0 { n += 1 }
        return n
    }
}
