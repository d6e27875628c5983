// hs-backup find over a set one of whose backups lost its manifest (its archive still there):
// the answer leaves that backup out, so find says so and exits 1, as for a damaged manifest.
import Foundation
import Support
import TestSupport
import Testing

@Suite("find: a set with a backup whose manifest is missing")
struct FindDamagedSetTests {
    @Test("find warns naming the backup it could not search and what to do, exits 1; the others' timeline is printed")
    func missingMiddleManifest() throws {
        let work = try TempDir("hs-find-missing")
        let src = work.sub("src"), dest = work.sub("dest")
        var ids: [String] = []
        for i in 1 ... 3 {
            try Tree.write(src + "/app/config.xml", "v\(i)\n")
            let r = try Tools.run("hs-backup", ["run", "-q", "--source", src, "--to", dest, "--name", "io", "--json"])
            let id = ((try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any])?["id"] as? String
            ids.append(try #require(id, "\(r.stderr)"))
            sleep(1)
        }
        let whole = try Tools.run("hs-backup", ["find", "--to", dest, "--name", "io", "config.xml"])
        #expect(whole.status == 0 && whole.stderr.isEmpty, "\(whole.stdout) \(whole.stderr)")

        try FileManager.default.removeItem(atPath: "\(dest)/io/\(ids[1]).manifest")
        let r = try Tools.run("hs-backup", ["find", "--to", dest, "--name", "io", "config.xml"])
        #expect(r.status == 1, "\(r.stdout) \(r.stderr)")
        #expect(r.stdout.contains("app/config.xml") && r.stdout.contains(ids[0]) && r.stdout.contains(ids[2]), "\(r.stdout)")
        let warning = r.stderr.split(separator: "\n").first { $0.contains(ids[1]) } ?? ""
        #expect(warning.contains("\(ids[1]).manifest is missing") && warning.contains("not searched") && warning.contains("hs-backup copy"),
                "\(r.stderr)")
        let json = try Tools.run("hs-backup", ["find", "--to", dest, "--name", "io", "config.xml", "--json"])
        let object = (try? JSONSerialization.jsonObject(with: Data(json.stdout.utf8))) as? [String: Any]
        #expect(json.status == 1 && (object?["damage"] as? [String])?.contains { $0.contains(ids[1]) } == true, "\(json.stdout) \(json.stderr)")
    }
}
