// Reading manifests member by member: members shared between backups are decoded once by
// find and skipped by diff; a damaged member is refused, naming the manifest.
import Foundation
import Testing
@testable import Browse
import Backup
import Storage
import Support
import TestSupport

@Suite struct ManifestMembersTests {
    /// A set of three backups of a tree large enough for several manifest members, with one
    /// file changed between the first and the second and nothing between the second and third.
    private func makeSet(_ tmp: TempDir) throws -> (BackupSet, [String]) {
        let src = tmp.sub("src")
        for d in 0 ..< 200 {
            let dir = src + "/app\(d / 20)/dir\(d)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for f in 0 ..< 100 { try Data("\(d)-\(f)\n".utf8).write(to: URL(fileURLWithPath: dir + "/file-with-a-longer-name-\(f).json")) }
        }
        func run() throws {
            let r = try Tools.run("hs-backup", ["run", "-q", "--source", src, "--to", tmp.sub("dst"), "--name", "s"])
            guard r.succeeded else { throw ToolError(r.stderr) }
            sleep(1)
        }
        try run()
        try Data("changed\n".utf8).write(to: URL(fileURLWithPath: src + "/app5/dir100/file-with-a-longer-name-7.json"))
        try run()
        try run()
        let set = BackupSet(destination: try BackupTool.destination(tmp.sub("dst")), name: "s")
        return (set, try set.committedIDs())
    }

    @Test("find decodes a member shared by several backups once; diff skips shared members; results as from the stream")
    func sharedMembers() throws {
        let tmp = try TempDir("hs-members")
        let (set, ids) = try makeSet(tmp)
        #expect(ids.count == 3)
        let members = try ids.map { try set.manifestMembers($0) }
        #expect(members[0].count >= 3, "the tree should need several manifest members")
        // Every member read alone gives the entries the streaming reader gives, in order.
        var streamed: [[UInt8]] = []
        let reader = try set.openManifest(ids[1])
        while let r = try reader.next() { streamed.append(r.path) }
        var byMember: [[UInt8]] = []
        var previous: ManifestTable?
        for i in 0 ..< members[1].count {
            let t = try members[1].table(i)
            if let p = previous { try t.checkFollows(p, name: "m") }
            for k in 0 ..< t.count { byMember.append(t.pathBytes(t.entry(k))) }
            previous = t
        }
        #expect(byMember == streamed)

        let finder = Finder(set: set, ids: ids, patterns: ["file-with-a-longer-name-7.json"])
        var found: [FoundPath] = []
        try finder.run { found.append($0) }
        #expect(found.count == 200)
        let changed = found.first { $0.path == Array("app5/dir100/file-with-a-longer-name-7.json".utf8) }!
        #expect(changed.runs.map { [$0.first, $0.last] } == [[0, 0], [1, 2]])
        #expect(found.filter { $0.runs.count == 1 }.count == 199)
        let total = members.reduce(0) { $0 + $1.count }
        #expect(finder.membersRead == total)
        // The first backup's members, plus the few around the change in the second.
        #expect(finder.membersDecoded <= members[0].count + 3, "decoded \(finder.membersDecoded) of \(total)")

        var items: [DiffItem] = []
        let summary = try Differ(set: set, from: ids[0], to: ids[1]).run { items.append($0) }
        #expect(items.map { NameEscape.escape($0.path) } == ["app5/dir100/file-with-a-longer-name-7.json"])
        #expect(items.first?.aspects == [.content, .mtime])
        #expect(summary.membersSkipped >= members[0].count - 3, "skipped \(summary.membersSkipped) of \(members[0].count)")
        let none = try Differ(set: set, from: ids[1], to: ids[2]).run { _ in Issue.record("no change expected") }
        #expect(none.membersSkipped == members[1].count && none.changed == 0)
    }

    @Test("a damaged manifest member: ls and find fail with exit 1 naming the manifest")
    func damagedMember() throws {
        let tmp = try TempDir("hs-members")
        let src = tmp.sub("src")
        try FileManager.default.createDirectory(atPath: src + "/d", withIntermediateDirectories: true)
        for f in 0 ..< 50 { try Data("\(f)\n".utf8).write(to: URL(fileURLWithPath: src + "/d/f\(f)")) }
        let r = try Tools.run("hs-backup", ["run", "-q", "--source", src, "--to", tmp.sub("dst"), "--name", "s"])
        #expect(r.succeeded)
        let set = BackupSet(destination: try BackupTool.destination(tmp.sub("dst")), name: "s")
        let id = try set.committedIDs()[0]
        let path = tmp.sub("dst/s/\(id).manifest")
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        bytes[Manifest.magic3.count + 20] ^= 0x55   // inside the first member's deflate data
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        for args in [["ls", "-R"], ["find", "f1"]] {
            let out = try Tools.run("hs-backup", args + ["--to", tmp.sub("dst"), "--name", "s"])
            #expect(out.status == 1, "\(args): \(out.status)")
            #expect(out.stderr.contains("\(id).manifest") && out.stderr.contains("damaged"), "\(args): \(out.stderr)")
        }
    }
}
