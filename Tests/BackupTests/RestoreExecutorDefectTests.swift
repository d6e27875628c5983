// The restore-side defects of issue 24, each through both command-line halves
// (`hs-restore --from` a backup made by hs-backup, and `--archive` of it or of GNU tar's
// archive), run on the built tools.
import Foundation
import Support
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A backup of `src` in a fresh local destination (set "t"), made by the built hs-backup.
struct CLIBackup {
    let dest: TempDir
    let id: String
    var archive: String { dest.sub("t/\(id).tar.gz") }

    init(_ src: String) throws {
        dest = try TempDir("hs-r24-dest")
        let r = try Tools.run("hs-backup", ["run", "--source", src, "--to", dest.path, "--name", "t", "--json"])
        try #require(r.status == 0, "hs-backup: \(r.status) \(r.stderr)")
        let obj = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        id = try #require(obj?["id"] as? String)
    }
}

/// Runs a shell command line (for arguments that are not UTF-8: `$(printf ...)`).
func shell(_ line: String, environment: [String: String] = [:]) throws -> ProcessResult {
    try Subprocess.run(["sh", "-c", line], environment: environment)
}

/// Makes files and directories whose names are given as Python bytes literals.
func pyMake(_ root: String, _ statements: String) throws {
    let r = try Subprocess.run(["python3", "-c", "import os\nos.chdir(\(pyQuote(root)))\n" + statements])
    try #require(r.succeeded, "python: \(r.stderr)")
}

private func pyQuote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "\\'") + "'" }

/// `getfattr` of every entry below `root` (names relative), all namespaces, symlinks not followed.
func xattrDump(_ root: String) throws -> String {
    let r = try Subprocess.run(["getfattr", "-R", "-d", "-m", "-", "-h", "--absolute-names", root])
    return r.stdout.replacingOccurrences(of: root + "/", with: "").split(separator: "\n").filter { !$0.isEmpty }.joined(separator: "\n")
}

@Suite(.serialized) struct RestoreExecutorDefectTests {
    var hsRestore: String { Tools.path("hs-restore") }

    /// `setfattr -n user.flag f` (an attribute with an empty value) comes back, as GNU tar
    /// and bsdtar restore it, on files and directories, through both halves.
    @Test func emptyXattrValueIsRestoredBothWays() throws {
        let work = try TempDir("r24-empty-xattr")
        let src = work.sub("src")
        try Tree.write(src + "/f.txt", "content\n")
        try Tree.write(src + "/d/inner.txt", "inner\n")
        try Subprocess.checked(["setfattr", "-n", "user.flag", src + "/f.txt"])
        try Subprocess.checked(["setfattr", "-n", "user.color", "-v", "blue", src + "/f.txt"])
        try Subprocess.checked(["setfattr", "-n", "user.empty", src + "/d"])
        let expected = try xattrDump(src)
        try #require(expected.contains("user.flag") && expected.contains("user.empty"), "fixture: \(expected)")
        let b = try CLIBackup(src)
        let r1 = try Tools.run("hs-restore", ["--from", b.dest.path, "--name", "t", "--to", work.sub("from")])
        #expect(r1.status == 0, "\(r1.stderr)")
        let r2 = try Tools.run("hs-restore", ["--archive", b.archive, "--to", work.sub("archive")])
        #expect(r2.status == 0, "\(r2.stderr)")
        #expect(try xattrDump(work.sub("from")) == expected)
        #expect(try xattrDump(work.sub("archive")) == expected)
    }

    /// A sparse file larger than its filesystem (150 MiB apparent, a few KiB of data, on a
    /// 100 MiB tmpfs) is backed up and restored onto that same filesystem, holes kept.
    @Test func sparseFileLargerThanTheTargetFilesystemRestores() throws {
        let work = try TempDir("r24-sparse")
        let mnt = work.sub("small")
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        let m = try Subprocess.run(["mount", "-t", "tmpfs", "-o", "size=100m", "tmpfs", mnt])
        try #require(m.succeeded, "mount tmpfs: \(m.stderr)")
        defer { _ = try? Subprocess.run(["umount", "-l", mnt]) }
        let src = mnt + "/src"
        try Tree.write(src + "/small.txt", "small\n")
        try Subprocess.checked(["truncate", "-s", "150M", src + "/big.img"])
        try Subprocess.checked(["dd", "if=/dev/urandom", "of=" + src + "/big.img", "bs=4096", "count=2", "seek=256", "conv=notrunc", "status=none"])
        let b = try CLIBackup(src)
        for (mode, args) in [("from", ["--from", b.dest.path, "--name", "t"]), ("archive", ["--archive", b.archive])] {
            let to = mnt + "/" + mode
            let r = try Tools.run("hs-restore", args + ["--to", to])
            #expect(r.status == 0, "\(mode): \(r.status) \(r.stderr)")
            var st = stat()
            #expect(lstat(to + "/big.img", &st) == 0 && st.st_size == 150 << 20, "\(mode): size \(st.st_size)")
            #expect(st.st_blocks * 512 <= 1 << 20, "\(mode): \(st.st_blocks * 512) bytes allocated")
            let same = try Subprocess.run(["cmp", src + "/big.img", to + "/big.img"])
            #expect(same.succeeded, "\(mode): content differs: \(same.stdout)")
            _ = try? Subprocess.run(["rm", "-rf", to])
        }
    }

    /// `--only` selects a directory whose name is not UTF-8, by its raw bytes and by the escaped
    /// form the tools print; `--dry-run` prints names escaped (no U+FFFD, no raw newline).
    @Test func onlyTakesNonUTF8NamesAndDryRunEscapesNames() throws {
        let work = try TempDir("r24-only-bytes")
        let src = work.sub("src")
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        try pyMake(src, """
            os.makedirs(b'caf\\xe9'); open(b'caf\\xe9/menu.txt', 'w').write('m\\n')
            open(b'other.txt', 'w').write('o\\n'); open(b'new\\nline.txt', 'w').write('n\\n')
            """)
        let b = try CLIBackup(src)
        let modes = [("from", "--from '\(b.dest.path)' --name t"), ("archive", "--archive '\(b.archive)'")]
        for (mode, source) in modes {
            for (form, only) in [("bytes", "\"$(printf 'caf\\351')\""), ("escaped", "'caf\\xe9'")] {
                let to = work.sub("\(mode)-\(form)")
                let r = try shell("'\(hsRestore)' \(source) --to '\(to)' --only \(only)")
                #expect(r.status == 0, "\(mode) \(form): \(r.status) \(r.stderr)")
                let got = try Subprocess.run(["find", to, "-mindepth", "1", "-printf", "%P|"]).stdout
                #expect(got.split(separator: "|").count == 2 && got.contains("menu.txt") && !got.contains("other"),
                        "\(mode) \(form): restored \(got.debugDescription)")
            }
            let d = try shell("'\(hsRestore)' \(source) --to '\(work.sub("dry-\(mode)"))' --dry-run")
            #expect(d.status == 0, "\(mode) dry run: \(d.stderr)")
            let out = d.stdout + d.stderr
            #expect(!out.contains("\u{FFFD}"), "\(mode): lossy name in \(out)")
            #expect(out.contains("caf\\xe9/menu.txt"), "\(mode): \(out)")
            #expect(out.contains("new\\nline.txt"), "\(mode): \(out)")
            #expect(!out.split(separator: "\n").contains { $0.hasPrefix("line.txt") }, "\(mode): raw newline in \(out)")
        }
    }

    /// Restored by a user who is not root: POSIX ACLs on the files that user now owns come
    /// back (as with GNU `tar --acls -x`), and the run says what it could not apply
    /// (ownership, setuid bits, trusted.* attributes).
    @Test func nonRootRestoreKeepsACLsAndSaysWhatItCouldNotApply() throws {
        let work = try TempDir("r24-nonroot")
        try Subprocess.checked(["chmod", "755", work.path])
        let src = work.sub("src")
        try Tree.write(src + "/f.txt", "acl\n")
        try Tree.write(src + "/s.bin", "setuid\n")
        try Tree.write(src + "/t.txt", "trusted\n")
        try Subprocess.checked(["chown", "-R", "4321:4321", src])   // before the chmod: a chown clears setuid
        try Subprocess.checked(["setfacl", "-m", "u:1234:rw,g:2345:r", src + "/f.txt"])
        try Subprocess.checked(["chmod", "4755", src + "/s.bin"])
        try Subprocess.checked(["setfattr", "-n", "trusted.t", "-v", "x", src + "/t.txt"])
        let b = try CLIBackup(src)
        try Subprocess.checked(["chmod", "-R", "a+rX", b.dest.path])
        let gnu = work.sub("gnu.tar.gz")
        try Subprocess.checked(["tar", "--xattrs", "--xattrs-include=*", "--acls", "-czf", gnu, "-C", src, "."])
        try Subprocess.checked(["chmod", "a+r", gnu])
        let out = work.sub("out")
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try Subprocess.checked(["chown", "1000:1000", out])
        let asUser = ["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", hsRestore]
        for (mode, args) in [("from", ["--from", b.dest.path, "--name", "t"]), ("archive", ["--archive", b.archive]), ("gnu", ["--archive", gnu])] {
            let to = out + "/" + mode
            let r = try Subprocess.run(asUser + args + ["--to", to])
            #expect(r.status == 0, "\(mode): \(r.status) \(r.stderr)")
            let acl = try Subprocess.run(["getfacl", "-cp", to + "/f.txt"]).stdout
            #expect(acl.contains("user:1234:rw-") && acl.contains("group:2345:r--"), "\(mode): ACL lost: \(acl)")
            #expect(r.stderr.contains("owner"), "\(mode): ownership not mentioned: \(r.stderr)")
            #expect(r.stderr.contains("setuid"), "\(mode): setuid not mentioned: \(r.stderr)")
            #expect(r.stderr.contains("trusted."), "\(mode): trusted.* not mentioned: \(r.stderr)")
        }
    }

    /// A symlink whose ownership cannot be applied (here: a user namespace in which uid 1234
    /// does not exist) is named in a warning, as a regular file is; nothing is dropped silently.
    @Test func symlinkOwnershipFailureIsReported() throws {
        let work = try TempDir("r24-symlink-owner")
        let src = work.sub("src")
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: src + "/link", withDestinationPath: "somewhere")
        try Subprocess.checked(["chown", "-h", "1234:1234", src + "/link"])
        let b = try CLIBackup(src)
        for (mode, args) in [("from", ["--from", b.dest.path, "--name", "t"]), ("archive", ["--archive", b.archive])] {
            let r = try Subprocess.run(["unshare", "-r", hsRestore] + args + ["--to", work.sub(mode)])
            #expect(r.status == 0, "\(mode): \(r.status) \(r.stderr)")
            #expect(r.stderr.contains("link") && r.stderr.contains("owner"), "\(mode): the symlink's ownership failure is silent: \(r.stderr)")
        }
    }

    /// `--only` that matches nothing fails the same way in both halves, dry run or not: exit
    /// 1, the pattern named, nothing written.
    @Test func onlyMatchingNothingFailsTheSameWayInBothModes() throws {
        let work = try TempDir("r24-only-none")
        let src = work.sub("src")
        try Tree.write(src + "/a/b.txt", "b\n")
        let b = try CLIBackup(src)
        var messages: [String] = []
        for (mode, args) in [("from", ["--from", b.dest.path, "--name", "t"]), ("archive", ["--archive", b.archive])] {
            for dry in [false, true] {
                let to = work.sub("\(mode)-\(dry)")
                let r = try Tools.run("hs-restore", args + ["--to", to, "--only", "a/nope"] + (dry ? ["--dry-run"] : []))
                #expect(r.status == 1, "\(mode) dry=\(dry): \(r.status) \(r.stderr)")
                #expect(r.stderr.contains("a/nope"), "\(mode) dry=\(dry): \(r.stderr)")
                let written = (try? FileManager.default.contentsOfDirectory(atPath: to)) ?? []
                #expect(written.isEmpty, "\(mode) dry=\(dry): something was written: \(written)")
                messages.append(r.stderr.replacingOccurrences(of: b.dest.path, with: "DEST").replacingOccurrences(of: b.archive, with: "DEST"))
            }
        }
        #expect(Set(messages.map { $0.contains("no such path") }).count == 1, "messages differ: \(messages)")
    }

    /// A work directory other users may enter, and a backup of its src/f.txt they may read
    /// (for restores run as another user).
    private func backupOthersMayRead(_ name: String) throws -> (work: TempDir, backup: CLIBackup) {
        let work = try TempDir(name)
        try Subprocess.checked(["chmod", "755", work.path])
        let src = work.sub("src")
        try Tree.write(src + "/f.txt", "f\n")
        let b = try CLIBackup(src)
        try Subprocess.checked(["chmod", "-R", "a+rX", b.dest.path])
        return (work, b)
    }

    /// A target that cannot be created says why, as mkdir says it, with the path, through both
    /// halves: a directory the restoring user cannot write, a read-only filesystem. (FileManager
    /// made it: its CocoaError code shown as an errno read "Unknown error 513" and "642".)
    @Test func targetThatCannotBeCreatedNamesTheRealCause() throws {
        let (work, b) = try backupOthersMayRead("r-target-mkdir")
        let locked = work.sub("locked")   // root's, 0755: others may look, not create
        try FileManager.default.createDirectory(atPath: locked, withIntermediateDirectories: true)
        try Subprocess.checked(["chmod", "755", locked])
        let ro = work.sub("ro")
        try FileManager.default.createDirectory(atPath: ro, withIntermediateDirectories: true)
        let m = try Subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", ro])
        try #require(m.succeeded, "mount tmpfs: \(m.stderr)")
        defer { _ = try? Subprocess.run(["umount", "-l", ro]) }
        let asNobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", hsRestore]
        let cases = [("Permission denied", asNobody, locked + "/new"), ("Read-only file system", [hsRestore], ro + "/new")]
        for (mode, args) in [("from", ["--from", b.dest.path, "--name", "t"]), ("archive", ["--archive", b.archive])] {
            for (why, argv, parent) in cases {
                let to = parent + "/" + mode
                let r = try Subprocess.run(argv + args + ["--to", to])
                #expect(r.status == 1, "\(mode), \(why): \(r.status) \(r.stderr)")
                #expect(r.stderr.contains("cannot create the target \(to): \(why) (mkdir \(parent))"), "\(mode): \(r.stderr)")
                #expect(!r.stderr.contains("Unknown error"), "\(mode): \(r.stderr)")
                #expect(!FileManager.default.fileExists(atPath: parent), "\(mode): \(parent) was made")
            }
        }
    }

    /// A target that is there but cannot be listed (the restoring user may write in it but not
    /// read it; an I/O error, injected by strace on the target's getdents64 alone) was taken
    /// for an empty one (`try?` gave no names): the "empty unless --force" rule was bypassed
    /// and the restore wrote into it. It must fail with the real errno, the target and what to
    /// do (exit 1), writing nothing, through both halves. A regular file as --to stays what it
    /// was: not a directory, exit 2.
    @Test func targetThatCannotBeListedIsNotTakenForEmpty() throws {
        let (work, b) = try backupOthersMayRead("r-target-list")
        let asNobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", hsRestore]
        for (mode, args) in [("from", ["--from", b.dest.path, "--name", "t"]), ("archive", ["--archive", b.archive])] {
            let unreadable = work.sub("unreadable-\(mode)")   // nobody's, 0300: write and search, no read
            try Tree.write(unreadable + "/keep.txt", "mine\n")
            try Subprocess.checked(["chown", "-R", "65534:65534", unreadable])
            try Subprocess.checked(["chmod", "300", unreadable])
            let r = try Subprocess.run(asNobody + args + ["--to", unreadable])
            #expect(r.status == 1, "\(mode), unreadable: \(r.status) \(r.stderr)")
            #expect(r.stderr.contains(unreadable) && r.stderr.contains("Permission denied (errno \(EACCES))") && r.stderr.contains("--to"),
                    "\(mode), unreadable: \(r.stderr)")
            #expect(filesIn(unreadable) == ["keep.txt"], "\(mode): written into the unreadable target: \(filesIn(unreadable))")

            let failing = work.sub("eio-\(mode)")
            try Tree.write(failing + "/keep.txt", "mine\n")
            let e = try Subprocess.run(["/usr/bin/strace", "-f", "-qq", "-o", "/dev/null", "-P", failing, "-e", "trace=getdents64",
                                        "-e", "inject=getdents64:error=EIO", "--", hsRestore] + args + ["--to", failing])
            #expect(e.status == 1, "\(mode), EIO: \(e.status) \(e.stderr)")
            #expect(e.stderr.contains(failing) && e.stderr.contains("Input/output error (errno \(EIO))"), "\(mode), EIO: \(e.stderr)")
            #expect(filesIn(failing) == ["keep.txt"], "\(mode): written into the target it could not list: \(filesIn(failing))")

            let file = work.sub("file-\(mode)")
            try Tree.write(file, "mine\n")
            let f = try Subprocess.run([hsRestore] + args + ["--to", file])
            #expect(f.status == 2 && f.stderr.contains("--to \(file) is not a directory"), "\(mode), a file: \(f.status) \(f.stderr)")
            #expect(try String(contentsOfFile: file, encoding: .utf8) == "mine\n")
        }
    }
}
