// ExcludeSet skips fnmatch where it cannot change the answer (literal names, path globs that
// can only match the suffix with their number of slashes). Every answer must stay the one of
// the plain rule: fnmatch of each name glob on the last component, and of each path glob on
// the whole path and on every suffix that starts after a '/'.

import Backup
import Glibc
import Testing

@Suite struct ExcludeFastPathTests {
    /// The plain rule, as ExcludeSet applied it before the fast paths.
    private func reference(_ patterns: [String], _ path: String) -> Bool {
        let bytes = Array(path.utf8)
        let nameStart = (bytes.lastIndex(of: 0x2F).map { $0 + 1 }) ?? 0
        return path.withCString { p in
            for raw in patterns where !raw.isEmpty {
                var q = raw
                while q.count > 1 && q.hasSuffix("/") { q.removeLast() }
                if q.hasPrefix("/") {
                    if fnmatch(String(q.dropFirst()), p, FNM_PATHNAME | FNM_PERIOD) == 0 { return true }
                } else if q.contains("/") {
                    if fnmatch(q, p, FNM_PATHNAME | FNM_PERIOD) == 0 { return true }
                    for (i, b) in bytes.enumerated() where b == 0x2F {
                        if fnmatch(q, p + i + 1, FNM_PATHNAME | FNM_PERIOD) == 0 { return true }
                    }
                } else if fnmatch(q, p + nameStart, FNM_PERIOD) == 0 {
                    return true
                }
            }
            return false
        }
    }

    @Test func fastPathsGiveTheAnswersOfThePlainRule() {
        let patterns: [[String]] = [
            ExcludeSet.defaults,
            ["*.tmp", "cache", ".git", "a/b", "a/*/c", "*/logs", "x?/y", "/top/only", "[Cc]ache/x", "\\*lit/x", "dir/"],
            ["Plex Media Server/Cache", "Library/*/Plex Media Server/Codecs", "a//b", ".hidden/x", "*/.*"],
        ]
        let paths = [
            "a", "a/b", "x/a/b", "x/a/b/c", "a/b/c", "a/q/c", "z/a/q/c", "a/q/q/c", "cache", "d/cache", "d/cache/e",
            "top/only", "x/top/only", "f.tmp", "d/.tmp", "d/x.tmp", "Cache/x", "y/cache/x", "*lit/x", "zlit/x", "dir", "q/dir",
            "plex/Library/Application Support/Plex Media Server/Cache",
            "plex/Library/Application Support/Plex Media Server/Cache/PhotoTranscoder/1.jpg",
            "Library/Application Support/Plex Media Server/Codecs", "Library/x/Plex Media Server/Codecs",
            "Library/Application Support/Plex Media Server/Metadata/Movies/a/b.bundle/Contents/Info.xml",
            "transcode", "m/Transcode", "m/transcodes", "m/transcodes2", "a//b", "q/a//b", "p/.hidden/x", ".hidden/x",
            "p/logs", "logs", "q/p/logs", "xy/y", "x1/y", "q/x1/y", "x/.git", ".git/config", "n/.profile",
        ]
        for set in patterns {
            let ex = ExcludeSet(patterns: set, includeDefaults: false)
            for path in paths {
                #expect(ex.matches(path) == reference(set, path), "\(set) on \(path)")
            }
        }
    }
}
