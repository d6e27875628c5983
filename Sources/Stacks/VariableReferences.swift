import Foundation

/// Variable references in a compose file's raw text.
package enum VariableReferences {
    /// One `${VAR}` / `$VAR` occurrence.
    package struct Reference: Sendable, Equatable {
        package var name: String
        package var line: Int
    }

    /// Finds `${NAME}`, `${NAME:-x}`, `${NAME?err}` and `$NAME` outside comments; `$$` is an
    /// escaped dollar and not a reference.
    package static func scan(_ text: String) -> [Reference] {
        var refs: [Reference] = []
        for (i, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let chars = Array(stripComment(String(rawLine)))
            var j = 0
            while j < chars.count {
                guard chars[j] == "$" else { j += 1; continue }
                if j + 1 < chars.count, chars[j + 1] == "$" { j += 2; continue }
                var k = j + 1
                let braced = k < chars.count && chars[k] == "{"
                if braced { k += 1 }
                var name = ""
                while k < chars.count, chars[k] == "_" || chars[k].isASCII && (chars[k].isLetter || chars[k].isNumber) {
                    if name.isEmpty && chars[k].isNumber { break }
                    name.append(chars[k]); k += 1
                }
                if !name.isEmpty { refs.append(Reference(name: name, line: i + 1)) }
                j = max(k, j + 1)
            }
        }
        return refs
    }

    /// The line without a YAML comment (`#` at the start or after whitespace, outside quotes).
    static func stripComment(_ line: String) -> Substring {
        var inSingle = false, inDouble = false
        var prev: Character = " "
        for idx in line.indices {
            let c = line[idx]
            if c == "'" && !inDouble { inSingle.toggle() }
            else if c == "\"" && !inSingle { inDouble.toggle() }
            else if c == "#" && !inSingle && !inDouble && (prev == " " || prev == "\t") { return line[..<idx] }
            prev = c
        }
        return line[...]
    }
}
