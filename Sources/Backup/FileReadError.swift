#if canImport(Glibc)
import Glibc
#endif
import Support

/// A source file could not be read.
struct FileReadError: Error, CustomStringConvertible {
    var path: String
    var errno: Int32
    var description: String { "cannot read \(path): \(Sys.strerror(errno))" }
}
