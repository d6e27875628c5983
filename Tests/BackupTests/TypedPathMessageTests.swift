// Paths a person typed (--to, --source, --from, --archive, set names, --identity,
// --recipients-file, --exclude-file, --state-dir, --config/HS_CONFIG, nfs:// URLs) and values
// read from files (the configuration file, a lock file, a key file) are shown escaped in error
// and progress messages, as file names are (`NameEscape`): a path or value holding a newline or
// an escape sequence must not forge a line or drive the terminal in cron mail.
import Foundation
import Support
import Testing
import TestSupport

/// Runs of the tools, each with the text its output must hold; `verify` checks every one.
private struct MessageChecks {
    var cases: [(what: String, args: [String], result: ProcessResult, expect: [String])] = []

    /// What a message may hold: text, a newline only at the end of each line it means to print.
    static func forged(_ text: String) -> Bool {
        text.contains("\u{1B}") || text.contains("\nFORGED")
    }

    mutating func run(_ what: String, _ tool: String, _ args: [String], environment: [String: String] = [:], expect: String...) throws {
        cases.append((what, args, try Tools.run(tool, args, environment: environment), expect))
    }

    func verify(sourceLocation: SourceLocation = #_sourceLocation) {
        for (what, args, r, expect) in cases {
            let out = r.stdout + r.stderr
            #expect(!Self.forged(out), "\(what): raw control bytes in \(out.debugDescription) (\(args.map(\.debugDescription)))",
                    sourceLocation: sourceLocation)
            for e in expect {
                #expect(out.contains(e), "\(what): no \(e.debugDescription) in \(out.debugDescription)", sourceLocation: sourceLocation)
            }
        }
    }
}

/// A name holding a newline (that starts a forged line) and an escape sequence, and its escaped form.
private let evilName = "ev\nFORGED \u{1B}[31mil"
private let evilShown = "ev\\nFORGED \\x1b[31mil"

/// A temporary directory with a source (`src/f`), a destination holding one backup of set `t`,
/// and the path `evil` (`evilName` in it, not created) with its escaped form `shown`.
private struct BackedUp {
    let tmp: TempDir
    let src: String, dest: String, evil: String, shown: String

    init(_ prefix: String) throws {
        tmp = try TempDir(prefix)
        src = tmp.sub("src")
        dest = tmp.sub("dest")
        evil = tmp.sub(evilName)
        shown = NameEscape.escape(evil)
        try Tree.write(src + "/f", "f\n")
        #expect(try Tools.run("hs-backup", ["run", "-q", "--source", src, "--to", dest, "--name", "t"]).succeeded)
    }
}

@Suite struct TypedPathMessageTests {
    @Test("a destination, source, target, archive and set name holding a newline and ESC are escaped in the messages about them")
    func typedPathsAreEscaped() throws {
        let tmp = try TempDir("hs-typed-path")
        let evil = tmp.sub(evilName)
        let shown = NameEscape.escape(evil)
        #expect(shown.hasSuffix("/" + evilShown))
        let src = tmp.sub("src")
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        try #require(FileManager.default.createFile(atPath: src + "/f", contents: Data("f\n".utf8)))
        try #require(FileManager.default.createFile(atPath: evil, contents: Data("a file, not a directory\n".utf8)))

        var c = MessageChecks()
        // The destination is a file.
        try c.run("run --to FILE", "hs-backup", ["run", "--source", src, "--to", evil, "--name", "t"], expect: shown + "/t")
        for cmd in ["list", "ls", "verify"] {
            try c.run("\(cmd) --to FILE", "hs-backup", [cmd, "--to", evil, "--name", "t"], expect: "the destination \(shown) does not exist")
        }
        // The source is not a directory.
        try c.run("run --source FILE", "hs-backup", ["run", "--source", evil, "--to", tmp.sub("d"), "--name", "t"], expect: "source '\(shown)'")
        // A set that is there, in a destination with that name; a set name with ESC.
        let dest = evil + "-dest"
        try c.run("run -v", "hs-backup", ["run", "-v", "--source", src, "--to", dest, "--name", "t"], expect: "to \(shown)-dest/t")
        try c.run("ls --name", "hs-backup", ["ls", "--to", dest, "--name", "s\u{1B}[2J"], expect: "no backup set 's\\x1b[2J' in \(shown)-dest")
        try c.run("ls PATH", "hs-backup", ["ls", "--to", dest, "--name", "t", "nothere"], expect: "of \(shown)-dest/t;")
        // Restores: a target that is a file, the summary, an archive that is not there or not a tar.gz.
        try c.run("hs-restore --to FILE", "hs-restore", ["--from", dest, "--name", "t", "--to", evil], expect: "--to \(shown) is not a directory")
        try c.run("hs-restore summary", "hs-restore", ["--from", dest, "--name", "t", "--to", evil + "-r"], expect: "in \(shown)-dest/t into \(shown)-r")
        try c.run("hs-restore --archive missing", "hs-restore", ["--archive", evil + ".tar.gz", "--to", tmp.sub("r2")], expect: "--archive \(shown).tar.gz:")
        try c.run("hs-restore --archive FILE", "hs-restore", ["--archive", evil, "--to", tmp.sub("r3")], expect: "'\(shown)'")
        c.verify()
    }

    @Test("an nfs:// URL and a path inside the export holding a newline and ESC are escaped in NFS errors")
    func nfsURLsAreEscaped() throws {
        let g = try GaneshaServer.shared()
        let tmp = try TempDir("hs-typed-nfs")
        try Tree.write(tmp.sub("src/f"), "f\n")
        let ports = "version=3&nfsport=\(g.nfsPort)&mountport=\(g.mountPort)"
        var c = MessageChecks()
        // An export the server does not have: the server refuses the mount.
        let noExport = "nfs://127.0.0.1/no/\(evilName)?\(ports)"
        let noExportShown = "nfs://127.0.0.1/no/\(evilShown)"
        try c.run("list --to nfs://BAD-EXPORT", "hs-backup", ["list", "--to", noExport, "--name", "t"], expect: noExportShown)
        try c.run("run --to nfs://BAD-EXPORT", "hs-backup", ["run", "--source", tmp.sub("src"), "--to", noExport, "--name", "t"], expect: noExportShown)
        try c.run("hs-restore --from nfs://BAD-EXPORT", "hs-restore", ["--from", noExport, "--name", "t", "--to", tmp.sub("r")], expect: noExportShown)
        // A path inside the export below a file of that name: mkdir -p fails on the server.
        let sub = try g.makeUniqueDirectory("esc")
        try Tree.write(g.exportPath + "/" + sub + "/" + evilName, "a file, not a directory\n")
        try c.run("run --to nfs://EXPORT/FILE/deeper", "hs-backup",
                  ["run", "--source", tmp.sub("src"), "--to", g.url(path: sub + "/" + evilName + "/deeper"), "--name", "t"],
                  expect: "\(sub)/\(evilShown)")
        // A URL argument that is not valid: refused before any server is asked.
        try c.run("run --to nfs://...?timeout=BAD", "hs-backup",
                  ["run", "--source", tmp.sub("src"), "--to", "nfs://127.0.0.1/x?timeout=\(evilName)", "--name", "t"],
                  expect: "argument timeout=\(evilShown) must be")
        c.verify()
    }

    @Test("--identity, --recipients-file, --exclude-file and --state-dir paths, and what their files hold, are escaped in messages")
    func optionPathsAreEscaped() throws {
        let w = try BackedUp("hs-typed-option")
        let (tmp, evil, shown, src, dest) = (w.tmp, w.evil, w.shown, w.src, w.dest)
        var c = MessageChecks()
        // A key file that is not there, then one that holds no key.
        try c.run("ls --identity MISSING", "hs-backup", ["ls", "--to", dest, "--name", "t", "--identity", evil], expect: "--identity \(shown): cannot read it")
        try c.run("hs-restore --identity MISSING", "hs-restore", ["--from", dest, "--name", "t", "--to", tmp.sub("r"), "--identity", evil],
                  expect: "--identity \(shown): cannot read it")
        try c.run("run --recipients-file MISSING", "hs-backup", ["run", "--source", src, "--to", dest, "--name", "t", "--recipients-file", evil],
                  expect: "--recipients-file \(shown): cannot read it")
        try c.run("run --exclude-file MISSING", "hs-backup", ["run", "--source", src, "--to", dest, "--name", "t", "--exclude-file", evil],
                  expect: "exclude file \(shown): it does not exist")
        try Tree.write(evil, "AGE-SECRET-KEY-1NOTAKEY\n")
        try c.run("verify --identity NOT-A-KEY", "hs-backup", ["verify", "--to", dest, "--name", "t", "--identity", evil], expect: "\(shown) line 1: not an age secret key")
        // A recipients file (and a --recipient) holding a line with ESC.
        try Tree.write(evil, "age1\u{1B}[31mnot\n")
        try c.run("run --recipients-file BAD-LINE", "hs-backup", ["run", "--source", src, "--to", dest, "--name", "t", "--recipients-file", evil],
                  expect: "\(shown) line 1: 'age1\\x1b[31mnot' is not a valid age recipient")
        try c.run("run --recipient BAD", "hs-backup", ["run", "--source", src, "--to", dest, "--name", "t", "--recipient", "age1\u{1B}[2J"],
                  expect: "--recipient: 'age1\\x1b[2J' is not a valid age recipient")
        // An exclude file that is not text.
        try #require(FileManager.default.createFile(atPath: evil, contents: Data([0xFF, 0xFE, 0x0A])))
        try c.run("run --exclude-file NOT-TEXT", "hs-backup", ["run", "--source", src, "--to", dest, "--name", "t", "--exclude-file", evil],
                  expect: "exclude file \(shown) is not UTF-8 text")
        // A state directory that is a file: the local manifest copy cannot be kept (a warning).
        let key = try AgeKey(tmp, "key.txt")
        try c.run("run --state-dir FILE", "hs-backup", ["run", "--source", src, "--to", tmp.sub("enc"), "--name", "t", "--recipient", key.recipient,
                                                      "--state-dir", evil], expect: "the local copy of this backup's manifest in \(shown)/sets/t-")
        // A state directory without the copy: the next backup is a full one, and says why.
        try c.run("run --state-dir EMPTY", "hs-backup", ["run", "--source", src, "--to", tmp.sub("enc"), "--name", "t", "--recipient", key.recipient,
                                                       "--state-dir", evil + "-state"], expect: "no local copy of its manifest in \(shown)-state/sets/t-")
        c.verify()
    }

    @Test("the configuration file's path and its values are escaped in messages and in `hs-backup config`")
    func configurationIsEscaped() throws {
        let tmp = try TempDir("hs-typed-config")
        let evil = tmp.sub(evilName)
        let shown = NameEscape.escape(evil)
        var c = MessageChecks()
        try c.run("--config MISSING", "hs-backup", ["list", "--config", evil], expect: "--config \(shown): No such file")
        try c.run("HS_CONFIG MISSING", "hs-backup", ["list"], environment: ["HS_CONFIG": evil], expect: "HS_CONFIG \(shown): No such file")
        try Tree.write(evil, "HS_APPDATA=/x\nnot a line\n")
        try c.run("HS_CONFIG BAD LINE", "hs-restore", ["--to", tmp.sub("r")], environment: ["HS_CONFIG": evil], expect: "\(shown):2: expected KEY=value")
        try Tree.write(evil, "HS_APPDATA=/x\nHS_BACKUP_DESTINATION=/y\n")
        try c.run("HS_CONFIG UNKNOWN KEY", "hs-backup", ["list"], environment: ["HS_CONFIG": evil], expect: "\(shown):2: unknown key HS_BACKUP_DESTINATION")
        // Values with a newline (a double-quoted \n) and ESC.
        try Tree.write(evil, "HS_APPDATA=\"/opt/\u{1B}[31mapp\\nFORGED\"\nHS_NTFY_URL=ftp://ntfy.example/t\n")
        try c.run("missing --to", "hs-backup", ["list"], environment: ["HS_CONFIG": evil], expect: "not in \(shown)")
        try c.run("config", "hs-backup", ["config"], environment: ["HS_CONFIG": evil],
                  expect: "configuration file: \(shown) (named by HS_CONFIG; read)", "/opt/\\x1b[31mapp\\nFORGED", "\(shown):1")
        try c.run("HS_NTFY_URL not http", "hs-backup", ["verify", "--to", tmp.sub("d"), "--name", "t"], environment: ["HS_CONFIG": evil],
                  expect: "HS_NTFY_URL (\(shown):2)")
        c.verify()
        // --json keeps JSON's own escaping of the same values.
        let json = try Tools.run("hs-backup", ["config", "--json"], environment: ["HS_CONFIG": evil])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any], "\(json.stdout)")
        let keys = try #require(object["keys"] as? [[String: Any]])
        #expect(keys.first { $0["key"] as? String == "HS_APPDATA" }?["value"] as? String == "/opt/\u{1B}[31mapp\nFORGED", "\(keys)")
    }

    @Test("a lock file's holder (host, operation) holding a newline and ESC is escaped when the lock refuses a run or is taken over")
    func lockHolderIsEscaped() throws {
        let tmp = try TempDir("hs-typed-lock")
        try Tree.write(tmp.sub("src/f"), "f\n")
        let host = #"h\nFORGED \u001b[31mx"#, operation = #"run\u001b[2J"#
        func lock(started: Double) throws {
            try Tree.write(tmp.sub("dest/l/lock"), #"{"host":"\#(host)","pid":1,"started":\#(started),"operation":"\#(operation)"}"#)
        }
        var c = MessageChecks()
        try lock(started: Date().timeIntervalSince1970)
        let run = ["run", "--source", tmp.sub("src"), "--to", tmp.sub("dest"), "--name", "l"]
        try c.run("locked", "hs-backup", run, expect: "is locked by host h\\nFORGED \\x1b[31mx, pid 1", "(run\\x1b[2J)", "by a run on h\\nFORGED \\x1b[31mx.")
        try lock(started: Date().timeIntervalSince1970 - 48 * 3600)
        try c.run("stale lock", "hs-backup", run, expect: "took over a stale lock of h\\nFORGED \\x1b[31mx pid 1")
        c.verify()
    }

    @Test("file names in a set directory, --backup, the metrics file, rclone's errors and the mount point holding a newline and ESC are escaped in messages")
    func setDirectoryNamesAreEscaped() throws {
        let w = try BackedUp("hs-typed-set")
        let (tmp, evil, shown, src, dest) = (w.tmp, w.evil, w.shown, w.src, w.dest)
        // Files someone put in the set directory: a manifest, an archive and an index no backup
        // accounts for, a leftover of a run.
        for (prefix, suffix) in [("m", ".manifest"), ("a", ".tar.gz"), ("i", ".index"), ("l", ".tmp-1")] {
            try Tree.write(dest + "/t/" + prefix + evilName + suffix, "not what it says\n")
        }
        var c = MessageChecks()
        try c.run("list", "hs-backup", ["list", "--to", dest, "--name", "t"],
                  expect: "m\(evilShown).manifest is damaged", "\nm\(evilShown) ", "archive \(dest)/t/a\(evilShown).tar.gz belongs to no backup",
                  "index \(dest)/t/i\(evilShown).index belongs to no backup (its manifest i\(evilShown).manifest is missing)")
        try c.run("verify", "hs-backup", ["verify", "--to", dest, "--name", "t"], expect: "m\(evilShown).manifest: ")
        try c.run("verify --backup", "hs-backup", ["verify", "--to", dest, "--name", "t", "--backup", "q\(evilName)"],
                  expect: "backup q\(evilShown) not found", "m\(evilShown) are the newest")
        try c.run("prune --dry-run", "hs-backup", ["prune", "--to", dest, "--name", "t", "--keep-last", "1", "--dry-run"],
                  expect: "cannot read manifest m\(evilShown) (", "keep    m\(evilShown)  ")
        try c.run("run", "hs-backup", ["run", "--source", src, "--to", dest, "--name", "t"],
                  expect: "removed leftovers of an interrupted run: l\(evilShown).tmp-1", "manifest \(dest)/t/m\(evilShown).manifest is damaged")
        // A metrics directory (from the configuration file; a file, not a directory): a warning
        // naming the file (the newline of the path written as \n in double quotes).
        try Tree.write(evil, "x\n")
        try Tree.write(tmp.sub("metrics.conf"), "HS_METRICS_DIR=\"\(evil.replacingOccurrences(of: "\n", with: "\\n"))\"\n")
        try c.run("HS_METRICS_DIR not writable", "hs-backup", ["run", "--source", src, "--to", tmp.sub("d2"), "--name", "t"],
                  environment: ["HS_CONFIG": tmp.sub("metrics.conf")], expect: "metrics file \(shown)/hs_backup_t_run.prom: ")
        // rclone's own error text names the path it failed on.
        try c.run("run --to rclone:...FILE/sub", "hs-backup", ["run", "--source", src, "--to", "rclone::local:" + evil + "/sub", "--name", "t"],
                  expect: "mkdir \(shown): not a directory")
        try c.run("mount FILE", "hs-backup", ["mount", "--to", dest, "--name", "t", evil], expect: "mount point \(shown) is not a directory")
        c.verify()
    }

    @Test("an index's keys, --keep-within, --exclude-if-present, --stop-stacks and a destination inside the source holding ESC are escaped in messages")
    func optionValuesAreEscaped() throws {
        let w = try BackedUp("hs-typed-values")
        let (src, dest) = (w.src, w.dest)
        // The backup's index re-sealed (its checksum is no MAC) with a key holding ESC.
        let index = try #require(try FileManager.default.contentsOfDirectory(atPath: dest + "/t").first { $0.hasSuffix(".index") })
        var body = Array("hs-backup-index 1\nid \(index.dropLast(".index".count))\n\u{1B}[2Jkey 1\n".utf8)
        body += Array("end \(hexString(SHA256Hasher.hash(body)))\n".utf8)
        try Tree.writeBytes(dest + "/t/" + index, body)
        var c = MessageChecks()
        try c.run("list (index key)", "hs-backup", ["list", "--to", dest, "--name", "t"], expect: "line 3: unknown key '\\x1b[2Jkey'")
        try c.run("prune --keep-within", "hs-backup", ["prune", "--to", dest, "--name", "t", "--keep-within", "1\u{1B}[2Jd"],
                  expect: "--keep-within '1\\x1b[2Jd': ")
        try c.run("run --exclude-if-present", "hs-backup", ["run", "--source", src, "--to", dest, "--name", "t", "--exclude-if-present", "a/\u{1B}[2J"],
                  expect: "not 'a/\\x1b[2J'")
        try c.run("run --stop-stacks", "hs-backup", ["run", "--source", src, "--to", dest, "--name", "t", "--stop-stacks", "a\u{1B}[2J"],
                  expect: "--stop-stacks a\\x1b[2J: not a Compose project name")
        // The destination inside the source is left out, with a warning naming it.
        try c.run("run --to SOURCE/DIR", "hs-backup", ["run", "--source", src, "--to", src + "/" + evilName, "--name", "t"],
                  expect: "the destination \(NameEscape.escape(src + "/" + evilName)) is inside the source")
        c.verify()
    }
}
