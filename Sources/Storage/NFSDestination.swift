import NFS

#if canImport(Glibc)
import Glibc
#endif

/// A destination on an NFS export, reached through libnfs (no kernel mount needed).
///
/// The root is the URL's directory inside the export (see `NFSURL` for the URL forms: e.g.
/// `nfs://truenas/mnt/tank/backups/io?version=3`); it is created by `makeDirectories("")` or
/// the first `makeDirectories` below it. Same semantics as `LocalDestination`, with NFS
/// specifics:
/// - `create` writes with pipelined UNSTABLE WRITEs; the writer's `sync()` is an NFS COMMIT.
/// - `createExclusive` is an NFSv3 EXCLUSIVE CREATE: atomic on the server, safe for lock files
///   between hosts.
/// - `syncDirectory` checks the directory exists and otherwise does nothing, and
///   `makeDirectories` syncs no parent: NFSv3 servers commit CREATE/MKDIR/RENAME/REMOVE to
///   stable storage before they reply (RFC 1813, 1.6: these procedures are synchronous).
/// - Files are created 0600 and directories 0700 (private, like `LocalDestination`).
/// - Errors are `NFSError` (match `kind`; the description names the call, URL, errno and
///   libnfs's text).
/// One libnfs connection per destination: calls from several threads are serialised.
package final class NFSDestination: Destination {
    /// The connection (for NFS-specific calls: links, ownership, times).
    package let client: NFSClient

    /// The URL without credentials.
    package var displayName: String { client.displayURL }

    /// Mounts the export of `url`.
    /// - Throws: `NFSError` (`.invalidURL`, `.connectionRefused`, `.exportNotFound`, ...);
    ///   `.unsupported` for `version=4`, where libnfs 4.0 moves data in 2 KiB pieces (a backup
    ///   would crawl).
    package init(url: String, options: NFSClient.Options = NFSClient.Options()) throws {
        client = try NFSClient(url: url, options: options)
        if client.smallIOOnly {
            throw NFSError(kind: .unsupported, call: "open destination", location: client.displayURL, errno: ENOTSUP,
                           detail: "libnfs 4.0 moves file data over NFSv\(client.url.version) only in 2 KiB pieces")
        }
    }

    /// The same server (name, NFS port) and the same path, `.`, `..` and `//` taken lexically.
    package func isSamePlace(as other: any Destination) -> Bool {
        guard let other = other as? NFSDestination else { return false }
        func place(_ u: NFSURL) -> [String] { [u.server.lowercased(), u.argument("nfsport") ?? "2049", PlacePath.lexical(u.path)] }
        return place(client.url) == place(other.client.url)
    }

    package func makeDirectories(_ path: String) throws {
        try client.makeDirectories(path, mode: 0o700)
    }

    package func list(_ path: String) throws -> [DestinationEntry] {
        try client.readDirectory(path).map { entry(name: $0.name, $0.attributes) }.sorted { $0.name < $1.name }
    }

    package func stat(_ path: String) throws -> DestinationEntry? {
        guard let st = try client.lstatIfExists(path) else { return nil }
        return entry(name: path.split(separator: "/").last.map(String.init) ?? "", st)
    }

    func entry(name: String, _ st: NFSStat) -> DestinationEntry {
        let kind: DestinationEntry.Kind
        switch st.kind {
        case .file: kind = .file
        case .directory: kind = .directory
        case .symlink: kind = .symlink
        default: kind = .other
        }
        return DestinationEntry(name: name, kind: kind, size: st.size, mtime: st.modificationTime.seconds)
    }

    package func create(_ path: String) throws -> any DestinationWriter {
        NFSWriter(try client.create(path, mode: 0o600, .truncate))
    }

    package func open(_ path: String) throws -> any DestinationReader {
        let file = try client.open(path, flags: O_RDONLY)
        do {
            return NFSReader(file, size: try file.stat().size)
        } catch {
            try? file.close()
            throw error
        }
    }

    package func rename(_ from: String, to: String) throws {
        try client.rename(from, to: to)
    }

    package func remove(_ path: String) throws {
        do { try client.unlink(path) } catch let e as NFSError where e.kind == .notFound {}
    }

    package func removeDirectory(_ path: String) throws {
        do { try client.removeDirectory(path) } catch let e as NFSError where e.kind == .notFound {}
    }

    package func createExclusive(_ path: String, contents: [UInt8]) throws -> Bool {
        let file: NFSFile
        do {
            file = try client.create(path, mode: 0o600, .exclusive)
        } catch let e as NFSError where e.kind == .exists {
            return false
        }
        do {
            try file.write(contents)
            try file.sync()
            try file.close()
        } catch {
            try? file.close()
            try? client.unlink(path)
            throw error
        }
        return true
    }

    package func syncDirectory(_ path: String) throws {
        let st = try client.stat(path)
        if st.kind != .directory {
            throw NFSError(kind: .notDirectory, call: "sync directory", location: "\(displayName) path \(path)",
                           errno: ENOTDIR, detail: "not a directory")
        }
    }
}

final class NFSWriter: DestinationWriter {
    let file: NFSFile
    init(_ file: NFSFile) { self.file = file }
    func write(_ bytes: UnsafeRawBufferPointer) throws { try file.write(bytes) }
    func sync() throws { try file.sync() }
    func close() throws { try file.close() }
}

final class NFSReader: DestinationReader {
    let file: NFSFile
    let size: UInt64
    init(_ file: NFSFile, size: UInt64) { self.file = file; self.size = size }
    func read(at offset: UInt64, count: Int) throws -> [UInt8] { try file.read(at: offset, count: count) }
    func close() throws { try file.close() }
}
