import CNFS

/// libnfs.so.13, loaded on first use rather than by the dynamic linker at every start of every
/// tool (Sources/CNFS/include/cnfs.h). The tools do not link it, so the .deb names libnfs13 in
/// Depends by hand (scripts/package.sh).
enum LibNFS {
    /// The function table, or nil when libnfs cannot be loaded (once per process).
    nonisolated(unsafe) static let table: UnsafePointer<hs_libnfs>? = hs_libnfs()

    /// The table, or `.libraryMissing` naming the library and what to install; `location` is
    /// the URL being opened.
    static func load(for location: String) throws(NFSError) -> UnsafePointer<hs_libnfs> {
        guard let t = table else {
            throw NFSError(kind: .libraryMissing, call: "open", location: location, errno: 0,
                           detail: String(cString: hs_libnfs_error()))
        }
        return t
    }

    /// "libnfs.so.13".
    static let soname = HS_LIBNFS_SONAME
}

/// libnfs's functions. Only reached with a context, which `NFSClient.init` creates after
/// `LibNFS.load` succeeded.
var libnfs: hs_libnfs {
    guard let t = LibNFS.table else { fatalError("libnfs called before LibNFS.load") }
    return t.pointee
}

/// libnfs's text for the last error on `ctx` ("" when it has none).
func nfsErrorText(_ ctx: OpaquePointer) -> String {
    libnfs.nfs_get_error(ctx).map { String(cString: $0) } ?? ""
}
