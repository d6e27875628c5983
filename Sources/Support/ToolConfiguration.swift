// ToolConfiguration: the one configuration file of the tools, /etc/default/home-server-tools.
//
// The tools read it themselves (systemd units do not use EnvironmentFile=, whose syntax
// differs from the dotenv dialect read here). A value comes from, in this order: the command
// line flag, the environment variable of the same name as the key, the file. An empty value
// counts as not set (as restic treats an empty RESTIC_REPOSITORY). `HS_CONFIG` or `--config
// FILE` names another file (tests, several backup sets on one host).
//
// Guarantees: the default file may be missing or unreadable (a user who is not root still
// runs the tools with flags; a missing value then says the file could not be read); a file
// named by HS_CONFIG/--config must exist and be readable. Any key the tools do not know is an
// error naming the file and the line and suggesting the key meant, so a misspelled
// HS_BACKUP_DEST never silently becomes "not set". Values of secret keys are never shown; the
// file's path and the values that are shown are escaped in text (`NameEscape`), not in --json.
import FoundationEssentials
import Glibc

/// One key of the configuration file (and the environment variable of the same name).
package struct ConfigKey: Sendable, Hashable {
    /// How a value is shown by `hs-backup config` and in messages.
    package enum Kind: Sendable, Hashable {
        /// Shown as it is (paths, names).
        case plain
        /// A destination: credentials in a URL are hidden.
        case destination
        /// An http(s) URL whose path and query are secrets (ntfy topic, push tokens): only
        /// `scheme://host/…` is shown.
        case url
        /// Never shown.
        case secret
    }

    package let name: String
    package let kind: Kind
    /// What the key fills, for `hs-backup config` and the documentation.
    package let fills: String

    package init(_ name: String, _ kind: Kind, fills: String) {
        self.name = name; self.kind = kind; self.fills = fills
    }
}

extension ConfigKey {
    package static let backupDest = ConfigKey("HS_BACKUP_DEST", .destination,
        fills: "--to of hs-backup run/list/verify/prune and the other reading commands, --from of hs-restore (never copy's --to)")
    package static let appdata = ConfigKey("HS_APPDATA", .plain, fills: "--source of hs-backup run; hs-deploy --save-env-to-appdata")
    package static let backupName = ConfigKey("HS_BACKUP_NAME", .plain, fills: "--name (the backup set; default: the short hostname)")
    package static let ntfyURL = ConfigKey("HS_NTFY_URL", .url, fills: "--notify of every hs-backup job (ntfy topic)")
    package static let ntfyToken = ConfigKey("HS_NTFY_TOKEN", .secret, fills: "the ntfy access token (Bearer)")
    package static let kumaBackup = ConfigKey("HS_KUMA_BACKUP", .url, fills: "--ping of hs-backup run (Uptime Kuma push URL)")
    package static let kumaVerify = ConfigKey("HS_KUMA_VERIFY", .url, fills: "--ping of hs-backup verify")
    package static let kumaPrune = ConfigKey("HS_KUMA_PRUNE", .url, fills: "--ping of hs-backup prune")
    package static let kumaCopy = ConfigKey("HS_KUMA_COPY", .url, fills: "--ping of hs-backup copy")
    package static let healthchecksBackup = ConfigKey("HS_HEALTHCHECKS_BACKUP", .url, fills: "--healthchecks of hs-backup run (Healthchecks ping URL)")
    package static let healthchecksVerify = ConfigKey("HS_HEALTHCHECKS_VERIFY", .url, fills: "--healthchecks of hs-backup verify")
    package static let healthchecksPrune = ConfigKey("HS_HEALTHCHECKS_PRUNE", .url, fills: "--healthchecks of hs-backup prune")
    package static let healthchecksCopy = ConfigKey("HS_HEALTHCHECKS_COPY", .url, fills: "--healthchecks of hs-backup copy")
    package static let metricsDir = ConfigKey("HS_METRICS_DIR", .plain,
        fills: "directory of the Prometheus files (node_exporter's textfile directory): --metrics-file DIR/hs_backup_SET_COMMAND.prom")
    package static let ageRecipientsFile = ConfigKey("HS_AGE_RECIPIENTS_FILE", .plain, fills: "--recipients-file of hs-backup run (age public keys)")
    package static let copyDest = ConfigKey("HS_COPY_DEST", .destination, fills: "--to of hs-backup copy (the offsite destination)")
    package static let repo = ConfigKey("HS_REPO", .plain, fills: "--repo of hs-deploy (the clone holding stacks/ and common/)")
    package static let storageFSTypes = ConfigKey("HS_STORAGE_FSTYPES", .plain, fills: "--storage-fstype of hs-deploy")
    package static let sqliteCapture = ConfigKey("HS_BACKUP_SQLITE_CAPTURE", .plain, fills: "0 turns off the SQLite capture of hs-backup run")
    package static let sqliteBusyTimeout = ConfigKey("HS_BACKUP_SQLITE_BUSY_TIMEOUT", .plain, fills: "seconds a SQLite capture retries a locked database (default 60)")

    /// Every key the tools know, in the order `hs-backup config` prints them.
    package static let all: [ConfigKey] = [
        backupDest, appdata, backupName, ntfyURL, ntfyToken,
        kumaBackup, kumaVerify, kumaPrune, kumaCopy,
        healthchecksBackup, healthchecksVerify, healthchecksPrune, healthchecksCopy,
        metricsDir, ageRecipientsFile, copyDest, repo, storageFSTypes, sqliteCapture, sqliteBusyTimeout,
    ]

    package static func named(_ name: String) -> ConfigKey? { all.first { $0.name == name } }

    /// The known key `name` most likely meant (case, a typo, a word more or less), or nil.
    package static func suggestion(for name: String) -> ConfigKey? {
        let upper = name.uppercased()
        let scored = all.map { key -> (ConfigKey, Int) in
            var d = editDistance(Array(upper.utf8), Array(key.name.utf8))
            if upper.hasPrefix(key.name) || key.name.hasPrefix(upper) { d = min(d, 2) }
            return (key, d)
        }
        guard let best = scored.min(by: { $0.1 < $1.1 }) else { return nil }
        return best.1 <= max(2, best.0.name.count / 3) ? best.0 : nil
    }

    /// Levenshtein distance.
    static func editDistance(_ a: [UInt8], _ b: [UInt8]) -> Int {
        var previous = Array(0...b.count)
        for (i, x) in a.enumerated() {
            var current = [i + 1] + Array(repeating: 0, count: b.count)
            for (j, y) in b.enumerated() {
                current[j + 1] = min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x == y ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }

    /// `value` as it may be shown to a person (see `Kind`).
    package func shown(_ value: String) -> String {
        switch kind {
        case .plain: return value
        case .secret: return "(set, hidden)"
        case .url: return URLRedaction.redact(value)
        case .destination: return URLRedaction.withoutCredentials(value)
        }
    }
}

/// Where a configuration value came from.
package enum ConfigSource: Sendable, Equatable, CustomStringConvertible {
    case flag(String)
    case environment(String)
    case file(path: String, line: Int)

    /// `flag --to`, `environment HS_...`, `FILE:LINE` (the path as it is: for --json).
    package var description: String {
        switch self {
        case .flag(let f): return "flag \(f)"
        case .environment(let v): return "environment \(v)"
        case .file(let path, let line): return "\(path):\(line)"
        }
    }
}

/// A value and where it came from.
package struct ConfigValue: Sendable, Equatable {
    package var value: String
    package var source: ConfigSource

    package init(value: String, source: ConfigSource) { self.value = value; self.source = source }
}

/// The configuration of this process: the file that was read and the environment.
package struct ToolConfiguration: Sendable {
    /// The package's configuration file (a conffile, mode 0600, written by hs-provision).
    package static let defaultPath = "/etc/default/home-server-tools"

    /// Why this file was chosen.
    package enum Origin: Sendable, Equatable { case defaultPath, environment, flag }
    /// What reading it gave.
    package enum FileState: Sendable, Equatable { case read, missing, unreadable(String) }

    package let path: String
    package let origin: Origin
    package let fileState: FileState
    /// The file's entries (the last one of a key wins, as in dotenv).
    package let fileEntries: [String: EnvEntry]
    /// A variable of the environment (nil: not set).
    let environment: @Sendable (String) -> String?

    /// Reads the configuration: `configFlag` (--config), else `HS_CONFIG`, else the default file.
    /// - Throws: `ToolError.usage` for a named file that cannot be read, a line that is not
    ///   `KEY=value`, or a key the tools do not know (with the file, the line and a suggestion).
    package static func load(configFlag: String?, environment: [String: String]) throws(ToolError) -> ToolConfiguration {
        try load(configFlag: configFlag, environment: { environment[$0] })
    }

    /// `load` with the environment looked up by name (this process's: `Sys.environment`, no
    /// dictionary of the whole environment, whose storage type was looked up at run time at
    /// every start, issue 23; nothing in the tools changes their environment).
    static func load(configFlag: String?, environment: @escaping @Sendable (String) -> String?) throws(ToolError) -> ToolConfiguration {
        let origin: Origin
        let path: String
        if let f = configFlag, !f.isEmpty { origin = .flag; path = f }
        else if let e = environment("HS_CONFIG"), !e.isEmpty { origin = .environment; path = e }
        else { origin = .defaultPath; path = defaultPath }
        let named = origin == .flag ? "--config" : "HS_CONFIG"
        let shown = NameEscape.escape(path)

        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            let why = String(cString: strerror(code))
            if origin == .defaultPath {
                return ToolConfiguration(path: path, origin: origin, fileState: code == ENOENT ? .missing : .unreadable(why),
                                         fileEntries: [:], environment: environment)
            }
            throw .usage("\(named) \(shown): \(why); name an existing, readable configuration file "
                         + "(\(defaultPath) lists the keys)")
        }
        var data: [UInt8] = [], chunk = [UInt8](repeating: 0, count: 16384), failed: Int32 = 0
        while true {
            let n = chunk.withUnsafeMutableBytes { b in Sys.retry { read(fd, b.baseAddress, b.count) } }
            if n < 0 { failed = errno }
            if n <= 0 { break }
            data += chunk[..<n]
        }
        close(fd)
        if failed != 0 { throw .usage("\(shown): cannot be read: \(Sys.strerror(failed))") }
        let file: EnvFile
        do { file = try EnvFile.parse(String(decoding: data, as: UTF8.self), path: path) }
        catch { throw .usage(HumanError.describe(error)) }
        var entries: [String: EnvEntry] = [:]
        for entry in file.entries {
            guard ConfigKey.named(entry.key) != nil else {
                let hint = ConfigKey.suggestion(for: entry.key).map { "did you mean \($0.name)? ('hs-backup config' lists every key)" }
                    ?? "the keys are \(ConfigKey.all.map(\.name).joined(separator: ", "))"
                throw .usage("\(shown):\(entry.line): unknown key \(entry.key); \(hint)")
            }
            entries[entry.key] = entry
        }
        return ToolConfiguration(path: path, origin: origin, fileState: .read, fileEntries: entries, environment: environment)
    }

    /// The value of `key` from the environment, else the file; nil when neither sets it (an
    /// empty value counts as not set).
    package func value(_ key: ConfigKey) -> ConfigValue? {
        if let v = environment(key.name), !v.isEmpty { return ConfigValue(value: v, source: .environment(key.name)) }
        if let e = fileEntries[key.name], !e.value.isEmpty { return ConfigValue(value: e.value, source: .file(path: path, line: e.line)) }
        return nil
    }

    /// `flag`'s value when given (even empty: an explicit `--to ""` is the caller's to refuse),
    /// else `value(key)`.
    package func value(_ key: ConfigKey, flag: String?, flagName: String) -> ConfigValue? {
        if let flag { return ConfigValue(value: flag, source: .flag(flagName)) }
        return value(key)
    }

    /// The value of `flag`, else of `key`; a usage error saying where it was looked for when
    /// none is set.
    package func require(_ key: ConfigKey, flag: String?, flagName: String, example: String) throws(ToolError) -> String {
        if let v = value(key, flag: flag, flagName: flagName) { return v.value }
        throw .usage("missing \(flagName) \(example): give \(flagName), or set \(key.name) "
                     + "(\(whereLooked(key))). 'hs-backup config' shows the effective configuration.")
    }

    /// Where `key` was looked for, for a message about a missing value.
    package func whereLooked(_ key: ConfigKey) -> String {
        let path = NameEscape.escape(path)
        var parts: [String] = []
        parts.append(environment(key.name) != nil ? "empty in the environment" : "not in the environment")
        switch fileState {
        case .read: parts.append(fileEntries[key.name] != nil ? "empty in \(path)" : "not in \(path)")
        case .missing: parts.append("\(path) does not exist")
        case .unreadable(let why): parts.append("\(path) could not be read: \(why)")
        }
        return parts.joined(separator: ", ")
    }

    /// The value of `--config FILE` / `--config=FILE` in `arguments` (read before parsing, so
    /// every option default sees the same file).
    package static func configFlag(in arguments: [String]) -> String? {
        var found: String?
        var i = 0
        while i < arguments.count {
            let a = arguments[i]
            if a == "--" { break }
            if a == "--config", i + 1 < arguments.count { found = arguments[i + 1]; i += 2; continue }
            if a.hasPrefix("--config=") { found = String(a.dropFirst("--config=".count)) }
            i += 1
        }
        return found
    }

    /// The configuration of this process (from its arguments and environment), read once.
    package static let current: Result<ToolConfiguration, ToolError> = Result {
        () throws(ToolError) -> ToolConfiguration in
        try load(configFlag: configFlag(in: Array(CommandLine.arguments.dropFirst())),
                 environment: { Sys.environment($0) })
    }

    /// `current`, or its error (a usage error, exit 2).
    package static func get() throws(ToolError) -> ToolConfiguration { try current.get() }
}

/// The one rule for showing a URL that holds secrets.
package enum URLRedaction {
    /// `scheme://host[:port]/…`: never the path (ntfy topic, Kuma or Healthchecks token), the
    /// query or credentials. Not a URL: `<url>`.
    package static func redact(_ url: String) -> String {
        guard let c = URLComponents(string: url), let scheme = c.scheme, let host = c.host else { return "<url>" }
        let port = c.port.map { ":\($0)" } ?? ""
        let hasMore = !(c.path.isEmpty || c.path == "/") || c.query != nil
        return "\(scheme)://\(host)\(port)\(hasMore ? "/…" : "")"
    }

    /// `value` with the `user:password@` part of a URL replaced by `***@`; anything else as it is.
    package static func withoutCredentials(_ value: String) -> String {
        guard let scheme = value.scalarRange(of: "://"), let at = value[scheme.upperBound...].firstIndex(of: "@") else { return value }
        let authorityEnd = value[scheme.upperBound...].firstIndex(of: "/") ?? value.endIndex
        guard at < authorityEnd else { return value }
        return String(value[..<scheme.upperBound]) + "***" + String(value[at...])
    }
}

extension ToolConfiguration {
    /// One key as `hs-backup config` shows it.
    package struct Effective: Sendable, Encodable, Equatable {
        package var key: String
        /// The value as it may be shown (secrets hidden, URLs shortened); nil when not set.
        package var value: String?
        /// `environment HS_...`, `FILE:LINE`, or `not set`.
        package var source: String
        package var fills: String
    }

    /// Every known key with its shown value and where it came from (flags are not seen here).
    package var effective: [Effective] {
        ConfigKey.all.map { key in
            guard let v = value(key) else { return Effective(key: key.name, value: nil, source: "not set", fills: key.fills) }
            return Effective(key: key.name, value: key.shown(v.value), source: v.source.description, fills: key.fills)
        }
    }

    /// How the file was chosen and what reading it gave, in words (the path as it is: for
    /// --json; a message escapes it).
    package var fileDescription: String {
        let chosen = switch origin { case .defaultPath: "the default"; case .environment: "named by HS_CONFIG"; case .flag: "named by --config" }
        let state = switch fileState {
        case .read: "read"
        case .missing: "does not exist"
        case .unreadable(let why): "not readable: \(why)"
        }
        return "\(path) (\(chosen); \(state))"
    }
}
