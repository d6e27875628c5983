internal import CFuse
import Support

/// libfuse3.so.3, loaded on first use rather than by the dynamic linker at every start of every
/// tool (Sources/CFuse/include/cfuse.h). The tools do not link it, so the .deb names
/// libfuse3-3 in Depends by hand (scripts/package.sh).
enum LibFuse {
    /// The function table, or nil when libfuse3 cannot be loaded (once per process).
    nonisolated(unsafe) static let table: UnsafePointer<hs_libfuse>? = hs_libfuse()

    /// Loads libfuse3, or throws a `ToolError` (exit 1) naming it and what to install.
    static func load() throws {
        guard table == nil else { return }
        throw ToolError("\(HS_LIBFUSE_SONAME) is not installed or cannot be loaded (\(String(cString: hs_libfuse_error()))); "
                        + "`hs-backup mount` needs it: apt-get install libfuse3-3 fuse3")
    }
}

/// libfuse3's functions. Only reached from `FuseMount.run` after `LibFuse.load()` and from the
/// request handlers of the session it creates.
var libfuse: hs_libfuse {
    guard let t = LibFuse.table else { fatalError("libfuse3 called before LibFuse.load") }
    return t.pointee
}
