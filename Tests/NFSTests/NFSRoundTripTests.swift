import Foundation
import Support
import Testing
import TestSupport
@testable import NFS

/// 100 MB through the NFS module, checked by an independent client (nfs-cp from libnfs-utils)
/// against a real server (nfs-ganesha).
@Suite struct NFSRoundTripTests {
    static let size = 100 * 1024 * 1024

    @Test func moduleWritesNfsCpReadsBack() throws {
        let g = try GaneshaServer.shared()
        let dir = try g.makeUniqueDirectory("rt-write")
        let tmp = try TempDir("nfs-rt")
        let source = tmp.sub("source.bin")
        try Subprocess.checked(["sh", "-c", "head -c \(Self.size) /dev/urandom > '\(source)'"])
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: source)))
        #expect(bytes.count == Self.size)

        let client = try NFSClient(url: g.url(path: dir))
        let start = Date()
        let file = try client.create("big.bin")
        let slice = 4 << 20
        try bytes.withUnsafeBytes { all in
            var off = 0
            while off < all.count {
                let n = min(slice, all.count - off)
                try file.write(UnsafeRawBufferPointer(rebasing: all[off..<(off + n)]))
                off += n
            }
        }
        try file.sync()
        try file.close()
        let elapsed = Date().timeIntervalSince(start)
        print("NFS module wrote \(Self.size >> 20) MiB in \(String(format: "%.2f", elapsed)) s")

        #expect(try client.stat("big.bin").size == UInt64(Self.size))
        let copy = tmp.sub("copy.bin")
        let cp = try Subprocess.run(["nfs-cp", g.url(path: dir + "/big.bin"), copy])
        #expect(cp.succeeded, "\(cp.stderr)")
        let cmp = try Subprocess.run(["cmp", source, copy])
        #expect(cmp.succeeded, "nfs-cp read back different bytes: \(cmp.stdout)\(cmp.stderr)")
        // The server's file itself too.
        let onServer = try Subprocess.run(["cmp", source, g.exportPath + "/" + dir + "/big.bin"])
        #expect(onServer.succeeded, "\(onServer.stdout)")
    }

    @Test func nfsCpWritesModuleReadsBack() throws {
        let g = try GaneshaServer.shared()
        let dir = try g.makeUniqueDirectory("rt-read")
        let tmp = try TempDir("nfs-rt")
        let source = tmp.sub("source.bin")
        try Subprocess.checked(["sh", "-c", "head -c \(Self.size) /dev/urandom > '\(source)'"])
        let cp = try Subprocess.run(["nfs-cp", source, g.url(path: dir + "/from-nfs-cp.bin")])
        #expect(cp.succeeded, "\(cp.stderr)")

        let client = try NFSClient(url: g.url(path: dir))
        let file = try client.open("from-nfs-cp.bin")
        #expect(try file.stat().size == UInt64(Self.size))
        try Data().write(to: URL(fileURLWithPath: tmp.sub("back.bin")))
        let out = try #require(FileHandle(forWritingAtPath: tmp.sub("back.bin")))
        let start = Date()
        var offset: UInt64 = 0
        var buffer = [UInt8](repeating: 0, count: 4 << 20)
        while true {
            let n = try buffer.withUnsafeMutableBytes { try file.read(into: $0, at: offset) }
            if n == 0 { break }
            out.write(Data(buffer[0..<n]))
            offset += UInt64(n)
        }
        try out.close()
        try file.close()
        print("NFS module read \(Self.size >> 20) MiB in \(String(format: "%.2f", Date().timeIntervalSince(start))) s")
        #expect(offset == UInt64(Self.size))
        let cmp = try Subprocess.run(["cmp", source, tmp.sub("back.bin")])
        #expect(cmp.succeeded, "module read different bytes: \(cmp.stdout)\(cmp.stderr)")
    }
}
