import Support
import Testing

/// The one escaping of names shown to people, and its inverse (issue 23).
@Suite struct NameEscapeTests {
    @Test(arguments: [
        // (bytes, escaped)
        (Array("Sonarr/config.xml".utf8), "Sonarr/config.xml"),
        (Array("Amélie (2001)/Amélie.mkv".utf8), "Amélie (2001)/Amélie.mkv"),
        (Array("千と千尋の神隠し.mkv".utf8), "千と千尋の神隠し.mkv"),
        (Array("a\\b".utf8), "a\\\\b"),
        (Array("line1\nline2".utf8), "line1\\nline2"),
        (Array("tab\there\r".utf8), "tab\\there\\r"),
        ([0x1B] + Array("[31mred".utf8), "\\x1b[31mred"),
        (Array("del\u{7F}".utf8), "del\\x7f"),
        ([0x66, 0xFF, 0xFE, 0x67], "f\\xff\\xfeg"),
        ([0xC3], "\\xc3"),                                    // truncated sequence
        ([0xC0, 0xAF], "\\xc0\\xaf"),                         // overlong
        ([0xED, 0xA0, 0x80], "\\xed\\xa0\\x80"),              // surrogate
        (Array("\u{85}next".utf8), "\\xc2\\x85next"),         // C1 control (NEL)
        (Array("evil\u{202E}gpj.exe".utf8), "evil\\xe2\\x80\\xaegpj.exe"),  // right-to-left override
        (Array("x\u{2066}y\u{2069}".utf8), "x\\xe2\\x81\\xa6y\\xe2\\x81\\xa9"),
        (Array("\u{200E}kept".utf8), "\u{200E}kept"),      // LRM is not in the listed ranges
    ] as [([UInt8], String)])
    func escapes(_ bytes: [UInt8], _ escaped: String) throws {
        #expect(NameEscape.escape(bytes) == escaped)
        #expect(try NameEscape.unescape(escaped) == bytes)
    }

    @Test func printedNamesHoldNoControlOrBidiCharacter() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0 ..< 2000 {
            let n = Int.random(in: 0 ... 24, using: &rng)
            let bytes = (0 ..< n).map { _ in UInt8.random(in: 0 ... 255, using: &rng) }
            let e = NameEscape.escape(bytes)
            for s in e.unicodeScalars {
                #expect(s.value >= 0x20 && s.value != 0x7F && !(0x80 ... 0x9F).contains(s.value)
                        && !(0x202A ... 0x202E).contains(s.value) && !(0x2066 ... 0x2069).contains(s.value), "\(bytes)")
            }
            #expect((try? NameEscape.unescape(e)) == bytes, "\(bytes) -> \(e)")
        }
    }

    @Test(arguments: ["a\\", "a\\q", "a\\x4", "a\\xzz", "\\u0041"])
    func malformedEscapesAreRefusedSayingHowToWriteThem(_ text: String) {
        #expect(throws: NameEscape.MalformedEscape.self) { try NameEscape.unescape(text) }
        do { _ = try NameEscape.unescape(text) } catch {
            #expect(error.description.contains("\\\\ for a backslash"))
        }
    }

    @Test func uppercaseHexIsAccepted() throws {
        #expect(try NameEscape.unescape("\\xFF\\x1B") == [0xFF, 0x1B])
    }

    /// A name that is not UTF-8 typed as is: argv's String has U+FFFD; the raw argument gives
    /// the bytes back, as `--only VALUE`, `--only=VALUE` or a positional argument.
    @Test func rawArgumentsGiveBackNonUTF8Bytes() throws {
        let name: [UInt8] = Array("app/caf".utf8) + [0xE9] + Array(".db".utf8)   // Latin-1 é
        let lossy = String(decoding: name, as: UTF8.self)
        #expect(lossy.contains("\u{FFFD}"))
        #expect(try NameArgument.bytes(of: lossy, raw: [Array("--only".utf8), name]) == name)
        #expect(try NameArgument.bytes(of: lossy, raw: [Array("--only=".utf8) + name]) == name)
        // The escaped form works without the raw argument.
        #expect(try NameArgument.bytes(of: "app/caf\\xe9.db", raw: []) == name)
        // A plain UTF-8 name is itself.
        #expect(try NameArgument.bytes(of: "app/Amélie.db", raw: []) == Array("app/Amélie.db".utf8))
    }
}
