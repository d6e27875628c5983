// A backup named by id whose manifest is missing while its archive is still in the set: every
// command that reads one named backup (ls, diff, dump, verify --backup, hs-restore --backup)
// says it is damage, what is left and what to do, with exit 1, as find does. An id that
// matches nothing in the set is still a usage error (exit 2).
import Foundation
import Support
import TestSupport
import Testing

@Suite("a backup whose manifest is missing, named by id")
struct MissingManifestTests {
    /// A set `io` of three backups, each with an archive (config.xml changes every time).
    private func threeBackups(_ label: String) throws -> (work: TempDir, src: String, dest: String, ids: [String]) {
        let work = try TempDir("hs-missing-\(label)")
        let src = work.sub("src"), dest = work.sub("dest")
        var ids: [String] = []
        for i in 1 ... 3 {
            try Tree.write(src + "/app/config.xml", "v\(i)\n")
            let r = try Tools.run("hs-backup", ["run", "-q", "--source", src, "--to", dest, "--name", "io", "--json"],
                                  environment: ["HS_BACKUP_SQLITE_CAPTURE": "0"])
            let id = ((try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any])?["id"] as? String
            ids.append(try #require(id, "\(r.stderr)"))
            sleep(1)
        }
        return (work, src, dest, ids)
    }

    /// The message names the backup's manifest as missing, what is still there and what to do,
    /// and does not pass it off as a mistyped id.
    private func saysManifestMissing(_ r: ProcessResult, _ id: String) -> Bool {
        r.stderr.contains("\(id).manifest is missing") && r.stderr.contains("\(id).tar.gz") && r.stderr.contains("still in")
            && r.stderr.contains("hs-backup copy") && !r.stderr.contains("not found")
    }

    @Test("ls --backup, diff, dump, verify --backup and hs-restore --backup: exit 1 naming the missing manifest and what is left; a typo stays exit 2")
    func missingManifestNamedByID() throws {
        let (work, _, dest, ids) = try threeBackups("middle")
        try FileManager.default.removeItem(atPath: "\(dest)/io/\(ids[1]).manifest")
        let at = ["--to", dest, "--name", "io"]
        let commands: [(String, [String])] = [
            ("hs-backup", ["ls"] + at + ["--backup", ids[1]]),
            ("hs-backup", ["ls"] + at + ["--backup", ids[1], "--json"]),
            ("hs-backup", ["diff"] + at + [ids[0], ids[1]]),
            ("hs-backup", ["diff"] + at + [ids[1], "latest"]),
            ("hs-backup", ["dump"] + at + ["--backup", ids[1], "app/config.xml"]),
            ("hs-backup", ["verify"] + at + ["--backup", ids[1]]),
            ("hs-restore", ["--from", dest, "--name", "io", "--backup", ids[1], "--to", work.sub("restored")]),
        ]
        for (tool, args) in commands {
            let r = try Tools.run(tool, args)
            #expect(r.status == 1 && saysManifestMissing(r, ids[1]), "\(tool) \(args.joined(separator: " ")): exit \(r.status)\n\(r.stdout)\(r.stderr)")
            if args.contains("--json") {
                let object = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any]
                #expect(object?["exit_code"] as? Int == 1 && (object?["error"] as? String)?.contains("\(ids[1]).manifest is missing") == true, "\(r.stdout)")
            }
        }
        #expect(!FileManager.default.fileExists(atPath: work.sub("restored")), "hs-restore wrote its target")
        // The other backups are read as before.
        let other = try Tools.run("hs-backup", ["diff"] + at + [ids[0], ids[2]])
        #expect(other.status == 0, "\(other.stderr)")
        // An id that matches nothing in the set is a mistyped id: exit 2, as before.
        for (tool, args) in [("hs-backup", ["ls"] + at + ["--backup", "20990101T000000Z"]),
                             ("hs-backup", ["verify"] + at + ["--backup", "20990101T000000Z"]),
                             ("hs-restore", ["--from", dest, "--name", "io", "--backup", "20990101T000000Z", "--to", work.sub("restored")])] {
            let r = try Tools.run(tool, args)
            #expect(r.status == 2 && r.stderr.contains("not found"), "\(tool) \(args.joined(separator: " ")): exit \(r.status) \(r.stderr)")
        }
    }

    @Test("the set's only backup lost its manifest: --backup ID and latest say so (exit 1), not 'no backups'")
    func onlyBackupLostItsManifest() throws {
        let work = try TempDir("hs-missing-only")
        let src = work.sub("src"), dest = work.sub("dest")
        try Tree.write(src + "/app/config.xml", "v1\n")
        let r0 = try Tools.run("hs-backup", ["run", "-q", "--source", src, "--to", dest, "--name", "io", "--json"],
                               environment: ["HS_BACKUP_SQLITE_CAPTURE": "0"])
        let id = try #require(((try? JSONSerialization.jsonObject(with: Data(r0.stdout.utf8))) as? [String: Any])?["id"] as? String, "\(r0.stderr)")
        try FileManager.default.removeItem(atPath: "\(dest)/io/\(id).manifest")
        for backup in [id, "latest"] {
            let r = try Tools.run("hs-backup", ["ls", "--to", dest, "--name", "io", "--backup", backup])
            #expect(r.status == 1 && saysManifestMissing(r, id) && !r.stderr.contains("no backups"), "\(backup): exit \(r.status) \(r.stderr)")
        }
    }
}
