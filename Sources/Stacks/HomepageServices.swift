import Foundation
import Support
import Yams

/// Homepage's services.yaml: groups (named after stacks) of services with their addresses.
package struct HomepageServices: Sendable {
    package struct Entry: Sendable, Equatable {
        package var group: String
        package var name: String
        /// URLs the entry points at (`href`, `siteMonitor`).
        package var urls: [String]
    }

    package var path: String
    package var entries: [Entry]

    package var groups: [String] {
        var seen: [String] = []
        for e in entries where !seen.contains(e.group) { seen.append(e.group) }
        return seen
    }

    /// Reads and parses services.yaml.
    /// - Throws: `ToolError` naming the file when it is missing, is not YAML, or is not a list of
    ///   groups of services.
    package static func load(_ path: String) throws -> HomepageServices {
        let shown = NameEscape.escape(path)
        guard let data = FileManager.default.contents(atPath: path) else { throw ToolError("cannot read \(shown)") }
        let node: Any?
        do { node = try Yams.load(yaml: String(decoding: data, as: UTF8.self)) } catch {
            throw ToolError("\(shown): not valid YAML: \(NameEscape.escape("\(error)"))")
        }
        guard let groups = node as? [Any] else {
            throw ToolError("\(shown): expected a list of groups (`- Io:` ...), found \(node.map { "\(type(of: $0))" } ?? "nothing")")
        }
        var entries: [Entry] = []
        for g in groups {
            guard let gm = g as? [String: Any], gm.count == 1, let (gname, svcs) = gm.first else {
                throw ToolError("\(shown): every top-level item must be one `- Group:` mapping")
            }
            for s in (svcs as? [Any]) ?? [] {
                guard let sm = s as? [String: Any], let (sname, body) = sm.first else { continue }
                let fields = body as? [String: Any] ?? [:]
                let urls = ["href", "siteMonitor"].compactMap { fields[$0] as? String }
                entries.append(Entry(group: gname, name: sname, urls: urls))
            }
        }
        return HomepageServices(path: path, entries: entries)
    }

    /// Host and port of an `http://host:port/...` URL (port defaults by scheme).
    package static func hostPort(_ url: String) -> (host: String, port: Int)? {
        guard let c = URLComponents(string: url), let host = c.host else { return nil }
        let port = c.port ?? (c.scheme == "https" ? 443 : 80)
        return (host.lowercased(), port)
    }
}
