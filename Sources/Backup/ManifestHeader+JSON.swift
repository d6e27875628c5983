import Foundation

// The manifest header's JSON without JSONEncoder (issue 23: JSONEncoder's reflection - a dynamic
// cast per value and type, each a scan of the binary's ~6,000 protocol conformances at its first
// use - was ~2% of a one-file backup's CPU). The bytes are exactly what
// `JSONEncoder` with `.sortedKeys` writes (`ManifestHeaderJSONTests` compares both on many
// headers): keys in UTF-8 order, nil optionals left out, no spaces, '/' escaped as "\/",
// control characters as \b \t \n \f \r or \u00xx, doubles as their `description` without a
// trailing ".0".
extension ManifestHeader {
    /// The header as `JSONEncoder` with `outputFormatting = [.sortedKeys]` encodes it.
    package func sortedKeysJSON() throws -> [UInt8] {
        var fields: [(key: String, value: String)] = [
            ("archives", JSONText.array(archives.map(JSONText.string))),
            ("bytesIn", String(bytesIn)), ("bytesOut", String(bytesOut)), ("directories", String(directories)),
            ("files", String(files)), ("filesArchived", String(filesArchived)), ("format", String(format)),
            ("id", JSONText.string(id)), ("kind", JSONText.string(kind)), ("source", JSONText.string(source)),
            ("started", try JSONText.double(started)), ("seconds", try JSONText.double(seconds)),
            ("symlinks", String(symlinks)), ("toolVersion", JSONText.string(toolVersion)), ("treeBytes", String(treeBytes)),
            ("warnings", JSONText.array(warnings.map(JSONText.string))),
        ]
        if let parent { fields.append(("parent", JSONText.string(parent))) }
        if let archive { fields.append(("archive", JSONText.string(archive))) }
        if let sinceFull { fields.append(("sinceFull", String(sinceFull))) }
        if let fullID { fields.append(("fullID", JSONText.string(fullID))) }
        if let fullStarted { fields.append(("fullStarted", try JSONText.double(fullStarted))) }
        if let scanFlags { fields.append(("scanFlags", String(scanFlags))) }
        if let body {
            fields.append(("body", JSONText.array(body.map {
                JSONText.object([("compressed", String($0.compressed)), ("length", String($0.length)), ("sha256", JSONText.string($0.sha256))])
            })))
        }
        if let entries { fields.append(("entries", String(entries))) }
        if let archiveSlots { fields.append(("archiveSlots", JSONText.array(archiveSlots.map(JSONText.string)))) }
        if let filesMissing { fields.append(("filesMissing", String(filesMissing))) }
        return Array(JSONText.object(fields).utf8)
    }
}

/// JSON text as swift-foundation's `JSONEncoder` writes it (default options, `.sortedKeys`).
enum JSONText {
    /// An object; keys sorted by their UTF-8 bytes, as `.sortedKeys` sorts them.
    static func object(_ fields: [(key: String, value: String)]) -> String {
        let sorted = fields.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
        return "{" + sorted.map { string($0.key) + ":" + $0.value }.joined(separator: ",") + "}"
    }

    static func array(_ values: [String]) -> String { "[" + values.joined(separator: ",") + "]" }

    /// A finite double as its shortest description, "3" for 3.0; a non-finite one throws, as
    /// JSONEncoder's default `.throw` strategy does.
    static func double(_ v: Double) throws -> String {
        guard v.isFinite else { throw EncodingError.invalidValue(v, .init(codingPath: [], debugDescription: "not a finite number")) }
        var s = v.description
        if s.hasSuffix(".0") { s.removeLast(2) }
        return s
    }

    /// A string: `"` `\` `/` escaped with a backslash, control characters as \b \t \n \f \r or
    /// \u00xx (lower-case hex), everything else as it is (UTF-8).
    static func string(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u.value {
            case 0x22: out += "\\\""
            case 0x5C: out += "\\\\"
            case 0x2F: out += "\\/"
            case 0x08: out += "\\b"
            case 0x09: out += "\\t"
            case 0x0A: out += "\\n"
            case 0x0C: out += "\\f"
            case 0x0D: out += "\\r"
            case 0 ..< 0x20:
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}
