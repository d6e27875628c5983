// dump: one file's bytes, a directory as a tar stream that GNU tar extracts to what the source
// held; only the members holding what is dumped are read.
import Foundation
import Testing
@testable import Browse
import Backup
import Support
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

@Suite struct DumpTests {
    private func dump(_ chain: BackupChain, _ args: [String], to file: String) throws -> ProcessResult {
        try Subprocess.run(["/bin/sh", "-c", "d=$1; s=$2; shift 2; exec \"$0\" dump --to \"$d\" --name \"$s\" \"$@\" > \"$OUT\"", Tools.path("hs-backup"), chain.dest, chain.set]
                           + args, environment: ["OUT": file])
    }

    @Test("a file's bytes from every backup, by escaped name, a hardlink, a file over several members")
    func files() throws {
        let chain = try SharedChain.get()
        let tmp = try TempDir("hs-dump")
        let cases: [(String, [UInt8])] = [("radarr/config.xml", Array("radarr/config.xml".utf8)), ("plex/big.bin", Array("plex/big.bin".utf8)),
                                          ("hard/c", Array("hard/c".utf8)), ("empty", Array("empty".utf8)),
                                          ("media/caf\\xe9.txt", Array("media/".utf8) + BackupChain.latin1)]
        for (i, id) in chain.ids.enumerated() {
            for (arg, bytes) in cases {
                let source = Array(chain.copies[i].utf8) + [0x2F] + bytes
                var st = stat()
                guard lstat(ByteFS.c(source), &st) == 0 else { continue }   // not in this backup
                let out = tmp.sub("out")
                let r = try dump(chain, ["--backup", id, arg], to: out)
                #expect(r.status == 0, "\(id) \(arg): \(r.stderr)")
                #expect(try ByteFS.read(Array(out.utf8)) == ByteFS.read(source), "\(id) \(arg)")
            }
        }
        let gone = try dump(chain, ["media/caf\\xe9.txt"], to: tmp.sub("x"))
        #expect(gone.status == 1 && gone.stderr.contains("no media/caf\\xe9.txt in backup \(chain.ids[2])"), "\(gone.stderr)")
        let link = try dump(chain, ["links/rel"], to: tmp.sub("x"))
        #expect(link.status == 2 && link.stderr.contains("is a symlink to ../radarr/new.txt"), "\(link.stderr)")
        let json = try Tools.run("hs-backup", ["dump", "--to", chain.dest, "--name", chain.set, "--json", "empty"])
        #expect(json.status == 2)
    }

    @Test("a directory as a tar stream: GNU tar extracts what the source held (modes, owners, ns mtimes, links, hardlinks, xattrs); never to a terminal")
    func directories() throws {
        let chain = try SharedChain.get()
        let tmp = try TempDir("hs-dump")
        for (i, id) in chain.ids.enumerated() {
            for dir in ["radarr", "hard", "."] {
                let tarFile = tmp.sub("\(i)-\(dir).tar")
                let r = try dump(chain, ["--backup", id, dir], to: tarFile)
                #expect(r.status == 0, "\(id) \(dir): \(r.stderr)")
                let x = tmp.sub("x\(i)-\(dir == "." ? "all" : dir)")
                try FileManager.default.createDirectory(atPath: x, withIntermediateDirectories: true)
                let t = try Subprocess.run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf", tarFile, "-C", x])
                #expect(t.succeeded, "\(t.stderr)")
                let options = TreeDescription.Options(contentSkipped: ["db/app.db"])
                let expected = try TreeDescription.describe(dir == "." ? chain.copies[i] : chain.copies[i] + "/" + dir, options)
                let got = try TreeDescription.describe(dir == "." ? x : x + "/" + dir, options)
                let d = TreeDescription.diff(expected, got)
                #expect(d.isEmpty, "backup \(i + 1) \(dir) through tar:\n\(d.joined(separator: "\n"))")
                if dir != "." {
                    // The directory itself comes first, with its own metadata.
                    let top = try TreeDescription.describe(x)
                    let source = try TreeDescription.describe(chain.copies[i])
                    #expect(top[dir] == source[dir], "\(dir): \(top[dir] ?? "-") vs \(source[dir] ?? "-")")
                }
            }
        }
        // hard/b's file outside the dump: `hard` alone carries it; a hardlink to a file not
        // dumped becomes a file (here every hard/* is inside).
        let tty = try Subprocess.run(["script", "-qec", "\(Tools.path("hs-backup")) dump --to \(chain.dest) --name \(chain.set) radarr", "/dev/null"])
        #expect(tty.status == 2 && tty.stdout.contains("is a directory: dump writes it as a tar stream, not to a terminal"), "\(tty.stdout)")
    }

    @Test("only the members holding a file are read: damage elsewhere does not stop its dump or its read through the mount; its own damage is found")
    func onlyItsMembers() throws {
        let tmp = try TempDir("hs-dump")
        let src = tmp.sub("src")
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        let a = BackupChain.noise(3 << 20, seed: 7), b = BackupChain.noise(3 << 20, seed: 8)
        try ByteFS.write(Array((src + "/a.bin").utf8), a)
        try ByteFS.write(Array((src + "/b.bin").utf8), b)
        let r = try Tools.run("hs-backup", ["run", "-q", "--source", src, "--to", tmp.sub("dst"), "--name", "s"])
        #expect(r.succeeded, "\(r.stderr)")
        let set = BackupSet(destination: try BackupTool.destination(tmp.sub("dst")), name: "s")
        let id = try set.committedIDs()[0]
        // Flip a byte in the middle of a.bin's stored data (its second member).
        let reader = try set.openManifest(id)
        var aPlace: UInt64 = 0, bPlace: UInt64 = 0
        while let e = try reader.next() {
            if e.path == Array("a.bin".utf8) { aPlace = e.entry.memberOffset }
            if e.path == Array("b.bin".utf8) { bPlace = e.entry.memberOffset }
        }
        reader.close()
        #expect(bPlace > aPlace + (2 << 20))
        let archive = tmp.sub("dst/s/\(id).tar.gz")
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: archive)))
        bytes[Int(aPlace) + (2 << 20) + 4096] ^= 0x01
        try Data(bytes).write(to: URL(fileURLWithPath: archive))

        let outB = tmp.sub("b.out")
        let okB = try Subprocess.run(["/bin/sh", "-c", "exec \"$0\" dump --to \"$1\" --name s b.bin > \"$2\"", Tools.path("hs-backup"), tmp.sub("dst"), outB])
        #expect(okB.status == 0, "\(okB.stderr)")
        #expect(try ByteFS.read(Array(outB.utf8)) == b)
        let badA = try Subprocess.run(["/bin/sh", "-c", "exec \"$0\" dump --to \"$1\" --name s a.bin > /dev/null", Tools.path("hs-backup"), tmp.sub("dst")])
        #expect(badA.status == 1 && badA.stderr.contains("a.bin"), "\(badA.stderr)")

        let mp = tmp.sub("mnt")
        try FileManager.default.createDirectory(atPath: mp, withIntermediateDirectories: true)
        let m = try MountProcess(["--to", tmp.sub("dst")], mountpoint: mp, log: tmp.sub("log"))
        #expect(try ByteFS.read(Array("\(mp)/s/latest/b.bin".utf8)) == b)
        #expect(throws: (any Error).self) { _ = try ByteFS.read(Array("\(mp)/s/latest/a.bin".utf8)) }
        #expect(m.stop() == 0)
        #expect(m.output.contains("a.bin"), "the mount names the damaged file: \(m.output)")
    }

    @Test("damage in the member holding a file's header: the dump (of the file, of its directory) names the file and the archive, exit 1")
    func damagedHeaderNamesTheFile() throws {
        let tmp = try TempDir("hs-dump")
        let src = tmp.sub("src")
        try FileManager.default.createDirectory(atPath: src + "/d", withIntermediateDirectories: true)
        try ByteFS.write(Array((src + "/d/a.txt").utf8), Array("a\n".utf8))
        try ByteFS.write(Array((src + "/d/big.bin").utf8), BackupChain.noise(3 << 20, seed: 9))
        try ByteFS.write(Array((src + "/d/z.txt").utf8), Array("z\n".utf8))
        let r = try Tools.run("hs-backup", ["run", "-q", "--source", src, "--to", tmp.sub("dst"), "--name", "s"])
        #expect(r.succeeded, "\(r.stderr)")
        let set = BackupSet(destination: try BackupTool.destination(tmp.sub("dst")), name: "s")
        let id = try set.committedIDs()[0]
        let reader = try set.openManifest(id)
        var zPlace: UInt64 = 0
        while let e = try reader.next() { if e.path == Array("d/z.txt".utf8) { zPlace = e.entry.memberOffset } }
        reader.close()
        #expect(zPlace > 3 << 20)
        // A byte of the deflate data just after the gzip header of z.txt's member.
        let archive = tmp.sub("dst/s/\(id).tar.gz")
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: archive)))
        bytes[Int(zPlace) + 12] ^= 0x10
        try Data(bytes).write(to: URL(fileURLWithPath: archive))
        for what in ["d/z.txt", "d", "."] {
            let d = try Subprocess.run(["/bin/sh", "-c", "exec \"$0\" dump --to \"$1\" --name s \"$2\" > /dev/null", Tools.path("hs-backup"), tmp.sub("dst"), what])
            #expect(d.status == 1 && d.stderr.contains("d/z.txt") && d.stderr.contains("\(id).tar.gz"), "\(what): exit \(d.status): \(d.stderr)")
        }
    }

    /// Two backups of a sparse file that differ in one byte of its data, each the only member
    /// of its archive (stored the same way, so the gzip members line up): the first backup's
    /// archive replaced by the second's holds a well-formed member whose content does not have
    /// the first manifest's sparse hash, which only that hash can tell.
    private func sparsePair(_ tmp: TempDir) throws -> (dst: String, good: [UInt8], bad: [UInt8], swap: () throws -> Void) {
        let size = 10 << 20, at = 5_000_000
        var dsts: [String] = [], contents: [[UInt8]] = [], ids: [String] = []
        for (i, byte) in [UInt8(0x58), 0x59].enumerated() {
            let src = tmp.sub("src\(i)"), dst = tmp.sub("dst\(i)")
            try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
            try Subprocess.checked(["/bin/sh", "-ec", "truncate -s \(size) sp; printf '\\\(String(byte, radix: 8))' | dd of=sp bs=1 seek=\(at) conv=notrunc 2>/dev/null; touch -d '2020-01-01 UTC' sp ."],
                                   directory: src)
            var content = [UInt8](repeating: 0, count: size)
            content[at] = byte
            #expect(try ByteFS.read(Array((src + "/sp").utf8)) == content)
            let r = try Tools.run("hs-backup", ["run", "-q", "--source", src, "--to", dst, "--name", "s"])
            #expect(r.succeeded, "\(r.stderr)")
            let ls = try Tools.run("hs-backup", ["ls", "--to", dst, "--name", "s", "--json", "sp"])
            #expect(ls.stdout.contains("\"size\":\(size)"), "\(ls.stdout)")
            dsts.append(dst); contents.append(content)
            ids.append(try BackupSet(destination: try BackupTool.destination(dst), name: "s").committedIDs()[0])
        }
        let swap = {
            try FileManager.default.removeItem(atPath: dsts[0] + "/s/\(ids[0]).tar.gz")
            try FileManager.default.copyItem(atPath: dsts[1] + "/s/\(ids[1]).tar.gz", toPath: dsts[0] + "/s/\(ids[0]).tar.gz")
        }
        return (dsts[0], contents[0], contents[1], swap)
    }

    @Test("a sparse file (one data region, in the middle): dump and the mount give its bytes; content that does not have the manifest's sparse hash fails both, on every read")
    func sparseFileChecked() throws {
        let tmp = try TempDir("hs-dump")
        let (dst, good, _, swap) = try sparsePair(tmp)
        func dumpSparse() throws -> (ProcessResult, [UInt8]) {
            let out = tmp.sub("sp.out")
            let r = try Subprocess.run(["/bin/sh", "-c", "exec \"$0\" dump --to \"$1\" --name s sp > \"$2\"", Tools.path("hs-backup"), dst, out])
            return (r, try ByteFS.read(Array(out.utf8)))
        }
        let (ok, bytes) = try dumpSparse()
        #expect(ok.status == 0 && bytes == good, "\(ok.stderr)")
        // Through the mount, read in order from start to end (O_DIRECT: every read reaches
        // the mount, one after the other), so the content is hashed as it is read.
        let mp = tmp.sub("mnt")
        try FileManager.default.createDirectory(atPath: mp, withIntermediateDirectories: true)
        func readInOrder() throws -> (ProcessResult, [UInt8]) {
            let out = tmp.sub("sp.dd")
            let r = try Subprocess.run(["dd", "if=\(mp)/s/latest/sp", "of=\(out)", "iflag=direct", "bs=128K"])
            return (r, try ByteFS.read(Array(out.utf8)))
        }
        do {
            let m = try MountProcess(["--to", dst], mountpoint: mp, log: tmp.sub("log"))
            let (r, read) = try readInOrder()
            #expect(r.succeeded && read == good, "\(r.stderr)")
            #expect(m.stop() == 0)
            #expect(!m.output.contains("error"), "\(m.output)")
        }

        try swap()
        let (bad, _) = try dumpSparse()
        #expect(bad.status == 1 && bad.stderr.contains("sp: the content in") && bad.stderr.contains("SHA-256"), "exit \(bad.status): \(bad.stderr)")
        let m = try MountProcess(["--to", dst], mountpoint: mp, log: tmp.sub("log2"))
        let (r, _) = try readInOrder()
        #expect(!r.succeeded && r.stderr.contains("Input/output error"), "\(r.stderr)")
        // Opened again, read as any reader does (the kernel keeps what it read before): still EIO.
        #expect(throws: (any Error).self) { _ = try ByteFS.read(Array("\(mp)/s/latest/sp".utf8)) }
        #expect(m.stop() == 0)
        #expect(m.output.contains("sp: the content read from"), "\(m.output)")
    }
}
