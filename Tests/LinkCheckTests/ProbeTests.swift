import Foundation
import Testing
@testable import LinkCheck
import Support
import TestSupport

/// The hardlink probe and its diagnoses, against real mounts (tmpfs, bind mounts).
@Suite struct ProbeTests {
    @Test func sameFilesystemMountedRootIsOK() throws {
        let t = try TempDir("lc-ok")
        let root = t.sub("storage")
        try Fx.withTmpfs(at: root) {
            let (initCode, initObj, initRun) = try Fx.runJSON([root, "--init", "--require-mount", "--puid", "1234", "--pgid", "2345"])
            #expect(initCode == 0, "\(initRun.stderr) \(initRun.stdout)")
            let steps = initObj["initialized"] as? [[String: Any]] ?? []
            #expect(steps.count == 26)
            #expect(steps.allSatisfy { $0["action"] as? String == "created" })
            var st = stat()
            #expect(lstat(root + "/library/movies", &st) == 0)
            #expect(st.st_uid == 1234 && st.st_gid == 2345 && st.st_mode & 0o7777 == 0o775)
            #expect(FileManager.default.fileExists(atPath: root + "/downloads/usenet/complete/comics"))
            #expect(FileManager.default.fileExists(atPath: root + "/downloads/torrents/incomplete"))
            #expect(FileManager.default.fileExists(atPath: root + "/photos"))

            let (code, obj, r) = try Fx.runJSON([root, "--require-mount"])
            #expect(code == 0, "\(r.stdout)")
            #expect(Fx.findings(obj).isEmpty, "\(Fx.findings(obj))")
            let probe = try #require(obj["probe"] as? [String: Any])
            #expect(probe["ok"] as? Bool == true)
            #expect(probe["same_inode"] as? Bool == true)
            #expect(probe["link_count"] as? Int == 2)
            #expect(probe["cleaned_up"] as? Bool == true)
            let name = Fx.str(probe["downloads_file"])
            #expect(name.contains(".hs-linkcheck-probe-"))
            // Nothing left behind by the probe.
            #expect(!Fx.listing(root).contains { $0.contains("hs-linkcheck-probe") })
            let mounts = try #require(obj["mounts"] as? [String: Any])
            #expect(mounts["root_is_mount_point"] as? Bool == true)
            #expect((mounts["library"] as? [String: Any])?["fs_type"] as? String == "tmpfs")

            // Text mode: one summary line saying it works.
            let text = try Fx.run([root])
            #expect(text.status == 0)
            #expect(text.stdout.contains("hardlinks work between downloads/ and library/"))

            // --init again changes nothing.
            let (_, again, _) = try Fx.runJSON([root, "--init", "--puid", "1234", "--pgid", "2345"])
            #expect((again["initialized"] as? [[String: Any]] ?? []).allSatisfy { $0["action"] as? String == "ok" })
        }
    }

    @Test func initTakesPuidPgidFromEnvironmentAndFixesOwnership() throws {
        let t = try TempDir("lc-init")
        try Fx.mkdirs(t.sub("library/movies"))
        chmod(t.sub("library/movies"), 0o700)
        let (code, obj, r) = try Fx.runJSON([t.path, "--init"], env: ["PUID": "1500", "PGID": "1600"])
        #expect(code == 0, "\(r.stderr)")
        let steps = obj["initialized"] as? [[String: Any]] ?? []
        let movies = steps.first { ($0["path"] as? String)?.hasSuffix("/library/movies") == true }
        #expect(movies?["action"] as? String == "changed")
        #expect(Fx.has(movies?["detail"], "mode 700 -> 775"))
        var st = stat()
        lstat(t.sub("library/movies"), &st)
        #expect(st.st_uid == 1500 && st.st_gid == 1600 && st.st_mode & 0o7777 == 0o775)
    }

    @Test func crossDeviceLibraryOnTmpfsIsDiagnosed() throws {
        let t = try TempDir("lc-xdev")
        let root = t.sub("storage")
        try Fx.withTmpfs(at: root) {
            try Fx.mkdirs(root + "/downloads")
            try Fx.withTmpfs(at: root + "/library") {
                let (code, obj, r) = try Fx.runJSON([root])
                #expect(code == 1, "\(r.stdout)")
                #expect(Fx.codes(obj, severity: "error") == ["cross-device"])
                let msg = Fx.findings(obj).first?["message"] as? String ?? ""
                // Both mount points are named.
                #expect(msg.contains("is on \(root) (tmpfs"))
                #expect(msg.contains("is on \(root)/library (tmpfs"))
                let probe = try #require(obj["probe"] as? [String: Any])
                #expect(probe["ok"] as? Bool == false)
                #expect(Fx.has(probe["failure"], "cross-device"))
                #expect(probe["cleaned_up"] as? Bool == true)
                #expect(Fx.listing(root + "/downloads").isEmpty)
                #expect(Fx.listing(root + "/library").isEmpty)
                let text = try Fx.run([root])
                #expect(text.status == 1)
                #expect(text.stdout.contains("fix: Keep downloads/ and library/ in ONE dataset"))
            }
        }
        // Unmounted afterwards.
        #expect(!(try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)).contains(root))
    }

    @Test func sameFilesystemMountedTwiceIsDiagnosed() throws {
        // Docker-style separate bind mounts of one filesystem: same st_dev, still EXDEV.
        let t = try TempDir("lc-bind")
        let root = t.sub("storage")
        try Fx.mkdirs(root + "/downloads", t.sub("elsewhere/library"))
        try Fx.withBindMount(t.sub("elsewhere/library"), at: root + "/library") {
            let (code, obj, _) = try Fx.runJSON([root])
            #expect(code == 1)
            #expect(Fx.codes(obj, severity: "error") == ["cross-device"])
            let msg = Fx.findings(obj).first { $0["code"] as? String == "cross-device" }?["message"] as? String ?? ""
            #expect(msg.contains("mounted twice"))
            #expect(msg.contains(root + "/library"))
        }
    }

    @Test func plainDirectoryWhereAMountIsExpected() throws {
        let t = try TempDir("lc-plain")
        try Fx.mkdirs(t.sub("downloads"), t.sub("library"))
        let table = try MountTable.load()
        let lands = try #require(table.mount(containing: Sys.realpath(t.path)!))
        // Default: a warning naming the filesystem it really lands on; the probe still runs.
        let (code, obj, _) = try Fx.runJSON([t.path])
        #expect(code == 0)
        #expect(Fx.codes(obj, severity: "warning") == ["not-mount-point"])
        let msg = Fx.findings(obj)[0]["message"] as? String ?? ""
        #expect(msg.contains("not a mount point"))
        #expect(msg.contains("on \(lands.mountPoint) (\(lands.fsType) from \(lands.source))"))
        #expect((obj["probe"] as? [String: Any])?["ok"] as? Bool == true)
        // --require-mount: an error, exit 1, and nothing is written under the root.
        let (code2, obj2, _) = try Fx.runJSON([t.path, "--require-mount", "--init"])
        #expect(code2 == 1)
        #expect(Fx.codes(obj2, severity: "error") == ["not-mount-point"])
        #expect(obj2["probe"] == nil && obj2["initialized"] == nil)
        #expect(Fx.listing(t.path) == ["downloads", "library"])
    }

    @Test func probeFilesOfKilledRunsAreRemoved() throws {
        let t = try TempDir("lc-stale")
        try Fx.mkdirs(t.sub("downloads"), t.sub("library"))
        // A pid that surely is gone: a process that has exited.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/true")
        try p.run(); p.waitUntilExit()
        let dead = p.processIdentifier
        try Fx.write(t.sub("downloads/.hs-linkcheck-probe-\(dead)-abc"), [1])
        try Fx.link(t.sub("downloads/.hs-linkcheck-probe-\(dead)-abc"), t.sub("library/.hs-linkcheck-probe-\(dead)-abc"))
        // One of a live process (this one) is left alone.
        try Fx.write(t.sub("downloads/.hs-linkcheck-probe-\(getpid())-live"), [2])
        let (code, _, _) = try Fx.runJSON([t.path])
        #expect(code == 0)
        #expect(Fx.listing(t.sub("downloads")) == [".hs-linkcheck-probe-\(getpid())-live"])
        #expect(Fx.listing(t.sub("library")).isEmpty)
    }

    @Test func missingDirectoriesAreNamed() throws {
        let t = try TempDir("lc-missing")
        try Fx.mkdirs(t.sub("downloads"))
        let (code, obj, _) = try Fx.runJSON([t.path, "--library", "media/library"])
        #expect(code == 1)
        let missing = Fx.findings(obj).filter { $0["code"] as? String == "missing-directory" }
        #expect(missing.count == 1)
        #expect(Fx.has(missing.first?["message"], t.sub("media/library")))
        #expect(Fx.has(missing.first?["fix"], "--init"))
        // A root that does not exist at all.
        let (code2, obj2, _) = try Fx.runJSON([t.sub("nope")])
        #expect(code2 == 1)
        #expect(Fx.codes(obj2) == ["missing-directory"])
    }

    @Test func cannotWriteShowsIdsOwnerAndExplanation() throws {
        let t = try TempDir("lc-perm")
        try Fx.mkdirs(t.sub("downloads"), t.sub("library"))
        chmod(t.path, 0o755)
        chmod(t.sub("downloads"), 0o755)
        // Run as nobody (uid/gid 65534) against root-owned 755 directories. The binary is
        // copied to a directory nobody can reach (the checkout may sit under /root).
        let bin = try TempDir("lc-bin")
        chmod(bin.path, 0o755)
        // Copied by `cp`, not in this process: a write fd opened here could be inherited by a
        // child that another test spawns meanwhile, and exec would fail with ETXTBSY.
        try Subprocess.checked(["cp", Tools.path("hs-linkcheck"), bin.sub("hs-linkcheck")])
        let r = try Subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                    bin.sub("hs-linkcheck"), t.path, "--json"])
        #expect(r.status == 1, "\(r.stderr)")
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let f = try #require(Fx.findings(obj).first { $0["code"] as? String == "cannot-write" })
        let msg = f["message"] as? String ?? ""
        #expect(msg.contains("as uid 65534"))
        #expect(msg.contains("gid 65534"))
        #expect(msg.contains("uid 0 (root)"))
        #expect(msg.contains("mode 755"))
        #expect(Fx.has(f["fix"], "chown"))
        #expect(Fx.listing(t.sub("downloads")).isEmpty)
    }

    @Test func readOnlyFilesystemCannotWrite() throws {
        let t = try TempDir("lc-ro")
        let root = t.sub("storage")
        try Fx.withTmpfs(at: root) {
            try Fx.mkdirs(root + "/downloads", root + "/library")
            try Subprocess.checked(["mount", "-o", "remount,ro", root])
            let (code, obj, _) = try Fx.runJSON([root])
            #expect(code == 1)
            let f = Fx.findings(obj).first { $0["code"] as? String == "cannot-write" }
            #expect(Fx.has(f?["message"], "Read-only file system"))
            #expect(Fx.has(f?["fix"], "read-only"))
        }
    }

    @Test func badUsageExitsTwo() throws {
        let t = try TempDir("lc-usage")
        #expect(try Fx.run([t.path, "--yes"]).status == 2)
        let abs = try Fx.run([t.path, "--downloads", "/abs"])
        #expect(abs.status == 2)
        #expect(abs.stderr.contains("--downloads /abs must be a path relative to the root"))
        #expect(try Fx.run([t.path, "--library", "../x"]).status == 2)
        #expect(try Fx.run([t.path, "--downloads", "same", "--library", "same"]).status == 2)
        let nested = try Fx.run([t.path, "--downloads", "library/dl"])
        #expect(nested.status == 2)
        #expect(nested.stderr.contains("must be separate folders"))
        #expect(try Fx.run([t.path, "--bogus"]).status == 2)
        #expect(try Fx.run(["--help"]).stdout.contains("--init"))
    }

    @Test func mountinfoParsingAndLookup() {
        let text = """
        27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
        50 27 0:51 / /mnt/storage rw,relatime shared:1 - nfs4 truenas:/mnt/tank/media rw,vers=4.2
        51 50 0:52 /sub /mnt/storage/my\\040lib rw - tmpfs tmpfs rw
        """
        let t = MountTable(parsing: text)
        #expect(t.mounts.count == 3)
        #expect(t.mounts[1].fsType == "nfs4" && t.mounts[1].source == "truenas:/mnt/tank/media")
        #expect(t.mounts[2].mountPoint == "/mnt/storage/my lib" && t.mounts[2].fsRoot == "/sub")
        #expect(t.mount(containing: "/mnt/storage/downloads/x")?.id == 50)
        #expect(t.mount(containing: "/mnt/storage/my lib/movies")?.id == 51)
        #expect(t.mount(containing: "/mnt/storagex")?.id == 27)
        #expect(LocalProbe.filesystemFinding(MountInfo(id: 1, device: "0:1", fsRoot: "/", mountPoint: "/m", fsType: "cifs", source: "//nas/media"), path: "/m")?.code == "filesystem-type")
        #expect(LocalProbe.filesystemFinding(t.mounts[1], path: "/mnt/storage") == nil)
    }
}
