// hs-deploy shows paths and names escaped (NameEscape), as the backup tools do: a stack
// directory, the repository, --storage, --save-env or a compose bind source holding a newline,
// an escape sequence or a bidi override must not forge lines in cron mail or drive the
// terminal. --json keeps the structured values (stack, storage path) as they are.
import Foundation
import Support
import Testing
import TestSupport

@Suite struct DeployEscapedNamesTests {
    let hostile = HostileName.text, shown = HostileName.shown

    /// A repository whose root and only stack (`st` + the hostile name) hold the hostile name:
    /// common/.env and the stack's .env filled in (the stack's mode 644 when `readable`).
    func repository(_ t: TempDir, compose: String, readable: Bool = false, homepage: Bool = false) throws -> (root: String, stack: String) {
        let root = t.sub("repo " + hostile), stack = "st" + hostile
        let fm = FileManager.default
        try fm.createDirectory(atPath: root + "/common", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: root + "/stacks/" + stack, withIntermediateDirectories: true)
        func write(_ rel: String, _ text: String, mode: Int = 0o600) throws {
            try Data(text.utf8).write(to: URL(fileURLWithPath: root + "/" + rel))
            try fm.setAttributes([.posixPermissions: mode], ofItemAtPath: root + "/" + rel)
        }
        try write("common/.env.template", "TZ=\n", mode: 0o644)
        try write("common/.env", "TZ=Etc/UTC\n")
        try write("stacks/\(stack)/.env.template", "GREETING=\n", mode: 0o644)
        try write("stacks/\(stack)/.env", "GREETING=\(testValue("GREETING"))\n", mode: readable ? 0o644 : 0o600)
        try write("stacks/\(stack)/docker-compose.yml", compose, mode: 0o644)
        if homepage {
            try fm.createDirectory(atPath: root + "/stacks/aeos/config/homepage", withIntermediateDirectories: true)
            try write("stacks/aeos/config/homepage/services.yaml", "[]\n", mode: 0o644)
        }
        return (root, stack)
    }

    /// A compose file with one service bind-mounting `source` (a YAML double-quoted string).
    func compose(mounting source: String) -> String {
        "name: hsesc\nservices:\n  web:\n    image: busybox\n    volumes:\n      - \"\(source):/data\"\n"
    }

    @Test("stack directories, the repository and --storage are escaped in --check's problems and summary")
    func checkEscapesNames() throws {
        let t = try TempDir("hs-deploy-esc")
        let (root, stack) = try repository(t, compose: compose(mounting: "/mnt/storage"), readable: true)
        var issues: [String] = []
        let check = try Tools.run("hs-deploy", ["--check", "--repo", root])
        issues += HostileName.issues("--check", check, expect: [
            "stacks/st\(shown)/.env: readable by group/other", "chmod 600 stacks/st\(shown)/.env",
            "cannot read \(NameEscape.escape(root))/stacks/aeos/config/homepage/services.yaml",
            "problem(s) in st\(shown)",
        ])
        let storage = try Tools.run("hs-deploy", ["--check", "--repo", root, "--storage", t.sub("s " + hostile)])
        issues += HostileName.issues("--check --storage", storage, expect: ["--storage \(NameEscape.escape(t.sub("s " + hostile))) names another path"])
        let unknown = try Tools.run("hs-deploy", ["no" + hostile, "--repo", root])
        issues += HostileName.issues("unknown stack", unknown, expect: ["unknown stack 'no\(shown)'", "known stacks: st\(shown)"])
        // A compose file compose rejects: its error names the file (in the hostile directory).
        try Data(compose(mounting: "/srv").replacingOccurrences(of: "volumes:", with: "volumez:").utf8)
            .write(to: URL(fileURLWithPath: root + "/stacks/" + stack + "/docker-compose.yml"))
        let rejected = try Tools.run("hs-deploy", ["--check", "--repo", root])
        issues += HostileName.issues("compose rejects", rejected, expect: ["st\(shown)/docker-compose.yml"])
        #expect(issues.isEmpty, "\(issues.joined(separator: "\n"))")
        #expect(check.status == 1 && unknown.status == 2 && rejected.status == 1)
        #expect(!(check.stdout + check.stderr + rejected.stdout + rejected.stderr).contains(testValue("GREETING")), "a .env value was printed")

        // --json keeps the stack's name as it is (JSON escapes it).
        let json = try Tools.run("hs-deploy", ["--check", "--repo", root, "--json"])
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any], "\(json.stdout)")
        let stacks = (obj["stacks"] as? [[String: Any]]) ?? []
        #expect(stacks.map { $0["stack"] as? String } == [stack], "\(json.stdout)")
    }

    @Test("a missing appdata directory, the storage guard and --save-env show paths escaped")
    func deployAndSaveEnvEscapePaths() throws {
        let t = try TempDir("hs-deploy-esc")
        let appdata = "/opt/appdata/hs-test-" + hostile
        let (root, stack) = try repository(t, compose: compose(mounting: "/opt/appdata/hs-test-" + HostileName.yaml), homepage: true)
        var issues: [String] = []
        let missing = try Tools.run("hs-deploy", [stack, "--repo", root])
        issues += HostileName.issues("missing appdata", missing, expect: ["not starting st\(shown): web: \(NameEscape.escape(appdata)) do(es) not exist",
                                                                         "st\(shown): NOT started"])
        // The storage guard: a storage path that does not exist.
        let storage = t.sub("storage " + hostile)
        try Data(compose(mounting: t.sub("storage " + HostileName.yaml)).utf8)
            .write(to: URL(fileURLWithPath: root + "/stacks/" + stack + "/docker-compose.yml"))
        let guarded = try Tools.run("hs-deploy", [stack, "--repo", root, "--storage", storage])
        issues += HostileName.issues("storage guard", guarded, expect: ["(web mount \(NameEscape.escape(storage))): \(NameEscape.escape(storage)) does not exist"])
        // --save-env: inside the repository (refused), then into a directory of that name.
        let inside = try Tools.run("hs-deploy", ["--repo", root, "--save-env", root + "/in"])
        issues += HostileName.issues("--save-env inside", inside, expect: ["--save-env \(NameEscape.escape(root))/in is inside the repository \(NameEscape.escape(root))"])
        let saved = try Tools.run("hs-deploy", ["--repo", root, "--save-env", t.sub("env " + hostile)])
        issues += HostileName.issues("--save-env", saved, expect: ["2 .env file(s) in \(NameEscape.escape(t.sub("env " + hostile)))"])
        #expect(issues.isEmpty, "\(issues.joined(separator: "\n"))")
        #expect(missing.status == 1 && guarded.status == 1 && inside.status == 2 && saved.status == 0)

        // --json keeps the storage path as it is.
        let json = try Tools.run("hs-deploy", [stack, "--repo", root, "--storage", storage, "--json"])
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any], "\(json.stdout)")
        let verdict = ((obj["stacks"] as? [[String: Any]])?.first?["storage"] as? [String: Any]) ?? [:]
        #expect(verdict["path"] as? String == storage, "\(json.stdout)")
    }
}
