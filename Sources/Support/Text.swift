// The few string operations the tools took from Foundation's NSString bridge, which
// FoundationEssentials does not have (hs-backup and hs-restore link it only: issue 23).
// All work on Unicode scalars, as NSString's did on UTF-16 units.

extension Unicode.Scalar {
    /// A scalar of Foundation's `CharacterSet.whitespaces` (CoreFoundation's list: tab, the
    /// space separators and ZERO WIDTH SPACE; `TextTests` compares every scalar).
    package var isFoundationWhitespace: Bool {
        switch value {
        case 0x09, 0x20, 0xA0, 0x1680, 0x2000 ... 0x200B, 0x202F, 0x205F, 0x3000: return true
        default: return false
        }
    }

    /// A scalar of `CharacterSet.whitespacesAndNewlines` (the above, LF, VT, FF, CR, NEL and
    /// the line and paragraph separators).
    package var isFoundationWhitespaceOrNewline: Bool {
        switch value {
        case 0x0A ... 0x0D, 0x85, 0x2028, 0x2029: return true
        default: return isFoundationWhitespace
        }
    }

    /// A-Z, a-z or 0-9 (what `$0.isASCII && CharacterSet.alphanumerics.contains($0)` is).
    package var isASCIIAlphanumeric: Bool {
        switch value {
        case 0x30 ... 0x39, 0x41 ... 0x5A, 0x61 ... 0x7A: return true
        default: return false
        }
    }
}

extension StringProtocol {
    /// `trimmingCharacters(in: .whitespaces)`.
    package func trimmingWhitespace() -> String { trimming(\.isFoundationWhitespace) }

    /// `trimmingCharacters(in: .whitespacesAndNewlines)`.
    package func trimmingWhitespaceAndNewlines() -> String { trimming(\.isFoundationWhitespaceOrNewline) }

    private func trimming(_ drop: (Unicode.Scalar) -> Bool) -> String {
        let s = self[...].unicodeScalars
        guard let first = s.firstIndex(where: { !drop($0) }) else { return "" }
        let last = s.lastIndex(where: { !drop($0) })!
        return String(String.UnicodeScalarView(s[first ... last]))
    }

    /// The first occurrence of `target`, compared scalar by scalar (nil for an empty target).
    package func scalarRange(of target: String) -> Range<String.Index>? {
        let s = self[...].unicodeScalars, t = Array(target.unicodeScalars)
        guard let head = t.first else { return nil }
        var i = s.startIndex
        while let start = s[i...].firstIndex(of: head) {
            if let end = Self.match(t, in: s, at: start) { return start ..< end }
            i = s.index(after: start)
        }
        return nil
    }

    /// The last occurrence of `target` (`range(of:options: .backwards)`), scalar by scalar.
    package func lastScalarRange(of target: String) -> Range<String.Index>? {
        let s = self[...].unicodeScalars, t = Array(target.unicodeScalars)
        guard !t.isEmpty else { return nil }
        var i = s.endIndex
        while i > s.startIndex {
            s.formIndex(before: &i)
            if let end = Self.match(t, in: s, at: i) { return i ..< end }
        }
        return nil
    }

    /// Where `t` ends when it starts at `start` of `s`.
    private static func match<S: BidirectionalCollection<Unicode.Scalar>>(_ t: [Unicode.Scalar], in s: S, at start: S.Index) -> S.Index? {
        var j = start, k = 0
        while k < t.count, j < s.endIndex, s[j] == t[k] { s.formIndex(after: &j); k += 1 }
        return k == t.count ? j : nil
    }

    /// `padding(toLength: n, withPad: " ", startingAt: 0)`: spaces added, or cut, to `n` UTF-16
    /// units (NSString's length).
    package func padded(toLength n: Int) -> String {
        let u = Array(utf16)
        if u.count >= n { return String(decoding: u.prefix(n), as: UTF16.self) }
        return String(self) + String(repeating: " ", count: n - u.count)
    }

    /// Every occurrence of `target` replaced by `replacement`, compared scalar by scalar, as
    /// `replacingOccurrences(of:with:)` did for the escapes it is used for. One difference:
    /// NSString did not match a scalar followed by a combining mark (`"` + U+0301 stayed an
    /// unescaped quote); this replaces it too.
    package func replacingScalars(_ target: String, with replacement: String) -> String {
        // Sliced as scalars throughout: a String index between scalars of one Character
        // would be rounded down to the Character's start by the Character views.
        var out = String.UnicodeScalarView()
        var rest = Substring(self).unicodeScalars
        while let r = Substring(rest).scalarRange(of: target) {
            out.append(contentsOf: rest[..<r.lowerBound])
            out.append(contentsOf: replacement.unicodeScalars)
            rest = rest[r.upperBound...]
        }
        out.append(contentsOf: rest)
        return String(out)
    }
}
