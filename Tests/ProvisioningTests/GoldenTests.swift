import Foundation
import Testing
@testable import Provisioning
import Support
import TestSupport

/// `--root` runs against sandbox roots seeded with realistic files, compared with golden
/// files (regenerate with UPDATE_GOLDEN=1 and review the diff).
@Suite struct GoldenTests {
    func args(_ action: String, host: String, root: String) -> [String] {
        [action, "--inventory", Fixture.inventory, "--host", host, "--root", root, "--templates", Fixture.templates]
    }

    /// The input tree overlaid with the golden files must equal the result exactly (so every
    /// file hs-provision did not mean to touch is byte-identical), except `removed` paths.
    /// `added`: files the test put into the sandbox itself (left out of the comparison).
    func checkTree(role: String, input: String, result: String, removed: Set<String> = [], added: Set<String> = []) {
        let before = Fixture.files(Fixture.dir + "/" + input)
        let after = Fixture.files(result).filter { !added.contains($0.key) }
        let goldenDir = Fixture.dir + "/golden/" + role
        if Fixture.updateGolden {
            try? FileManager.default.removeItem(atPath: goldenDir)
            for (rel, data) in after where before[rel] != data {
                let p = goldenDir + "/" + rel
                try? FileManager.default.createDirectory(atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                do { try data.write(to: URL(fileURLWithPath: p)) } catch { Issue.record("could not write the golden file \(p): \(error)") }
            }
        }
        var expected = before
        for r in removed { expected[r] = nil }
        for (rel, data) in Fixture.files(goldenDir) { expected[rel] = data }
        #expect(Set(after.keys) == Set(expected.keys), "files differ: \(Set(after.keys).symmetricDifference(expected.keys).sorted())")
        for (rel, data) in expected where after[rel] != data {
            Issue.record("\(rel) differs from golden/\(role)/\(rel):\n\(String(decoding: after[rel] ?? Data(), as: UTF8.self))")
        }
    }

    @Test func proxmoxHostApplyMatchesGoldenAndIsIdempotent() throws {
        let root = try Fixture.sandbox("host-root")
        let plan = try Fixture.provision(args("plan", host: "pve", root: root.path))
        #expect(plan.status == 0, "\(plan.stderr)")
        let planText = plan.stdout.replacingOccurrences(of: root.path, with: "ROOT")
        #expect(planText == Fixture.golden("plan-pve.txt", planText))
        #expect(Fixture.files(root.path) == Fixture.files(Fixture.dir + "/host-root"), "plan must not change files")

        let first = try Fixture.provision(args("apply", host: "pve", root: root.path))
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.hasSuffix("ok=0 changed=5 failed=0 pending=1\n"), "\(first.stdout)")
        checkTree(role: "pve", input: "host-root", result: root.path)

        // Unmanaged lines stay byte-identical and in order; the snapshot section is untouched.
        let fstabIn = Fixture.text(Fixture.dir + "/host-root/etc/fstab")
        let fstabOut = Fixture.text(root.sub("etc/fstab"))
        #expect(fstabOut.hasPrefix(fstabIn))
        let confIn = Fixture.text(Fixture.dir + "/host-root/etc/pve/lxc/101.conf")
        let confOut = Fixture.text(root.sub("etc/pve/lxc/101.conf"))
        let snapshot = confIn[confIn.range(of: "\n[before-upgrade]")!.lowerBound...]
        #expect(confOut.hasSuffix(snapshot))
        #expect(confOut.contains("mp0: local-lvm:vm-101-disk-1,mp=/srv/cache,size=32G\n"))   // other mp0 left alone
        #expect(confOut.contains("\nmp1: /mnt/storage,mp=/mnt/storage\n"))
        #expect(!Fixture.text(root.sub("etc/pve/lxc/106.conf")).contains("lxc.idmap"))   // hera: no storage
        // Backups hold the old content.
        let backups = Fixture.files(root.path, skipBackups: false).filter { $0.key.contains(".hs-backup-") }
        #expect(backups.count == 6)
        let fstabBackup = try #require(backups.first { $0.key.hasPrefix("etc/fstab.hs-backup-") })
        #expect(fstabBackup.value == Data(fstabIn.utf8))
        #expect(backups.keys.contains { $0.hasPrefix("var/backups/home-server/etc/pve/lxc/101.conf.hs-backup-") })
        var isDir: ObjCBool = false
        #expect(FileManager.default.fileExists(atPath: root.sub("mnt/storage"), isDirectory: &isDir) && isDir.boolValue)

        // Second apply: nothing changes, every file byte-identical, no new backups.
        let snapshotAll = Fixture.files(root.path, skipBackups: false)
        let second = try Fixture.provision(args("apply", host: "pve", root: root.path))
        #expect(second.status == 0)
        #expect(second.stdout.hasSuffix("ok=4 changed=0 failed=0 pending=2\n"), "\(second.stdout)")
        #expect(Fixture.files(root.path, skipBackups: false) == snapshotAll)
        let plan2 = try Fixture.provision(args("plan", host: "pve", root: root.path) + ["--json"])
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(plan2.stdout.utf8)) as? [String: Any])
        let steps = try #require(obj["steps"] as? [[String: Any]])
        #expect(steps.allSatisfy { ($0["diff"] as? String) == "" })
    }

    @Test func vmGuestApplyMatchesGoldenAndIsIdempotent() throws {
        let root = try Fixture.sandbox("guest-root")
        // common/.env of the guest's checkout (kept outside the tree: git ignores every .env).
        let commonEnv = "opt/stacks/home-server/common/.env"
        try FileManager.default.createDirectory(atPath: root.sub("opt/stacks/home-server/common"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Fixture.dir + "/apollo-common.env", toPath: root.sub(commonEnv))
        let plan = try Fixture.provision(args("plan", host: "apollo", root: root.path))
        #expect(plan.status == 0, "\(plan.stderr)")
        let planText = plan.stdout.replacingOccurrences(of: root.path, with: "ROOT")
        #expect(planText == Fixture.golden("plan-apollo.txt", planText))

        let first = try Fixture.provision(args("apply", host: "apollo", root: root.path))
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.hasSuffix("ok=0 changed=6 failed=0 pending=6\n"), "\(first.stdout)")
        checkTree(role: "apollo", input: "guest-root", result: root.path, removed: ["etc/apt/sources.list.d/docker.list"], added: [commonEnv])
        // The tools' configuration and root's crontab hold secrets: 0600 (the fixture's were
        // 0644), backups too, and not one secret of common/.env or the crontab was printed.
        for f in ["etc/default/home-server-tools", "var/spool/cron/crontabs/root"] {
            var st = stat()
            #expect(stat(root.sub(f), &st) == 0 && st.st_mode & 0o777 == 0o600, "\(f) mode \(String(st.st_mode & 0o777, radix: 8))")
        }
        for (rel, _) in Fixture.files(root.path, skipBackups: false) where rel.contains("home-server-tools.hs-backup-") || rel.contains("crontabs/root.hs-backup-") {
            var st = stat()
            #expect(stat(root.sub(rel), &st) == 0 && st.st_mode & 0o777 == 0o600, "\(rel)")
        }
        #expect(!(plan.stdout + plan.stderr + first.stdout + first.stderr).contains("FIXTURE"), "a secret was printed")
        // The legacy docker.list is gone from sources.list.d (apt would fail on the Signed-By
        // conflict) and kept as a backup outside it.
        #expect(!FileManager.default.fileExists(atPath: root.sub("etc/apt/sources.list.d/docker.list")))
        let all = Fixture.files(root.path, skipBackups: false)
        #expect(all.keys.contains { $0.hasPrefix("var/backups/home-server/etc/apt/sources.list.d/docker.list.hs-backup-") })
        #expect(!all.keys.contains { $0.hasPrefix("etc/apt/sources.list.d/") && $0.contains("hs-backup") })
        for d in ["opt/stacks", "opt/appdata", "opt/appdata/plex", "opt/appdata/jellyfin", "opt/appdata/tautulli"] {
            var st = stat()
            #expect(stat(root.sub(d), &st) == 0 && st.st_uid == 1000 && st.st_gid == 1000, "\(d)")
        }

        let second = try Fixture.provision(args("apply", host: "apollo", root: root.path))
        #expect(second.status == 0)
        #expect(second.stdout.hasSuffix("ok=3 changed=0 failed=0 pending=9\n"), "\(second.stdout)")
        #expect(Fixture.files(root.path, skipBackups: false) == all)
    }

    @Test func foreignStorageEntryFailsWithoutWriting() throws {
        let root = try Fixture.sandbox("host-root")
        let fstab = root.sub("etc/fstab")
        let old = Fixture.text(fstab) + "//nas/media /mnt/storage cifs credentials=/root/.smb 0 0\n"
        try old.write(toFile: fstab, atomically: true, encoding: .utf8)
        let r = try Fixture.provision(args("apply", host: "pve", root: root.path) + ["--only", "storage-mount"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("\(root.path)/etc/fstab:15 already mounts /mnt/storage outside the home-server block"))
        #expect(Fixture.text(fstab) == old)
        #expect(r.stdout.hasSuffix("ok=0 changed=0 failed=1 pending=0\n"))
    }

    @Test func symlinkedFileIsRefusedNotReplaced() throws {
        let root = try Fixture.sandbox("host-root")
        try FileManager.default.moveItem(atPath: root.sub("etc/subuid"), toPath: root.sub("etc/subuid.real"))
        try FileManager.default.createSymbolicLink(atPath: root.sub("etc/subuid"), withDestinationPath: "subuid.real")
        let r = try Fixture.provision(args("apply", host: "pve", root: root.path) + ["--only", "subids"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("\(root.path)/etc/subuid is a symbolic link"))
        let dest = try FileManager.default.destinationOfSymbolicLink(atPath: root.sub("etc/subuid"))
        #expect(dest == "subuid.real")
        #expect(Fixture.text(root.sub("etc/subuid.real")) == Fixture.text(Fixture.dir + "/host-root/etc/subuid"))
    }

    @Test func onlyMustMatchAStepOfTheHost() throws {
        let root = try Fixture.sandbox("guest-root")
        let r = try Fixture.provision(args("plan", host: "apollo", root: root.path) + ["--only", "lxc"])
        #expect(r.status == 2 && r.stderr.contains("no step of host 'apollo' matches --only lxc"))
    }

    @Test func withPctTheMountPointAndFeaturesArePctCommands() throws {
        let root = try Fixture.sandbox("host-root")
        let inv = try Inventory.load(path: Fixture.inventory)
        let ctx = ProvisionContext(inventory: inv, host: inv.host("pve")!, templatesDir: Fixture.templates,
                                   stacksDir: nil, usePct: true, probe: ["hs-linkcheck", "--require-mount"])
        let step = try #require(Steps.forHost(ctx).first { $0.name == "lxc:io" })
        let plan = try step.plan(Machine(mode: .root(root.path)))
        let commands = plan.actions.compactMap { a -> [String]? in if case .command(let c) = a { return c } else { return nil } }
        #expect(commands == [["pct", "set", "101", "-features", "fuse=1,nesting=1,keyctl=1"],
                             ["pct", "set", "101", "-mp1", "/mnt/storage,mp=/mnt/storage"]])
        guard case .writeFile(_, _, let new)? = plan.actions.first else { Issue.record("no file write first"); return }
        #expect(!new.contains("mp1:") && new.contains("features: fuse=1\n"))
        #expect(new.contains("unprivileged: 1\nlxc.cgroup2.devices.allow: c 10:200 rwm\n"))
    }

    @Test func missingContainerConfigFailsTheStepAndStops() throws {
        let root = try Fixture.sandbox("host-root")
        try FileManager.default.removeItem(atPath: root.sub("etc/pve/lxc/102.conf"))
        let r = try Fixture.provision(args("apply", host: "pve", root: root.path) + ["--only", "lxc"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("lxc:asteria: \(root.path)/etc/pve/lxc/102.conf does not exist: create container 102 (asteria) first"))
        #expect(r.stderr.contains("not run: lxc:hera"))
    }

    /// A directory that cannot be made (a file where a parent should be, a read-only
    /// filesystem) is named with the errno mkdir gave. FileManager made them: its CocoaError
    /// came out as "(null)UserInfo={NSFilePath=..., NSUnderlyingError=Not a directory}" and
    /// "The volume is read only.UserInfo={...}".
    @Test func directoryThatCannotBeMadeNamesTheRealCause() throws {
        let root = try Fixture.sandbox("host-root")
        let mnt = root.sub("mnt")
        try? FileManager.default.removeItem(atPath: mnt)
        try "x\n".write(toFile: mnt, atomically: false, encoding: .utf8)
        let file = try Fixture.provision(args("apply", host: "pve", root: root.path) + ["--only", "storage-mount"])
        #expect(file.status == 1, "\(file.stderr)")
        #expect(file.stderr.contains("storage-mount: cannot create directory \(mnt)/storage: mkdir \(mnt): Not a directory (errno \(ENOTDIR)); exists and is not a directory"),
                "\(file.stderr)")
        #expect(Fixture.text(mnt) == "x\n")

        try FileManager.default.removeItem(atPath: mnt)
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: false)
        let m = try Subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", mnt])
        try #require(m.succeeded, "mount tmpfs: \(m.stderr)")
        defer { _ = try? Subprocess.run(["umount", "-l", mnt]) }
        let ro = try Fixture.provision(args("apply", host: "pve", root: root.path) + ["--only", "storage-mount"])
        #expect(ro.status == 1, "\(ro.stderr)")
        #expect(ro.stderr.contains("storage-mount: cannot create directory \(mnt)/storage: mkdir \(mnt)/storage: Read-only file system (errno \(EROFS))"),
                "\(ro.stderr)")
        for r in [file, ro] {
            #expect(!r.stderr.contains("UserInfo") && !r.stderr.contains("NSUnderlyingError") && !r.stderr.contains("(null)"), "\(r.stderr)")
        }
    }
}
