import Foundation
import Support
import Yams

/// What a stack needs from the guest it runs on, read from `stacks/<stack>/docker-compose.yml`
/// so it is written down once: the appdata directories (every host path a service bind-mounts
/// under /opt/appdata, and their parents) with their owners, whether the guest needs the
/// storage mount, and whether it needs /dev/net/tun.
///
/// Owner of an appdata directory: PUID:PGID, or the service's `x-appdata-owner: "UID:GID"`
/// (an image that runs as a fixed user other than PUID writes that down next to the service).
/// Services behind a `profiles:` entry are not started by default and are skipped.
package struct StackRequirements: Sendable, Equatable {
    package struct Directory: Sendable, Equatable {
        package var path: String
        package var uid: Int
        package var gid: Int
        /// The service that mounts it (the first one, for parents shared by several).
        package var service: String
    }

    package var stack: String
    /// The compose file, for messages.
    package var file: String
    /// Appdata directories, parents before children.
    package var appdata: [Directory]
    /// Services that bind-mount the storage path or something under it.
    package var storageServices: [String]
    /// Services that map /dev/net/tun.
    package var tunServices: [String]

    package var needsStorage: Bool { !storageServices.isEmpty }
    package var needsTun: Bool { !tunServices.isEmpty }

    /// The stacks in a `stacks/` directory: subdirectories holding a docker-compose.yml, sorted.
    package static func stacks(in stacksDir: String) -> [String] {
        let fm = FileManager.default
        return ((try? fm.contentsOfDirectory(atPath: stacksDir)) ?? [])
            .filter { fm.fileExists(atPath: "\(stacksDir)/\($0)/docker-compose.yml") }.sorted()
    }

    /// Reads `stacksDir/stack/docker-compose.yml`.
    /// - Throws: `ProvisionError` naming the file when it is missing or not a compose file
    ///   this can read.
    package static func load(stacksDir: String, stack: String, puid: Int, pgid: Int,
                             appdataRoot: String = ProvisionContext.appdataRoot,
                             storagePath: String = ProvisionContext.mountPoint) throws -> StackRequirements {
        let file = "\(stacksDir)/\(stack)/docker-compose.yml"
        guard let data = FileManager.default.contents(atPath: file) else {
            throw ProvisionError("cannot read \(NameEscape.escape(file)): the stack's compose file says which appdata directories to create; run from the repository checkout")
        }
        return try parse(String(decoding: data, as: UTF8.self), file: file, stack: stack, puid: puid, pgid: pgid,
                         appdataRoot: appdataRoot, storagePath: storagePath)
    }

    /// Parses compose YAML text. Pure.
    package static func parse(_ text: String, file: String, stack: String, puid: Int, pgid: Int,
                              appdataRoot: String = ProvisionContext.appdataRoot,
                              storagePath: String = ProvisionContext.mountPoint) throws -> StackRequirements {
        let shown = NameEscape.escape(file)   // in messages, as every name from the file
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch {
            throw ProvisionError("\(shown): not valid YAML (\(NameEscape.escape("\(error)"))); check it with `docker compose config`")
        }
        guard let services = root?.mapping?["services"]?.mapping else {
            throw ProvisionError("\(shown): no 'services' mapping")
        }
        var out = StackRequirements(stack: stack, file: file, appdata: [], storageServices: [], tunServices: [])
        var owners: [String: Directory] = [:]
        var order: [String] = []
        func add(_ path: String, _ uid: Int, _ gid: Int, _ service: String, line: Int?) throws {
            if let other = owners[path] {
                guard other.uid == uid && other.gid == gid else {
                    throw ProvisionError("\(shown)\(line.map { ":\($0)" } ?? ""): \(NameEscape.escape(path)) is mounted by \(NameEscape.escape(other.service)) (owner \(other.uid):\(other.gid)) and \(NameEscape.escape(service)) (owner \(uid):\(gid)): give both the same x-appdata-owner")
                }
                return
            }
            owners[path] = Directory(path: path, uid: uid, gid: gid, service: service)
            order.append(path)
        }
        for (key, value) in services {
            guard let name = key.string, let svc = value.mapping else { continue }
            if let p = svc["profiles"]?.sequence, !p.isEmpty { continue }
            let (uid, gid) = try owner(svc["x-appdata-owner"], puid: puid, pgid: pgid, file: file, service: name)
            for v in svc["volumes"]?.sequence ?? [] {
                let line = v.mark?.line
                guard let source = bindSource(v) else { continue }
                if source.contains("$") && (source.hasPrefix(appdataRoot) || source.hasPrefix(storagePath)) {
                    throw ProvisionError("\(shown)\(line.map { ":\($0)" } ?? ""): \(NameEscape.escape(name)): bind source '\(NameEscape.escape(source))' uses a variable; write appdata and storage paths literally so hs-provision can create them")
                }
                let clean = normalize(source)
                if clean == storagePath || clean.hasPrefix(storagePath + "/") {
                    if !out.storageServices.contains(name) { out.storageServices.append(name) }
                }
                guard clean.hasPrefix(appdataRoot + "/") else { continue }
                // Parents first: Docker would create missing ones as root:root.
                var chain: [String] = []
                var p = clean
                while p.count > appdataRoot.count { chain.insert(p, at: 0); p = (p as NSString).deletingLastPathComponent }
                for d in chain { try add(d, uid, gid, name, line: line) }
            }
            for d in svc["devices"]?.sequence ?? [] {
                let source = d.string.map { String($0.split(separator: ":").first ?? "") } ?? d.mapping?["source"]?.string
                if source == "/dev/net/tun" && !out.tunServices.contains(name) { out.tunServices.append(name) }
            }
        }
        out.appdata = order.sorted().map { owners[$0]! }
        out.storageServices.sort()
        out.tunServices.sort()
        return out
    }

    /// The host path of a bind mount in short (`/a:/b[:ro]`) or long (`{type: bind, source}`)
    /// syntax; nil for named volumes, tmpfs and relative paths' absence of a leading `/`.
    static func bindSource(_ v: Node) -> String? {
        if let s = v.string {
            let source = String(s.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
            return source.hasPrefix("/") ? source : nil
        }
        guard let m = v.mapping, (m["type"]?.string ?? "bind") == "bind", let s = m["source"]?.string, s.hasPrefix("/") else { return nil }
        return s
    }

    static func normalize(_ p: String) -> String {
        var s = p
        while s.count > 1 && s.hasSuffix("/") { s.removeLast() }
        return s.replacingOccurrences(of: "//", with: "/")
    }

    /// `x-appdata-owner: "UID:GID"`; `${PUID}` / `${PGID}` stand for the inventory's ids.
    static func owner(_ node: Node?, puid: Int, pgid: Int, file: String, service: String) throws -> (Int, Int) {
        guard let node else { return (puid, pgid) }
        let text = node.string ?? ""
        let parts = text.split(separator: ":").map { String($0).trimmingCharacters(in: .whitespaces) }
        func id(_ s: String, _ variable: String, _ value: Int) -> Int? {
            if s == "${\(variable)}" || s == "$\(variable)" { return value }
            return Int(s).flatMap { $0 >= 0 && $0 < 65536 ? $0 : nil }
        }
        guard parts.count == 2, let u = id(parts[0], "PUID", puid), let g = id(parts[1], "PGID", pgid) else {
            throw ProvisionError("\(NameEscape.escape(file))\(node.mark.map { ":\($0.line)" } ?? ""): \(NameEscape.escape(service)): x-appdata-owner must be \"UID:GID\" (numbers or ${PUID}:${PGID}), got '\(NameEscape.escape(text))'")
        }
        return (u, g)
    }
}
