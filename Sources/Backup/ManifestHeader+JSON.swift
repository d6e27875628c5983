import Support

// The manifest header's JSON without JSONEncoder (issue 23: JSONEncoder's reflection - a dynamic
// cast per value and type, each a scan of the binary's ~6,000 protocol conformances at its first
// use - was ~2% of a one-file backup's CPU). The bytes are exactly what
// `JSONEncoder` with `.sortedKeys` writes (`ManifestHeaderJSONTests` compares both on many
// headers): keys in UTF-8 order, nil optionals left out, no spaces, '/' escaped as "\/",
// control characters as \b \t \n \f \r or \u00xx, doubles as their `description` without a
// trailing ".0" (Support's `JSONText`, shared with the lock and `--json`).
extension ManifestHeader {
    /// The header as `JSONEncoder` with `outputFormatting = [.sortedKeys]` encodes it.
    package func sortedKeysJSON() throws -> [UInt8] {
        func str(_ s: String) -> String { JSONText.string(s, escapingSlashes: true) }
        var fields: [(String, String)] = [
            ("archives", JSONText.array(archives.map(str))),
            ("bytesIn", String(bytesIn)), ("bytesOut", String(bytesOut)), ("directories", String(directories)),
            ("files", String(files)), ("filesArchived", String(filesArchived)), ("format", String(format)),
            ("id", str(id)), ("kind", str(kind)), ("source", str(source)),
            ("started", try JSONText.double(started)), ("seconds", try JSONText.double(seconds)),
            ("symlinks", String(symlinks)), ("toolVersion", str(toolVersion)), ("treeBytes", String(treeBytes)),
            ("warnings", JSONText.array(warnings.map(str))),
        ]
        if let parent { fields.append(("parent", str(parent))) }
        if let archive { fields.append(("archive", str(archive))) }
        if let sinceFull { fields.append(("sinceFull", String(sinceFull))) }
        if let fullID { fields.append(("fullID", str(fullID))) }
        if let fullStarted { fields.append(("fullStarted", try JSONText.double(fullStarted))) }
        if let scanFlags { fields.append(("scanFlags", String(scanFlags))) }
        if let body {
            fields.append(("body", JSONText.array(body.map {
                JSONText.object([("compressed", String($0.compressed)), ("length", String($0.length)), ("sha256", str($0.sha256))],
                                sortedKeys: true, escapingSlashes: true)
            })))
        }
        if let entries { fields.append(("entries", String(entries))) }
        if let archiveSlots { fields.append(("archiveSlots", JSONText.array(archiveSlots.map(str)))) }
        if let filesMissing { fields.append(("filesMissing", String(filesMissing))) }
        return Array(JSONText.object(fields, sortedKeys: true, escapingSlashes: true).utf8)
    }
}
