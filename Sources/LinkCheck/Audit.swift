#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Support

/// A library file that is a separate copy of a downloads file (same bytes, link count 1).
package struct CopyPair: Encodable, Sendable, Equatable {
    package var library: MediaPath
    package var downloads: MediaPath
    package var size: UInt64
}

/// Wasted bytes per top-level library folder (movies, tv, ...).
package struct AuditGroup: Encodable, Sendable, Equatable {
    package var folder: MediaPath
    package var copies: Int
    package var wastedBytes: UInt64
}

package struct AuditReport: Encodable, Sendable {
    /// Regular files seen under library / downloads.
    package var libraryFiles = 0
    package var downloadsFiles = 0
    /// Library files with link count 1 (the only ones that can be wasted copies).
    package var singleLinkFiles = 0
    /// Files hashed because their size occurs on both sides.
    package var filesHashed = 0
    package var bytesHashed: UInt64 = 0
    package var copies = 0
    package var wastedBytes: UInt64 = 0
    package var groups: [AuditGroup] = []
    /// The largest copies (up to 10).
    package var largest: [CopyPair] = []
    /// Every copy found (what --reclaim works on).
    package var pairs: [CopyPair] = []
    /// `.NAME.hs-reclaim-tmp` files left by an interrupted reclaim.
    package var leftovers: [MediaPath] = []
    /// Paths that could not be read (skipped), as shown to a person (names escaped).
    package var errors: [String] = []
    package var seconds: Double = 0
}

/// Finds library files with link count 1 that have an identical copy in downloads.
///
/// Walks both trees with lstat only (no per-file Foundation objects), keeps library files with
/// link count 1 by size, and hashes (SHA-256) only files whose size occurs in both trees.
/// Equal hashes are reported as copies; `Reclaimer` compares byte for byte before linking.
/// Does not descend into other filesystems mounted inside the trees; ignores empty files.
package struct Auditor {
    package var libraryRoot: MediaPath
    package var downloadsRoot: MediaPath

    package init(libraryRoot: String, downloadsRoot: String) {
        self.libraryRoot = MediaPath(libraryRoot)
        self.downloadsRoot = MediaPath(downloadsRoot)
    }

    /// Names that belong to this tool and are never audited.
    package static func isOwnTemporary(_ name: UnsafePointer<CChar>) -> Bool {
        // ".hs-linkcheck-probe-*" or "*.hs-reclaim-tmp"
        guard name[0] == 46 else { return false }
        let len = strlen(name)
        let probe = ".hs-linkcheck-probe-"
        if strncmp(name, probe, probe.utf8.count) == 0 { return true }
        let tmp = Reclaimer.tmpSuffix
        let n = tmp.utf8.count
        return len > n && strcmp(name + (len - n), tmp) == 0
    }

    private struct Candidate {
        var size: UInt64
        var dev: UInt64
        var ino: UInt64
        var dir: Int32
        var nameOffset: Int32
        var nameLength: Int32
    }

    /// Names of many files packed in one byte array.
    private struct NameArena {
        var bytes: [UInt8] = []
        mutating func add(_ name: UnsafePointer<CChar>) -> (Int32, Int32) {
            let off = bytes.count
            let len = strlen(name)
            name.withMemoryRebound(to: UInt8.self, capacity: len) { p in
                bytes.append(contentsOf: UnsafeBufferPointer(start: p, count: len))
            }
            return (Int32(off), Int32(len))
        }
        func name(_ off: Int32, _ len: Int32) -> ArraySlice<UInt8> { bytes[Int(off)..<Int(off + len)] }
    }

    /// Runs the audit. `progress` gets a short status line now and then.
    package func run(progress: (String) -> Void = { _ in }) throws -> AuditReport {
        let start = DispatchTime.now().uptimeNanoseconds
        var report = AuditReport()

        // 1. Library: link-count-1 regular files, by size.
        var libDirs: [MediaPath] = []
        var libNames = NameArena()
        var lib: [Candidate] = []
        lib.reserveCapacity(1 << 14)
        var bySize: [UInt64: [Int32]] = [:]
        var leftoverNames: [(Int32, [UInt8])] = []
        var errors: [String] = []
        try TreeWalker.walk(root: libraryRoot, directories: &libDirs, onError: { errors.append($0.description) }) { dir, name, st in
            if Self.isOwnTemporary(name) {
                let n = Array(TreeWalker.bytes(of: name))
                if n.count > Reclaimer.tmpSuffix.utf8.count && n.suffix(Reclaimer.tmpSuffix.utf8.count).elementsEqual(Reclaimer.tmpSuffix.utf8) {
                    leftoverNames.append((dir, n))
                }
                return
            }
            report.libraryFiles += 1
            guard st.nlink == 1, st.size > 0 else { return }
            let (off, len) = libNames.add(name)
            lib.append(Candidate(size: st.size, dev: st.dev, ino: st.ino, dir: dir, nameOffset: off, nameLength: len))
            bySize[st.size, default: []].append(Int32(lib.count - 1))
            if report.libraryFiles & 0xFFF == 0 { progress("library: \(report.libraryFiles) files") }
        }
        report.singleLinkFiles = lib.count
        let leftovers = leftoverNames.map { libraryRoot.appending(libDirs[Int($0.0)].bytes).appending($0.1) }

        // 2. Downloads: every regular file whose size also occurs in the library candidates.
        var dlDirs: [MediaPath] = []
        var dlNames = NameArena()
        var dl: [Candidate] = []
        var dlBySize: [UInt64: [Int32]] = [:]
        if !bySize.isEmpty {
            try TreeWalker.walk(root: downloadsRoot, directories: &dlDirs, onError: { errors.append($0.description) }) { dir, name, st in
                if Self.isOwnTemporary(name) { return }
                report.downloadsFiles += 1
                guard st.size > 0, bySize[st.size] != nil else { return }
                let (off, len) = dlNames.add(name)
                dl.append(Candidate(size: st.size, dev: st.dev, ino: st.ino, dir: dir, nameOffset: off, nameLength: len))
                dlBySize[st.size, default: []].append(Int32(dl.count - 1))
                if report.downloadsFiles & 0xFFF == 0 { progress("downloads: \(report.downloadsFiles) files") }
            }
        }

        func libPath(_ c: Candidate) -> MediaPath {
            libraryRoot.appending(libDirs[Int(c.dir)].bytes).appending(libNames.name(c.nameOffset, c.nameLength))
        }
        func dlPath(_ c: Candidate) -> MediaPath {
            downloadsRoot.appending(dlDirs[Int(c.dir)].bytes).appending(dlNames.name(c.nameOffset, c.nameLength))
        }

        // 3. Hash only where a size occurs on both sides.
        var pairs: [CopyPair] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        for size in dlBySize.keys.sorted(by: >) {
            guard let libIdx = bySize[size], let dlIdx = dlBySize[size] else { continue }
            var dlByHash: [[UInt8]: Int32] = [:]
            for i in dlIdx {
                let c = dl[Int(i)]
                // A downloads file that IS a library candidate (overlapping trees) is skipped.
                if libIdx.contains(where: { lib[Int($0)].ino == c.ino && lib[Int($0)].dev == c.dev }) { continue }
                do {
                    let h = try Self.hashFile(dlPath(c), buffer: &buffer)
                    report.filesHashed += 1; report.bytesHashed += size
                    if dlByHash[h] == nil { dlByHash[h] = i }
                } catch { errors.append("\(error)") }   // a SysError: names already escaped
            }
            guard !dlByHash.isEmpty else { continue }
            for i in libIdx {
                let c = lib[Int(i)]
                do {
                    let h = try Self.hashFile(libPath(c), buffer: &buffer)
                    report.filesHashed += 1; report.bytesHashed += size
                    if let d = dlByHash[h] {
                        pairs.append(CopyPair(library: libPath(c), downloads: dlPath(dl[Int(d)]), size: size))
                    }
                } catch { errors.append("\(error)") }   // a SysError: names already escaped
            }
            progress("hashed \(report.filesHashed) files, \(pairs.count) copies")
        }

        // 4. Group by top-level library folder; largest first.
        pairs.sort { $0.size != $1.size ? $0.size > $1.size : $0.library < $1.library }
        var groups: [MediaPath: AuditGroup] = [:]
        let prefix = libraryRoot.bytes.last == 0x2F ? libraryRoot.bytes : libraryRoot.bytes + [0x2F]
        for p in pairs {
            let rel = p.library.bytes.starts(with: prefix) ? p.library.bytes.dropFirst(prefix.count) : p.library.bytes[...]
            let folder = MediaPath(rel.contains(0x2F) ? Array(rel.prefix(while: { $0 != 0x2F })) : [0x2E])
            groups[folder, default: AuditGroup(folder: folder, copies: 0, wastedBytes: 0)].copies += 1
            groups[folder]!.wastedBytes += p.size
        }
        report.pairs = pairs
        report.copies = pairs.count
        report.wastedBytes = pairs.reduce(0) { $0 + $1.size }
        report.groups = groups.values.sorted { $0.wastedBytes != $1.wastedBytes ? $0.wastedBytes > $1.wastedBytes : $0.folder < $1.folder }
        report.largest = Array(pairs.prefix(10))
        report.leftovers = leftovers.sorted()
        report.errors = errors
        report.seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return report
    }

    /// SHA-256 of a file's content.
    static func hashFile(_ path: MediaPath, buffer: inout [UInt8]) throws -> [UInt8] {
        let fd = try path.openRead()
        defer { Sys.close(fd) }
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        var h = SHA256Hasher()
        while true {
            let n = try buffer.withUnsafeMutableBytes { try Sys.read(fd, into: $0, shown: path.shown) }
            if n == 0 { break }
            buffer.withUnsafeBytes { h.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
        return h.finalize()
    }
}
