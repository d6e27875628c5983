// archive-bench: drives the backup and restore engines for bench/archive-bench.py (not shipped).
//   archive-bench create SRC_DIR OUT_DIR   a full backup of SRC_DIR into OUT_DIR (the real scanner
//                                          and archive writer of hs-backup), set "bench"
//   archive-bench extract ARCHIVE DIR      the restore executor (as hs-restore --archive)
import Archive
import Backup
import Foundation
import Restore
import Storage
import Support

let args = CommandLine.arguments
func usage() -> Never {
    FileHandle.standardError.write(Data("usage: archive-bench create SRC OUT_DIR | extract ARCHIVE DIR\n".utf8))
    exit(2)
}
guard args.count >= 4 else { usage() }
// Not main-actor isolated: the writer's sink runs on compressor threads.
nonisolated func runBench(_ args: [String]) {
do {
    switch args[1] {
    case "create":
        var o = BackupOptions(source: args[2], destination: try openDestination(args[3]), set: "bench")
        o.forceFull = true
        let s = try BackupRunner(options: o, reporter: Reporter(mode: .plain)).run()
        print("entries=\(s.files + s.directories + s.symlinks) id=\(s.id) compressed=\(s.bytesOut)")
    case "extract":
        var p = RestorePolicy()
        p.allowNonEmptyTarget = true
        let s = try RestoreExecutor(target: args[3], policy: p).run(try ArchiveStreamSource(FileByteSource(path: args[2])))
        print("files=\(s.counts.files) bytes=\(s.counts.bytes)")
    default: usage()
    }
} catch {
    FileHandle.standardError.write(Data("error: \(error)\n".utf8))
    exit(1)
}
}
runBench(args)
