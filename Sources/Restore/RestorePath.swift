import Archive
import Glibc
import Support

/// The one path normaliser and validator of the restore: archive and manifest paths as bytes.
package enum RestorePath {
    /// Splits `path` into components, dropping "" and "."; a leading "/" is stripped
    /// (`stripped` is true then); ".." and NUL bytes are refused (`rule` names the case).
    package static func components(_ path: [UInt8], rule: RestoreError.Rule = .parentTraversal) throws(RestoreError) -> (comps: [[UInt8]], stripped: Bool) {
        if path.contains(0) {
            throw .refused(.nulInPath, entry: NameEscape.escape(path), detail: "path contains a NUL byte")
        }
        var out: [[UInt8]] = []
        var climbs = false
        path.withUnsafeBufferPointer { p in
            var start = 0
            for i in 0...p.count where i == p.count || p[i] == UInt8(ascii: "/") {
                let n = i - start
                defer { start = i + 1 }
                if n == 0 || (n == 1 && p[start] == UInt8(ascii: ".")) { continue }
                if n == 2 && p[start] == UInt8(ascii: ".") && p[start + 1] == UInt8(ascii: ".") { climbs = true; return }
                out.append(Array(p[start..<i]))
            }
        }
        if climbs {
            let shown = NameEscape.escape(path)
            throw .refused(rule, entry: shown, detail: "'..' in '\(shown)' is not restored (it would climb out of the target)")
        }
        return (out, path.first == UInt8(ascii: "/"))
    }

    /// Throws as `components` does; a path in normal form without NUL bytes (nearly every
    /// path of a manifest) is passed without splitting it.
    package static func check(_ path: [UInt8], rule: RestoreError.Rule = .parentTraversal) throws(RestoreError) {
        if isNormalWithoutNUL(path) { return }
        _ = try components(path, rule: rule)
    }

    /// `path` in normal form ("a/b": no "", "." components, no leading or trailing "/"), for
    /// comparisons; ".." is kept as it is (a pattern with it selects nothing).
    package static func normalised(_ path: [UInt8]) -> [UInt8] {
        join(split(path).filter { $0 != [UInt8(ascii: ".")] })
    }

    /// `isNormal(path) && !path.contains(0)`, the NUL byte looked for by memchr (every entry of
    /// a restore is checked so, twice for a backup's; the generic `contains` went byte by byte).
    static func isNormalWithoutNUL(_ path: [UInt8]) -> Bool {
        path.withUnsafeBufferPointer { isNormalWithoutNUL($0) }
    }

    /// `isNormalWithoutNUL` of a part of a path (e.g. what follows a leading "./", not copied out).
    static func isNormalWithoutNUL(_ path: ArraySlice<UInt8>) -> Bool {
        path.withUnsafeBufferPointer { isNormalWithoutNUL($0) }
    }

    private static func isNormalWithoutNUL(_ p: UnsafeBufferPointer<UInt8>) -> Bool {
        guard isNormal(p) else { return false }
        return p.isEmpty || memchr(p.baseAddress!, 0, p.count) == nil
    }

    /// True when `path` is already in normal form (the common case: no copy needed).
    static func isNormal(_ path: [UInt8]) -> Bool {
        path.withUnsafeBufferPointer { isNormal($0) }
    }

    private static func isNormal(_ p: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let first = p.first, first != UInt8(ascii: "/"), p.last != UInt8(ascii: "/") else { return false }
        // Component by component, the next "/" found by memchr (this runs for every entry,
        // twice for a backup's: byte by byte it cost ~1,800 instructions per path).
        do {
            let base = p.baseAddress!
            let n = p.count
            var i = 0  // the start of a component (never past the end: the path ends in a name)
            while true {
                let c = base[i]
                if c == UInt8(ascii: "/") { return false }  // "//": an empty component
                if c == UInt8(ascii: ".") {
                    // "." or ".." as a component.
                    if i + 1 == n || base[i + 1] == UInt8(ascii: "/") { return false }
                    if base[i + 1] == UInt8(ascii: ".") && (i + 2 == n || base[i + 2] == UInt8(ascii: "/")) { return false }
                }
                guard let slash = memchr(base + i, Int32(UInt8(ascii: "/")), n - i) else { return true }
                i = base.distance(to: slash.assumingMemoryBound(to: UInt8.self)) + 1
            }
        }
    }

    /// True when `path` lies below the directory `dir` (both in normal form).
    package static func isBelow(_ path: [UInt8], _ dir: [UInt8]) -> Bool {
        path.count > dir.count && path.starts(with: dir) && path[dir.count] == UInt8(ascii: "/")
    }

    /// The non-empty components of `path` between "/"s (memchr for each "/": the generic
    /// `split` cost ~11,000 instructions per path, twice per directory of a restore).
    package static func split(_ path: [UInt8]) -> [[UInt8]] {
        path.withUnsafeBufferPointer { p in
            var out: [[UInt8]] = []
            guard let base = p.baseAddress else { return out }
            let n = p.count
            var i = 0
            while i < n {
                let end = memchr(base + i, Int32(UInt8(ascii: "/")), n - i).map { base.distance(to: $0.assumingMemoryBound(to: UInt8.self)) } ?? n
                if end > i { out.append(Array(p[i ..< end])) }
                i = end + 1
            }
            return out
        }
    }

    /// A path in normal form as the tree writer takes it: its parent's components and where
    /// its name (the last component) starts in the path, so the name is never copied out.
    /// The components are `parent + [path[nameStart...]]`.
    struct Parts {
        /// The components of the parent (one array shared by the entries of a directory,
        /// when made by a `Splitter`).
        let parent: [[UInt8]]
        /// The index of the name's first byte in the path (0 for a name at the top).
        let nameStart: Int

        /// The parts of `path` (normal form: see `isNormal`).
        init(_ path: [UInt8]) {
            let end = RestorePath.parentEnd(of: path)
            if end == 0 { self.init(parent: [], nameStart: 0); return }
            self.init(parent: RestorePath.split(Array(path[..<end])), nameStart: end + 1)
        }

        init(parent: [[UInt8]], nameStart: Int) {
            self.parent = parent
            self.nameStart = nameStart
        }

        /// Where the parent ends in the path (the index of the last "/"; 0 at the top).
        var parentEnd: Int { nameStart > 0 ? nameStart - 1 : 0 }

        /// The name, within `path` (the path these parts were made of).
        func name(in path: [UInt8]) -> ArraySlice<UInt8> { path[nameStart...] }

        /// Every component (an array per component: for the rarer entries only).
        func components(of path: [UInt8]) -> [[UInt8]] { parent + [Array(path[nameStart...])] }
    }

    /// The index of the last "/" of `path` (0 when there is none): where its parent ends
    /// (through the buffer, no bounds checks: the generic `lastIndex(of:)` cost ~5 times as much,
    /// and it ran twice per entry; memrchr is not in Glibc's Swift module).
    static func parentEnd(of path: [UInt8]) -> Int {
        path.withUnsafeBufferPointer { b in
            guard let base = b.baseAddress else { return 0 }
            var i = b.count - 1
            while i > 0 && base[i] != UInt8(ascii: "/") { i -= 1 }
            return max(i, 0)
        }
    }

    /// `split(path)`, with the arrays of `previous` (another path's components) for the leading
    /// components the two paths share (compared by memcmp; no allocation for them, nor a free
    /// of the previous ones: a new parent in a deep tree shares all but its last components).
    static func split(_ path: [UInt8], reusing previous: [[UInt8]]) -> [[UInt8]] {
        path.withUnsafeBufferPointer { p in
            var out: [[UInt8]] = []
            guard let base = p.baseAddress else { return out }
            out.reserveCapacity(previous.count + 1)
            let n = p.count
            var i = 0
            var shared = !previous.isEmpty
            while i < n {
                let end = memchr(base + i, Int32(UInt8(ascii: "/")), n - i).map { base.distance(to: $0.assumingMemoryBound(to: UInt8.self)) } ?? n
                if end > i {
                    let k = out.count
                    if shared, k < previous.count, previous[k].count == end - i,
                       previous[k].withUnsafeBytes({ memcmp($0.baseAddress!, base + i, end - i) == 0 }) {
                        out.append(previous[k])
                    } else {
                        shared = false
                        out.append(Array(p[i ..< end]))
                    }
                }
                i = end + 1
            }
            return out
        }
    }

    /// `Parts` for a stream of paths in normal form: the parent components are the previous
    /// path's (the same array) when it lies in the same directory, as the entries of one
    /// directory do in an archive. Nothing is allocated for such a path (an array of
    /// components per entry, its last component copied out, and freeing both cost ~2,500
    /// instructions per entry on the thread that reads the archive).
    struct Splitter {
        /// The parent of the last path split, and its components.
        private var parent: [UInt8] = []
        private var parentComps: [[UInt8]] = []

        /// The parts of `path` (normal form: see `isNormal`).
        mutating func split(_ path: [UInt8]) -> Parts {
            let slash = RestorePath.parentEnd(of: path)
            if slash == 0 { return Parts(parent: [], nameStart: 0) }
            let same = slash == parent.count && path.withUnsafeBufferPointer { p in
                parent.withUnsafeBufferPointer { q in memcmp(p.baseAddress!, q.baseAddress!, slash) == 0 }
            }
            if !same {
                parent = Array(path[..<slash])
                parentComps = RestorePath.split(parent, reusing: parentComps)
            }
            return Parts(parent: parentComps, nameStart: slash + 1)
        }
    }

    package static func join(_ comps: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = []
        for (i, c) in comps.enumerated() {
            if i > 0 { out.append(UInt8(ascii: "/")) }
            out += c
        }
        return out
    }

    /// True if a relative link target, read from a directory `depth` levels below the
    /// target, climbs out of it (lexically).
    package static func escapes(link: [UInt8], depth: Int) -> Bool {
        var d = depth
        for c in link.split(separator: UInt8(ascii: "/")) {
            if c.elementsEqual("..".utf8) { d -= 1; if d < 0 { return true } } else if !c.elementsEqual(".".utf8) { d += 1 }
        }
        return false
    }
}

/// The one `--only` filter: paths as bytes, in normal form. An entry is selected when it is a
/// selected path or lies below one; a directory also when a selected path lies below it (its
/// metadata comes back with what it holds).
package struct PathSelection: Sendable {
    /// Normalised patterns (empty: everything).
    package let patterns: [[UInt8]]

    /// - Parameter patterns: the paths as given (`NameArgument.bytes(of:)` of each `--only`).
    package init(_ patterns: [[UInt8]]) {
        self.patterns = patterns.map(RestorePath.normalised)
    }

    package static let everything = PathSelection([])

    package var isEmpty: Bool { patterns.isEmpty }

    /// The patterns as shown to people.
    package var shown: [String] { patterns.map { NameEscape.escape($0) } }

    /// Whether `path` (normal form) is restored.
    package func selects(_ path: [UInt8], isDirectory: Bool) -> Bool {
        if patterns.isEmpty { return true }
        for p in patterns {
            if Self.isAtOrBelow(path, p) { return true }
            if isDirectory && Self.isAtOrBelow(p, path) { return true }
        }
        return false
    }

    /// Indices of the patterns `path` is, or lies below (what "matches" means for the check
    /// that every pattern selected something).
    package func matches(_ path: [UInt8]) -> [Int] {
        patterns.indices.filter { Self.isAtOrBelow(path, patterns[$0]) }
    }

    private static func isAtOrBelow(_ path: [UInt8], _ p: [UInt8]) -> Bool {
        if p.isEmpty { return true }
        return path == p || (path.count > p.count && path.starts(with: p) && path[p.count] == UInt8(ascii: "/"))
    }
}
