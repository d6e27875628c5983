import Foundation
import Testing
import Archive
@testable import Backup
@testable import Restore
import Storage
import Support
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A tree with many directories (several levels, odd modes), files of every size class
/// (empty, small, > the pool's size limit), setuid/setgid/sticky bits, other owners, ns
/// mtimes, hardlinks across directories and symlinks.
func makeWideTree(_ root: String) throws {
    var x: UInt64 = 7
    func next() -> UInt64 { x = x &* 6364136223846793005 &+ 1442695040888963407; return x >> 33 }
    let asRoot = geteuid() == 0
    var dirs: [String] = []
    for a in 0 ..< 12 {
        for b in 0 ..< 6 {
            for c in 0 ..< 3 { dirs.append("svc\(a)/data\(b)/part\(c)") }
            dirs.append("svc\(a)/data\(b)")
        }
        dirs.append("svc\(a)")
    }
    for d in dirs { try FileManager.default.createDirectory(atPath: root + "/" + d, withIntermediateDirectories: true) }
    var files: [String] = []
    for (i, d) in dirs.enumerated() where !d.hasSuffix("part2") || i % 2 == 0 {
        for k in 0 ..< 4 {
            let p = "\(d)/f\(k).bin"
            let n = k == 0 ? 0 : Int(next() % (k == 3 ? 70_000 : 3_000))
            var bytes = [UInt8](repeating: 0, count: n)
            for j in 0 ..< n { bytes[j] = k == 2 ? UInt8(0x61 + (j * 7 + i) % 26) : UInt8(truncatingIfNeeded: next()) }
            try Tree.writeBytes(root + "/" + p, bytes)
            files.append(p)
        }
    }
    // Bigger than TreeWriter.parallelMaxFileSize: written on the reading thread.
    // Random (incompressible, so archived as stored data the damage tests can find).
    var rng = SystemRandomNumberGenerator()
    var big = [UInt8]()
    big.reserveCapacity(Int(TreeWriter.parallelMaxFileSize) + 1_234_568)
    while big.count < Int(TreeWriter.parallelMaxFileSize) + 1_234_567 { withUnsafeBytes(of: rng.next() as UInt64) { big += $0 } }
    try Tree.writeBytes(root + "/svc3/data2/big.db", big)
    files.append("svc3/data2/big.db")
    // Hardlinks across directories (and a group of three).
    for (i, f) in files.enumerated() where i % 97 == 5 {
        let other = dirs[(i * 31) % dirs.count]
        #expect(link(root + "/" + f, root + "/" + other + "/hl\(i).bin") == 0)
    }
    #expect(link(root + "/svc0/data0/f1.bin", root + "/svc11/data5/part1/third.bin") == 0)
    #expect(link(root + "/svc0/data0/f1.bin", root + "/svc7/also.bin") == 0)
    // Symlinks: relative, absolute, to a directory.
    symlink("../data1/f1.bin", root + "/svc1/data0/rel.link")
    symlink("/etc/passwd", root + "/svc2/abs.link")
    symlink("data3", root + "/svc4/dir.link")
    // Modes and owners.
    for (i, f) in files.enumerated() {
        let mode: mode_t = [0o644, 0o600, 0o755, 0o640, 0o444, 0o4755, 0o2750, 0o664][i % 8]
        if asRoot && i % 5 == 0 { chown(root + "/" + f, uid_t(1000 + i % 3), gid_t(2000 + i % 4)) }
        chmod(root + "/" + f, mode)
    }
    for (i, d) in dirs.enumerated() {
        let mode: mode_t = [0o755, 0o750, 0o700, 0o1777, 0o2775, 0o555, 0o711][i % 7]
        if asRoot && i % 4 == 1 { chown(root + "/" + d, uid_t(1001), gid_t(2002)) }
        chmod(root + "/" + d, mode)
    }
    // Mtimes with ns, deepest first (setting a file's does not touch its directory's).
    for (i, f) in files.enumerated() { Tree.setMtime(root + "/" + f, seconds: 1_600_000_000 + i * 37, nanos: 1 + i * 7919) }
    for link in ["svc1/data0/rel.link", "svc2/abs.link", "svc4/dir.link"] { Tree.setMtime(root + "/" + link, seconds: 1_500_000_000, nanos: 42) }
    for (i, d) in dirs.enumerated().reversed() { Tree.setMtime(root + "/" + d, seconds: 1_650_000_000 + i, nanos: 999_999_000 - i) }
}

/// Flips one byte of `needle`'s first occurrence in the gzip file at `path` and rewrites the
/// CRC of the member holding it, so the archive decompresses cleanly and only the SHA-256 of
/// the file can tell. (`needle` must lie in stored, not deflated, data.)
func flipByteKeepingCRC(_ path: String, needle: [UInt8]) throws {
    let script = """
    import sys, zlib
    path, needle = sys.argv[1], bytes.fromhex(sys.argv[2])
    data = bytearray(open(path, 'rb').read())
    i = data.find(needle)
    assert i >= 0 and data.find(needle, i + 1) < 0, "needle not found once"
    start = 0
    while start < len(data):
        assert data[start:start + 3] == b'\\x1f\\x8b\\x08', "not a gzip member at %d" % start
        flg, p = data[start + 3], start + 10
        if flg & 4: p += 2 + (data[p] | data[p + 1] << 8)
        if flg & 8: p = data.index(0, p) + 1
        if flg & 16: p = data.index(0, p) + 1
        if flg & 2: p += 2
        d = zlib.decompressobj(-15)
        d.decompress(bytes(data[p:]))
        end = len(data) - len(d.unused_data) + 8
        if start <= i < end:
            data[i + len(needle) // 2] ^= 0x01
            out = zlib.decompressobj(-15).decompress(bytes(data[p:end - 8]))
            data[end - 8:end - 4] = (zlib.crc32(out) & 0xffffffff).to_bytes(4, 'little')
            open(path, 'wb').write(data)
            sys.exit(0)
        start = end
    sys.exit("needle not inside a member")
    """
    try Subprocess.checked(["python3", "-c", script, path, needle.map { String(format: "%02x", $0) }.joined()])
}

@Suite struct RestoreParallelTests {
    /// Every directory, file, hardlink group, symlink, mode, owner and ns mtime comes back
    /// exactly.
    @Test func wideTreeRestoresExactly() throws {
        let work = try TempDir("hs-restore-wide")
        let src = work.sub("src")
        try makeWideTree(src)
        let copy = work.sub("copy")
        try Tree.copy(src, copy)      // `cp -a`: what any tool should reproduce
        let dest = try TestDestination(.local)
        let s = try backup(src, dest)
        let out = work.sub("out")
        let summary = try restore(dest, id: s.id, to: out).counts
        let want = try Tree.describe(src)
        #expect(Tree.diff(want, try Tree.describe(copy)).isEmpty)
        let got = try Tree.describe(out)
        let d = Tree.diff(want, got)
        #expect(d.isEmpty, "restore differs from the source:\n\(d.prefix(10).joined(separator: "\n"))")
        #expect(want.count > 1000 && got.count == want.count)
        #expect(summary.directories == 12 * 6 * 4 + 12 && summary.symlinks == 3 && summary.hardlinks >= 5)
        // Byte for byte, independently of Tree.describe.
        let cmp = try Subprocess.run(["diff", "-r", "--no-dereference", src, out])
        #expect(cmp.status == 0, "\(cmp.stdout)")
        if geteuid() == 0 {
            var st = stat()
            #expect(lstat(out + "/svc0/data0/f1.bin", &st) == 0 && st.st_nlink == 3)
        }
    }

    /// The head of the Python scripts that make these tests' archives: `add(t, name, kind,
    /// mtime, mode, data)` adds a directory ('d') or a regular file to the open tarfile `t`.
    static let pythonAddEntry = """
        import sys, tarfile, io
        def add(t, name, kind, mtime, mode, data=b''):
            i = tarfile.TarInfo(name); i.mtime = mtime; i.mode = mode
            if kind == 'd':
                i.type = tarfile.DIRTYPE; t.addfile(i)
            else:
                i.size = len(data); t.addfile(i, io.BytesIO(data))

        """

    /// Directories get their metadata on the writer threads once the entries have left them
    /// (not all at the end). An archive that comes back to a directory it left (appended or
    /// hand-made archives), or makes a new directory inside one, must still leave every
    /// directory with its archived mode and mtime: such a directory is applied again at the end.
    @Test func archiveComingBackToADirectory() throws {
        let work = try TempDir("hs-restore-reopen")
        let archive = work.sub("back.tar.gz")
        let script = Self.pythonAddEntry + """
        with tarfile.open(sys.argv[1], 'w:gz', format=tarfile.GNU_FORMAT) as t:
            add(t, 'a', 'd', 1500000001, 0o755)
            for k in range(40): add(t, 'a/f%d' % k, 'f', 1500001000 + k, 0o644, b'a' * k)
            add(t, 'a/s', 'd', 1500000002, 0o750)
            for k in range(40): add(t, 'a/s/f%d' % k, 'f', 1500002000 + k, 0o644, b's' * k)
            add(t, 'c', 'd', 1500000003, 0o755)
            for k in range(3000): add(t, 'c/g%d' % k, 'f', 1500003000 + k, 0o644, b'c')
            add(t, 'a/back', 'f', 1500000010, 0o644, b'back in a')
            add(t, 'a/s/n/new', 'f', 1500000011, 0o644, b'a new directory in a/s')
            add(t, 'b', 'd', 1500000004, 0o700)
            for k in range(40): add(t, 'b/f%d' % k, 'f', 1500004000 + k, 0o600, b'b' * k)
            add(t, 'd', 'd', 1500000005, 0o755)
            for k in range(3000): add(t, 'd/g%d' % k, 'f', 1500005000 + k, 0o644, b'd')
            add(t, 'b/back', 'f', 1500000012, 0o644, b'back in b')
            add(t, 'e', 'd', 1500000006, 0o755)
            add(t, 'e/last', 'f', 1500000013, 0o644, b'last')
        """
        try Subprocess.checked(["python3", "-c", script, archive])
        let out = work.sub("out")
        let r = try Tools.run("hs-restore", ["--archive", archive, "--to", out])
        #expect(r.status == 0, "\(r.stderr)")
        let want: [(String, Int, mode_t)] = [("a", 1500000001, 0o755), ("a/s", 1500000002, 0o750), ("c", 1500000003, 0o755),
                                             ("b", 1500000004, 0o700), ("d", 1500000005, 0o755), ("e", 1500000006, 0o755)]
        for (dir, mtime, mode) in want {
            var st = stat()
            #expect(lstat(out + "/" + dir, &st) == 0)
            #expect(st.st_mtim.tv_sec == mtime && st.st_mode & 0o7777 == mode,
                    "\(dir): mtime \(st.st_mtim.tv_sec) mode \(String(st.st_mode & 0o7777, radix: 8)), archived \(mtime) \(String(mode, radix: 8))")
        }
        for (file, text) in [("a/back", "back in a"), ("a/s/n/new", "a new directory in a/s"), ("b/back", "back in b"), ("e/last", "last")] {
            #expect((try? String(contentsOfFile: out + "/" + file, encoding: .utf8)) == text, "\(file)")
        }
        let files = try Subprocess.run(["find", out, "-type", "f"]).stdout.split(separator: "\n").count
        #expect(files == 40 + 40 + 3000 + 2 + 40 + 3000 + 1 + 1)
    }

    /// A directory the archive lists again after the entries left it (an appended archive, or
    /// `tar -r`): the last entry's metadata wins, as with GNU tar, also when entries come back
    /// into it after each listing (the first, left-early metadata must not come back over it).
    @Test func directoryListedAgainAfterItWasLeft() throws {
        let work = try TempDir("hs-restore-relisted")
        let archive = work.sub("relisted.tar.gz")
        let script = Self.pythonAddEntry + """
        with tarfile.open(sys.argv[1], 'w:gz', format=tarfile.PAX_FORMAT) as t:
            for r in range(3):
                add(t, 'd', 'd', 1500000001 + r, 0o755 if r < 2 else 0o700)
                add(t, 'd/f%d' % r, 'f', 1500001000 + r, 0o644, b'x' * r)
                for big in range(2):
                    add(t, 'e%d%d' % (r, big), 'd', 1500002000, 0o755)
                    for k in range(3000): add(t, 'e%d%d/g%d' % (r, big, k), 'f', 1500003000, 0o644, b'e')
            add(t, 'n', 'd', 1500000101, 0o755)
            for k in range(3000): add(t, 'n/g%d' % k, 'f', 1500003000, 0o644, b'n')
            add(t, 'n', 'd', 1500000102, 0o750)
            for k in range(3000): add(t, 'm/g%d' % k, 'f', 1500003000, 0o644, b'm')
        """
        try Subprocess.checked(["python3", "-c", script, archive])
        let gnu = work.sub("gnu")
        try FileManager.default.createDirectory(atPath: gnu, withIntermediateDirectories: true)
        try Subprocess.checked(["tar", "-xzf", archive, "-C", gnu])
        let out = work.sub("out")
        let r = try Tools.run("hs-restore", ["--archive", archive, "--to", out])
        #expect(r.status == 0, "\(r.stderr)")
        for (dir, mtime, mode) in [("d", 1500000003, mode_t(0o700)), ("n", 1500000102, mode_t(0o750))] {
            var ours = stat(), theirs = stat()
            #expect(lstat(out + "/" + dir, &ours) == 0 && lstat(gnu + "/" + dir, &theirs) == 0)
            #expect(theirs.st_mtim.tv_sec == mtime && theirs.st_mode & 0o7777 == mode, "GNU tar: \(dir) \(theirs.st_mtim.tv_sec)")
            #expect(ours.st_mtim.tv_sec == mtime && ours.st_mode & 0o7777 == mode,
                    "\(dir): mtime \(ours.st_mtim.tv_sec) mode \(String(ours.st_mode & 0o7777, radix: 8)), last listed \(mtime) \(String(mode, radix: 8))")
        }
    }

    /// The real tool with its default threads, into a target that exists and is empty.
    @Test func wideTreeThroughTheTool() throws {
        let work = try TempDir("hs-restore-wide-tool")
        let src = work.sub("src")
        try makeWideTree(src)
        let dest = try TestDestination(.local)
        _ = try backup(src, dest)
        let out = work.sub("out")
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: false)
        let r = try Tools.run("hs-restore", ["--from", dest.spec, "--name", "t", "--to", out])
        #expect(r.status == 0, "\(r.stderr)")
        let d = Tree.diff(try Tree.describe(src), try Tree.describe(out))
        #expect(d.isEmpty, "restore differs from the source:\n\(d.prefix(10).joined(separator: "\n"))")
    }

    /// Content altered with a valid gzip CRC: only the writer thread's SHA-256 check sees it.
    /// The restore stops with the file's name, exit 1, and no thread is left behind.
    @Test(arguments: DestKind.allCases) func damagedFileStopsParallelRestore(kind: DestKind) throws {
        let work = try TempDir("hs-restore-damaged")
        let src = work.sub("src")
        try makeWideTree(src)
        let victim = "svc5/data1/part0/f3.bin"   // random bytes: stored, not deflated
        let content = try [UInt8](Data(contentsOf: URL(fileURLWithPath: src + "/" + victim)))
        try #require(content.count > 1000)
        let dest = try TestDestination(kind)
        let s = try backup(src, dest)
        let archive = "t/\(s.id).tar.gz"
        let local = work.sub("a.tar.gz")
        try Data(try dest.destination.readAll(archive)).write(to: URL(fileURLWithPath: local))
        try flipByteKeepingCRC(local, needle: Array(content[400 ..< 464]))
        try dest.destination.writeAtomically(archive, contents: try [UInt8](Data(contentsOf: URL(fileURLWithPath: local))))

        // In process: the error names the file and the archive; every pool thread is gone.
        do {
            try restore(dest, id: "latest", to: work.sub("in-process"))
            Issue.record("restore of a damaged archive succeeded")
        } catch let e as RestoreError {
            guard case .contentMismatch(let entry, let origin) = e else { Issue.record("not a content mismatch: \(e)"); return }
            #expect(entry == victim && origin?.contains("\(s.id).tar.gz") == true, "\(e)")
            #expect("\(e)".contains("SHA-256"))
        }

        // The tool: exit 1, the file named on stderr.
        let t = try Tools.run("hs-restore", ["--from", dest.spec, "--name", "t", "--to", work.sub("tool")])
        #expect(t.status == 1)
        #expect(t.stderr.contains(victim) && t.stderr.contains("does not match its SHA-256"), "\(t.stderr)")
    }

    /// A plain flipped byte (the gzip CRC no longer matches) inside a big file that is written
    /// while it is read: exit 1, and the error names the file being restored.
    @Test func flippedByteInBigFile() throws {
        let work = try TempDir("hs-restore-flip")
        let src = work.sub("src")
        try makeWideTree(src)
        let victim = "svc3/data2/big.db"
        let content = try [UInt8](Data(contentsOf: URL(fileURLWithPath: src + "/" + victim)))
        let dest = try TestDestination(.local)
        let s = try backup(src, dest)
        let archive = "t/\(s.id).tar.gz"
        var bytes = try dest.destination.readAll(archive)
        // The middle of the big file lies in a member that holds nothing else.
        let mid = content.count / 2
        let needle = Array(content[mid ..< mid + 64])
        let at = try #require(bytes.indices.first { i in i + 64 <= bytes.count && bytes[i] == needle[0] && Array(bytes[i ..< i + 64]) == needle })
        bytes[at + 32] ^= 0x10
        try dest.destination.writeAtomically(archive, contents: bytes)
        let t = try Tools.run("hs-restore", ["--from", dest.spec, "--name", "t", "--to", work.sub("out")])
        #expect(t.status == 1)
        #expect(t.stderr.contains(victim) && t.stderr.contains("\(s.id).tar.gz"), "\(t.stderr)")
    }
}

@Suite struct RestoreProbeTests {
    /// The shortcut (create with the final mode, skip chown/chmod) is taken only when probe
    /// entries come out with the expected owner and mode; the probe leaves nothing behind.
    @Test func probeDecidesAndCleansUp() throws {
        let dir = try TempDir("hs-restore-probe")
        let fd = open(dir.path, O_RDONLY | O_DIRECTORY)
        #expect(fd >= 0)
        defer { close(fd) }
        let mask = try #require(CreationProbe.currentUmask())
        #expect(CreationProbe.isPredictable(fd))
        #expect(!CreationProbe.isPredictable(fd, uid: geteuid() + 1), "another owner than expected")
        #expect(!CreationProbe.isPredictable(fd, gid: getegid() + 1), "another group than expected")
        let otherMask: UInt32 = (0o750 & ~mask) == 0o700 ? 0o022 : 0o077
        #expect(!CreationProbe.isPredictable(fd, umask: otherMask), "another mode than expected")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
        // A setgid target is never predictable (new entries take its group and setgid bit).
        #expect(chmod(dir.path, 0o2755) == 0)
        #expect(!CreationProbe.isPredictable(fd))
        func writer(fresh: Bool) throws -> TreeWriter {
            var p = RestorePolicy()
            p.writerThreads = 1
            return try TreeWriter(target: dir.path, policy: p, fresh: fresh)
        }
        #expect(try !writer(fresh: true).metadata.predictable)
        #expect(chmod(dir.path, 0o755) == 0)
        #expect(try writer(fresh: true).metadata.predictable)
        #expect(try !writer(fresh: false).metadata.predictable)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
    }

    /// Restores into an empty target with the setgid bit and another group: every entry still
    /// gets the group the backup recorded (both restore paths: --from and --archive).
    @Test func setgidTargetKeepsRecordedGroups() throws {
        guard geteuid() == 0 else { Issue.record("needs root (CI runs as root)"); return }
        let work = try TempDir("hs-restore-sgid")
        let src = work.sub("src")
        try Tree.write(src + "/app/config.xml", "<Config/>\n")
        try Tree.write(src + "/app/sub/data.json", "{}\n")
        try Tree.write(src + "/top.txt", "top\n")
        let dest = try TestDestination(.local)
        let s = try backup(src, dest, full: true)
        for way in ["from", "archive"] {
            let target = work.sub("target-\(way)")
            try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
            #expect(chown(target, 0, 4321) == 0 && chmod(target, 0o2775) == 0)
            let r = way == "from"
                ? try Tools.run("hs-restore", ["--from", dest.spec, "--name", "t", "--to", target])
                : try Tools.run("hs-restore", ["--archive", dest.spec + "/t/\(s.id).tar.gz", "--to", target])
            #expect(r.status == 0, "\(way): \(r.stderr)")
            for p in ["app", "app/config.xml", "app/sub", "app/sub/data.json", "top.txt"] {
                var st = stat()
                #expect(lstat(target + "/" + p, &st) == 0)
                #expect(st.st_gid == 0, "\(way): \(p) has group \(st.st_gid), the backup recorded 0")
                #expect(st.st_mode & S_ISGID == 0, "\(way): \(p) has the setgid bit; the backup recorded none")
            }
        }
    }
}

@Suite struct RestorePathSplitterTests {
    /// The splitter that shares a directory's components with its files gives what
    /// `RestorePath.split` gives, for paths in and out of the previous one's directory, at
    /// the top, deeper, shallower, and a parent that is a prefix of the previous one's.
    @Test func splitterEqualsSplit() {
        let paths = ["a", "a/b", "a/b/c", "a/b/d", "a/bc/d", "a/b/c/e", "a/b/c/f", "x", "a/b/g", "ab/c", "a/b", "a/b/d",
                     "a/b\u{FFFD}/\u{1}z", "a/a", "a/a/a", "y/z", "y/z"].map { Array($0.utf8) }
        var s = RestorePath.Splitter()
        for p in paths {
            #expect(s.split(p).components(of: p) == RestorePath.split(p), "\(String(decoding: p, as: UTF8.self))")
            #expect(RestorePath.Parts(p).components(of: p) == RestorePath.split(p), "\(String(decoding: p, as: UTF8.self))")
            #expect(Array(s.split(p).name(in: p)) == RestorePath.split(p).last!)
        }
        // Files of one directory share its components (the same storage, the parent array itself).
        let p1 = Array("d/e/f1".utf8), p2 = Array("d/e/f2".utf8)
        let f1 = s.split(p1), f2 = s.split(p2)
        #expect(f1.components(of: p1).count == 3 && Array(f2.name(in: p2)) == Array("f2".utf8) && f2.parentEnd == 3)
        #expect(f1.parent[0].withUnsafeBufferPointer { $0.baseAddress } == f2.parent[0].withUnsafeBufferPointer { $0.baseAddress })
        #expect(f1.parent.withUnsafeBufferPointer { $0.baseAddress } == f2.parent.withUnsafeBufferPointer { $0.baseAddress })
        // A new parent shares the leading components it has in common with the previous one.
        let pairs = [("a/b/c", "a/b/d"), ("a/b/c", "a/bc/d"), ("a/b", "a/b/c/d"), ("a/b/c/d", "a/b"), ("a", "b"), ("", "a/b"),
                     ("a/b", ""), ("ab/c", "a/b/c"), ("a/b/c", "x/b/c")]
        for (x, y) in pairs {
            let old = RestorePath.split(Array(x.utf8))
            let new = RestorePath.split(Array(y.utf8), reusing: old)
            #expect(new == RestorePath.split(Array(y.utf8)), "\(x) -> \(y)")
            var k = 0
            while k < min(old.count, new.count) && old[k] == new[k] {
                #expect(old[k].withUnsafeBufferPointer { $0.baseAddress } == new[k].withUnsafeBufferPointer { $0.baseAddress }, "\(x) -> \(y): component \(k) copied")
                k += 1
            }
        }
    }

    /// The tree writer's path hash (a queued file's key, and the prefixes `collides` and
    /// `reopenAncestors` look up): the same bytes hash alike wherever they lie, and the
    /// prefixes of one path, of every length up to past 8-byte steps, hash apart.
    @Test func pathHashDependsOnTheBytesOnly() {
        let path = Array("Library/Application Support/Plex Media Server/Metadata/TV Shows/6/x.bundle/Contents/_stored/art/a.jpg".utf8)
        let copy = Array("xx/".utf8) + path
        #expect(TreeWriter.pathHash(path[...]) == TreeWriter.pathHash(copy[3...]))
        #expect(TreeWriter.pathHash(path[..<20]) == TreeWriter.pathHash(copy[3 ..< 23]))
        var seen = Set<Int>()
        for n in 0 ... path.count { seen.insert(TreeWriter.pathHash(path[..<n])) }
        #expect(seen.count == path.count + 1)
        #expect(TreeWriter.pathHash(Array("a/b".utf8)[...]) != TreeWriter.pathHash(Array("a/c".utf8)[...]))
    }

    /// The writers' walk to a directory by its path (for its metadata) opens, and leaves on its
    /// stack, what the walk by split components does: the directory itself, made if missing,
    /// through the shared prefix of the previous walk; a symlink on the way is refused.
    @Test func openDirectoryWalksAsOpenParent() throws {
        let dir = try TempDir("hs-restore-opendir")
        let fd = open(dir.path, O_RDONLY | O_DIRECTORY)
        #expect(fd >= 0)
        let root = DirHandle(fd)
        var a: [(name: [UInt8], dir: DirHandle)] = [], b: [(name: [UInt8], dir: DirHandle)] = []
        for p in ["x/y/z", "x/y/w", "x/y", "x/v/u", "q", "x/v/u/t", "x/y/z"] {
            let path = Array(p.utf8)
            let d1 = try DirectoryWalker.openDirectory(path, root: root, stack: &a, shown: p)
            let d2 = try DirectoryWalker.openParent(RestorePath.split(path), root: root, stack: &b, shown: p)
            #expect(a.map(\.name) == RestorePath.split(path) && b.map(\.name) == RestorePath.split(path), "\(p)")
            var s1 = stat(), s2 = stat(), s3 = stat()
            #expect(fstat(d1.fd, &s1) == 0 && fstat(d2.fd, &s2) == 0 && lstat(dir.path + "/" + p, &s3) == 0)
            #expect(s1.st_ino == s3.st_ino && s2.st_ino == s3.st_ino, "\(p)")
        }
        #expect(symlink(dir.path + "/x", dir.path + "/l") == 0)
        var c: [(name: [UInt8], dir: DirHandle)] = []
        #expect(throws: RestoreError.self) { try DirectoryWalker.openDirectory(Array("l/y".utf8), root: root, stack: &c, shown: "l/y") }
    }

    /// The tree writer's table of queued files by path hash counts as a dictionary does,
    /// through growth, clustered keys (equal low bits: one long probe run) and removals from
    /// the middle of runs that wrap around the end of the table.
    @Test func hashCountsCountAsADictionary() {
        var t = HashCounts(capacity: 16)
        var d: [Int: Int] = [:]
        var x: UInt64 = 0x9E3779B97F4A7C15
        func next() -> UInt64 { x = x &* 6364136223846793005 &+ 1442695040888963407; return x >> 17 }
        // Keys from a small pool, many sharing their low bits (15 and 31 mod 16: wrapping runs).
        let pool: [Int] = (0 ..< 40).map { i in i % 3 == 0 ? (i << 8) | 15 : i % 3 == 1 ? Int(bitPattern: UInt(next())) : (i << 9) | 31 } + [0, -1]
        for step in 0 ..< 20_000 {
            let k = pool[Int(next() % UInt64(pool.count))]
            if next() % 5 < 3 {
                t.add(k); d[k, default: 0] += 1
            } else {
                t.remove(k)
                if let n = d[k] { d[k] = n > 1 ? n - 1 : nil }
            }
            if step % 97 == 0 || step > 19_900 {
                for p in pool { #expect(t.contains(p) == (d[p] != nil), "step \(step) key \(p)") }
                #expect(t.count == d.count && t.isEmpty == d.isEmpty)
            }
        }
        for (k, n) in d { for _ in 0 ..< n { t.remove(k) } }
        #expect(t.isEmpty && !pool.contains { t.contains($0) })
    }

    /// A crafted archive must not be able to force path-hash collisions whatever the seed (each
    /// one costs a wait for the writers: every entry colliding makes the restore serial). The
    /// multiply/xorshift hash of c701a50 gave these two paths one hash for every seed (bit 63
    /// of word 1 flipped, cancelled by word 2: bytes 7 and 15 ^ 0x80, byte 12 ^ 0x04).
    @Test func pathHashHasNoSeedIndependentCollision() {
        let a = Array("abcdefghijklmnopqrstuvwx".utf8)
        var b = a
        b[7] ^= 0x80; b[15] ^= 0x80; b[12] ^= 0x04
        #expect(TreeWriter.pathHash(a[...]) != TreeWriter.pathHash(b[...]))
        var c = a + Array("/more/path".utf8), d = b + Array("/more/path".utf8)
        #expect(TreeWriter.pathHash(c[...]) != TreeWriter.pathHash(d[...]))
        c[0] ^= 1; d[0] ^= 1
        #expect(TreeWriter.pathHash(c[...]) != TreeWriter.pathHash(d[...]))
    }
}
