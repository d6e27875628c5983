import Foundation
import Testing
@testable import LinkCheck
import Support
import TestSupport

/// The nfs:// probe through libnfs against a real nfs-ganesha (started by the shared harness;
/// a missing server fails these tests).
@Suite struct NFSProbeTests {
    @Test func probeOverLibnfsIsOK() throws {
        let g = try GaneshaServer.shared()
        let name = try g.makeUniqueDirectory("lc")
        let local = g.exportPath + "/" + name
        try Fx.mkdirs(local + "/downloads", local + "/library")
        let (code, obj, r) = try Fx.runJSON([g.url(path: name)])
        #expect(code == 0, "\(r.stdout) \(r.stderr)")
        #expect(Fx.findings(obj).isEmpty, "\(Fx.findings(obj))")
        let probe = try #require(obj["probe"] as? [String: Any])
        #expect(probe["via"] as? String == "nfs")
        #expect(probe["ok"] as? Bool == true)
        #expect(probe["same_inode"] as? Bool == true)
        #expect(probe["link_count"] as? Int == 2)
        #expect(probe["cleaned_up"] as? Bool == true)
        // Nothing left on the server's disk.
        #expect(Fx.listing(local) == ["downloads", "library"])
        // Also with NFSv4 and other directory names.
        try Fx.mkdirs(local + "/dl", local + "/media/lib")
        let v4 = try Fx.run([g.url(path: name, version: 4), "--downloads", "dl", "--library", "media/lib"])
        #expect(v4.status == 0, "\(v4.stdout) \(v4.stderr)")
        #expect(v4.stdout.contains("hardlinks work between dl/ and media/lib/"))
    }

    @Test func missingDirectoryOverNFS() throws {
        let g = try GaneshaServer.shared()
        let name = try g.makeUniqueDirectory("lc-missing")
        try Fx.mkdirs(g.exportPath + "/" + name + "/downloads")
        let (code, obj, _) = try Fx.runJSON([g.url(path: name)])
        #expect(code == 1)
        #expect(Fx.codes(obj) == ["missing-directory"])
        #expect(Fx.has(Fx.findings(obj).first?["message"], "library directory library does not exist"))
        #expect(obj["probe"] == nil)
    }

    @Test func rootSquashedExportExplainsCannotWrite() throws {
        let g = try GaneshaServer.shared()
        // Root-owned 0755 directories on a root_squash export: root is squashed to nobody.
        let name = "lc-squash-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let local = g.rootSquashExportPath + "/" + name
        try Fx.mkdirs(local + "/downloads", local + "/library")
        for d in [local, local + "/downloads", local + "/library"] { chmod(d, 0o755) }
        defer { try? FileManager.default.removeItem(atPath: local) }
        let (code, obj, r) = try Fx.runJSON([g.url(path: name, export: .rootSquash)])
        #expect(code == 1, "\(r.stdout) \(r.stderr)")
        let f = try #require(Fx.findings(obj).first { $0["code"] as? String == "cannot-write" }, "\(Fx.findings(obj))")
        #expect(Fx.has(f["message"], "as uid 0 gid 0"))
        #expect(Fx.has(f["message"], "uid 0 gid 0 mode 755"))
        #expect(Fx.has(f["fix"], "root_squash"))
        #expect(Fx.listing(local + "/downloads").isEmpty)
    }

    @Test func unreachableServerIsAnError() throws {
        // A port nothing listens on.
        let (code, obj, _) = try Fx.runJSON(["nfs://127.0.0.1/nowhere?version=3&nfsport=1&mountport=1"])
        #expect(code == 1)
        #expect(Fx.codes(obj) == ["nfs"])
        #expect(Fx.has(Fx.findings(obj).first?["message"], "cannot mount"))
        // --audit needs a mounted path.
        #expect(try Fx.run(["nfs://127.0.0.1/x", "--audit"]).status == 2)
    }
}
