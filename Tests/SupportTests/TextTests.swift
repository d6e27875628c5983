// Support's replacements for the NSString and formatter calls FoundationEssentials lacks
// (hs-backup and hs-restore link it only: issue 23), compared with Foundation's own results.
import Foundation
import Support
import Testing

@Suite struct TextTests {
    @Test("isFoundationWhitespace(OrNewline) is CharacterSet.whitespaces(AndNewlines) for every Unicode scalar")
    func scalarClasses() {
        var differ: [UInt32] = []
        for v in UInt32(0) ... 0x10FFFF {
            guard let u = Unicode.Scalar(v) else { continue }
            if u.isFoundationWhitespace != CharacterSet.whitespaces.contains(u)
                || u.isFoundationWhitespaceOrNewline != CharacterSet.whitespacesAndNewlines.contains(u)
                || u.isASCIIAlphanumeric != (u.isASCII && CharacterSet.alphanumerics.contains(u)) { differ.append(v) }
        }
        #expect(differ.isEmpty, "\(differ.prefix(20).map { String($0, radix: 16) })")
    }

    static let samples = ["", " ", " \t a b \t ", "\u{00A0}x\u{3000}", "\n x \r\n", "\u{2028}y\u{85}", "\u{200B}", "é \u{301}", "a\r\nb",
                          "k=\"v\\n\\\"q\\\"\"", "x #c", "\\\\\"\n+", "日本 #語", "\u{1F600} \u{1F600}"]

    @Test("trimmingWhitespace(AndNewlines) is trimmingCharacters(in:)", arguments: samples)
    func trimming(_ s: String) {
        #expect(s.trimmingWhitespace() == s.trimmingCharacters(in: .whitespaces))
        #expect(s.trimmingWhitespaceAndNewlines() == s.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(s.dropFirst().trimmingWhitespace() == s.dropFirst().trimmingCharacters(in: .whitespaces))
    }

    @Test("replacingScalars and scalarRange find what replacingOccurrences and range(of:) find", arguments: samples)
    func replacing(_ s: String) {
        for (target, with) in [("\\", "\\\\"), ("\"", "\\\""), ("\n", "\\n"), ("\\n", "\n"), ("+", "%2B"), (" #", "#"), ("://", "")] {
            #expect(s.replacingScalars(target, with: with) == s.replacingOccurrences(of: target, with: with), "\(target) in \(s)")
            #expect(s.scalarRange(of: target).map { s.unicodeScalars.distance(from: s.startIndex, to: $0.lowerBound) }
                    == s.range(of: target).map { s.unicodeScalars.distance(from: s.startIndex, to: $0.lowerBound) })
        }
    }

    /// NSString does not match a scalar that a combining mark follows; the escapes need every one.
    @Test("replacingScalars also replaces a quote that a combining mark follows")
    func combiningMark() {
        #expect("x\"\u{301}".replacingScalars("\"", with: "\\\"") == "x\\\"\u{301}")
    }

    @Test("Format.time prints what ISO8601DateFormatter in UTC printed (Julian before 1582, as ICU)")
    func time() {
        let f = ISO8601DateFormatter()
        f.timeZone = TimeZone(identifier: "UTC")
        var values: [Double] = [0, -0.5, -1, 0.9994, 0.9995, 0.99999, 1_750_000_000.9, 1e10, 253_402_300_800, -62_170_156_800, 951_782_400]
        var g = SystemRandomNumberGenerator()
        for _ in 0 ..< 2000 { values.append(Double.random(in: -2e11 ... 5e10, using: &g)) }
        for _ in 0 ..< 2000 { values.append(Double(Int.random(in: 1_700_000_000 ... 1_900_000_000, using: &g)) + Double.random(in: 0.99 ..< 1, using: &g)) }
        for v in values {
            #expect(Format.time(v) == f.string(from: Date(timeIntervalSince1970: v)), "\(v)")
        }
        #expect(Format.time(.nan) == "")
    }
}
