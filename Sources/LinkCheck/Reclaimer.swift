#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Support

package struct ReclaimSkip: Encodable, Sendable, Equatable {
    package var library: MediaPath
    package var reason: String
}

package struct ReclaimReport: Encodable, Sendable {
    /// false: only the plan was shown (no --yes).
    package var applied = false
    package var planned: [CopyPair] = []
    package var reclaimed = 0
    package var bytesReclaimed: UInt64 = 0
    package var skipped: [ReclaimSkip] = []
    /// Temporary links from an interrupted earlier run that were removed (the path, with
    /// " (restored as PATH)" appended for one renamed back).
    package var leftoversRemoved: [MediaPath] = []
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
    package static func tmpPath(for libraryFile: MediaPath) -> MediaPath {
        let (dir, name) = libraryFile.parentAndName
        return MediaPath(dir + [0x2F, 0x2E] + name + tmpSuffix.utf8)
    }

    /// Removes temporary links left by an interrupted run. They are extra names of downloads
    /// files (the library file was never replaced, or already was), so removing them loses nothing.
    /// Should one ever be the last name of its file (downloads and library both deleted since),
    /// it is renamed back to the library name instead of removed.
    package func removeLeftovers(_ paths: [MediaPath], into report: inout ReclaimReport) {
        for p in paths {
            guard let st = (try? p.lstat()) ?? nil, st.isRegular, let original = Self.originalPath(forTmp: p) else { continue }
            let originalExists = ((try? original.lstat()) ?? nil) != nil
            if st.nlink > 1 || originalExists {
                if (try? p.unlink()) != nil { report.leftoversRemoved.append(p) }
            } else if (try? p.rename(to: original)) != nil {
                report.leftoversRemoved.append(MediaPath(p.bytes + " (restored as ".utf8 + original.bytes + ")".utf8))
            }
        }
    }

    /// `dir/.NAME.hs-reclaim-tmp` -> `dir/NAME`.
    package static func originalPath(forTmp tmp: MediaPath) -> MediaPath? {
        let (dir, name) = tmp.parentAndName
        let n = tmpSuffix.utf8.count
        guard name.first == 0x2E, name.count > n + 1, name.suffix(n).elementsEqual(tmpSuffix.utf8) else { return nil }
        return MediaPath(dir + [0x2F] + name.dropFirst().dropLast(n))
    }

    /// Reclaims every pair; `progress` gets status lines.
    package func apply(_ pairs: [CopyPair], into report: inout ReclaimReport, progress: (String) -> Void = { _ in }) {
        report.applied = true
        var links = 0
        var a = [UInt8](repeating: 0, count: 1 << 20)
        var b = [UInt8](repeating: 0, count: 1 << 20)
        for (i, p) in pairs.enumerated() {
            progress("reclaim \(i + 1)/\(pairs.count): \(p.library.shown)")
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
                report.skipped.append(ReclaimSkip(library: p.library, reason: "\(error)"))   // a SysError: names already escaped
            }
        }
    }

    /// One pair. Returns nil when replaced, or why it was left alone.
    func reclaimOne(_ p: CopyPair, bufA: inout [UInt8], bufB: inout [UInt8], onLinked: () -> Void) throws -> String? {
        let libFd = try p.library.openRead()
        defer { Sys.close(libFd) }
        let dlFd = try p.downloads.openRead()
        defer { Sys.close(dlFd) }
        let libSt = try Sys.fstat(libFd, shown: p.library.shown)
        let dlSt = try Sys.fstat(dlFd, shown: p.downloads.shown)
        guard libSt.isRegular, dlSt.isRegular else { return "not a regular file any more" }
        if libSt.dev == dlSt.dev && libSt.ino == dlSt.ino { return "already the same file" }
        guard libSt.nlink == 1 else { return "library file has \(libSt.nlink) links now (already linked elsewhere)" }
        guard libSt.size == dlSt.size, libSt.size == p.size else { return "sizes differ now" }
        guard libSt.dev == dlSt.dev else { return "downloads and library are on different filesystems: hardlinks impossible" }
        // The path must still name the file we opened.
        guard let pathSt = try p.library.lstat(), pathSt.sameUnchangedFile(as: libSt) else {
            return "library file changed while it was being checked"
        }
        // Byte-for-byte comparison.
        var offset: UInt64 = 0
        while true {
            let n1 = try bufA.withUnsafeMutableBytes { try Sys.readFull(libFd, into: $0, shown: p.library.shown) }
            let n2 = try bufB.withUnsafeMutableBytes { try Sys.readFull(dlFd, into: $0, shown: p.downloads.shown) }
            if n1 != n2 { return "contents differ (length at offset \(offset))" }
            if n1 == 0 { break }
            let same = bufA.withUnsafeBytes { x in bufB.withUnsafeBytes { y in memcmp(x.baseAddress!, y.baseAddress!, n1) == 0 } }
            if !same { return "contents differ near offset \(offset)" }
            offset += UInt64(n1)
        }
        guard offset == libSt.size else { return "file size changed during the comparison" }

        let tmp = Self.tmpPath(for: p.library)
        try tmp.unlink()  // a leftover from an interrupted run
        try p.downloads.link(as: tmp)
        onLinked()
        var keepTmp = false
        defer { if !keepTmp { try? tmp.unlink() } }
        // Nothing may have changed since the comparison.
        guard let nowLib = try p.library.lstat(), nowLib.sameUnchangedFile(as: libSt),
              try Sys.fstat(libFd, shown: p.library.shown).sameUnchangedFile(as: libSt) else {
            return "library file changed during the comparison"
        }
        guard let tmpSt = try tmp.lstat(), tmpSt.dev == dlSt.dev, tmpSt.ino == dlSt.ino,
              try Sys.fstat(dlFd, shown: p.downloads.shown).mtime == dlSt.mtime else {
            return "downloads file was replaced or changed during the comparison"
        }
        try tmp.rename(to: p.library)
        keepTmp = true  // renamed: nothing left to remove
        MediaPath(p.library.parentAndName.parent).syncDirectory()
        return nil
    }
}
