import Foundation
import Support
import Yams

/// One media volume of one service.
package struct MediaVolume: Codable, Sendable, Equatable {
    package var host: String
    package var container: String
}

/// A service that touches the media tree.
package struct MediaService: Codable, Sendable, Equatable {
    package var stack: String
    package var service: String
    package var volumes: [MediaVolume]
    package var name: String { "\(stack)/\(service)" }
}

package struct ComposeReport: Codable, Sendable {
    package var directory: String
    package var files: [String] = []
    package var hostRoot: String
    /// The container path the media root should have everywhere (the most common one).
    package var containerRoot: String?
    package var mediaServices: [MediaService] = []
    package var findings: [Finding] = []
}

/// Compose consistency: every service that touches media mounts the same host root at the same
/// container path, and none mounts downloads and library as separate volumes (the kernel
/// refuses hardlinks across two bind mounts even of one filesystem).
///
/// Reads `stacks/*/docker-compose.yml` with Yams; resolves `${VAR}`, `${VAR:-default}` from the
/// stack's `.env`/`.env.template` and `common/.env`/`.env.template`; understands short and long
/// volume syntax and `<<` merge keys. Does not run `docker compose` (no engine or .env needed).
package struct ComposeCheck {
    package var directory: String
    /// Candidate host roots, best first; the first one the compose files mount is used.
    package var hostRootCandidates: [String]

    /// - Parameters:
    ///   - hostRoots: candidate host media roots, best first (e.g. the checked ROOT, then the
    ///     plan's `/mnt/storage`). The first one any compose file mounts (or mounts a folder of)
    ///     is the root every service is held to; the last one when none is mounted.
    package init(directory: String, hostRoots: [String]) {
        self.directory = directory
        hostRootCandidates = hostRoots.map(Self.normalize)
    }

    /// The compose files under `directory/stacks/*/`, sorted.
    package func composeFiles() -> [String] {
        let stacks = TreeWalker.join(directory, "stacks")
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: stacks) else { return [] }
        var out: [String] = []
        for n in names.sorted() {
            for f in ["docker-compose.yml", "docker-compose.yaml", "compose.yml", "compose.yaml"] {
                let p = "\(stacks)/\(n)/\(f)"
                if FileManager.default.fileExists(atPath: p) { out.append(p); break }
            }
        }
        return out
    }

    package func run() throws -> ComposeReport {
        let files = composeFiles()
        var binds: [(stack: String, service: String, host: String, target: String)] = []
        var report = ComposeReport(directory: directory, hostRoot: hostRootCandidates.last ?? "/mnt/storage")
        report.files = files
        if files.isEmpty {
            report.findings.append(Finding(.warning, "compose", "no stacks/*/docker-compose.yml under \(NameEscape.escape(directory)).",
                                           fix: "Pass the repository root with --compose DIR."))
            return report
        }
        for file in files {
            let stack = URL(fileURLWithPath: file).deletingLastPathComponent().lastPathComponent
            let env = loadEnv(stack: stack)
            let text: String
            do { text = try String(contentsOfFile: file, encoding: .utf8) } catch {
                throw ToolError("cannot read \(NameEscape.escape(file)): \(NameEscape.escape("\(error)"))")
            }
            let doc: Any?
            do { doc = try Yams.load(yaml: text) } catch {
                report.findings.append(Finding(.error, "compose", "\(NameEscape.escape(file)) is not valid YAML: \(NameEscape.escape("\(error)"))",
                                               fix: "Fix the file; `docker compose -f \(NameEscape.escape(file)) config` shows the problem too."))
                continue
            }
            guard let top = Self.dict(doc), let services = Self.dict(top["services"]) else { continue }
            for (name, raw) in services.sorted(by: { $0.key < $1.key }) {
                let svc = Self.merged(Self.dict(raw) ?? [:])
                guard let vols = svc["volumes"] as? [Any] else { continue }
                for v in vols {
                    guard let (src, dst) = Self.bind(v, env: env) else { continue }
                    let host = Self.normalize(Self.interpolate(src, env: env))
                    let target = Self.normalize(Self.interpolate(dst, env: env))
                    guard host.hasPrefix("/") else { continue }  // named volumes, ./config
                    binds.append((stack, name, host, target))
                }
            }
        }
        let hostRoot = hostRootCandidates.first { r in binds.contains { MountTable.isInside($0.host, r) } }
            ?? report.hostRoot
        report.hostRoot = hostRoot
        for b in binds where MountTable.isInside(b.host, hostRoot) || MountTable.isInside(b.target, "/storage")
            || Self.looksLikeMedia(b.host) {
            let v = MediaVolume(host: b.host, container: b.target)
            if let last = report.mediaServices.last, last.stack == b.stack, last.service == b.service {
                report.mediaServices[report.mediaServices.count - 1].volumes.append(v)
            } else {
                report.mediaServices.append(MediaService(stack: b.stack, service: b.service, volumes: [v]))
            }
        }
        analyse(&report, hostRoot: hostRoot)
        return report
    }

    /// Host paths outside the root that still look like media folders.
    static func looksLikeMedia(_ host: String) -> Bool {
        let last = host.split(separator: "/").last.map(String.init) ?? ""
        return ["downloads", "library", "media", "movies", "tv", "torrents", "usenet"].contains(last)
    }

    func analyse(_ report: inout ComposeReport, hostRoot: String) {
        // The container root each volume implies: for host ROOT/rel at C, C minus "/rel".
        var votes: [String: Int] = [:]
        for s in report.mediaServices {
            for v in s.volumes where MountTable.isInside(v.host, hostRoot) {
                if let r = impliedContainerRoot(v, hostRoot) { votes[r, default: 0] += 1 }
            }
        }
        let containerRoot = votes.max { a, b in a.value != b.value ? a.value < b.value : a.key > b.key }?.key ?? "/storage"
        report.containerRoot = containerRoot

        for s in report.mediaServices {
            var subdirs: [MediaVolume] = []
            for v in s.volumes {
                guard MountTable.isInside(v.host, hostRoot) else {
                    report.findings.append(Finding(.error, "compose-host-root",
                        "\(NameEscape.escape(s.name)) mounts \(NameEscape.escape(v.host)) at \(NameEscape.escape(v.container)), outside the media root \(NameEscape.escape(hostRoot)): a different host root, so hardlinks and moves to the other apps' files cannot work.",
                        fix: "Use `- \(NameEscape.escape(hostRoot)):\(NameEscape.escape(containerRoot))` like the other media services."))
                    continue
                }
                if v.host != hostRoot { subdirs.append(v) }
                let implied = impliedContainerRoot(v, hostRoot)
                if implied != containerRoot {
                    let expected = TreeWalker.join(containerRoot, relative(v.host, hostRoot))
                    report.findings.append(Finding(.error, "compose-container-path",
                        "\(NameEscape.escape(s.name)) mounts \(NameEscape.escape(v.host)) at \(NameEscape.escape(v.container)), but the other media services see it at \(NameEscape.escape(expected)): paths handed between apps (download client -> *arr -> media server) will not resolve.",
                        fix: "Use `- \(NameEscape.escape(hostRoot)):\(NameEscape.escape(containerRoot))` in \(s.stack)/docker-compose.yml (same container path in every service)."))
                }
            }
            let tops = Set(subdirs.map { relative($0.host, hostRoot).split(separator: "/").first.map(String.init) ?? "" })
            if subdirs.count >= 2 && tops.count >= 2 && !s.volumes.contains(where: { $0.host == hostRoot }) {
                let list = subdirs.map { "\($0.host):\($0.container)" }.joined(separator: ", ")
                report.findings.append(Finding(.error, "compose-split-mounts",
                    "\(NameEscape.escape(s.name)) mounts parts of the media tree as separate volumes (\(NameEscape.escape(list))): each is its own bind mount, and the kernel refuses hardlinks and atomic moves between mounts, so imports become copies.",
                    fix: "Replace them with one volume `- \(NameEscape.escape(hostRoot)):\(NameEscape.escape(containerRoot))` and point the app at \(NameEscape.escape(containerRoot))/downloads and \(NameEscape.escape(containerRoot))/library."))
            }
        }
    }

    func relative(_ host: String, _ hostRoot: String) -> String {
        host == hostRoot ? "" : String(host.dropFirst(hostRoot == "/" ? 1 : hostRoot.count + 1))
    }

    /// The container path of the media root implied by one volume, nil if inconsistent.
    func impliedContainerRoot(_ v: MediaVolume, _ hostRoot: String) -> String? {
        let rel = relative(v.host, hostRoot)
        if rel.isEmpty { return v.container }
        guard v.container.hasSuffix("/" + rel) else { return nil }
        let r = String(v.container.dropLast(rel.count + 1))
        return r.isEmpty ? "/" : r
    }

    /// (source, target) of a bind-style volume entry, short or long syntax.
    static func bind(_ v: Any, env: [String: String]) -> (String, String)? {
        if let raw = v as? String {
            // Interpolate first: `${VAR:-/mnt/storage}:/storage` has a colon inside the variable.
            let s = interpolate(raw, env: env)
            // host:container[:mode]; a single path is an anonymous volume.
            let parts = s.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard parts.count >= 2 else { return nil }
            return (parts[0], parts[1])
        }
        if let m = dict(v) {
            if let t = m["type"] as? String, t != "bind" { return nil }
            guard let src = m["source"] as? String, let dst = m["target"] as? String else { return nil }
            return (src, dst)
        }
        return nil
    }

    /// A YAML mapping as `[String: Any]` (Yams returns `[AnyHashable: Any]` after a merge key).
    static func dict(_ v: Any?) -> [String: Any]? {
        if let d = v as? [String: Any] { return d }
        guard let d = v as? [AnyHashable: Any] else { return nil }
        var out: [String: Any] = [:]
        for (k, v) in d { out[(k.base as? String) ?? "\(k.base)"] = v }
        return out
    }

    /// Applies YAML `<<` merge keys (anchors are already resolved by the parser).
    static func merged(_ m: [String: Any]) -> [String: Any] {
        guard let base = m["<<"] else { return m }
        var out: [String: Any] = [:]
        let bases: [[String: Any]] = (base as? [Any])?.compactMap { dict($0) } ?? [dict(base) ?? [:]]
        for b in bases { for (k, v) in merged(b) { out[k] = v } }
        for (k, v) in m where k != "<<" { out[k] = v }
        return out
    }

    /// Variables from the stack's .env / .env.template and common/.env / .env.template: the
    /// first file that sets a variable wins; inside one file the last line wins, as in Compose
    /// (read with `EnvFile`, the toolkit's dotenv reader; a file it cannot parse is skipped).
    func loadEnv(stack: String) -> [String: String] {
        var env: [String: String] = [:]
        for f in ["stacks/\(stack)/.env", "stacks/\(stack)/.env.template", "common/.env", "common/.env.template", ".env"] {
            guard let file = try? EnvFile.load(TreeWalker.join(directory, f)) else { continue }
            for e in file.entries where env[e.key] == nil { env[e.key] = file.value(e.key) }
        }
        return env
    }

    /// Compose-style interpolation: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
    /// `${VAR:?msg}`, `$$`. Unknown variables without a default stay as written.
    static func interpolate(_ s: String, env: [String: String]) -> String {
        guard s.contains("$") else { return s }
        var out = ""
        var i = s.startIndex
        while i < s.endIndex {
            let c = s[i]
            guard c == "$" else { out.append(c); i = s.index(after: i); continue }
            let n = s.index(after: i)
            if n < s.endIndex, s[n] == "$" { out.append("$"); i = s.index(after: n); continue }
            if n < s.endIndex, s[n] == "{", let close = s[n...].firstIndex(of: "}") {
                let expr = String(s[s.index(after: n)..<close])
                var name = expr, def: String?, colon = false
                if let k = expr.firstIndex(where: { ":-?+".contains($0) }) {
                    name = String(expr[..<k])
                    var rest = expr[k...]
                    if rest.first == ":" { colon = true; rest = rest.dropFirst() }
                    if rest.first == "-" { def = String(rest.dropFirst()) }
                }
                if let v = env[name], !(colon && v.isEmpty) { out += v }
                else if let def { out += def }
                else { out += "${\(expr)}" }
                i = s.index(after: close)
                continue
            }
            var j = n
            while j < s.endIndex, s[j].isLetter || s[j].isNumber || s[j] == "_" { j = s.index(after: j) }
            let name = String(s[n..<j])
            if !name.isEmpty, let v = env[name] { out += v } else { out += "$" + name }
            i = j
        }
        return out
    }

    /// Removes trailing slashes and `.` components ("/mnt/storage/" -> "/mnt/storage").
    static func normalize(_ p: String) -> String {
        guard p.hasPrefix("/") else { return p }
        let comps = p.split(separator: "/").filter { $0 != "." }
        return "/" + comps.joined(separator: "/")
    }
}
