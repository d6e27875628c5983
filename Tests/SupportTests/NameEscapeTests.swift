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
        // Format characters (Cf), line and paragraph separators (Zl, Zp): they hide part of a
        // name, make it look like another, or start a line in a terminal or a cron mail.
        (Array("\u{200E}mark".utf8), "\\xe2\\x80\\x8emark"),          // LEFT-TO-RIGHT MARK
        (Array("a\u{2028}b".utf8), "a\\xe2\\x80\\xa8b"),              // LINE SEPARATOR
        (Array("a\u{2029}b".utf8), "a\\xe2\\x80\\xa9b"),              // PARAGRAPH SEPARATOR
        (Array("a\u{200B}b\u{200C}c\u{200D}d".utf8), "a\\xe2\\x80\\x8bb\\xe2\\x80\\x8cc\\xe2\\x80\\x8dd"),
        (Array("a\u{2060}b".utf8), "a\\xe2\\x81\\xa0b"),              // WORD JOINER
        (Array("\u{FEFF}a".utf8), "\\xef\\xbb\\xbfa"),                // ZERO WIDTH NO-BREAK SPACE (BOM)
        (Array("a\u{061C}b".utf8), "a\\xd8\\x9cb"),                    // ARABIC LETTER MARK
        (Array("a\u{180E}b".utf8), "a\\xe1\\xa0\\x8eb"),              // MONGOLIAN VOWEL SEPARATOR
        (Array("soft\u{AD}hyphen".utf8), "soft\\xc2\\xadhyphen"),
        (Array("a\u{E0041}b".utf8), "a\\xf3\\xa0\\x81\\x81b"),      // TAG LATIN CAPITAL LETTER A
        // The price of one rule: a ZWJ emoji sequence shows its joiners.
        (Array("👩\u{200D}💻.png".utf8), "👩\\xe2\\x80\\x8d💻.png"),
        // Neighbours that stay: a no-break space (Zs), a combining accent (Mn), a variation selector.
        (Array("a\u{A0}b e\u{301} \u{2764}\u{FE0F}".utf8), "a\u{A0}b e\u{301} \u{2764}\u{FE0F}"),
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
                #expect(!Self.escapedCategories.contains(s.properties.generalCategory), "\(bytes)")
            }
            #expect((try? NameEscape.unescape(e)) == bytes, "\(bytes) -> \(e)")
        }
    }

    /// What `escape` shows as `\xNN` besides backslashes and bytes that are not UTF-8: the
    /// general categories of controls, format characters and line/paragraph separators.
    static let escapedCategories: Set<Unicode.GeneralCategory> = [.control, .format, .lineSeparator, .paragraphSeparator]

    /// Every scalar is escaped exactly when it is in those categories, by the toolchain's
    /// Unicode tables (a newer Unicode that adds one fails here: add it to the list).
    @Test func escapedSetIsControlsFormatAndSeparators() {
        var wrong: [String] = []
        for v in UInt32(0x80) ... 0x10FFFF {
            guard let u = Unicode.Scalar(v) else { continue }   // surrogates
            let escaped = NameEscape.needsEscaping(Array(String(u).utf8))
            if escaped != Self.escapedCategories.contains(u.properties.generalCategory), wrong.count < 40 {
                wrong.append(String(v, radix: 16) + (escaped ? " escaped" : " kept"))
            }
        }
        #expect(wrong.isEmpty, "\(wrong)")
    }

    /// A name printed by an older version (the character raw) is still accepted, as is the
    /// escaped form.
    @Test func rawFormatCharactersAreStillAccepted() throws {
        for c in ["\u{2028}", "\u{2029}", "\u{200B}", "\u{FEFF}", "\u{061C}", "\u{180E}", "\u{202E}"] {
            let name = Array("dir/a\(c)b".utf8)
            #expect(try NameEscape.unescape("dir/a\(c)b") == name)
            #expect(try NameArgument.bytes(of: "dir/a\(c)b", raw: []) == name)
            #expect(try NameArgument.bytes(of: NameEscape.escape(name), raw: []) == name)
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
