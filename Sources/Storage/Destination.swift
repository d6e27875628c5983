// Storage: where backups go. One `Destination` protocol (save, load range, stat, list,
// rename, remove, exclusive create for locks) with one implementation per kind: a local
// directory (`LocalDestination`), an NFS export reached through libnfs (`NFSDestination`) and
// any remote of the `rclone` binary (`RcloneDestination`). Destination strings are parsed by
// scheme: `nfs://` goes to NFS, `rclone:` to rclone, anything else is a path.
//
// Paths given to a Destination are relative to its root and use `/`. Guarantees: a file
// written with `writeAtomically` or a writer that is `commit`ted is either absent or complete
// under its final name (temp name, fsync, rename, directory fsync where the kind has one).
// Not guaranteed: atomicity across several files (the caller's manifest is the commit record).

import Support

/// What a Destination knows about one of its files or directories.
package struct DestinationEntry: Sendable, Equatable {
    package enum Kind: Sendable, Equatable { case file, directory, symlink, other }
    package var name: String
    package var kind: Kind
    package var size: UInt64
    /// Modification time, seconds since the epoch.
    package var mtime: Int64
}

/// A file being written sequentially to a Destination.
package protocol DestinationWriter: AnyObject {
    /// Appends bytes.
    func write(_ bytes: UnsafeRawBufferPointer) throws
    /// Flushes to stable storage (fsync / NFS COMMIT).
    func sync() throws
    /// Closes the file. Idempotent.
    func close() throws
}

extension DestinationWriter {
    package func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write($0) } }
}

/// A file being read from a Destination.
package protocol DestinationReader: AnyObject {
    /// Reads up to `count` bytes at `offset`; fewer only at end of file.
    func read(at offset: UInt64, count: Int) throws -> [UInt8]
    /// The file's size when opened.
    var size: UInt64 { get }
    func close() throws
}

extension DestinationReader {
    /// SHA-256 of the whole file, read in pieces of `piece` bytes (a 1M-file manifest is tens of MiB; an
    /// archive is gigabytes). Returns the digest and the number of bytes read, which the caller compares
    /// with the size it expects (a file that shrank while it was read ends early).
    /// - Parameter cancelled: checked before each piece; throws `CancellationError` when it returns true.
    package func sha256(piece: Int = 4 << 20, cancelled: () -> Bool = { false }) throws -> (digest: [UInt8], bytes: UInt64) {
        var h = SHA256Hasher()
        var offset: UInt64 = 0
        while offset < size {
            if cancelled() { throw CancellationError() }
            let bytes = try read(at: offset, count: piece)
            if bytes.isEmpty { break }
            h.update(bytes)
            offset += UInt64(bytes.count)
        }
        return (h.finalize(), offset)
    }
}

/// A place backups are written to and read from.
package protocol Destination: AnyObject, Sendable {
    /// Human-readable location for messages (a path or an nfs:// URL without credentials).
    var displayName: String { get }
    /// Creates a directory and its parents (like `mkdir -p`).
    func makeDirectories(_ path: String) throws
    /// Lists a directory (without "." and ".."); throws if it does not exist.
    func list(_ path: String) throws -> [DestinationEntry]
    /// Stats a path without following a final symlink; nil when it does not exist.
    func stat(_ path: String) throws -> DestinationEntry?
    /// Creates (truncating) a file for sequential writing.
    func create(_ path: String) throws -> any DestinationWriter
    /// Creates a file whose final size the caller knows (`nil`: unknown). Uploads announce it
    /// (rclone: `rcat --size`); kinds that have no use for it do as `create(_:)`.
    func create(_ path: String, size: UInt64?) throws -> any DestinationWriter
    /// Opens a file for reading.
    func open(_ path: String) throws -> any DestinationReader
    /// Renames `from` to `to`, replacing `to`.
    func rename(_ from: String, to: String) throws
    /// Removes a file (not a directory). Missing files are not an error.
    func remove(_ path: String) throws
    /// Removes an empty directory.
    func removeDirectory(_ path: String) throws
    /// Creates `path` with `contents` only if it does not exist yet (O_EXCL); false if it does.
    func createExclusive(_ path: String, contents: [UInt8]) throws -> Bool
    /// True when `createExclusive` is atomic between hosts (local, NFS); false where it is
    /// best-effort (rclone remotes: look, upload, read back).
    var exclusiveCreateIsAtomic: Bool { get }
    /// Flushes a directory's entries (renames) to stable storage where the kind supports it.
    func syncDirectory(_ path: String) throws
    /// Makes the directory `path` and those above it that a `makeDirectories` could have made
    /// durable as entries of their parents, whoever made them (an earlier process may have
    /// stopped before its fsync). Local, and rclone's local backend: `Sys.syncParents`. Nothing
    /// for NFS (MKDIR is synchronous) and other rclone remotes (no directory fsync there).
    func syncParents(of path: String) throws
    /// True when writers of different files may `sync()` at the same time on different threads
    /// (local files: each fsync is its own call; NFS shares one libnfs context, rclone one server).
    var syncsFilesConcurrently: Bool { get }
    /// True when `other` is this place however the two were spelled (`copy` refuses to copy a
    /// place onto itself): `/mnt/nas`, `/mnt/nas/../nas` and a symlink to it are one place.
    func isSamePlace(as other: any Destination) -> Bool
    /// The directory of this machine it is, absolute (it may not exist yet): a local
    /// destination's, or an rclone remote's of the local backend (`rclone::local:/x` is /x);
    /// nil for NFS and other remotes. Such places compare as directories (`isSamePlace`).
    var localDirectory: String? { get }
}

extension Destination {
    package func create(_ path: String, size: UInt64?) throws -> any DestinationWriter { try create(path) }
    package func isSamePlace(as other: any Destination) -> Bool { displayName == other.displayName }
    package func syncParents(of path: String) throws {}
    package var localDirectory: String? { nil }
    package var syncsFilesConcurrently: Bool { false }

    package var exclusiveCreateIsAtomic: Bool { true }

    /// Writes a whole file atomically: `path.tmp-<pid>`, fsync, rename, directory fsync.
    package func writeAtomically(_ path: String, contents: [UInt8]) throws {
        let tmp = "\(path).tmp-\(getpid())"
        let w = try create(tmp, size: UInt64(contents.count))
        do {
            try w.write(contents)
            try w.sync()
            try w.close()
            try rename(tmp, to: path)
        } catch {
            try? w.close()
            try? remove(tmp)
            throw error
        }
        try syncDirectory(parentDirectory(path))
    }

    /// Reads a whole file.
    package func readAll(_ path: String) throws -> [UInt8] {
        let r = try open(path)
        defer { try? r.close() }
        var out: [UInt8] = []
        out.reserveCapacity(Int(r.size))
        var offset: UInt64 = 0
        while true {
            let chunk = try r.read(at: offset, count: 1 << 20)
            if chunk.isEmpty { break }
            out += chunk
            offset += UInt64(chunk.count)
        }
        return out
    }
}

/// The directory part of a relative destination path ("" for the root).
package func parentDirectory(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "" }
    return String(path[..<slash])
}

#if canImport(Glibc)
import Glibc
#endif

/// Paths compared as places (`Destination.isSamePlace`).
package enum PlacePath {
    /// `path` with "" and "." components gone and ".." taking the component before it away,
    /// without looking at the file system (a leading "/" kept, and a leading ".." of a relative
    /// path): `/a//b/./c/../` is `/a/b`.
    package static func lexical(_ path: String) -> String {
        var out: [Substring] = []
        for part in path.split(separator: "/") where part != "." {
            if part == "..", let last = out.last, last != ".." { out.removeLast() }
            else if part == "..", path.hasPrefix("/") { continue }   // "/.." is "/"
            else { out.append(part) }
        }
        return (path.hasPrefix("/") ? "/" : "") + out.joined(separator: "/")
    }
}
