import Foundation
import Testing
import TestSupport
@testable import NFS
@testable import Storage

/// One contract, run against every Destination kind: a local directory and an NFS export on
/// nfs-ganesha (restic's backend test pattern). `local` is where the files must appear.
func exerciseDestination(_ d: any Destination, local: String) throws {
    try d.makeDirectories("")
    try d.makeDirectories("set/a/b")
    try d.makeDirectories("set/a/b")
    #expect(try d.stat("set/a")?.kind == .directory)
    #expect(try d.stat("missing") == nil)
    #expect(try d.stat("missing/deeper") == nil)

    // writeAtomically + readAll, checked on disk.
    let payload = pseudoRandomBytes(2_500_000, seed: 99)
    try d.writeAtomically("set/a/manifest", contents: payload)
    #expect(try d.readAll("set/a/manifest") == payload)
    #expect(try Data(contentsOf: URL(fileURLWithPath: local + "/set/a/manifest")) == Data(payload))
    #expect(try d.list("set/a").map(\.name) == ["b", "manifest"], "no temp file left behind")
    let st = try #require(try d.stat("set/a/manifest"))
    #expect(st.kind == .file && st.size == UInt64(payload.count) && st.name == "manifest")
    #expect(abs(st.mtime - Int64(Date().timeIntervalSince1970)) < 120)

    // A streamed writer, then ranged reads.
    let w = try d.create("set/archive.partial")
    for i in 0..<10 { try w.write(Array(payload[(i * 250_000)..<((i + 1) * 250_000)])) }
    try w.sync()
    try w.close()
    try w.close()
    let r = try d.open("set/archive.partial")
    #expect(r.size == UInt64(payload.count))
    #expect(try r.read(at: 1_000_000, count: 10) == Array(payload[1_000_000..<1_000_010]))
    #expect(try r.read(at: UInt64(payload.count) - 5, count: 100) == Array(payload.suffix(5)))
    #expect(try r.read(at: UInt64(payload.count), count: 100) == [])
    try r.close()

    // rename replaces; remove tolerates missing files.
    try d.writeAtomically("set/archive", contents: [1, 2, 3])
    try d.rename("set/archive.partial", to: "set/archive")
    #expect(try d.stat("set/archive")?.size == UInt64(payload.count))
    #expect(try d.stat("set/archive.partial") == nil)
    try d.syncDirectory("set")
    try d.remove("set/archive")
    try d.remove("set/archive")
    #expect(try d.stat("set/archive") == nil)

    // createExclusive: a lock only one caller gets.
    #expect(try d.createExclusive("set/lock", contents: Array("host-a\n".utf8)) == true)
    #expect(try d.createExclusive("set/lock", contents: Array("host-b\n".utf8)) == false)
    #expect(try String(contentsOfFile: local + "/set/lock", encoding: .utf8) == "host-a\n")

    // list: sorted, with kinds; missing directories throw.
    let names = try d.list("set").map(\.name)
    #expect(names == ["a", "lock"])
    #expect(try d.list("set").first?.kind == .directory)
    #expect(throws: (any Error).self) { _ = try d.list("nope") }
    #expect(throws: (any Error).self) { _ = try d.open("nope") }

    // removeDirectory: empty only.
    #expect(throws: (any Error).self) { try d.removeDirectory("set/a") }
    try d.removeDirectory("set/a/b")
    #expect(try d.stat("set/a/b") == nil)
}

@Suite struct DestinationContractTests {
    @Test func localDirectory() throws {
        let tmp = try TempDir("dest-local")
        try exerciseDestination(LocalDestination(root: tmp.sub("root")), local: tmp.sub("root"))
    }

    @Test func nfsExport() throws {
        let g = try GaneshaServer.shared()
        let dir = try g.makeUniqueDirectory("dest")
        // The URL's directory does not exist yet: makeDirectories("") creates it.
        let d = try NFSDestination(url: g.url(path: dir + "/backups"))
        try exerciseDestination(d, local: g.exportPath + "/" + dir + "/backups")
    }

    @Test func openDestinationParsesNfsURLs() throws {
        let g = try GaneshaServer.shared()
        let dir = try g.makeUniqueDirectory("open")
        let url = g.url(path: dir)
        let d = try openDestination(url)
        #expect(d is NFSDestination)
        #expect(d.displayName == url)
        try d.writeAtomically("x", contents: [42])
        #expect(try Data(contentsOf: URL(fileURLWithPath: g.exportPath + "/" + dir + "/x")) == Data([42]))
        #expect(try openDestination("/tmp/somewhere") is LocalDestination)
        // A credential-looking part never reaches the display name.
        let withUser = url.replacingOccurrences(of: "nfs://", with: "nfs://backup:hunter2@")
        #expect(!(try openDestination(withUser).displayName.contains("hunter2")))
    }
}

/// The contract over rclone: the local backend and the sftp backend against a real sshd.
@Suite struct RcloneDestinationContractTests {
    @Test func rcloneLocalBackend() throws {
        let s = try SSHServer.shared()
        let dir = try s.makeUniqueDirectory("contract-local")
        let d = try rcloneDestination(s.localRemote(dir + "/backups"), s)
        try exerciseDestination(d, local: s.local(dir + "/backups"))
        #expect(d.hashTypes.contains("sha256"))
        #expect(!d.exclusiveCreateIsAtomic)
    }

    @Test func rcloneSFTPBackend() throws {
        let s = try SSHServer.shared()
        let dir = try s.makeUniqueDirectory("contract-sftp")
        let d = try rcloneDestination(s.remote(dir + "/backups"), s)
        try exerciseDestination(d, local: s.local(dir + "/backups"))
        #expect(d.hashTypes.contains("md5") && !d.hashTypes.contains("sha256"), "rclone 1.60's sftp backend: MD5 and SHA-1 only")
    }
}
