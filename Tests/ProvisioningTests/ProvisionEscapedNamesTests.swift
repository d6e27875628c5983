// hs-provision shows paths, names and inventory values escaped (NameEscape), as the backup
// tools do, and refuses a value with a control character that would be written into a file
// the system reads (fstab, the tools' configuration): there it must stay byte-exact, and a
// newline would add a line of its own. --json keeps the structured values as they are.
import Foundation
@testable import Provisioning
import Support
import Testing
import TestSupport

@Suite struct ProvisionEscapedNamesTests {
    let hostile = HostileName.text, shown = HostileName.shown, yaml = HostileName.yaml
    /// What a line of a file can hold of it (a newline would end the line).
    let inLine = "\u{1B}[2J\u{202E}x", inLineShown = NameEscape.escape("\u{1B}[2J\u{202E}x")

    /// A guest-root sandbox in a directory holding the hostile name, templates next to a
    /// stacks/ directory whose `apollo` mounts an appdata directory of that name (and a stack
    /// directory of that name), and an inventory (in a file of that name) with `defaults` and
    /// `apollo` given by its fields.
    struct Setup {
        static let apollo = "kind: vm, vmid: 103, proxmox: pve, stack: apollo, storage: true"
        let t: TempDir
        let root: String, templates: String, inventory: String

        init(defaults: String = "", apollo: String = Setup.apollo, truenas: String = "media_export: /mnt/tank/media") throws {
            t = try TempDir("hs-prov-esc")
            root = t.sub("root " + HostileName.text)
            templates = t.sub("repo/provisioning")
            inventory = t.sub("inv " + HostileName.text + ".yml")
            try Subprocess.checked(["cp", "-a", Fixture.dir + "/guest-root/.", root + "/"])
            let fm = FileManager.default
            try fm.createDirectory(atPath: templates, withIntermediateDirectories: true)
            for f in ["fstab.template", "lxc-config.template"] { try fm.copyItem(atPath: Fixture.templates + "/" + f, toPath: templates + "/" + f) }
            for s in ["apollo", "x" + HostileName.text] {
                try fm.createDirectory(atPath: t.sub("repo/stacks/" + s), withIntermediateDirectories: true)
                try "services:\n  web:\n    image: busybox\n    volumes:\n      - \"/opt/appdata/\(HostileName.yaml):/config\"\n"
                    .write(toFile: t.sub("repo/stacks/\(s)/docker-compose.yml"), atomically: true, encoding: .utf8)
            }
            try """
                truenas: {server: truenas.lan, \(truenas)}
                defaults: {puid: 1000, pgid: 1000, docker_source: docker, tailscale_tags: [tag:server]\(defaults)}
                hosts:
                  pve:    {role: proxmox}
                  apollo: {role: guest, \(apollo)}

                """.write(toFile: inventory, atomically: true, encoding: .utf8)
        }

        func run(_ action: String, _ more: [String] = [], host: String = "apollo") throws -> ProcessResult {
            try Fixture.provision([action, "--inventory", inventory, "--host", host, "--root", root, "--templates", templates] + more)
        }
    }

    @Test("plan shows the root, appdata directories, commands and file lines with control characters escaped; --json keeps them")
    func planEscapesPathsCommandsAndLines() throws {
        let s = try Setup(defaults: ", tailscale_authkey_file: \"/root/ts \(yaml).key\", repo: \"https://example.invalid/\(yaml).git\"")
        // A hand-written line at the end of fstab: the diff of the managed block shows it as context.
        let fstab = s.root + "/etc/fstab"
        try (Fixture.text(fstab) + "# moved \(inLine)\n").write(toFile: fstab, atomically: true, encoding: .utf8)
        var issues: [String] = []
        let plan = try s.run("plan")
        issues += HostileName.issues("plan", plan, expect: [
            "files under \(NameEscape.escape(s.root)), commands printed", "mkdir /opt/appdata/\(shown) (owner 1000:1000)",
            "$ rm -f $'/root/ts \(shown).key'", "$ git clone $'https://example.invalid/\(shown).git' /opt/stacks/home-server",
            "      # moved \(inLineShown)",
        ])
        #expect(plan.status == 0)

        let json = try s.run("plan", ["--json"])
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any], "\(json.stdout)")
        let steps = (obj["steps"] as? [[String: Any]]) ?? []
        let directories = steps.flatMap { ($0["directories"] as? [String]) ?? [] }
        #expect(directories.contains("mkdir /opt/appdata/\(hostile) (owner 1000:1000)"), "\(directories)")
        #expect(steps.contains { ($0["diff"] as? String)?.contains("# moved \(inLine)\n") == true })

        // A foreign line mounting /mnt/storage is quoted escaped.
        try (Fixture.text(fstab) + "//nas/\(inLine) /mnt/storage cifs ro 0 0\n").write(toFile: fstab, atomically: true, encoding: .utf8)
        let foreign = try s.run("plan", ["--only", "storage-mount"])
        issues += HostileName.issues("foreign fstab line", foreign, expect: ["(`//nas/\(inLineShown) /mnt/storage cifs ro 0 0`)"])
        #expect(issues.isEmpty, "\(issues.joined(separator: "\n"))")
    }

    @Test("a host, step, stack, key or proxmox name and the inventory's path are escaped in errors")
    func usageErrorsEscapeNames() throws {
        let s = try Setup()
        let inv = NameEscape.escape(s.inventory)
        var issues: [String] = []
        let host = try s.run("plan", host: "no" + hostile)
        issues += HostileName.issues("--host", host, expect: ["host 'no\(shown)' is not in \(inv)"])
        let step = try s.run("plan", ["--only", "x" + hostile])
        issues += HostileName.issues("--only", step, expect: ["unknown step 'x\(shown)'"])
        let ansible = try Fixture.provision(["inventory", "--ansible", "--inventory", s.inventory, "--host", "no" + hostile])
        issues += HostileName.issues("inventory --host", ansible, expect: ["host 'no\(shown)' is not in \(inv)"])
        let noRoot = try Fixture.provision(["plan", "--inventory", s.inventory, "--host", "apollo", "--root", s.t.sub("gone " + hostile)])
        issues += HostileName.issues("--root missing", noRoot, expect: ["directory \(NameEscape.escape(s.t.sub("gone " + hostile))) does not exist"])
        for (what, defaults, apollo, expect) in [
            ("stack", "", Setup.apollo.replacingOccurrences(of: "stack: apollo", with: "stack: \"no\(yaml)\""), "field 'stack' is 'no\(shown)', which is not a stack under"),
            ("stack list", "", Setup.apollo.replacingOccurrences(of: "stack: apollo", with: "stack: nothere"), "(stacks: apollo, x\(shown))"),
            ("unknown key", ", \"k\(yaml)\": 1", Setup.apollo, "defaults: unknown field 'k\(shown)'"),
            ("proxmox", "", Setup.apollo.replacingOccurrences(of: "proxmox: pve", with: "proxmox: \"p\(yaml)\""), "field 'proxmox' names 'p\(shown)'"),
            ("schedule", ", schedule: \"s\(yaml)\"", Setup.apollo, "field 'schedule' is 's\(shown)'"),
        ] {
            let bad = try Setup(defaults: defaults, apollo: apollo)
            let r = try bad.run("plan")
            issues += HostileName.issues(what, r, expect: [NameEscape.escape(bad.inventory) + ":", expect])
            #expect(r.status == 2, "\(what): \(r.stderr)")
        }
        // Text YAML cannot parse, quoted by the parser.
        try "truenas: [\(hostile)\n".write(toFile: s.inventory, atomically: true, encoding: .utf8)
        let yamlError = try s.run("plan")
        issues += HostileName.issues("not YAML", yamlError, expect: ["\(inv): not valid YAML"])
        #expect(issues.isEmpty, "\(issues.joined(separator: "\n"))")
        #expect(host.status == 2 && step.status == 2 && ansible.status == 2 && noRoot.status == 2 && yamlError.status == 2)
    }

    @Test("a media export or a tools value with a control character is refused, naming where it is; the file stays as it was")
    func controlCharactersAreNotWrittenIntoFiles() throws {
        // fstab: a newline in the export would add a line of its own to /etc/fstab.
        let s = try Setup(truenas: "media_export: \"/mnt/tank/\(yaml)\"")
        let before = Fixture.text(s.root + "/etc/fstab")
        let r = try s.run("apply", ["--only", "storage-mount"])
        #expect(r.status == 2, "\(r.stdout)\n\(r.stderr)")
        var issues = HostileName.issues("media_export", r, expect: ["\(NameEscape.escape(s.inventory)):1: truenas: field 'media_export'", "/etc/fstab"])
        #expect(Fixture.text(s.root + "/etc/fstab") == before)

        // The inventory's config: mapping, written into /etc/default/home-server-tools.
        let c = try Setup(apollo: Setup.apollo + ", config: {HS_COPY_DEST: \"rclone:x\\e[2J\\u202E\"}")
        let cr = try c.run("apply", ["--only", "tools-config"])
        #expect(cr.status == 2, "\(cr.stdout)\n\(cr.stderr)")
        issues += HostileName.issues("config:", cr, expect: ["field 'config' key 'HS_COPY_DEST'"])

        // common/.env of the guest's checkout: refused without showing the value.
        let e = try Setup()
        let env = e.root + "/opt/stacks/home-server/common/.env"
        try FileManager.default.createDirectory(atPath: (env as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try "HS_BACKUP_DEST=/srv/FIXTURE-\u{1B}[2Jdest\n".write(toFile: env, atomically: true, encoding: .utf8)
        let tools = e.root + "/etc/default/home-server-tools"
        let toolsBefore = Fixture.text(tools)
        let er = try e.run("apply", ["--only", "tools-config"])
        #expect(er.status == 1, "\(er.stdout)\n\(er.stderr)")
        issues += HostileName.issues("common/.env", er, expect: ["HS_BACKUP_DEST", "(value not shown)"])
        #expect(!(er.stdout + er.stderr).contains("FIXTURE"), "a value of common/.env was printed")
        #expect(Fixture.text(tools) == toolsBefore)
        #expect(issues.isEmpty, "\(issues.joined(separator: "\n"))")
    }

    @Test("a template value with a control character is refused naming the template, line and placeholder; $'...' gives bash the bytes")
    func templateValuesAndShownCommands() throws {
        do {
            _ = try Template.render("x\n{{a}} y\n", values: ["a": "b\nFORGED"], name: "t.template")
            Issue.record("a newline was rendered into a line")
        } catch {
            #expect("\(error)".hasPrefix("t.template:2: the value of {{a}} ('b\\nFORGED') holds a newline"), "\(error)")
        }
        #expect(Provisioner.shellJoin(["rm", "-f", "a'\(hostile)"], shown: true) == "rm -f $'a\\'\(shown)'")
        #expect(Provisioner.shellJoin(["rm", "-f", "a'\(hostile)"]) == "rm -f 'a'\\''\(hostile)'")   // --json: as before
        let echoed = try Subprocess.run(["bash", "-c", "printf %s " + Provisioner.shellJoin(["a'\(hostile)"], shown: true)])
        #expect(echoed.stdout == "a'\(hostile)")
    }

    @Test("a media export with a space or a backslash goes into fstab as fstab(5) writes them (\\040, \\134), and reads back as the path")
    func exportWithSpaceIsEncodedForFstab() throws {
        // TrueNAS datasets may have spaces ("My Media"); fstab separates fields by blanks.
        let s = try Setup(truenas: "media_export: \"/mnt/tank/My Media\\\\x\"")
        let r = try s.run("apply", ["--only", "storage-mount"])
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        let fstab = Fixture.text(s.root + "/etc/fstab")
        #expect(fstab.contains("truenas.lan:/mnt/tank/My\\040Media\\134x /mnt/storage nfs "), "\(fstab)")
        // util-linux reads the line back as the export's own path (libmount decodes the octal escapes).
        // (--json: its plain output shows a backslash as \x5c.)
        let read = try Subprocess.run(["findmnt", "--tab-file", s.root + "/etc/fstab", "--json", "-o", "SOURCE", "/mnt/storage"])
        let parsed = try JSONSerialization.jsonObject(with: Data(read.stdout.utf8)) as? [String: [[String: String]]]
        #expect(read.status == 0 && parsed?["filesystems"]?.first?["source"] == "truenas.lan:/mnt/tank/My Media\\x", "\(read.stdout)\(read.stderr)")
    }
}
