#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import Support

/// Which paths a backup skips.
///
/// Rules (matched against the path relative to the source, e.g. `plex/Library/.../Cache`):
/// - a pattern without `/` matches any single name at any depth (`*.tmp`, `transcodes`);
/// - a pattern with `/` matches a run of whole components at any depth
///   (`Plex Media Server/Cache` matches `plex/Library/Application Support/Plex Media Server/Cache`);
/// - a pattern starting with `/` is anchored at the source root (`/plex/Cache`).
/// Globs are fnmatch(3) globs (`*`, `?`, `[...]`; `*` does not cross `/`). An excluded
/// directory is not descended into.
package struct ExcludeSet: Sendable {
    package private(set) var patterns: [String]
    private var nameGlobs: [[CChar]] = []
    private var pathGlobs: [[CChar]] = []
    /// Path globs without `[` or `\\` (the defaults), with their number of `/`: under
    /// FNM_PATHNAME only a literal `/` matches a `/`, so such a glob can match only the one
    /// suffix of the path that has that many slashes (instead of trying every suffix).
    /// Path globs without `[` or `\\`, with the number of slashes in them and, when it has no
    /// wildcard, the last component (a cheap test before `fnmatch`: most names differ there).
    private var simplePathGlobs: [(glob: [CChar], slashes: Int, last: [CChar]?, literal: Bool)] = []
    /// Name globs without `*`, `?`, `[` or `\\`: fnmatch of those is string equality.
    private var literalNames: [[CChar]] = []
    /// The lengths of `literalNames` and of the `last` components of `simplePathGlobs` (one
    /// bit per length below 64; bit 63 for any longer): a name of another length matches none
    /// of them, so most names need no string comparison at all.
    private var literalLengths: UInt64 = 0
    private static func lengthBit(_ n: Int) -> UInt64 { 1 << UInt64(min(n, 63)) }
    private var anchoredGlobs: [[CChar]] = []

    /// Caches that are safe to skip. Plex `Metadata/` and the *arr apps' `MediaCover/` are
    /// NOT here: they hold custom posters and artwork that cannot be re-downloaded.
    package static let defaults: [String] = [
        "Plex Media Server/Cache",
        "Plex Media Server/Codecs",
        "Plex Media Server/Crash Reports",
        "transcode",
        "Transcode",
        "transcodes",
    ]

    package init(patterns: [String], includeDefaults: Bool = true) {
        self.patterns = (includeDefaults ? Self.defaults : []) + patterns
        for p in self.patterns where !p.isEmpty {
            var q = p
            while q.count > 1 && q.hasSuffix("/") { q.removeLast() }
            if q.hasPrefix("/") {
                anchoredGlobs.append(Array(String(q.dropFirst()).utf8CString))
            } else if q.contains("/") {
                if q.contains("[") || q.contains("\\") {
                    pathGlobs.append(Array(q.utf8CString))
                } else {
                    let last = String(q[q.index(after: q.lastIndex(of: "/")!)...])
                    let wild = { (x: String) in x.contains(where: { "*?".contains($0) }) }
                    simplePathGlobs.append((Array(q.utf8CString), q.utf8.reduce(0) { $0 + ($1 == 0x2F ? 1 : 0) },
                                            wild(last) ? nil : Array(last.utf8CString), !wild(q)))
                    if !wild(last) { literalLengths |= Self.lengthBit(last.utf8.count) }
                }
            } else if q.contains(where: { "*?[\\".contains($0) }) {
                nameGlobs.append(Array(q.utf8CString))
            } else {
                literalNames.append(Array(q.utf8CString))
                literalLengths |= Self.lengthBit(q.utf8.count)
            }
        }
    }

    /// The patterns of an exclude file (`--exclude-file`, as restic's): one pattern per line;
    /// blank lines and lines starting with `#` are ignored, trailing spaces and a CR are
    /// dropped (a pattern may not end in a space).
    /// - Throws: `ToolError.usage` naming the file when it cannot be read or is not text.
    package static func patterns(fromFile path: String) throws -> [String] {
        guard let data = FileManager.default.contents(atPath: path) else {
            let why = FileManager.default.fileExists(atPath: path) ? "it cannot be read" : "it does not exist"
            throw ToolError.usage("exclude file \(NameEscape.escape(path)): \(why). Give a readable text file with one pattern per line to --exclude-file.")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ToolError.usage("exclude file \(NameEscape.escape(path)) is not UTF-8 text. Give one pattern per line.")
        }
        var out: [String] = []
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            var line = Substring(raw)
            while let last = line.last, last == " " || last == "\r" || last == "\t" { line = line.dropLast() }
            if line.isEmpty || line.hasPrefix("#") { continue }
            out.append(String(line))
        }
        return out
    }

    package var isEmpty: Bool {
        nameGlobs.isEmpty && pathGlobs.isEmpty && anchoredGlobs.isEmpty && simplePathGlobs.isEmpty && literalNames.isEmpty
    }

    /// True when the entry at relative path `path` (NUL-terminated C string) with last
    /// component starting at `nameStart` is excluded.
    package func matches(path: UnsafePointer<CChar>, nameStart: Int) -> Bool {
        // Whether the name's length is one of a literal name or last component (see `literalLengths`).
        let lengthMatches = literalLengths & Self.lengthBit(strlen(path + nameStart)) != 0
        if lengthMatches { for g in literalNames where strcmp(g, path + nameStart) == 0 { return true } }
        for g in nameGlobs where fnmatch(g, path + nameStart, FNM_PERIOD) == 0 { return true }
        if !simplePathGlobs.isEmpty {
            var slashes = -1
            for (g, k, last, literal) in simplePathGlobs {
                if let last, !lengthMatches || strcmp(last, path + nameStart) != 0 { continue }
                if slashes < 0 {
                    slashes = 0
                    var i = 0
                    while path[i] != 0 { if path[i] == 0x2F { slashes += 1 }; i += 1 }
                }
                guard k <= slashes else { continue }
                // The suffix after the (slashes - k)-th slash (the whole path when 0).
                var start = 0
                var skip = slashes - k
                while skip > 0 { if path[start] == 0x2F { skip -= 1 }; start += 1 }
                if literal ? strcmp(g, path + start) == 0 : fnmatch(g, path + start, FNM_PATHNAME | FNM_PERIOD) == 0 { return true }
            }
        }
        for g in anchoredGlobs where fnmatch(g, path, FNM_PATHNAME | FNM_PERIOD) == 0 { return true }
        if !pathGlobs.isEmpty {
            // Try the whole path and every suffix that starts after a '/'.
            var i = 0
            var start = true
            while path[i] != 0 || start {
                if start {
                    for g in pathGlobs where fnmatch(g, path + i, FNM_PATHNAME | FNM_PERIOD) == 0 { return true }
                    start = false
                }
                if path[i] == 0 { break }
                if path[i] == 0x2F { start = true }
                i += 1
            }
        }
        return false
    }

    package func matches(_ path: String) -> Bool {
        let nameStart = path.utf8.lastIndex(of: 0x2F).map { path.utf8.distance(from: path.utf8.startIndex, to: $0) + 1 } ?? 0
        return path.withCString { matches(path: $0, nameStart: nameStart) }
    }
}
