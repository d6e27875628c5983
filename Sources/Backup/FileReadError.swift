#if canImport(Glibc)
import Glibc
#endif

/// A source file could not be read.
struct FileReadError: Error, CustomStringConvertible {
    var path: String
    var errno: Int32
    var description: String { "cannot read \(path): \(String(cString: strerror(errno)))" }
}
