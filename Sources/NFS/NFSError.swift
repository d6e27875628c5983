#if canImport(Glibc)
import Glibc
#endif
import Support

/// A failed NFS operation: which libnfs call, on which URL/path, the errno, libnfs's own
/// error text (`nfs_get_error`) and a hint what to do.
///
/// Match on `kind` to react to a class of failure (`.notFound`, `.exists`, ...); print the
/// error (`description`) for people. `location` and `detail` hold the URL, paths and libnfs's
/// text as they are (a path inside an export may hold any byte but NUL and `/`);
/// `description` shows them escaped (`NameEscape`), as every message shows a name.
package struct NFSError: Error, CustomStringConvertible, Sendable {
    /// The class of failure.
    package enum Kind: Sendable, Equatable, CustomStringConvertible {
        /// The URL could not be parsed (bad syntax, missing server or export path).
        case invalidURL
        /// Nothing listens on the server's NFS/MOUNT/portmapper port (TCP connection refused).
        case connectionRefused
        /// The server name does not resolve or the host cannot be reached.
        case hostUnreachable
        /// The server answered but refused to mount the export path: it is not exported, or
        /// not to this client.
        case exportNotFound
        /// The server refused the operation for this uid/gid (EACCES/EPERM, root_squash, ...).
        case permissionDenied
        /// The export is read-only (EROFS).
        case readOnly
        /// The path does not exist (ENOENT).
        case notFound
        /// The path exists already (EEXIST).
        case exists
        /// A path component is not a directory (ENOTDIR).
        case notDirectory
        /// The path is a directory (EISDIR).
        case isDirectory
        /// The directory is not empty (ENOTEMPTY).
        case notEmpty
        /// The server is out of space or quota (ENOSPC/EDQUOT).
        case noSpace
        /// The file handle went stale (the file was removed or the export changed underneath).
        case stale
        /// The server stopped answering within the timeout.
        case timedOut
        /// The connection broke and could not be re-established.
        case disconnected
        /// The connection cannot do what is asked well enough (e.g. a destination over NFSv4,
        /// where libnfs 4.0 moves data in 2 KiB pieces).
        case unsupported
        /// libnfs.so.13 is not installed or cannot be loaded (the tools load it with dlopen
        /// when an nfs:// URL is used; it is not linked).
        case libraryMissing
        /// Any other errno.
        case other(Int32)

        package var description: String {
            switch self {
            case .invalidURL: "invalid URL"
            case .connectionRefused: "connection refused"
            case .hostUnreachable: "host unreachable"
            case .exportNotFound: "export not found or not allowed"
            case .permissionDenied: "permission denied"
            case .readOnly: "read-only export"
            case .notFound: "not found"
            case .exists: "already exists"
            case .notDirectory: "not a directory"
            case .isDirectory: "is a directory"
            case .notEmpty: "directory not empty"
            case .noSpace: "no space left"
            case .stale: "stale file handle"
            case .timedOut: "timed out"
            case .disconnected: "disconnected"
            case .unsupported: "not supported"
            case .libraryMissing: "\(LibNFS.soname) is not installed or cannot be loaded"
            case .other(let e): "error \(e)"
            }
        }
    }

    /// The class of failure.
    package var kind: Kind
    /// The libnfs call that failed, e.g. `nfs_mount` or `nfs_pwrite_async`.
    package var call: String
    /// The URL (without credentials) and, after a space, the path inside the mount; not
    /// escaped (a message shows `NameEscape.escape(location)`).
    package var location: String
    /// The errno libnfs returned (positive), 0 when there was none.
    package var errno: Int32
    /// libnfs's error text (`nfs_get_error`, which names the path) or another detail; not
    /// escaped (a message shows `NameEscape.escape(detail)`).
    package var detail: String

    package init(kind: Kind, call: String, location: String, errno: Int32, detail: String) {
        self.kind = kind
        self.call = call
        self.location = location
        self.errno = errno
        self.detail = detail
    }

    /// What to do about it.
    package var hint: String {
        switch kind {
        case .invalidURL:
            "use nfs://SERVER/EXPORT[/SUBDIR][?nfsport=N&mountport=N&uid=N&gid=N&timeout=SECONDS], e.g. nfs://truenas/mnt/tank/backups"
        case .connectionRefused:
            "check that the NFS server is running and reachable on that port (with nfsport=/mountport= "
                + "the ports must match the server's; without them rpcbind must run on the server)"
        case .hostUnreachable:
            "check the server name/address and the network (ping, DNS, Tailscale)"
        case .exportNotFound:
            "check the export path exists on the server and is shared with this client "
                + "(TrueNAS: Shares > NFS, Networks/Hosts; `showmount -e SERVER`); NFSv4 uses the pseudo path"
        case .permissionDenied:
            "check ownership/mode on the server and the export's root squash / mapall settings, "
                + "or pass uid=/gid= in the URL"
        case .readOnly:
            "the export is read-only: make it read-write on the server or choose another export"
        case .notFound:
            "check the path; create parent directories first"
        case .exists:
            "remove the existing entry or choose another name"
        case .notDirectory, .isDirectory, .notEmpty:
            "check the path's type on the server"
        case .noSpace:
            "free space or raise the quota on the server's dataset"
        case .stale:
            "retry; if it persists, the export was changed on the server"
        case .timedOut:
            "check that the NFS server is up (TrueNAS console, `rpcinfo -p SERVER`) and the network is stable; "
                + "raise timeout=SECONDS in the URL (or --nfs-timeout) for a slow server"
        case .disconnected:
            "check that the NFS server is up and the network is stable, then retry"
        case .unsupported:
            "use version=3 in the URL (the same export serves NFSv3); libnfs 4.0 moves file data over NFSv4 only in 2 KiB pieces"
        case .libraryMissing:
            "install Debian's libnfs13 (apt-get install libnfs13); the home-server-tools package depends on it"
        case .other:
            "see the server's log"
        }
    }

    package var description: String {
        var s = "\(call) \(NameEscape.escape(location)) failed: \(kind)"
        if !detail.isEmpty { s += ": \(NameEscape.escape(detail))" }
        if errno != 0 { s += " (errno \(errno) \(String(cString: strerror(errno))))" }
        s += ". Hint: \(hint)"
        return s
    }

    /// The kind for an errno returned by a libnfs call (outside mount). libnfs also returns
    /// -1 for its own failures (encoding, queueing): that is EPERM only when the text says so.
    static func kind(forErrno e: Int32, detail: String) -> Kind {
        if e == EPERM && !(detail.contains("PERM") || detail.contains("ermission")) { return .other(EPERM) }
        return kind(forErrno: e)
    }

    /// The kind for an errno.
    static func kind(forErrno e: Int32) -> Kind {
        switch e {
        case ENOENT: .notFound
        case EEXIST: .exists
        case EACCES, EPERM: .permissionDenied
        case EROFS: .readOnly
        case ENOTDIR: .notDirectory
        case EISDIR: .isDirectory
        case ENOTEMPTY: .notEmpty
        case ENOSPC, EDQUOT: .noSpace
        case ESTALE: .stale
        case ETIMEDOUT: .timedOut
        case ECONNREFUSED: .connectionRefused
        case EHOSTUNREACH, ENETUNREACH: .hostUnreachable
        case ECONNRESET, EPIPE, ENOTCONN, EIO: .other(e)
        default: .other(e)
        }
    }
}
