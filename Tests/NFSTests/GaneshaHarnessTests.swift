import Foundation
import Support
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

@Suite struct GaneshaHarnessTests {
    @Test func sharedServerAnswersAnIndependentClient() throws {
        let g = try GaneshaServer.shared()
        #expect(try GaneshaServer.shared() === g)
        let dir = try g.makeUniqueDirectory("harness")
        try "hello\n".write(toFile: g.exportPath + "/" + dir + "/hello.txt", atomically: false, encoding: .utf8)
        let url = g.url(path: dir)
        #expect(url.contains("nfsport=\(g.nfsPort)"))
        #expect(url.contains("mountport=\(g.mountPort)"))
        #expect(url.contains("version=3"))
        let r = try Subprocess.run(["nfs-ls", url])
        #expect(r.succeeded, "\(r.stderr)")
        #expect(r.stdout.contains("hello.txt"))
        // NFSv4 reaches the same directory through the pseudo path.
        let v4 = g.url(path: dir, version: 4)
        #expect(v4.hasPrefix("nfs://127.0.0.1/export/\(dir)?version=4"))
        let r4 = try Subprocess.run(["nfs-ls", v4])
        #expect(r4.succeeded && r4.stdout.contains("hello.txt"), "\(r4.stderr)")
    }

    @Test func killRestartAndStopByPid() throws {
        let g = try GaneshaServer()
        let pid = try #require(g.processID)
        let base = g.baseDirectory
        try "kept\n".write(toFile: g.exportPath + "/kept.txt", atomically: false, encoding: .utf8)
        let url = g.url()
        #expect(try Subprocess.run(["nfs-ls", url]).succeeded)

        g.kill()
        #expect(g.processID == nil)
        #expect(kill(pid, 0) != 0 || (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8))?.contains(") Z") == true)
        let down = try Subprocess.run(["nfs-ls", url])
        #expect(!down.succeeded)

        try g.restart()
        let newPid = try #require(g.processID)
        #expect(newPid != pid)
        #expect(g.url() == url, "restart keeps the ports, so old URLs stay valid")
        let up = try Subprocess.run(["nfs-ls", url])
        #expect(up.succeeded, "\(up.stderr)")
        #expect(up.stdout.contains("kept.txt"))

        g.stop()
        #expect(g.processID == nil)
        #expect(!(try Subprocess.run(["nfs-ls", url]).succeeded))
        #expect(FileManager.default.fileExists(atPath: base))
    }

    @Test func twoServersRunSideBySide() throws {
        let a = try GaneshaServer()
        let b = try GaneshaServer()
        #expect(a.nfsPort != b.nfsPort)
        try "a\n".write(toFile: a.exportPath + "/only-in-a", atomically: false, encoding: .utf8)
        let ra = try Subprocess.run(["nfs-ls", a.url()])
        let rb = try Subprocess.run(["nfs-ls", b.url()])
        #expect(ra.succeeded && ra.stdout.contains("only-in-a"))
        #expect(rb.succeeded && !rb.stdout.contains("only-in-a"))
    }
}
