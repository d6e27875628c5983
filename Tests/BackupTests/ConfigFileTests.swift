// The tools read /etc/default/home-server-tools (or HS_CONFIG) themselves: a backup with no
// flags, from the environment and from a file.
import Foundation
import Support
import TestSupport
import Testing

@Suite("Configuration file: hs-backup and hs-restore without --to/--from/--source")
struct ConfigFileTests {
    @Test("HS_BACKUP_DEST and HS_APPDATA from the environment run a backup with no flags; hs-restore finds it")
    func fromEnvironment() throws {
        let work = try TempDir("hs-conf-env")
        try Tree.makeSample(work.sub("appdata"))
        let env = ["HS_CONFIG": "/dev/null", "HS_BACKUP_DEST": work.sub("dest"), "HS_APPDATA": work.sub("appdata"), "HS_BACKUP_NAME": "io"]
        let r = try Tools.run("hs-backup", ["run", "-q"], environment: env)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(FileManager.default.fileExists(atPath: work.sub("dest/io")), "the set is HS_BACKUP_NAME under HS_BACKUP_DEST")
        #expect(try Tools.run("hs-backup", ["verify"], environment: env).succeeded)
        let restore = try Tools.run("hs-restore", ["--to", work.sub("restored")], environment: env)
        #expect(restore.status == 0, "\(restore.stderr)")
        #expect(FileManager.default.fileExists(atPath: work.sub("restored/radarr/config.xml")))
    }

    @Test("the same from a file named by HS_CONFIG; a flag beats the environment, which beats the file")
    func fromFileAndPrecedence() throws {
        let work = try TempDir("hs-conf-file")
        try Tree.makeSample(work.sub("appdata"))
        try "# written by hs-provision\nHS_BACKUP_DEST=\(work.sub("file-dest"))\nHS_APPDATA=\(work.sub("appdata"))\n"
            .write(toFile: work.sub("conf"), atomically: true, encoding: .utf8)
        let r = try Tools.run("hs-backup", ["run", "-q", "--name", "io"], environment: ["HS_CONFIG": work.sub("conf")])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(FileManager.default.fileExists(atPath: work.sub("file-dest/io")))

        let env = try Tools.run("hs-backup", ["run", "-q", "--name", "io"],
                                environment: ["HS_CONFIG": work.sub("conf"), "HS_BACKUP_DEST": work.sub("env-dest")])
        #expect(env.status == 0 && FileManager.default.fileExists(atPath: work.sub("env-dest/io")), "\(env.stderr)")
        let flag = try Tools.run("hs-backup", ["run", "-q", "--name", "io", "--to", work.sub("flag-dest")],
                                 environment: ["HS_CONFIG": work.sub("conf"), "HS_BACKUP_DEST": work.sub("env-dest")])
        #expect(flag.status == 0 && FileManager.default.fileExists(atPath: work.sub("flag-dest/io")), "\(flag.stderr)")
        // --config names the file too, beating HS_CONFIG.
        let byFlag = try Tools.run("hs-backup", ["list", "--config", work.sub("conf")], environment: ["HS_CONFIG": "/nonexistent"])
        #expect(byFlag.status == 0 && byFlag.stdout.contains("io"), "\(byFlag.stderr)")

        let shown = try Tools.run("hs-backup", ["config"], environment: ["HS_CONFIG": work.sub("conf"), "HS_BACKUP_DEST": work.sub("env-dest")])
        #expect(shown.status == 0)
        #expect(shown.stdout.contains("configuration file: \(work.sub("conf")) (named by HS_CONFIG; read)"), "\(shown.stdout)")
        let dest = try #require(shown.stdout.split(separator: "\n").first { $0.hasPrefix("HS_BACKUP_DEST ") })
        #expect(dest.contains(work.sub("env-dest")) && dest.hasSuffix("environment HS_BACKUP_DEST"), "\(dest)")
        let appdata = try #require(shown.stdout.split(separator: "\n").first { $0.hasPrefix("HS_APPDATA ") })
        #expect(appdata.hasSuffix("\(work.sub("conf")):3"), "\(appdata)")
    }

    @Test("nothing set anywhere: the error says where it looked; a misspelled key stops every tool with exit 2")
    func missingAndMisspelled() throws {
        let none = try Tools.run("hs-backup", ["list"], environment: ["HS_CONFIG": "/dev/null"])
        #expect(none.status == 2)
        #expect(none.stderr.contains("missing --to DEST") && none.stderr.contains("HS_BACKUP_DEST"), "\(none.stderr)")
        let work = try TempDir("hs-conf-typo")
        try "HS_APPDATA=/opt/appdata\nHS_BACKUP_DESTINATION=/mnt/backups\n".write(toFile: work.sub("conf"), atomically: true, encoding: .utf8)
        for (tool, args) in [("hs-backup", ["list"]), ("hs-restore", ["--to", work.sub("r")]), ("hs-linkcheck", [work.path])] {
            let r = try Tools.run(tool, args, environment: ["HS_CONFIG": work.sub("conf")])
            #expect(r.status == 2, "\(tool): \(r.status) \(r.stderr)")
            #expect(r.stderr.contains("\(work.sub("conf")):2: unknown key HS_BACKUP_DESTINATION; did you mean HS_BACKUP_DEST?"),
                    "\(tool): \(r.stderr)")
        }
    }
}
