import FoundationEssentials
import Glibc

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
/// comments after unquoted values. The one dotenv reader of the toolkit: hs-deploy's stack
/// checks (Stacks) and hs-provision's PUID/PGID check against `common/.env` (Provisioning).
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
            throw ToolError("cannot read \(NameEscape.escape(path))")
        }
        return try parse(String(decoding: data, as: UTF8.self), path: path)
    }

    /// Parses dotenv text; `path` is only used in error messages (escaped there).
    package static func parse(_ text: String, path: String) throws -> EnvFile {
        let shown = NameEscape.escape(path)
        var entries: [EnvEntry] = []
        var optionalNext = false
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = raw.trimmingWhitespace()
            if line.hasSuffix("\r") { line.removeLast() }
            if line.isEmpty { optionalNext = false; continue }
            if line.hasPrefix("#") {
                if line.contains("@optional") { optionalNext = true }
                continue
            }
            if line.hasPrefix("export ") { line = String(line.dropFirst(7)).trimmingWhitespace() }
            guard let eq = line.firstIndex(of: "=") else {
                throw ToolError("\(shown):\(i + 1): expected KEY=value, found a line without '=' (values are never shown)")
            }
            let key = line[..<eq].trimmingWhitespace()
            guard isValidKey(key) else {
                // Not shown: such a line is often the middle of a value split over lines (a
                // PEM or base64 body, whose padding gives it an '='), so its text is a secret's.
                throw ToolError("\(shown):\(i + 1): what stands before '=' is not a variable name (letters, digits, _; not starting with a digit; not shown, as it may be part of a value). A value must be on one line")
            }
            let value = unquote(String(line[line.index(after: eq)...]).trimmingWhitespace())
            entries.append(EnvEntry(key: key, value: value, line: i + 1, optional: optionalNext))
            optionalNext = false
        }
        return EnvFile(path: path, entries: entries)
    }

    static func isValidKey(_ key: String) -> Bool {
        guard let first = key.unicodeScalars.first, !(first.properties.numericType != nil) else { return false }
        return key.unicodeScalars.allSatisfy { $0 == "_" || $0.isASCIIAlphanumeric }
    }

    package static func unquote(_ v: String) -> String {
        if v.count >= 2, let q = v.first, q == "\"" || q == "'" {
            if let end = v.dropFirst().firstIndex(of: q) {
                var inner = String(v[v.index(after: v.startIndex)..<end])
                if q == "\"" {
                    inner = inner.replacingScalars("\\n", with: "\n").replacingScalars("\\\"", with: "\"")
                }
                return inner
            }
        }
        // Unquoted: an inline comment starts at " #".
        if let r = v.scalarRange(of: " #") { return Substring(v.unicodeScalars[..<r.lowerBound]).trimmingWhitespace() }
        return v
    }
}
