import Foundation
import Testing
import TestSupport
@testable import NFS

/// The server going away under a running writer (each test has its own ganesha).
@Suite struct NFSServerFailureTests {
    @Test func killedServerFailsWritesQuicklyAndClearly() throws {
        let g = try GaneshaServer()
        let c = try NFSClient(url: g.url())
        let f = try c.create("big")
        let chunk = pseudoRandomBytes(4 << 20, seed: 3)
        try f.write(chunk)
        try f.sync()
        g.kill()
        let start = Date()
        let e = caught(NFSError.self) {
            for _ in 0..<8 { try f.write(chunk) }
            try f.sync()
        }
        #expect(Date().timeIntervalSince(start) < 60)
        let err = try #require(e, "writing to a killed server must fail")
        #expect(err.kind == .disconnected)
        #expect(err.description.contains("server is up"))
        // Later calls on the same client fail too, instead of hanging.
        #expect(caught(NFSError.self) { _ = try c.stat("big") } != nil)
        #expect(caught(NFSError.self) { try f.close() } != nil)
    }

    @Test func restartedServerLetsWritesContinue() throws {
        let g = try GaneshaServer()
        let c = try NFSClient(url: g.url())
        let f = try c.create("big")
        let chunks = (0..<5).map { pseudoRandomBytes(4 << 20, seed: UInt64($0 + 10)) }
        try f.write(chunks[0])
        try f.sync()
        g.kill()
        try g.restart()
        // NFSv3 is stateless: libnfs reconnects and the file handle is still valid.
        for chunk in chunks.dropFirst() { try f.write(chunk) }
        try f.sync()
        try f.close()
        let onDisk = try Data(contentsOf: URL(fileURLWithPath: g.exportPath + "/big"))
        #expect(onDisk == Data(chunks.reduce(into: [UInt8]()) { $0 += $1 }))
    }
}
