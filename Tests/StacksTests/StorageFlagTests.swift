// hs-deploy --storage PATH that the compose file does not mount (issue 14): the guard must not
// be skipped silently for the storage the stack really mounts.
import Foundation
import Stacks
import Support
import TestSupport
import Testing

@Suite struct StorageFlagTests {
    @Test("--storage naming a path the stack does not mount, while it mounts /mnt/storage, is refused")
    func mismatchedStoragePath() throws {
        let repo = try FilledRepo()
        let r = try repo.deploy(["--check", "asteria", "--storage", "/mnt/other"])
        #expect(r.status == 1, "\(describe(r))")
        let out = r.stdout + r.stderr
        #expect(out.contains("/mnt/storage") && out.contains("--storage /mnt/other"), "\(describe(r))")
        // The default, and a stack that mounts no storage, are fine.
        let ok = try repo.deploy(["--check", "asteria"])
        #expect(ok.status == 0, "\(describe(ok))")
        let atlas = try repo.deploy(["--check", "atlas", "--storage", "/mnt/other"])
        #expect(atlas.status == 0, "\(describe(atlas))")
    }
}
