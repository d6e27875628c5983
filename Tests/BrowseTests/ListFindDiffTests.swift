// ls, find and diff on a real backup chain, compared with the source as it was at each backup.
import Foundation
import Testing
@testable import Browse
import Archive
import Backup
import Storage
import Support
import TestSupport

/// One chain for the suite (three real backups take a few seconds).
enum SharedChain {
    private static let made: Result<BackupChain, any Error> = Result {
        let c = try BackupChain()
        TempDirsAtExit.add(c.tmp.path)
        return c
    }
    static func get() throws -> BackupChain { try made.get() }
}

/// Directories of suite-wide fixtures (static, never deinitialised), removed at exit.
enum TempDirsAtExit {
    nonisolated(unsafe) static var paths: [String] = []
    private static let installed: Bool = {
        atexit { for p in TempDirsAtExit.paths { try? FileManager.default.removeItem(atPath: p) } }
        return true
    }()
    static func add(_ p: String) {
        _ = installed
        paths.append(p)
    }
}

private func hsBackup(_ args: [String]) throws -> ProcessResult { try Tools.run("hs-backup", args) }

private struct LsJSON: Decodable {
    struct Entry: Decodable {
        var path: String, type: String, mode: String, uid: UInt32, gid: UInt32, size: UInt64, mtime: String
        var link: String?, sha256: String?
    }
    var backup: String
    var entries: [Entry]
    var count: Int
}

@Suite struct ListFindDiffTests {
    @Test("ls -R --json of every backup lists what the source held then: type, mode, owner, size, mtime to the ns, link targets")
    func lsMatchesCopies() throws {
        let chain = try SharedChain.get()
        for (i, id) in chain.ids.enumerated() {
            let r = try hsBackup(["ls", "--to", chain.dest, "--name", chain.set, "--backup", id, "-R", "--json"])
            #expect(r.status == 0, "\(r.stderr)")
            let ls = try JSONDecoder().decode(LsJSON.self, from: Data(r.stdout.utf8))
            #expect(ls.backup == id && ls.count == ls.entries.count)
            var got: [String: String] = [:]
            for e in ls.entries {
                let mode = UInt32(e.mode, radix: 8)!
                let mt = e.mtime
                var d = "\(e.type) mode=\(String(mode, radix: 8)) owner=\(e.uid):\(e.gid) mtime=\(mt)"
                if e.type == "file" { d += " size=\(e.size)" }
                if let l = e.link { d += " link=\(l)" }
                got[e.path] = d
            }
            // The copy of the source at that time, described the same way (hardlinks: the
            // first name in path order is the file, the others link to it).
            var expected: [String: String] = [:]
            var firstOfInode: [UInt64: String] = [:]
            func walk(_ rel: [UInt8]) throws {
                let dir = Array(chain.copies[i].utf8) + (rel.isEmpty ? [] : [0x2F] + rel)
                for n in try ByteFS.names(dir) {
                    let r = rel.isEmpty ? n : rel + [0x2F] + n
                    var st = stat()
                    #expect(lstat(ByteFS.c(Array(chain.copies[i].utf8) + [0x2F] + r), &st) == 0)
                    let key = NameEscape.escape(r)
                    let ft = FileTime(seconds: Int64(st.st_mtim.tv_sec), nanoseconds: UInt32(st.st_mtim.tv_nsec))
                    let head = "mode=\(String(st.st_mode & 0o7777, radix: 8)) owner=\(st.st_uid):\(st.st_gid) mtime=\(EntryText.time(ft, nanoseconds: true))"
                    switch st.st_mode & S_IFMT {
                    case S_IFDIR: expected[key] = "directory " + head; try walk(r)
                    case S_IFLNK:
                        var buf = [CChar](repeating: 0, count: 4096)
                        let k = readlink(ByteFS.c(Array(chain.copies[i].utf8) + [0x2F] + r), &buf, 4096)
                        expected[key] = "symlink " + head + " link=" + NameEscape.escape(buf[0 ..< k].map { UInt8(bitPattern: $0) })
                    default:
                        if st.st_nlink > 1, let first = firstOfInode[UInt64(st.st_ino)] {
                            expected[key] = "hardlink " + head + " link=" + first
                        } else {
                            if st.st_nlink > 1 { firstOfInode[UInt64(st.st_ino)] = key }
                            expected[key] = "file " + head + " size=\(st.st_size)"
                        }
                    }
                }
            }
            try walk([])
            // The SQLite database is captured (same data, its own size): compare all but its size.
            let dbKey = "db/app.db"
            if let g = got[dbKey], let e = expected[dbKey] {
                #expect(g.components(separatedBy: " size=")[0] == e.components(separatedBy: " size=")[0])
                got[dbKey] = nil; expected[dbKey] = nil
            }
            let d = TreeDescription.diff(expected, got)
            #expect(d.isEmpty, "backup \(i + 1) \(id):\n\(d.joined(separator: "\n"))")
        }
    }

    @Test("ls PATH: a directory's direct entries, one file, a name given in its escaped form; a missing path fails naming it")
    func lsPaths() throws {
        let chain = try SharedChain.get()
        let top = try hsBackup(["ls", "--to", chain.dest, "--name", chain.set])
        #expect(top.status == 0)
        let names = top.stdout.split(separator: "\n").map { $0.components(separatedBy: "Z  ").last! }
        #expect(names == ["bin", "db", "empty", "hard", "line\\nbreak.txt", "links", "media", "old.txt", "plex", "radarr"])
        let radarr = try hsBackup(["ls", "--to", chain.dest, "--name", chain.set, "/radarr/"])
        #expect(radarr.stdout.split(separator: "\n").map { $0.components(separatedBy: "Z  ").last! } == ["radarr/config.xml", "radarr/logs", "radarr/new.txt"])
        let first = try hsBackup(["ls", "--to", chain.dest, "--name", chain.set, "--backup", chain.ids[0], "media/caf\\xe9.txt"])
        #expect(first.status == 0 && first.stdout.hasSuffix("  media/caf\\xe9.txt\n"), "\(first.stdout)\(first.stderr)")
        #expect(first.stdout.hasPrefix("-rw-r--r--  0/0                  13  "))
        let link = try hsBackup(["ls", "--to", chain.dest, "--name", chain.set, "links/rel"])
        #expect(link.stdout.hasSuffix("links/rel -> ../radarr/new.txt\n"), "\(link.stdout)")
        let gone = try hsBackup(["ls", "--to", chain.dest, "--name", chain.set, "media/caf\\xe9.txt"])
        #expect(gone.status == 1)
        #expect(gone.stderr.contains("no media/caf\\xe9.txt in backup \(chain.ids[2])"), "\(gone.stderr)")
        let bad = try hsBackup(["ls", "--to", chain.dest, "--name", chain.set, "--backup", "20990101T000000Z", "--json"])
        #expect(bad.status == 2 && bad.stdout.contains("\"exit_code\":2"), "\(bad.status) \(bad.stdout)")
        let up = try hsBackup(["ls", "--to", chain.dest, "--name", chain.set, "radarr/../etc"])
        #expect(up.status == 2 && up.stderr.contains("'..'"))
    }

    @Test("find: one timeline per path, versions by backup, absent where deleted or renamed")
    func findTimeline() throws {
        let chain = try SharedChain.get()
        let (a, b, c) = (chain.ids[0], chain.ids[1], chain.ids[2])
        let r = try hsBackup(["find", "--to", chain.dest, "--name", chain.set, "config.xml", "*caf*", "hard/?"])
        #expect(r.status == 0, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n").map(String.init)
        func block(_ path: String) -> [String] {
            guard let i = lines.firstIndex(of: path) else { return [] }
            // Span and what follows the owner column, spaces collapsed.
            return lines[(i + 1)...].prefix(while: { $0.hasPrefix("  ") }).map {
                $0.split(separator: " ").joined(separator: " ")
            }
        }
        #expect(lines.filter { !$0.hasPrefix("  ") } == ["hard/a", "hard/b", "hard/c", "hard/d", "media/caf\\xe9.txt",
                                                        "media/renamed-caf\\xe9.txt", "radarr/config.xml",
                                                        "7 paths matched in 3 backups (\(a) .. \(c))"])
        let config = block("radarr/config.xml")
        #expect(config.count == 2 && config[0].hasPrefix("\(a) -rw------- 1000/1000 35 2026-01-02T03:04:05Z sha256 "), "\(config)")
        #expect(config[1].hasPrefix("\(b) .. \(c) -rw------- 1000/1000 35 "), "\(config)")
        let latin = block("media/caf\\xe9.txt")
        #expect(latin.count == 2 && latin[0].hasPrefix("\(a) -rw-r--r-- 0/0 13 ") && latin[1] == "\(b) .. \(c) absent", "\(latin)")
        let renamed = block("media/renamed-caf\\xe9.txt")
        #expect(renamed.count == 2 && renamed[0] == "\(a) absent" && renamed[1].hasPrefix("\(b) .. \(c) -rw-r--r-- 0/0 13 "), "\(renamed)")
        let hb = block("hard/b")
        #expect(hb.count == 3 && hb[0].hasPrefix("\(a) hrw-r--r-- ") && hb[1].hasPrefix("\(b) hrw-r--r-- ") && hb[2] == "\(c) absent", "\(hb)")
        #expect(block("hard/d").first == "\(a) .. \(b) absent")
        // An xattr was set between 1 and 2 (on the inode of hard/a, b and c): two versions.
        let ha = block("hard/a")
        #expect(ha.count == 2 && !ha[0].contains(" xattrs ") && ha[1].hasPrefix("\(b) .. \(c) ") && ha[1].contains(" xattrs "), "\(ha)")
        // JSON: the same runs.
        let j = try hsBackup(["find", "--to", chain.dest, "--name", chain.set, "--json", "config.xml"])
        struct F: Decodable { struct M: Decodable { struct V: Decodable { var first: String; var last: String; var sha256: String? }; var path: String; var versions: [V] }; var matches: [M]; var paths: Int }
        let f = try JSONDecoder().decode(F.self, from: Data(j.stdout.utf8))
        #expect(f.paths == 1 && f.matches[0].path == "radarr/config.xml")
        #expect(f.matches[0].versions.map { [$0.first, $0.last] } == [[a, a], [b, c]])
        #expect(f.matches[0].versions.allSatisfy { $0.sha256?.count == 64 })
        // Nothing matches: exit 0, said so.
        let none = try hsBackup(["find", "--to", chain.dest, "--name", chain.set, "no-such-name"])
        #expect(none.status == 0 && none.stdout == "0 paths matched in 3 backups (\(a) .. \(c))\n")
    }

    @Test("diff: added, removed, changed (content, mode, owner, type, xattrs), one line each and a summary")
    func diffLines() throws {
        let chain = try SharedChain.get()
        let r = try hsBackup(["diff", "--to", chain.dest, "--name", chain.set, chain.ids[0], chain.ids[1]])
        #expect(r.status == 0, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n").map(String.init)
        #expect(lines.contains("M  radarr/config.xml  (content, mtime)"), "\(lines)")
        #expect(lines.contains("+  radarr/new.txt"))
        #expect(lines.contains("-  radarr/logs/radarr.txt"))
        #expect(lines.contains("-  media/caf\\xe9.txt"))
        #expect(lines.contains("+  media/renamed-caf\\xe9.txt"))
        #expect(lines.contains("U  old.txt  (mode 0644 -> 0640)"))
        #expect(lines.contains("U  empty  (owner 0:0 -> 33:33)"))
        #expect(lines.contains("U  hard/a  (xattrs changed)"))
        #expect(lines.contains("U  hard/b  (xattrs changed)") && lines.contains("U  hard/c  (xattrs changed)"))
        #expect(lines.count == 11, "\(lines)")
        #expect(lines.last == "diff \(chain.ids[0]) -> \(chain.ids[1]): 2 added, 2 removed, 6 changed (content 1, mode 1, owner 1, xattrs 3, mtime 1)")
        let r2 = try hsBackup(["diff", "--to", chain.dest, "--name", chain.set, chain.ids[1], "latest"])
        let l2 = r2.stdout.split(separator: "\n").map(String.init)
        #expect(l2.contains("M  links/rel  (target ../radarr/config.xml -> ../radarr/new.txt, mtime)"), "\(l2)")
        #expect(l2.contains("-  emptydir/"))
        #expect(l2.contains("M  plex/big.bin  (content, mtime)"))
        #expect(l2.contains("-  hard/b"))
        #expect(l2.contains("+  hard/d"))
        #expect(l2.last == "diff \(chain.ids[1]) -> \(chain.ids[2]): 1 added, 2 removed, 2 changed (content 2, mtime 2)", "\(l2)")
    }

    @Test("ls, find, diff and dump take DEST from HS_BACKUP_DEST and the set from HS_BACKUP_NAME (environment or the configuration file), as list does; neither set: exit 2 saying where it looked")
    func destinationFromConfiguration() throws {
        let chain = try SharedChain.get()
        let work = try TempDir("hs-browse-conf")
        try "HS_BACKUP_DEST=\(chain.dest)\nHS_BACKUP_NAME=\(chain.set)\n".write(toFile: work.sub("conf"), atomically: true, encoding: .utf8)
        let byFlags = try hsBackup(["ls", "--to", chain.dest, "--name", chain.set, "-R", "radarr"])
        #expect(byFlags.status == 0 && byFlags.stdout.contains("radarr/config.xml"), "\(byFlags.stderr)")
        for env in [["HS_CONFIG": "/dev/null", "HS_BACKUP_DEST": chain.dest, "HS_BACKUP_NAME": chain.set], ["HS_CONFIG": work.sub("conf")]] {
            let ls = try Tools.run("hs-backup", ["ls", "-R", "radarr"], environment: env)
            #expect(ls.status == 0 && ls.stdout == byFlags.stdout, "\(env): \(ls.stderr)")
            let find = try Tools.run("hs-backup", ["find", "config.xml"], environment: env)
            #expect(find.status == 0 && find.stdout.hasSuffix("1 path matched in 3 backups (\(chain.ids[0]) .. \(chain.ids[2]))\n"), "\(env): \(find.stdout)\(find.stderr)")
            let diff = try Tools.run("hs-backup", ["diff", chain.ids[0], chain.ids[1]], environment: env)
            #expect(diff.status == 0 && diff.stdout.contains("M  radarr/config.xml  (content, mtime)"), "\(env): \(diff.stderr)")
            let dump = try Tools.run("hs-backup", ["dump", "--backup", chain.ids[0], "radarr/config.xml"], environment: env)
            #expect(dump.status == 0 && dump.stdout.utf8.count == 35, "\(env): \(dump.stderr)")
        }
        // A flag beats the environment: a wrong HS_BACKUP_DEST is not used when --to is given.
        let flagWins = try Tools.run("hs-backup", ["ls", "--to", chain.dest, "--name", chain.set, "-R", "radarr"],
                                     environment: ["HS_CONFIG": "/dev/null", "HS_BACKUP_DEST": work.sub("nowhere")])
        #expect(flagWins.status == 0 && flagWins.stdout == byFlags.stdout, "\(flagWins.stderr)")
        for cmd in [["ls"], ["find", "x"], ["diff", "latest", "latest"], ["dump", "x"], ["mount", work.sub("mp")]] {
            let none = try Tools.run("hs-backup", cmd, environment: ["HS_CONFIG": "/dev/null"])
            #expect(none.status == 2 && none.stderr.contains("missing --to DEST") && none.stderr.contains("HS_BACKUP_DEST"), "\(cmd): \(none.stderr)")
        }
    }
}
