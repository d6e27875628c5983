import Foundation
import Stacks
import Support
import Testing
import TestSupport

/// `hs-deploy --check` against broken copies of the real stacks: each problem is reported
/// with its file and variable, exit 1, and no .env value is ever printed.
@Suite struct CheckTests {
    func expectFailure(_ r: ProcessResult, mentions: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(r.status == 1, "\(describe(r))", sourceLocation: sourceLocation)
        for m in mentions { #expect(r.stderr.contains(m), "stderr should mention \(m): \(r.stderr)", sourceLocation: sourceLocation) }
        #expect(!r.stderr.contains("s3cret-") && !r.stdout.contains("s3cret-"), "a .env value was printed", sourceLocation: sourceLocation)
    }

    @Test func missingVariable() throws {
        let repo = try FilledRepo()
        try repo.edit("stacks/io/.env") { $0.split(separator: "\n").filter { !$0.hasPrefix("IMMICH_API_KEY=") }.joined(separator: "\n") + "\n" }
        let r = try repo.deploy(["--check", "io"])
        expectFailure(r, mentions: ["stacks/io/.env", "IMMICH_API_KEY", "missing"])
        // Other stacks are unaffected.
        #expect(try repo.deploy(["--check", "asteria"]).status == 0)
    }

    @Test func emptyVariable() throws {
        let repo = try FilledRepo()
        try repo.edit("common/.env") { $0.replacingOccurrences(of: "TZ=Etc/UTC", with: "TZ=") }
        try repo.edit("stacks/hera/.env") { $0.replacingOccurrences(of: "CLOUDFLARE_TUNNEL_TOKEN=\(testValue("CLOUDFLARE_TUNNEL_TOKEN"))", with: "CLOUDFLARE_TUNNEL_TOKEN=\"\"") }
        let r = try repo.deploy(["--check", "hera"])
        expectFailure(r, mentions: ["common/.env:", ": TZ: empty", "stacks/hera/.env:", "CLOUDFLARE_TUNNEL_TOKEN: empty"])
    }

    @Test func optionalVariableMayBeEmpty() throws {
        let repo = try FilledRepo()
        let env = try EnvFile.load(repo.repo.env("apollo"))
        #expect(env.value("PLEX_CLAIM") == "")   // @optional in the template
        #expect(try repo.deploy(["--check", "apollo"]).status == 0)
    }

    @Test func undeclaredVariable() throws {
        let repo = try FilledRepo()
        try repo.edit("stacks/atlas/docker-compose.yml") {
            $0.replacingOccurrences(of: "      WATCHTOWER_CLEANUP: \"true\"", with: "      WATCHTOWER_CLEANUP: \"true\"\n      EXTRA_SECRET: ${SNEAKY_TOKEN}")
        }
        let r = try repo.deploy(["--check", "atlas"])
        expectFailure(r, mentions: ["stacks/atlas/docker-compose.yml:", "SNEAKY_TOKEN", "not declared"])
        // `$$` escapes and comments are not references.
        try repo.edit("stacks/atlas/docker-compose.yml") {
            $0.replacingOccurrences(of: "${SNEAKY_TOKEN}", with: "$${NOT_A_VAR}   # ${ALSO_NOT}")
        }
        let ok = try repo.deploy(["--check", "atlas"])
        #expect(ok.status == 0, "\(describe(ok))")
    }

    @Test func invalidYAML() throws {
        let repo = try FilledRepo()
        try repo.edit("stacks/hera/docker-compose.yml") { $0.replacingOccurrences(of: "    command: serve", with: "    command: [serve") }
        let r = try repo.deploy(["--check", "hera"])
        expectFailure(r, mentions: ["stacks/hera/docker-compose.yml", "docker compose config", "yaml"])
    }

    @Test func invalidHomepageYAML() throws {
        let repo = try FilledRepo()
        try repo.edit("stacks/aeos/config/homepage/services.yaml") { $0 + "\n- Broken: [\n" }
        let r = try repo.deploy(["--check"])
        expectFailure(r, mentions: ["stacks/aeos/config/homepage/services.yaml", "not valid YAML"])
    }

    @Test func worldReadableEnv() throws {
        let repo = try FilledRepo()
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: repo.repo.env("asteria"))
        let r = try repo.deploy(["--check", "asteria"])
        expectFailure(r, mentions: ["stacks/asteria/.env", "readable by group/other", "chmod 600 stacks/asteria/.env"])
    }

    @Test func missingEnvFile() throws {
        let repo = try FilledRepo()
        try FileManager.default.removeItem(atPath: repo.repo.env("helios"))
        let r = try repo.deploy(["--check", "helios"])
        expectFailure(r, mentions: ["stacks/helios/.env: missing", "cp stacks/helios/.env.template stacks/helios/.env"])
    }

    @Test func homepagePortMismatch() throws {
        let repo = try FilledRepo()
        try repo.edit("stacks/aeos/config/homepage/services.yaml") {
            $0.replacingOccurrences(of: "http://asteria:7007", with: "http://asteria:7077")
        }
        let r = try repo.deploy(["--check", "asteria"])
        expectFailure(r, mentions: ["services.yaml", "port 7077 is not published", "no entry for bazarr on http://asteria:7007"])
    }

    @Test func composePortChangeWithoutHomepage() throws {
        let repo = try FilledRepo()
        try repo.edit("stacks/hera/docker-compose.yml") { $0.replacingOccurrences(of: "\"10002:3000\"", with: "\"10003:3000\"") }
        let r = try repo.deploy(["--check", "hera"])
        expectFailure(r, mentions: ["port 10002 is not published", "no entry for pairdrop on http://hera:10003"])
    }

    @Test func usageErrors() throws {
        let repo = try FilledRepo()
        let unknown = try repo.deploy(["nosuchstack"])
        #expect(unknown.status == 2)
        #expect(unknown.stderr.contains("unknown stack 'nosuchstack'") && unknown.stderr.contains("io"))
        let none = try repo.deploy([])
        #expect(none.status == 2)
        let both = try repo.deploy(["--check", "--down", "io"])
        #expect(both.status == 2)
        let help = try Tools.run("hs-deploy", ["--help"])
        for opt in ["--check", "--down", "--pull", "--repo", "--storage", "--storage-fstype", "--json"] {
            #expect(help.stdout.contains(opt), "--help lists \(opt)")
        }
    }

    @Test func envFileParsing() throws {
        let text = """
            # comment
            export A=1
            B="two words" # trailing
            C='single # not comment'
            D=plain # inline comment
            # @optional
            E=
            F=

            """
        let env = try EnvFile.parse(text, path: "x/.env")
        #expect(env.keys == ["A", "B", "C", "D", "E", "F"])
        #expect(env.value("A") == "1" && env.value("B") == "two words" && env.value("C") == "single # not comment")
        #expect(env.value("D") == "plain")
        #expect(env.entry("E")?.optional == true && env.entry("F")?.optional == false)
        #expect(throws: ToolError.self) { try EnvFile.parse("NOEQUALS\n", path: "x/.env") }
        #expect(throws: ToolError.self) { try EnvFile.parse("1BAD=x\n", path: "x/.env") }
        // A line of a multi-line value (a PEM or base64 body, often ending in '=') is not a
        // key: its text is the secret's, and the error must not show any of it.
        for line in ["MIIBsEcReTkEy+/wq==", "S3cr3tT0k3n part=x"] {
            do {
                _ = try EnvFile.parse("KEY=\"-----BEGIN\n\(line)\n", path: "x/.env")
                Issue.record("\(line): accepted")
            } catch let e as ToolError {
                #expect(e.message.contains("x/.env:2:"), "\(e.message)")
                for piece in ["sEcReT", "S3cr3t", "MIIB"] { #expect(!e.message.contains(piece), "\(e.message)") }
            }
        }
        let refs = VariableReferences.scan("a: ${X}\nb: $Y and $$Z and ${W:-d}\n# ${C}\nc: 'q # ${Q}'\n")
        #expect(refs.map(\.name) == ["X", "Y", "W", "Q"])
        #expect(refs.map(\.line) == [1, 2, 2, 4])
    }
}
