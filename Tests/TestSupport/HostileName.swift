import Support

/// A name that, printed raw, forges a line in cron mail (the newline), clears the terminal
/// (ESC [2J) and reverses the text after it (U+202E): what the tests of the tools' messages
/// put into paths, stack names and inventory values.
package enum HostileName {
    package static let text = "ev\nFORGED \u{1B}[2J\u{202E}il"
    /// How the tools show it (NameEscape).
    package static let shown = NameEscape.escape(text)
    /// `text` inside a YAML double-quoted string.
    package static let yaml = "ev\\nFORGED \\e[2J\\u202Eil"

    /// The lines of `output` that hold a raw C0 control (a tab aside), DEL, C1 control or bidi
    /// embedding, override or isolate, or that start with FORGED (a newline from a name).
    package static func rawLines(_ output: String) -> [String] {
        output.split(separator: "\n", omittingEmptySubsequences: false).filter { line in
            line.hasPrefix("FORGED") || line.unicodeScalars.contains { s in
                (s.value < 0x20 && s != "\t") || (0x7F...0x9F).contains(s.value)
                    || (0x202A...0x202E).contains(s.value) || (0x2066...0x2069).contains(s.value)
            }
        }.map(String.init)
    }

    /// What is wrong with the output of a run of a tool, for a test to report: its raw lines
    /// (`rawLines`) and every text of `expect` that it does not hold.
    package static func issues(_ what: String, _ r: ProcessResult, expect: [String]) -> [String] {
        let out = r.stdout + r.stderr
        var found = rawLines(out).map { "\(what): raw line \($0.debugDescription)" }
        for e in expect where !out.contains(e) {
            found.append("\(what): no \(e.debugDescription) in \(out.debugDescription) (exit \(r.status))")
        }
        return found
    }
}
