import Testing
@testable import NFS

@Suite struct NFSURLTests {
    @Test func parsesServerPathAndArguments() throws {
        let u = try NFSURL("nfs://nas.lan/mnt/tank/backups/io?version=3&nfsport=2049&mountport=20048&uid=1000&gid=1000")
        #expect(u.server == "nas.lan")
        #expect(u.components == ["mnt", "tank", "backups", "io"])
        #expect(u.path == "/mnt/tank/backups/io")
        #expect(u.argument("nfsport") == "2049")
        #expect(u.argument("uid") == "1000")
        #expect(u.version == 3)
        #expect(u.appending("a/b").path == "/mnt/tank/backups/io/a/b")
        #expect(u.appending("a/b").argument("mountport") == "20048")
    }

    @Test func displayDropsCredentials() throws {
        let u = try NFSURL("nfs://admin:secret@nas.lan/export?version=3")
        #expect(u.server == "nas.lan")
        #expect(!u.displayString.contains("secret"))
        #expect(u.displayString == "nfs://nas.lan/export?version=3")
    }

    @Test(arguments: ["http://x/y", "nfs://", "nfs:///export", "nfs://server", "nfs://server/", "nfs://s/e?nfsport=abc", "nfs://s/e?version=2"])
    func rejectsBadURLs(_ s: String) {
        #expect(throws: NFSError.self) { try NFSURL(s) }
        do { _ = try NFSURL(s) } catch let e as NFSError {
            #expect(e.kind == .invalidURL)
            #expect(e.description.contains("nfs://SERVER/EXPORT"))
        } catch { Issue.record("unexpected \(error)") }
    }
}
