/// An `nfs://` URL in libnfs syntax, split for display and for walking up the path.
///
/// Forms that work (tested against nfs-ganesha; TrueNAS/knfsd behave the same for NFSv3):
/// - `nfs://SERVER/EXPORT` — NFSv3 (the default) mounts the export's server-side path,
///   e.g. `nfs://truenas/mnt/tank/backups`.
/// - `nfs://SERVER/EXPORT/SUB/DIR` — a directory inside the export. It need not exist yet:
///   the client mounts the longest prefix the server accepts and treats the rest as a
///   directory inside it (created by `makeDirectories("")`).
/// - `?timeout=SECONDS` — how long one call may wait for the server's answer (default 60;
///   read by this toolkit, not passed to libnfs). While a call waits, a line on stderr every
///   15 s says the server is not responding.
/// - `?version=3` is the default and the version to use. `?version=4` walks the server's
///   pseudo filesystem (the path is the export's *pseudo* path, ganesha `Pseudo`). With
///   libnfs 4.0 metadata works (stat, readdir, mkdir, create, link, rename, unlink, ...) but
///   file data only in small pieces: libnfs reports readmax/writemax 0 and a WRITE of 4000
///   bytes fails to encode (nfs-cp fails on any real file), so `NFSClient` falls back to 2 KiB
///   READs/WRITEs (`smallIOOnly`) and `NFSDestination` refuses version=4.
/// - `?nfsport=N&mountport=N` — talk to these ports instead of asking the server's rpcbind
///   (mountport is ignored by NFSv4). `uid=N&gid=N` — the AUTH_SYS identity to send
///   (default: this process's uid/gid). Other libnfs arguments (`readahead=`, `autoreconnect=`,
///   `dircache=`, `tcp-syncnt=`, `auto-traverse-mounts=`) pass through to libnfs unchanged.
///   Arguments are joined with `&`.
///
/// NFS URLs carry no passwords; a `user[:password]@` part, if someone writes one, is dropped
/// from `displayString` and ignored.
package struct NFSURL: Sendable, Equatable, CustomStringConvertible {
    /// The URL as given.
    package let string: String
    /// Server name or address.
    package let server: String
    /// Path components after the server (no empty components).
    package let components: [String]
    /// Query arguments in order (`name`, `value`).
    package let arguments: [Argument]

    package struct Argument: Sendable, Equatable {
        package var name: String
        package var value: String
    }

    /// Arguments whose value must be a non-negative integer.
    static let numericArguments: Set<String> = [
        "version", "nfsport", "mountport", "uid", "gid", "readahead", "tcp-syncnt", "dircache",
        "auto-traverse-mounts", "pagecache", "pagecache_ttl", "debug",
    ]

    /// Arguments this toolkit reads itself; they are not passed to libnfs.
    static let ownArguments: Set<String> = ["timeout"]
    /// Largest `timeout=` accepted, in seconds (one day).
    package static let maximumTimeoutSeconds = 86_400

    /// Parses and checks an nfs:// URL.
    /// - Throws: `NFSError` with kind `.invalidURL` saying what is wrong.
    package init(_ string: String) throws {
        self.string = string
        func bad(_ why: String) -> NFSError {
            NFSError(kind: .invalidURL, call: "parse URL", location: NFSURL.redact(string), errno: 0, detail: why)
        }
        guard string.hasPrefix("nfs://") else { throw bad("the URL must start with nfs://") }
        var rest = Substring(string.dropFirst("nfs://".count))
        var query = Substring("")
        if let q = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: q)...]
            rest = rest[..<q]
        }
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        var authority = rest[..<slash]
        if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }
        guard !authority.isEmpty else { throw bad("the server name is missing (nfs://SERVER/EXPORT)") }
        server = String(authority)
        components = rest[slash...].split(separator: "/").map(String.init)
        guard !components.isEmpty else { throw bad("the export path is missing (nfs://SERVER/EXPORT)") }
        var args: [Argument] = []
        for part in query.split(separator: "&") where !part.isEmpty {
            let kv = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(kv[0]), value = kv.count > 1 ? String(kv[1]) : ""
            if NFSURL.numericArguments.contains(name) && UInt32(value) == nil {
                throw bad("argument \(name)=\(value) must be a non-negative number")
            }
            if name == "autoreconnect" && Int32(value) == nil {
                throw bad("argument autoreconnect=\(value) must be a number (-1 = forever)")
            }
            if name == "timeout" && (Int(value).map { $0 < 1 || $0 > NFSURL.maximumTimeoutSeconds } ?? true) {
                throw bad("argument timeout=\(value) must be a number of seconds from 1 to \(NFSURL.maximumTimeoutSeconds), e.g. timeout=60")
            }
            if name == "version" && value != "3" && value != "4" {
                throw bad("version=\(value) is not supported: use version=3 (or 4 for metadata only)")
            }
            args.append(Argument(name: name, value: value))
        }
        arguments = args
    }

    /// The value of a query argument, if present (the last one wins, as in libnfs).
    package func argument(_ name: String) -> String? { arguments.last { $0.name == name }?.value }

    /// The per-call timeout the URL asks for (`timeout=SECONDS`), if any.
    package var timeoutSeconds: Int? { argument("timeout").flatMap(Int.init) }

    /// The URL as libnfs gets it: without credentials and without the toolkit's own
    /// arguments (`timeout=`).
    package var libnfsString: String {
        let args = arguments.filter { !NFSURL.ownArguments.contains($0.name) }
        return "nfs://\(server)\(path)" + (args.isEmpty ? "" : "?" + args.map { "\($0.name)=\($0.value)" }.joined(separator: "&"))
    }

    /// The NFS version the URL asks for (3 unless `version=4`).
    package var version: Int { argument("version") == "4" ? 4 : 3 }

    /// The path after the server, starting with `/`.
    package var path: String { "/" + components.joined(separator: "/") }

    /// The URL without credentials (safe for messages and logs).
    package var displayString: String {
        "nfs://\(server)\(path)" + (arguments.isEmpty ? "" : "?" + arguments.map { "\($0.name)=\($0.value)" }.joined(separator: "&"))
    }

    package var description: String { displayString }

    /// The same server and arguments with `relative` appended to the path.
    package func appending(_ relative: String) -> NFSURL {
        let extra = relative.split(separator: "/").map(String.init)
        let q = arguments.isEmpty ? "" : "?" + arguments.map { "\($0.name)=\($0.value)" }.joined(separator: "&")
        // Cannot fail: same server and arguments, more components.
        return try! NFSURL("nfs://\(server)/" + (components + extra).joined(separator: "/") + q)
    }

    /// Removes a `user:password@` part from a URL-like string.
    static func redact(_ s: String) -> String {
        guard s.hasPrefix("nfs://") else { return s }
        let rest = s.dropFirst(6)
        let end = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
        guard let at = rest[..<end].lastIndex(of: "@") else { return s }
        return "nfs://" + rest[rest.index(after: at)...]
    }
}
