// Round trips through real tools: archives the engine writes are extracted by GNU tar,
// bsdtar and the engine; archives GNU tar, bsdtar and Python's tarfile write are extracted by
// `hs-restore --archive`. Trees are compared node by node.
import Archive
import Foundation
import Restore
import Glibc
import Gzip
import Support
import Testing
import TestSupport

@Suite struct RoundTripTests {
    /// The fixture without what `hs-restore --archive` refuses by design (absolute symlink).
    static var restorable: [TestNode] {
        Fixture.standard.filter { if case .symlink("abs-link", _) = $0 { return false } else { return true } }
    }

    @Test func engineArchiveExtractsIdenticallyWithGNUTarBsdtarAndEngine() throws {
        let tmp = try TempDir("archive-rt")
        let src = tmp.sub("src")
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        try Fixture.create(Fixture.standard, under: src)
        let expected = TreeSnapshot(src)
        #expect(expected.nodes.count == 32)

        let archive = tmp.sub("a.tar.gz")
        // Small members so that big files are cut inside and many members exist.
        let index = try writeArchive(of: src, to: archive, options: ArchiveWriterOptions(memberTargetSize: 256 << 10, memberSizeCap: 1 << 20))
        #expect(index.members.count > 10)
        #expect(try run(["gzip", "-t", archive]).succeeded)
        // Sparse 24 MiB of zeros compresses to almost nothing; random 5 MiB is stored.
        let size = (try FileManager.default.attributesOfItem(atPath: archive)[.size] as? NSNumber)?.uint64Value ?? 0
        #expect(size < 5_400_000 && size > 5_000_000, "archive size \(size)")

        // GNU tar
        let g = tmp.sub("gnu"); try FileManager.default.createDirectory(atPath: g, withIntermediateDirectories: false)
        let gr = try run(["tar", "--xattrs", "--xattrs-include=user.*", "--numeric-owner", "-xpzf", archive, "-C", g])
        #expect(gr.succeeded, "GNU tar: \(gr.stderr)")
        #expect(expected.differences(from: TreeSnapshot(g)) == [])

        // bsdtar
        let b = tmp.sub("bsd"); try FileManager.default.createDirectory(atPath: b, withIntermediateDirectories: false)
        let br = try run(["bsdtar", "--xattrs", "--numeric-owner", "-xpf", archive, "-C", b])
        #expect(br.succeeded, "bsdtar: \(br.stderr)")
        #expect(expected.differences(from: TreeSnapshot(b)) == [])

        // Python tarfile lists every entry with the right size and link target.
        let py = try run(["python3", "-c", """
            import tarfile, sys
            with tarfile.open(sys.argv[1]) as t:
                for m in t.getmembers():
                    print(m.name.encode('unicode_escape').decode(), m.size, m.uid, m.linkname.encode('unicode_escape').decode())
            """, archive])
        #expect(py.succeeded, "python tarfile: \(py.stderr)")
        #expect(py.stdout.contains("sparse.img \(24 << 20) 0"))
        #expect(py.stdout.contains("shared/bigid 100 3000000"))
        #expect(py.stdout.contains("new\\nline 8 0"))

        // The engine itself.
        let o = tmp.sub("ours")
        let summary = try extract(try ArchiveSource.file(archive), to: o).counts
        #expect(expected.differences(from: TreeSnapshot(o), ignoreSymlinkTimes: false) == [])
        #expect(summary.hardlinks == 1 && summary.symlinks == 5 && summary.fifos == 1)
        // The restored sparse file is sparse again.
        var st = stat()
        lstat(o + "/sparse.img", &st)
        #expect(st.st_blocks * 512 < 1 << 20)

        // Zero padding after the last member (as tape-style writers add) is tolerated after
        // members decoded whole, as it was by the streaming decoder alone.
        let padded = tmp.sub("padded.tar.gz")
        try Data(Array(try Data(contentsOf: URL(fileURLWithPath: archive))) + [UInt8](repeating: 0, count: 1024))
            .write(to: URL(fileURLWithPath: padded))
        let p = tmp.sub("padded")
        try extract(try ArchiveSource.file(padded), to: p)
        #expect(expected.differences(from: TreeSnapshot(p), ignoreSymlinkTimes: false) == [])

        // A damaged member in the middle: the streaming decoder takes over there and the error
        // gives the place in the file, not in what that decoder was handed.
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: archive)))
        let flip = bytes.count / 2
        bytes[flip] ^= 0x55
        let damaged = tmp.sub("damaged.tar.gz")
        try Data(bytes).write(to: URL(fileURLWithPath: damaged))
        var message = ""
        do { try extract(try ArchiveSource.file(damaged), to: tmp.sub("damaged")) } catch {
            message = "\(error)"
            guard case RestoreError.source(let e, _, _) = error else { Issue.record("not a damaged source: \(error)"); return }
            #expect(e.isDamage)
        }
        let at = message.range(of: "at compressed offset ").map { Int(message[$0.upperBound...].prefix { $0.isNumber }) ?? -1 }
        #expect(at.map { $0 >= flip && $0 <= bytes.count } == true, "flipped at \(flip): \(message)")
    }

    @Test func absoluteSymlinkIsRestoredAsIsWithAWarning() throws {
        let tmp = try TempDir("archive-abs")
        let src = tmp.sub("src")
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        try Fixture.create([.file("a", content: [1]), .symlink("abs-link", target: "/etc/hostname")], under: src)
        try writeArchive(of: src, to: tmp.sub("a.tgz"))
        let r = try Tools.run("hs-restore", ["--archive", tmp.sub("a.tgz"), "--to", tmp.sub("t")])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("abs-link") && r.stderr.contains("outside"), "\(r.stderr)")
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: tmp.sub("t/abs-link"))) == "/etc/hostname")
    }

    struct Foreign: CustomStringConvertible, Sendable {
        var name: String
        var command: @Sendable (_ src: String, _ out: String) -> [String]
        var ignoreXattrs: Bool
        var ignoreSubsecond: Bool
        var reduced: Bool  // ustar: short names and small ids only
        var sparse = false  // keep the sparse file (written as a pax sparse 1.0 entry)
        var description: String { name }
    }

    static let python = """
        import tarfile, sys, os
        fmt = {'pax': tarfile.PAX_FORMAT, 'gnu': tarfile.GNU_FORMAT, 'ustar': tarfile.USTAR_FORMAT}[sys.argv[1]]
        src, out = sys.argv[2], sys.argv[3]
        with tarfile.open(out, 'w:gz', format=fmt) as t:
            for name in sorted(os.listdir(src)):
                t.add(os.path.join(src, name), arcname=name)
        """

    static let foreign: [Foreign] = [
        Foreign(name: "gnu-pax", command: { ["tar", "--format=pax", "--xattrs", "-czf", $1, "-C", $0, "."] }, ignoreXattrs: false, ignoreSubsecond: false, reduced: false),
        Foreign(name: "gnu-gnu", command: { ["tar", "--format=gnu", "-czf", $1, "-C", $0, "."] }, ignoreXattrs: true, ignoreSubsecond: true, reduced: false),
        Foreign(name: "gnu-ustar", command: { ["tar", "--format=ustar", "-czf", $1, "-C", $0, "."] }, ignoreXattrs: true, ignoreSubsecond: true, reduced: true),
        Foreign(name: "gnu-oldgnu", command: { ["tar", "--format=oldgnu", "-czf", $1, "-C", $0, "."] }, ignoreXattrs: true, ignoreSubsecond: true, reduced: false),
        Foreign(name: "bsdtar", command: { ["bsdtar", "--no-read-sparse", "-czf", $1, "-C", $0, "."] }, ignoreXattrs: false, ignoreSubsecond: true, reduced: false),
        Foreign(name: "bsdtar-sparse", command: { ["bsdtar", "-czf", $1, "-C", $0, "."] }, ignoreXattrs: false, ignoreSubsecond: true, reduced: false, sparse: true),
        Foreign(name: "gnu-pax-sparse-1.0", command: { ["tar", "--format=pax", "-S", "--sparse-version=1.0", "-czf", $1, "-C", $0, "."] }, ignoreXattrs: true, ignoreSubsecond: false, reduced: false, sparse: true),
        Foreign(name: "python-pax", command: { ["python3", "-c", python, "pax", $0, $1] }, ignoreXattrs: true, ignoreSubsecond: true, reduced: false),
        Foreign(name: "python-gnu", command: { ["python3", "-c", python, "gnu", $0, $1] }, ignoreXattrs: true, ignoreSubsecond: true, reduced: false),
        Foreign(name: "python-ustar", command: { ["python3", "-c", python, "ustar", $0, $1] }, ignoreXattrs: true, ignoreSubsecond: true, reduced: true),
    ]

    @Test(arguments: foreign)
    func foreignArchiveExtractsWithHsRestore(_ f: Foreign) throws {
        let tmp = try TempDir("archive-foreign")
        let src = tmp.sub("src")
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        var nodes = Self.restorable.filter {
            // Sparse and big files are covered by the engine round trip; keep these small.
            switch $0 {
            case .sparse: return f.sparse
            case .file(let p, _, _, _, _, _, _): return !p.hasSuffix("-5m.bin") && !p.hasSuffix("-3m.log")
            default: return true
            }
        }
        if f.reduced {
            nodes = nodes.filter {
                switch $0 {
                case .file(let p, _, _, _, _, _, _), .dir(let p, _, _, _, _), .symlink(let p, _):
                    return p.utf8.count < 90 && !p.contains("bigid") && !p.contains("long-link")
                default: return true
                }
            }
        }
        try Fixture.create(nodes, under: src)
        let archive = tmp.sub("f.tar.gz")
        let made = try run(f.command(src, archive))
        #expect(made.succeeded, "\(f.name) create: \(made.stderr)")
        let target = tmp.sub("t")
        let r = try Tools.run("hs-restore", ["--archive", archive, "--to", target])
        #expect(r.status == 0, "hs-restore: \(r.stderr)")
        var expected = TreeSnapshot(src)
        var got = TreeSnapshot(target)
        if f.ignoreSubsecond {
            for k in expected.nodes.keys { expected.nodes[k]!.mtimeNs = 0 }
            for k in got.nodes.keys { got.nodes[k]!.mtimeNs = 0 }
        }
        #expect(expected.differences(from: got, ignoreSymlinkTimes: true, ignoreXattrs: f.ignoreXattrs) == [])
    }
}
