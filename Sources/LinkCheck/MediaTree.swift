import Support

/// The plan's media tree (downloads/ + library/ + photos/ under one root), created by `--init`.
package enum MediaTree {
    /// Directories relative to the root, parents first.
    package static func directories(downloads: String, library: String) -> [String] {
        var out: [String] = []
        func add(_ p: String) {
            // Parents first, each once.
            var acc = ""
            for c in p.split(separator: "/") {
                acc = acc.isEmpty ? String(c) : acc + "/" + c
                if !out.contains(acc) { out.append(acc) }
            }
        }
        for k in ["movies", "tv", "music", "xxx", "comics"] { add("\(downloads)/usenet/complete/\(k)") }
        add("\(downloads)/usenet/incomplete")
        for k in ["movies", "tv", "music", "xxx"] { add("\(downloads)/torrents/complete/\(k)") }
        add("\(downloads)/torrents/incomplete")
        add("\(downloads)/jdownloader")
        add("\(downloads)/metube")
        for k in ["movies", "tv", "music", "xxx", "comics", "books"] { add("\(library)/\(k)") }
        add("photos")
        return out
    }

    /// Creates missing directories and sets owner PUID:PGID and mode 775 on each directory of
    /// the tree (not recursively: files and other folders are left alone). Idempotent: a second
    /// run reports every directory "ok".
    package static func initialize(root: String, downloads: String, library: String, uid: UInt32, gid: UInt32,
                                   report: inout LinkCheckReport) -> [InitStep] {
        var steps: [InitStep] = []
        for rel in directories(downloads: downloads, library: library) {
            let path = TreeWalker.join(root, rel)
            do {
                let created = try Sys.mkdir(path, mode: 0o775)
                guard let st = try Sys.lstat(path), st.isDirectory else {
                    steps.append(InitStep(path: path, action: "failed", detail: "exists and is not a directory"))
                    report.add(Finding(.error, "missing-directory", "\(NameEscape.escape(path)) exists and is not a directory.",
                                       fix: "Move it away, then run `hs-linkcheck --init` again."))
                    continue
                }
                var changes: [String] = []
                if st.uid != uid || st.gid != gid {
                    try Sys.chown(path, uid: uid, gid: gid)
                    if !created { changes.append("owner \(st.uid):\(st.gid) -> \(uid):\(gid)") }
                }
                if st.permissions != 0o775 {
                    try Sys.chmod(path, mode: 0o775)
                    if !created { changes.append("mode \(String(st.permissions, radix: 8)) -> 775") }
                }
                steps.append(InitStep(path: path, action: created ? "created" : (changes.isEmpty ? "ok" : "changed"),
                                      detail: changes.isEmpty ? nil : changes.joined(separator: ", ")))
            } catch let e {
                steps.append(InitStep(path: path, action: "failed", detail: e.description))
                report.add(Finding(.error, "cannot-write", "--init could not prepare \(NameEscape.escape(path)): \(NameEscape.escape("\(e)"))",
                                   fix: "Run as a user allowed to create and chown there (on NFS with root_squash, root cannot chown: run as PUID:PGID, or set Maproot for this host)."))
                // Children of a failed directory would fail the same way.
                if e.call == "mkdir" { break }
            }
        }
        return steps
    }
}
