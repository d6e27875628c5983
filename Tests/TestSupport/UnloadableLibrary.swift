import Foundation

/// An environment in which dlopen() of one library fails, as on a host without it: the tools
/// load libnfs.so.13 and libfuse3.so.3 with dlopen on first use (Sources/CNFS, Sources/CFuse),
/// and LD_LIBRARY_PATH is searched first, so a file of that name there that is not ELF makes
/// the real dlopen fail ("invalid ELF header"). Nothing else of the process is changed.
package enum UnloadableLibrary {
    /// `LD_LIBRARY_PATH` pointing at a directory, made in `work`, that holds `soname` as text.
    package static func environment(_ soname: String, in work: TempDir) throws -> [String: String] {
        let dir = work.sub("unloadable-" + soname)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Data("not a shared object\n".utf8).write(to: URL(fileURLWithPath: dir + "/" + soname))
        return ["LD_LIBRARY_PATH": dir]
    }
}
