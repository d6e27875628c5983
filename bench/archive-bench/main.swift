// archive-bench: drives the Archive engine for bench/archive-bench.sh (not shipped).
//   archive-bench create SRC_DIR OUT.tar.gz [--threads N] [--level N]
//   archive-bench extract ARCHIVE DIR
import Archive
import Foundation
import Glibc

let args = CommandLine.arguments
func usage() -> Never {
    FileHandle.standardError.write(Data("usage: archive-bench create SRC OUT [--threads N] [--level N] | extract ARCHIVE DIR\n".utf8))
    exit(2)
}
guard args.count >= 4 else { usage() }
// Not main-actor isolated: the writer's sink runs on compressor threads.
nonisolated func runBench(_ args: [String]) {
do {
    switch args[1] {
    case "create":
        var opts = ArchiveWriterOptions()
        var i = 4
        while i + 1 < args.count {
            if args[i] == "--threads" { opts.threads = Int(args[i + 1]) ?? opts.threads }
            if args[i] == "--level" { opts.level = Int32(args[i + 1]) ?? opts.level }
            i += 2
        }
        let fd = open(args[3], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ArchiveError(.io, "cannot create \(args[3])") }
        let writer = ArchiveWriter(sink: { bytes in
            var off = 0
            while off < bytes.count {
                let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + off, bytes.count - off) }
                if n < 0 { if errno == EINTR { continue }; throw ArchiveError(.io, "write failed") }
                off += n
            }
        }, options: opts)
        let r = try DirectoryArchiver.archive(args[2], into: writer)
        let index = try writer.finish()
        close(fd)
        print("entries=\(r.entries) members=\(index.members.count) compressed=\(index.compressedSize) uncompressed=\(index.uncompressedSize)")
    case "extract":
        var o = ExtractOptions()
        o.allowNonEmptyTarget = true
        let s = try extractArchive(try ArchiveSource.file(args[2]), to: args[3], options: o)
        print("files=\(s.files) bytes=\(s.bytes)")
    default: usage()
    }
} catch {
    FileHandle.standardError.write(Data("error: \(error)\n".utf8))
    exit(1)
}
}
runBench(args)
