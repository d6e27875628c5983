import Foundation
import Support

/// The parts of `docker compose config --format json` the checks and tests need.
package struct ComposeProject: Sendable {
    package struct Port: Sendable, Hashable, CustomStringConvertible {
        package var published: Int
        package var target: Int
        package var proto: String
        package var description: String { "\(published):\(target)/\(proto)" }

        package init(published: Int, target: Int, proto: String = "tcp") {
            self.published = published
            self.target = target
            self.proto = proto
        }
    }

    package struct Volume: Sendable, Equatable {
        package var type: String
        package var source: String
        package var target: String
        package var readOnly: Bool
    }

    package struct Service: Sendable {
        package var name: String
        package var image: String?
        package var ports: [Port]
        package var volumes: [Volume]
        package var networkMode: String?
        package var capAdd: [String]
        /// Device mappings as "source:target".
        package var devices: [String]
        /// Environment after interpolation (values may be secrets: never print them).
        package var environment: [String: String]
        package var restart: String?
        package var user: String?
        package var command: [String]
        package var hasHealthcheck: Bool
        /// The healthcheck's `test` (e.g. ["CMD-SHELL", "curl ..."]); empty when none is set.
        package var healthcheckTest: [String]
        package var profiles: [String]
        package var expose: [String]
    }

    package var name: String
    package var services: [String: Service]

    /// Every published host port of the project.
    package var publishedPorts: Set<Int> { Set(services.values.flatMap { $0.ports.map(\.published) }) }

    /// Services that bind-mount `hostPath` or something under it.
    package func services(mounting hostPath: String) -> [String] {
        services.values.filter { s in
            s.volumes.contains { $0.type == "bind" && ($0.source == hostPath || $0.source.hasPrefix(hostPath + "/")) }
        }.map(\.name).sorted()
    }

    /// Bind sources under `appdataRoot` that do not exist on this host, as `service: path`.
    package func missingAppdataDirectories(appdataRoot: String = "/opt/appdata") -> [String] {
        services.values.flatMap { s in
            s.volumes.filter { $0.type == "bind" && $0.source.hasPrefix(appdataRoot + "/") && !FileManager.default.fileExists(atPath: $0.source) }
                .map { "\(s.name): \($0.source)" }
        }.sorted()
    }

    /// Parses the JSON printed by `docker compose config --format json`.
    /// - Throws: `ToolError` when the text is not that JSON shape.
    package static func parse(json: Data, origin: String) throws -> ComposeProject {
        guard let top = try? JSONSerialization.jsonObject(with: json) as? [String: Any] else {
            throw ToolError("\(NameEscape.escape(origin)): `docker compose config --format json` did not print a JSON object")
        }
        var services: [String: Service] = [:]
        for (name, raw) in (top["services"] as? [String: Any]) ?? [:] {
            guard let s = raw as? [String: Any] else { continue }
            let ports: [Port] = ((s["ports"] as? [[String: Any]]) ?? []).compactMap { p in
                guard let target = intValue(p["target"]), let published = intValue(p["published"]) else { return nil }
                return Port(published: published, target: target, proto: (p["protocol"] as? String) ?? "tcp")
            }
            let volumes: [Volume] = ((s["volumes"] as? [[String: Any]]) ?? []).map { v in
                Volume(type: (v["type"] as? String) ?? "", source: (v["source"] as? String) ?? "",
                       target: (v["target"] as? String) ?? "", readOnly: (v["read_only"] as? Bool) ?? false)
            }
            let devices: [String] = ((s["devices"] as? [Any]) ?? []).compactMap { d in
                if let str = d as? String { return str }
                if let m = d as? [String: Any] { return "\(m["source"] ?? ""):\(m["target"] ?? "")" }
                return nil
            }
            var env: [String: String] = [:]
            for (k, v) in (s["environment"] as? [String: Any]) ?? [:] { env[k] = v as? String ?? (v is NSNull ? "" : "\(v)") }
            let command: [String]
            if let c = s["command"] as? [String] { command = c } else if let c = s["command"] as? String { command = [c] } else { command = [] }
            let hc = s["healthcheck"] as? [String: Any]
            let hasHC = hc != nil && (hc?["disable"] as? Bool) != true
            services[name] = Service(
                name: name, image: s["image"] as? String, ports: ports, volumes: volumes,
                networkMode: s["network_mode"] as? String, capAdd: (s["cap_add"] as? [String]) ?? [],
                devices: devices, environment: env, restart: s["restart"] as? String, user: s["user"] as? String,
                command: command, hasHealthcheck: hasHC, healthcheckTest: hasHC ? ((hc?["test"] as? [String]) ?? []) : [],
                profiles: (s["profiles"] as? [String]) ?? [],
                expose: ((s["expose"] as? [Any]) ?? []).map { "\($0)" })
        }
        return ComposeProject(name: (top["name"] as? String) ?? "", services: services)
    }

    static func intValue(_ v: Any?) -> Int? {
        if let i = v as? Int { return i }
        if let s = v as? String { return Int(s) }
        if let n = v as? NSNumber { return n.intValue }
        return nil
    }
}

/// Runs `docker compose` for one stack with a clean environment: only the `--env-file`s
/// supply variables, so a stray `TZ` or `COMPOSE_PROFILES` in the caller's shell (or cron's)
/// cannot change what is deployed.
package struct DockerCompose: Sendable {
    package var envFiles: [String]
    package var composeFile: String
    package var profiles: [String] = []

    package init(envFiles: [String], composeFile: String, profiles: [String] = []) {
        self.envFiles = envFiles
        self.composeFile = composeFile
        self.profiles = profiles
    }

    /// The full command line for `docker compose <args>`.
    package func command(_ args: [String]) -> [String] {
        var cmd = ["env", "-i"]
        let env = ProcessInfo.processInfo.environment
        cmd.append("PATH=" + (env["PATH"] ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"))
        for key in ["HOME", "DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG", "DOCKER_CERT_PATH",
                    "DOCKER_TLS_VERIFY", "XDG_RUNTIME_DIR"] {
            if let v = env[key] { cmd.append("\(key)=\(v)") }
        }
        cmd += ["docker", "compose"]
        for f in envFiles { cmd += ["--env-file", f] }
        for p in profiles { cmd += ["--profile", p] }
        cmd += ["-f", composeFile]
        return cmd + args
    }

    /// Runs `docker compose <args>` and returns its result (a non-zero exit is not thrown).
    @discardableResult
    package func run(_ args: [String]) throws -> ProcessResult {
        try Subprocess.run(command(args))
    }

    /// Parses the compose file the way `up` will see it.
    /// - Parameter interpolate: false keeps `${VAR}` text as written (`--no-interpolate`).
    /// - Throws: `ToolError` with compose's own message (file and line) when it rejects the file.
    package func config(interpolate: Bool = true) throws -> ComposeProject {
        var args = ["config", "--format", "json"]
        if !interpolate { args.append("--no-interpolate") }
        let r = try run(args)
        if r.status == 127 || r.stderr.contains("'compose' is not a docker command") || r.stderr.contains("unknown command: docker compose") {
            throw ToolError("Docker Compose v2 is not available (`docker compose` failed: \(NameEscape.escape(Self.firstError(r.stderr)))): install docker and the compose plugin (scripts/bootstrap.sh does)")
        }
        guard r.succeeded else {
            throw ToolError("`docker compose config` rejected \(NameEscape.escape(composeFile)): \(NameEscape.escape(Self.firstError(r.stderr)))")
        }
        return try ComposeProject.parse(json: Data(r.stdout.utf8), origin: composeFile)
    }

    /// Compose's error text without the `level=warning` noise about unset variables.
    static func firstError(_ stderr: String) -> String {
        let lines = stderr.split(separator: "\n").map(String.init).filter { !$0.contains("level=warning") }
        let text = lines.joined(separator: "; ").trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? "no message (exit status non-zero)" : text
    }
}
