import Foundation
import Storage
import Support
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Local lstat of a file behind the export (the server's view, independent of libnfs).
func localStat(_ path: String) throws -> Glibc.stat {
    var st = Glibc.stat()
    guard lstat(path, &st) == 0 else {
        throw ToolError("lstat \(path): \(String(cString: strerror(errno)))")
    }
    return st
}

/// Deterministic bytes that do not compress (xorshift64*).
func pseudoRandomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: count)
    var x = seed | 1
    out.withUnsafeMutableBytes { raw in
        let words = raw.count / 8
        let p = raw.baseAddress!.assumingMemoryBound(to: UInt64.self)
        for i in 0..<words {
            x ^= x >> 12; x ^= x << 25; x ^= x >> 27
            p[i] = x &* 2685821657736338717
        }
        for i in (words * 8)..<raw.count { raw[i] = UInt8(truncatingIfNeeded: i &* 31) }
    }
    return out
}

/// Expects `body` to throw an error of type `E` and returns it.
func caught<E: Error>(_ type: E.Type, _ body: () throws -> Void) -> E? {
    do { try body() } catch let e as E { return e } catch { return nil }
    return nil
}

/// An rclone destination at `fs` (`sftp:/...`, `local:/...`) with the test server's rclone config.
func rcloneDestination(_ fs: String, _ s: SSHServer) throws -> RcloneDestination {
    try RcloneDestination(try #require(RcloneRemote(fs: fs)), environment: s.environment)
}
