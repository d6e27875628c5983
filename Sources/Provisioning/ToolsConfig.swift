// ToolsConfig: the `tools-config` step, /etc/default/home-server-tools on a guest.
//
// The tools' configuration file (Support/ToolConfiguration.swift) gets one managed block,
// `# BEGIN home-server tools-config` ... `# END ...`, holding, for every key the tools know
// (`ConfigKey.all`, in that order): the values the inventory implies (HS_BACKUP_NAME = the
// host's name, HS_APPDATA, HS_REPO), overridden by the keys of common/.env in the host's
// checkout (/opt/stacks/home-server/common/.env, the file hs-deploy reads; its other keys,
// PUID, TZ, ..., are not the tools' and are left out), overridden by the host's `config:`
// mapping in the inventory. Lines outside the block (the package's comments, values added by
// hand) stay byte for byte; a key set by hand below the block wins over the block, as the
// last value of a key wins in the file.
//
// Guarantees: the file is created mode 0600 before any content is written (and made 0600
// when it is wider), its backups too; the plan's diff shows the values as `hs-backup config`
// does (URLs as scheme://host/…, tokens as "(set, hidden)", destinations without
// credentials), and says "(value changed)" where a hidden value changes, so no secret reaches
// the terminal, cron mail or --json.
import Foundation
import Support

package enum ToolsConfig {
    package static let path = ToolConfiguration.defaultPath
    package static let blockName = "tools-config"
    /// common/.env in the guest's checkout.
    package static let commonEnv = ProvisionContext.checkout + "/common/.env"

    /// The values the block holds, by key name, and where common/.env was read (nil: absent).
    /// - Throws: `ToolError` naming the line when common/.env is not dotenv.
    package static func desiredValues(_ c: ProvisionContext, commonEnv text: String?) throws -> [String: String] {
        var values: [String: String] = [
            ConfigKey.backupName.name: c.host.name,
            ConfigKey.appdata.name: ProvisionContext.appdataRoot,
            ConfigKey.repo.name: ProvisionContext.checkout,
        ]
        if let text {
            let env = try EnvFile.parse(text, path: commonEnv)
            for key in ConfigKey.all {
                if let v = env.value(key.name), !v.isEmpty { values[key.name] = v }
            }
        }
        for (k, v) in c.host.config { values[k] = v }
        return values
    }

    /// The block's lines, in `ConfigKey.all` order.
    /// - Throws: `ProvisionError` for a value dotenv cannot hold as it is (a newline or another
    ///   control character, or both a `'` and a character that needs quoting); the value is not
    ///   shown.
    package static func block(_ values: [String: String], host: String) throws -> [String] {
        var lines = ["# Written by hs-provision (step tools-config) for host \(host) from the inventory and",
                     "# \(commonEnv); re-run it after changing them. A key set again below this block wins."]
        for key in ConfigKey.all {
            guard let v = values[key.name] else { continue }
            lines.append("\(key.name)=\(try quoted(v, key: key.name))")
        }
        return lines
    }

    /// `value` as dotenv reads it back unchanged (EnvFile.unquote): bare when it is plain,
    /// else in single quotes (taken literally).
    static func quoted(_ value: String, key: String) throws -> String {
        let bare = value.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "_./:@%+,=-".unicodeScalars.contains($0)) }
        if bare { return value }
        guard !value.contains("'") && !ManagedEdits.holdsControlCharacter(value) else {
            throw ProvisionError("the value of \(key) holds a newline, another control character or a quote that /etc/default/home-server-tools cannot hold; change it in \(commonEnv) or the inventory (value not shown)")
        }
        return "'" + value + "'"
    }

    /// Variables of a crontab that hold no secret and are shown as they are.
    static let cronVariables: Set<String> = ["SHELL", "PATH", "MAILTO", "MAILFROM", "HOME", "LOGNAME", "CRON_TZ"]

    /// `text` as a plan may show it (this file or a crontab): every `KEY=value` line (also a
    /// commented one, also with `export `) shows its value as `ConfigKey.shown` does, a key the
    /// tools do not know as "(hidden)" (cron's own SHELL, PATH, MAILTO, ... as they are); in
    /// any other line a URL is shortened by `URLRedaction` (an http(s) URL to scheme://host/…,
    /// any other without credentials). Where `other` sets the same key to another raw value
    /// that shows the same, the line ends in "(value changed)".
    package static func redacted(_ text: String?, comparedWith other: String?) -> String? {
        guard let text else { return nil }
        let otherValues = Dictionary((other ?? "").split(separator: "\n").compactMap(assignment).filter { !$0.prefix.hasPrefix("#") }
                                        .map { ($0.key, $0.value) }, uniquingKeysWith: { _, last in last })
        var out: [String] = []
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            guard let a = assignment(raw) else { out.append(withURLsShortened(String(raw))); continue }
            let shown = shownValue(a.key, a.value)
            var line = a.prefix + a.key + "=" + shown
            if !a.prefix.hasPrefix("#"), let o = otherValues[a.key], o != a.value, shownValue(a.key, o) == shown {
                line += " (value changed)"
            }
            out.append(line)
        }
        return out.joined(separator: "\n")
    }

    static func shownValue(_ key: String, _ value: String) -> String {
        if value.isEmpty || cronVariables.contains(key) { return value }
        guard let k = ConfigKey.named(key) else { return "(hidden)" }
        return k.shown(EnvFile.unquote(value))
    }

    /// `line` with every URL in it shortened (see `redacted`).
    static func withURLsShortened(_ line: String) -> String {
        line.replacing(/[A-Za-z][A-Za-z0-9+.-]*:\/\/[^\s"'<>]+/) { m in
            let url = String(m.output)
            return url.lowercased().hasPrefix("http") ? URLRedaction.redact(url) : URLRedaction.withoutCredentials(url)
        }
    }

    /// A line `[#][ ][export ]KEY=value` split up (nil: not an assignment).
    static func assignment(_ line: Substring) -> (prefix: String, key: String, value: String)? {
        guard let m = line.wholeMatch(of: /(#?\s*(?:export\s+)?)([A-Za-z_][A-Za-z0-9_]*)=(.*)/) else { return nil }
        return (String(m.1), String(m.2), String(m.3).trimmingCharacters(in: .whitespaces))
    }

    /// The content the file should have now, from its current content.
    package static func desiredFile(_ c: ProvisionContext, current: String?, commonEnv: String?) throws -> String {
        let body = try block(try desiredValues(c, commonEnv: commonEnv), host: c.host.name)
        return try ManagedEdits.managedBlock(in: current ?? "", name: blockName, body: body, file: path)
    }

    /// The effective values of a file's content (the last non-empty value of each key).
    package static func effective(_ content: String) -> [String: String] {
        var out: [String: String] = [:]
        for e in (try? EnvFile.parse(content, path: path))?.entries ?? [] { out[e.key] = e.value.isEmpty ? nil : e.value }
        return out
    }

    /// The `tools-config` step.
    static func step(_ c: ProvisionContext) -> Step {
        Step("tools-config") { m in
            let current = m.read(path)
            let desired = try desiredFile(c, current: current, commonEnv: m.read(commonEnv))
            var p = StepPlan()
            if m.read(commonEnv) == nil {
                p.notes.append("\(NameEscape.escape(m.path(commonEnv))) does not exist: only the values the inventory implies are written (HS_BACKUP_DEST, the notification URLs, ... come from common/.env)")
            }
            let wide = m.mode(path).map { $0 & 0o077 != 0 } ?? false
            if desired != current || wide {
                p.actions.append(.writePrivateFile(path: path, old: current, new: desired,
                                                   shownOld: redacted(current, comparedWith: desired),
                                                   shownNew: redacted(desired, comparedWith: current)!))
            }
            return p
        }
    }
}
