#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Support

package struct ReclaimSkip: Codable, Sendable, Equatable {
    package var library: String
    package var reason: String
}

package struct ReclaimReport: Codable, Sendable {
    /// false: only the plan was shown (no --yes).
    package var applied = false
    package var planned: [CopyPair] = []
    package var reclaimed = 0
    package var bytesReclaimed: UInt64 = 0
    package var skipped: [ReclaimSkip] = []
    /// Temporary links from an interrupted earlier run that were removed.
    package var leftoversRemoved: [String] = []
}

/// Replaces library copies with hardlinks to the identical downloads file.
///
/// For each pair: open both, compare byte for byte, `link(downloads, lib/.NAME.hs-reclaim-tmp)`,
/// check the library file is unchanged (inode, size, mtime, ctime) since the comparison and the
/// temporary link is the compared downloads inode, then `rename(tmp, libraryFile)`.
/// Guarantees: at every instant the library path names either its original file or a file
/// with identical bytes; downloads files are never written; a kill at any point leaves at most a
/// temporary link, removed by the next run. Not guaranteed: the library path keeps its own
/// owner, mode and mtime (it takes the downloads file's, as any hardlink does).
package struct Reclaimer {
    package static let tmpSuffix = ".hs-reclaim-tmp"

    /// Test hook: `HS_LINKCHECK_TEST_KILL_AFTER_LINKS=N` SIGKILLs the process right after the
    /// N-th temporary link is made (before its rename), to test interrupted runs for real.
    let killAfterLinks: Int? = ProcessInfo.processInfo.environment["HS_LINKCHECK_TEST_KILL_AFTER_LINKS"].flatMap(Int.init)

    package init() {}

    /// The temporary name for a library file: `dir/.NAME.hs-reclaim-tmp`.
    package static func tmpPath(for libraryFile: String) -> String {
        let slash = libraryFile.lastIndex(of: "/")
        let dir = slash.map { String(libraryFile[..<$0]) } ?? "."
        let name = slash.map { String(libraryFile[libraryFile.index(after: $0)...]) } ?? libraryFile
        return dir + "/." + name + tmpSuffix
    }

    /// Removes temporary links left by an interrupted run. They are extra names of downloads
    /// files (the library file was never replaced, or already was), so removing them loses nothing.
    /// Should one ever be the last name of its file (downloads and library both deleted since),
    /// it is renamed back to the library name instead of removed.
    package func removeLeftovers(_ paths: [String], into report: inout ReclaimReport) {
        for p in paths {
            guard let st = (try? Sys.lstat(p)) ?? nil, st.isRegular, let original = Self.originalPath(forTmp: p) else { continue }
            let originalExists = ((try? Sys.lstat(original)) ?? nil) != nil
            if st.nlink > 1 || originalExists {
                if (try? Sys.unlink(p)) != nil { report.leftoversRemoved.append(p) }
            } else if (try? Sys.rename(p, original)) != nil {
                report.leftoversRemoved.append(p + " (restored as \(original))")
            }
        }
    }

    /// `dir/.NAME.hs-reclaim-tmp` -> `dir/NAME`.
    package static func originalPath(forTmp tmp: String) -> String? {
        let slash = tmp.lastIndex(of: "/")
        let dir = slash.map { String(tmp[..<$0]) } ?? "."
        let name = slash.map { String(tmp[tmp.index(after: $0)...]) } ?? tmp
        guard name.hasPrefix("."), name.hasSuffix(tmpSuffix), name.count > tmpSuffix.count + 1 else { return nil }
        return dir + "/" + String(name.dropFirst().dropLast(tmpSuffix.count))
    }

    /// Reclaims every pair; `progress` gets status lines.
    package func apply(_ pairs: [CopyPair], into report: inout ReclaimReport, progress: (String) -> Void = { _ in }) {
        report.applied = true
        var links = 0
        var a = [UInt8](repeating: 0, count: 1 << 20)
        var b = [UInt8](repeating: 0, count: 1 << 20)
        for (i, p) in pairs.enumerated() {
            progress("reclaim \(i + 1)/\(pairs.count): \(NameEscape.escape(p.library))")
            do {
                if let reason = try reclaimOne(p, bufA: &a, bufB: &b, onLinked: {
                    links += 1
                    if let k = killAfterLinks, links >= k { Sys.killSelf() }
                }) {
                    report.skipped.append(ReclaimSkip(library: p.library, reason: reason))
                } else {
                    report.reclaimed += 1
                    report.bytesReclaimed += p.size
                }
            } catch {
                report.skipped.append(ReclaimSkip(library: p.library, reason: NameEscape.escape("\(error)")))   // its path as it is
            }
        }
    }

    /// One pair. Returns nil when replaced, or why it was left alone.
    func reclaimOne(_ p: CopyPair, bufA: inout [UInt8], bufB: inout [UInt8], onLinked: () -> Void) throws -> String? {
        let libFd = try Sys.openRead(p.library)
        defer { Sys.close(libFd) }
        let dlFd = try Sys.openRead(p.downloads)
        defer { Sys.close(dlFd) }
        let libSt = try Sys.fstat(libFd, path: p.library)
        let dlSt = try Sys.fstat(dlFd, path: p.downloads)
        guard libSt.isRegular, dlSt.isRegular else { return "not a regular file any more" }
        if libSt.dev == dlSt.dev && libSt.ino == dlSt.ino { return "already the same file" }
        guard libSt.nlink == 1 else { return "library file has \(libSt.nlink) links now (already linked elsewhere)" }
        guard libSt.size == dlSt.size, libSt.size == p.size else { return "sizes differ now" }
        guard libSt.dev == dlSt.dev else { return "downloads and library are on different filesystems: hardlinks impossible" }
        // The path must still name the file we opened.
        guard let pathSt = try Sys.lstat(p.library), pathSt.sameUnchangedFile(as: libSt) else {
            return "library file changed while it was being checked"
        }
        // Byte-for-byte comparison.
        var offset: UInt64 = 0
        while true {
            let n1 = try bufA.withUnsafeMutableBytes { try Sys.readFull(libFd, into: $0, path: p.library) }
            let n2 = try bufB.withUnsafeMutableBytes { try Sys.readFull(dlFd, into: $0, path: p.downloads) }
            if n1 != n2 { return "contents differ (length at offset \(offset))" }
            if n1 == 0 { break }
            let same = bufA.withUnsafeBytes { x in bufB.withUnsafeBytes { y in memcmp(x.baseAddress!, y.baseAddress!, n1) == 0 } }
            if !same { return "contents differ near offset \(offset)" }
            offset += UInt64(n1)
        }
        guard offset == libSt.size else { return "file size changed during the comparison" }

        let tmp = Self.tmpPath(for: p.library)
        try Sys.unlink(tmp)  // a leftover from an interrupted run
        try Sys.link(p.downloads, tmp)
        onLinked()
        var keepTmp = false
        defer { if !keepTmp { try? Sys.unlink(tmp) } }
        // Nothing may have changed since the comparison.
        guard let nowLib = try Sys.lstat(p.library), nowLib.sameUnchangedFile(as: libSt),
              try Sys.fstat(libFd, path: p.library).sameUnchangedFile(as: libSt) else {
            return "library file changed during the comparison"
        }
        guard let tmpSt = try Sys.lstat(tmp), tmpSt.dev == dlSt.dev, tmpSt.ino == dlSt.ino,
              try Sys.fstat(dlFd, path: p.downloads).mtime == dlSt.mtime else {
            return "downloads file was replaced or changed during the comparison"
        }
        try Sys.rename(tmp, p.library)
        keepTmp = true  // renamed: nothing left to remove
        let dir = p.library.lastIndex(of: "/").map { String(p.library[..<$0]) } ?? "."
        Sys.syncDirectory(dir)
        return nil
    }
}
