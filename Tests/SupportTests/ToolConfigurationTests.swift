// The configuration file's rules as a table: where a value comes from, misspelled keys,
// redaction, files that cannot be read.
import Foundation
import Support
import TestSupport
import Testing

@Suite("ToolConfiguration: flag > environment > file, misspellings, redaction")
struct ToolConfigurationTests {
    static func file(_ text: String) throws -> (TempDir, String) {
        let dir = try TempDir("hs-config")
        let path = dir.sub("home-server-tools")
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return (dir, path)
    }

    @Test("a flag beats the environment, the environment beats the file; an empty value is not set")
    func precedence() throws {
        let (dir, path) = try Self.file("# comment\nHS_BACKUP_DEST=/file/dest\nexport HS_APPDATA='/file/appdata'\nHS_BACKUP_NAME=\n")
        _ = dir
        let config = try ToolConfiguration.load(configFlag: path, environment: ["HS_APPDATA": "/env/appdata", "HS_BACKUP_DEST": ""])
        #expect(config.value(.backupDest) == ConfigValue(value: "/file/dest", source: .file(path: path, line: 2)))
        #expect(config.value(.appdata) == ConfigValue(value: "/env/appdata", source: .environment("HS_APPDATA")))
        #expect(config.value(.appdata, flag: "/flag", flagName: "--source") == ConfigValue(value: "/flag", source: .flag("--source")))
        #expect(config.value(.backupName) == nil, "an empty value counts as not set")
        #expect(config.value(.ntfyURL) == nil)
        #expect(throws: ToolError.self) { try config.require(.ntfyURL, flag: nil, flagName: "--notify", example: "URL") }
        #expect(config.whereLooked(.backupName) == "not in the environment, empty in \(path)")
    }

    @Test("the file is chosen by --config, else HS_CONFIG, else the default; the default may be missing")
    func choosingTheFile() throws {
        let (dir, path) = try Self.file("HS_APPDATA=/a\n")
        _ = dir
        let byEnv = try ToolConfiguration.load(configFlag: nil, environment: ["HS_CONFIG": path])
        #expect(byEnv.origin == .environment && byEnv.value(.appdata)?.value == "/a")
        let byFlag = try ToolConfiguration.load(configFlag: path, environment: ["HS_CONFIG": "/nonexistent"])
        #expect(byFlag.origin == .flag && byFlag.fileState == .read)
        #expect(ToolConfiguration.configFlag(in: ["run", "--config", "/x", "--to", "/d"]) == "/x")
        #expect(ToolConfiguration.configFlag(in: ["--config=/y", "list"]) == "/y")
        #expect(ToolConfiguration.configFlag(in: ["run", "--", "--config", "/z"]) == nil)
        do {
            _ = try ToolConfiguration.load(configFlag: nil, environment: ["HS_CONFIG": "/nonexistent/hs.conf"])
            Issue.record("a missing file named by HS_CONFIG must be an error")
        } catch {
            #expect(error.exitCode == 2)
            #expect(error.message.contains("HS_CONFIG /nonexistent/hs.conf") && error.message.contains("No such file"), "\(error.message)")
        }
    }

    @Test("a misspelled key names the file and the line and suggests the key meant", arguments: [
        ("HS_BACKUP_DESTINATION=/x", "HS_BACKUP_DEST"),
        ("hs_appdata=/x", "HS_APPDATA"),
        ("HS_KUMA_BACKUPS=https://k/api/push/x", "HS_KUMA_BACKUP"),
        ("HS_HEALTHCHECK_VERIFY=https://hc-ping.com/x", "HS_HEALTHCHECKS_VERIFY"),
        ("HS_NTFY=https://n/t", "HS_NTFY_URL"),
    ])
    func misspelledKey(line: String, meant: String) throws {
        let (dir, path) = try Self.file("# set by hs-provision\n\n\(line)\n")
        _ = dir
        do {
            _ = try ToolConfiguration.load(configFlag: path, environment: [:])
            Issue.record("\(line) was accepted")
        } catch {
            #expect(error.exitCode == 2)
            #expect(error.message.hasPrefix("\(path):3: unknown key "), "\(error.message)")
            #expect(error.message.contains("did you mean \(meant)?"), "\(error.message)")
        }
    }

    @Test("a key nothing resembles lists the keys; a line without '=' names the line")
    func unknownKeyAndBadLine() throws {
        let (d1, p1) = try Self.file("COMPLETELY_OTHER=1\n")
        _ = d1
        #expect(throws: ToolError.self) { try ToolConfiguration.load(configFlag: p1, environment: [:]) }
        do { _ = try ToolConfiguration.load(configFlag: p1, environment: [:]) } catch {
            #expect(error.message.contains("the keys are HS_BACKUP_DEST, HS_APPDATA"), "\(error.message)")
        }
        let (d2, p2) = try Self.file("HS_APPDATA=/a\nnot a setting\n")
        _ = d2
        do { _ = try ToolConfiguration.load(configFlag: p2, environment: [:]); Issue.record("accepted") } catch {
            #expect(error.message.contains("\(p2):2:"), "\(error.message)")
        }
    }

    @Test("hs-backup config's view: secrets hidden, URLs cut to scheme://host/…, destination credentials replaced")
    func redaction() throws {
        let (dir, path) = try Self.file("""
            HS_BACKUP_DEST=nfs://backup:pa55@truenas/mnt/tank/backups
            HS_NTFY_URL=https://user:pw@ntfy.example.net/secret-topic
            HS_NTFY_TOKEN=tk_supersecret
            HS_HEALTHCHECKS_BACKUP=https://hc-ping.com/0b5a3c4e-7f1d-4a2b-9c3d-5e6f7a8b9c0d
            HS_COPY_DEST=rclone:b2:bucket/backups
            """)
        _ = dir
        let rows = try ToolConfiguration.load(configFlag: path, environment: [:]).effective
        let byKey = Dictionary(uniqueKeysWithValues: rows.map { ($0.key, $0) })
        #expect(byKey["HS_BACKUP_DEST"]?.value == "nfs://***@truenas/mnt/tank/backups")
        #expect(byKey["HS_NTFY_URL"]?.value == "https://ntfy.example.net/…")
        #expect(byKey["HS_NTFY_TOKEN"]?.value == "(set, hidden)")
        #expect(byKey["HS_HEALTHCHECKS_BACKUP"]?.value == "https://hc-ping.com/…")
        #expect(byKey["HS_COPY_DEST"]?.value == "rclone:b2:bucket/backups")
        #expect(byKey["HS_APPDATA"]?.value == nil && byKey["HS_APPDATA"]?.source == "not set")
        #expect(byKey["HS_NTFY_TOKEN"]?.source == "\(path):3")
        let all = rows.map { "\($0.value ?? "")" }.joined(separator: " ")
        for secret in ["pa55", "secret-topic", "tk_supersecret", "0b5a3c4e", "user:pw"] { #expect(!all.contains(secret), "\(secret) shown") }
        #expect(rows.map(\.key) == ConfigKey.all.map(\.name))
    }

    @Test("the packaged conffile names every key once, all commented out, and loads")
    func packagedConffile() throws {
        let path = ReleasePackage.repoRoot + "/scripts/package/default/home-server-tools"
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let config = try ToolConfiguration.load(configFlag: path, environment: [:])
        #expect(config.fileEntries.isEmpty, "every value is commented out: \(config.fileEntries.keys.sorted())")
        let named = text.split(separator: "\n").compactMap { line -> String? in
            guard line.hasPrefix("#HS_"), let eq = line.firstIndex(of: "=") else { return nil }
            return String(line[line.index(after: line.startIndex)..<eq])
        }
        #expect(named.sorted() == ConfigKey.all.map(\.name).sorted(), "the conffile and ConfigKey.all differ")
        // Uncommented, it is a valid configuration.
        let dir = try TempDir("hs-conffile")
        let live = text.split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.hasPrefix("#HS_") ? String($0.dropFirst()) : String($0) }.joined(separator: "\n")
        try live.write(toFile: dir.sub("conf"), atomically: true, encoding: .utf8)
        let loaded = try ToolConfiguration.load(configFlag: dir.sub("conf"), environment: [:])
        #expect(loaded.value(.backupDest)?.value == "nfs://truenas/mnt/tank/backups/appdata")
    }
}
