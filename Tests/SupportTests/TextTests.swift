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

    @Test("padded(toLength:) is padding(toLength:withPad:startingAt:)", arguments: samples)
    func padding(_ s: String) {
        for n in [0, 1, 3, 8, 20] { #expect(s.padded(toLength: n) == s.padding(toLength: n, withPad: " ", startingAt: 0), "\(n)") }
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

    @Test("JSONAny reads what JSONSerialization reads and writes what it reads back")
    func jsonAny() throws {
        let texts = [#"{"list":[{"Name":"a b","Size":12,"IsDir":false,"ModTime":"2026-12-07T10:00:00.5Z","Hashes":{"md5":"x"}}]}"#,
                     #"{"jobid":17,"finished":true,"success":false,"error":"quota \"x\" \u00e9\ud83d\ude00\n","f":-1.5e3,"big":123456789012}"#,
                     #"[1, 2.5, "x", [], {}]"#, "  {}  ", "[01]", "\"unterminated", "{\"a\" 1}", "nul", "[1]x"]
        for t in texts {
            let ours = JSONAny.parse(Array(t.utf8))
            let theirs = try? JSONSerialization.jsonObject(with: Data(t.utf8), options: [.fragmentsAllowed])
            #expect((ours == nil) == (theirs == nil), "\(t)")
            guard let ours, let theirs else { continue }
            #expect(NSDictionary(dictionary: ["v": ours]).isEqual(NSDictionary(dictionary: ["v": theirs])), "\(t)")
            let again = try JSONSerialization.jsonObject(with: Data(try JSONAny.text(ours).utf8), options: [.fragmentsAllowed])
            #expect(NSDictionary(dictionary: ["v": again]).isEqual(NSDictionary(dictionary: ["v": theirs])), "\(t)")
        }
        // Stricter than JSONSerialization in one way: a trailing comma is not JSON (rclone writes none).
        #expect(JSONAny.parse(Array(#"{"a":1,}"#.utf8)) == nil)
        #expect(JSONAny.parse(Array("null".utf8)) is JSONAny.Null)
        let nullText = try JSONAny.text(["n": JSONAny.null])
        #expect(nullText == #"{"n":null}"#)
        let o = JSONAny.parse(Array(#"{"Size":-1,"jobid":5,"IsDir":true,"Hashes":["md5","sha1"]}"#.utf8)) as? [String: Any]
        #expect(o?["Size"] as? Int64 == -1 && o?["jobid"] as? Int64 == 5 && o?["IsDir"] as? Bool == true && o?["Hashes"] as? [String] == ["md5", "sha1"])
    }
}
