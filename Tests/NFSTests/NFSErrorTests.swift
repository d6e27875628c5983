import Foundation
import Support
import Testing
import TestSupport
@testable import NFS
@testable import Storage

#if canImport(Glibc)
import Glibc
#endif

/// The failures users meet first: wrong export, server down, no permission.
@Suite struct NFSErrorTests {
    @Test func missingExport() throws {
        let g = try GaneshaServer.shared()
        let url = "nfs://127.0.0.1/no/such/export?version=3&nfsport=\(g.nfsPort)&mountport=\(g.mountPort)"
        let e = try #require(caught(NFSError.self) { _ = try NFSClient(url: url) })
        #expect(e.kind == .exportNotFound)
        #expect(e.call == "nfs_mount")
        #expect(e.location.contains("nfs://127.0.0.1/no/such/export"))
        #expect(e.errno == EACCES)  // ganesha answers MNT3ERR_ACCES for an unknown path
        #expect(e.detail.contains("MNT3ERR"))
        #expect(e.description.contains("export not found"))
        #expect(e.description.contains("showmount -e"))

    }

    @Test func connectionRefused() throws {
        // A port nobody listens on: bind one, remember it, close it.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        let port = UInt16(bigEndian: addr.sin_port)
        close(fd)
        let url = "nfs://127.0.0.1/export?nfsport=\(port)&mountport=\(port)"
        let start = Date()
        let e = try #require(caught(NFSError.self) { _ = try NFSClient(url: url) })
        #expect(Date().timeIntervalSince(start) < 30)
        #expect(e.kind == .connectionRefused)
        #expect(e.errno == ECONNREFUSED)
        #expect(e.description.contains("nfsport=\(port)"))
        #expect(e.description.contains("server is running"))
    }

    @Test func unknownHost() throws {
        let e = try #require(caught(NFSError.self) { _ = try NFSClient(url: "nfs://no-such-host.invalid/export") })
        #expect(e.kind == .hostUnreachable)
        #expect(e.description.contains("no-such-host.invalid"))
    }

    @Test func rootSquashedExportDeniesRoot() throws {
        let g = try GaneshaServer.shared()
        let c = try NFSClient(url: g.url(export: .rootSquash))
        let e = try #require(caught(NFSError.self) { _ = try c.create("not-allowed") })
        #expect(e.kind == .permissionDenied)
        #expect(e.call == "nfs_create")
        #expect(e.errno == EACCES)
        #expect(e.description.contains("root squash"))
        #expect(!FileManager.default.fileExists(atPath: g.rootSquashExportPath + "/not-allowed"))
        // Through the Destination too.
        let d = try NFSDestination(url: g.url(path: "sub", export: .rootSquash))
        #expect(caught(NFSError.self) { try d.makeDirectories("") }?.kind == .permissionDenied)
    }

    @Test func unprivilegedUidInRootOwnedDirectory() throws {
        let g = try GaneshaServer.shared()
        let dir = try g.makeUniqueDirectory("perm")
        let locked = g.exportPath + "/" + dir + "/locked"
        #expect(mkdir(locked, 0o755) == 0)
        let c = try NFSClient(url: g.url(path: dir, extra: [("uid", "1000"), ("gid", "1000")]))
        let e = try #require(caught(NFSError.self) { _ = try c.create("locked/file") })
        #expect(e.kind == .permissionDenied)
        #expect(e.location.contains("locked/file"))
        #expect(caught(NFSError.self) { try c.makeDirectories("locked/sub") }?.kind == .permissionDenied)
    }

    @Test func readOnlyExport() throws {
        let g = try GaneshaServer.shared()
        let c = try NFSClient(url: g.url(export: .readOnly))
        #expect(try c.readDirectory("").map(\.name).contains("README"))
        let e = try #require(caught(NFSError.self) { _ = try c.create("x") })
        #expect(e.kind == .readOnly)
        #expect(e.errno == EROFS)
        #expect(e.description.contains("read-only"))
    }

    @Test func badURLIsAUsageError() throws {
        let e = try #require(caught(ToolError.self) { _ = try openDestination("nfs://server-only") })
        #expect(e.exitCode == 2)
        #expect(e.message.contains("export path is missing"))
    }
}
