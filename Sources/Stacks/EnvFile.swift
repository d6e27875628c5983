import Foundation
import Support

/// One `KEY=value` line of a .env or .env.template file.
package struct EnvEntry: Sendable, Equatable {
    package var key: String
    package var value: String
    /// 1-based line number.
    package var line: Int
    /// Declared optional in a template: the comment line right above it contains `@optional`.
    package var optional: Bool
}

/// A parsed .env or .env.template file, in the dotenv dialect Docker Compose reads:
/// `KEY=value`, optional `export `, `#` comments, single or double quotes, ` #` inline
/// comments after unquoted values.
package struct EnvFile: Sendable {
    package var path: String
    package var entries: [EnvEntry]

    package var keys: [String] { entries.map(\.key) }

    /// The last value for `key` (later lines win, as in Compose).
    package func value(_ key: String) -> String? { entries.last { $0.key == key }?.value }

    package func entry(_ key: String) -> EnvEntry? { entries.last { $0.key == key } }

    /// Reads and parses a file.
    /// - Throws: `ToolError` when the file cannot be read or a line is not `KEY=value`.
    package static func load(_ path: String) throws -> EnvFile {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ToolError("cannot read \(path)")
        }
        return try parse(String(decoding: data, as: UTF8.self), path: path)
    }

    /// Parses dotenv text; `path` is only used in error messages.
    package static func parse(_ text: String, path: String) throws -> EnvFile {
        var entries: [EnvEntry] = []
        var optionalNext = false
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasSuffix("\r") { line.removeLast() }
            if line.isEmpty { optionalNext = false; continue }
            if line.hasPrefix("#") {
                if line.contains("@optional") { optionalNext = true }
                continue
            }
            if line.hasPrefix("export ") { line = String(line.dropFirst(7)).trimmingCharacters(in: .whitespaces) }
            guard let eq = line.firstIndex(of: "=") else {
                throw ToolError("\(path):\(i + 1): expected KEY=value, found a line without '=' (values are never shown)")
            }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces)
            guard isValidKey(key) else {
                throw ToolError("\(path):\(i + 1): '\(key)' is not a valid variable name (letters, digits, _; not starting with a digit)")
            }
            let value = unquote(String(line[line.index(after: eq)...]).trimmingCharacters(in: .whitespaces))
            entries.append(EnvEntry(key: key, value: value, line: i + 1, optional: optionalNext))
            optionalNext = false
        }
        return EnvFile(path: path, entries: entries)
    }

    static func isValidKey(_ key: String) -> Bool {
        guard let first = key.unicodeScalars.first, !(first.properties.numericType != nil) else { return false }
        return key.unicodeScalars.allSatisfy { $0 == "_" || ($0.isASCII && CharacterSet.alphanumerics.contains($0)) }
    }

    static func unquote(_ v: String) -> String {
        if v.count >= 2, let q = v.first, q == "\"" || q == "'" {
            if let end = v.dropFirst().firstIndex(of: q) {
                var inner = String(v[v.index(after: v.startIndex)..<end])
                if q == "\"" {
                    inner = inner.replacingOccurrences(of: "\\n", with: "\n").replacingOccurrences(of: "\\\"", with: "\"")
                }
                return inner
            }
        }
        // Unquoted: an inline comment starts at " #".
        if let r = v.range(of: " #") { return String(v[..<r.lowerBound]).trimmingCharacters(in: .whitespaces) }
        return v
    }
}

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
