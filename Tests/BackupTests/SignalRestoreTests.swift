// What a restore stopped by a signal leaves in the target: what it says it leaves ("what was
// restored so far stays"), and nothing cut short. Files held in memory (the small ones) are
// written by the writer threads straight under their final names; a signal used to kill the
// process while a thread was between the create and the end of the file's metadata.
import Foundation
import Support
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("hs-restore stopped by a signal leaves no file cut short", .serialized)
struct SignalRestoreTests {
    /// Every regular file below `target` that differs from its source (size, content, mode or
    /// mtime): a file the restore created and did not finish.
    private func unfinished(_ target: String, source: String) throws -> [String] {
        var bad: [String] = []
        let files = FileManager.default.enumerator(atPath: target)?.allObjects as? [String] ?? []
        for rel in files {
            var st = stat(), ref = stat()
            guard lstat(target + "/" + rel, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { continue }
            guard lstat(source + "/" + rel, &ref) == 0 else { bad.append("\(rel): not in the source"); continue }
            if st.st_size != ref.st_size || st.st_mode != ref.st_mode || st.st_mtim.tv_sec != ref.st_mtim.tv_sec {
                bad.append("\(rel): size \(st.st_size) mode \(String(st.st_mode, radix: 8)) mtime \(st.st_mtim.tv_sec), "
                           + "source \(ref.st_size) \(String(ref.st_mode, radix: 8)) \(ref.st_mtim.tv_sec)")
            } else if FileManager.default.contents(atPath: target + "/" + rel) != FileManager.default.contents(atPath: source + "/" + rel) {
                bad.append("\(rel): content differs")
            }
        }
        return bad
    }

    @Test("hs-restore --from and --archive of many small files, stopped mid-way: every file in the target is whole, with its metadata",
          arguments: [SIGTERM, SIGINT])
    func noSmallFileCutShort(_ sig: Int32) throws {
        let dir = try TempDir("hs-sigrestore")
        let src = dir.sub("appdata")
        // 120 directories of 200 small files (mode 0640, mtime 2001): the writer threads' batches.
        try smallFilesSource(src, dirs: 120, files: 200, size: "100 + f * 7", perFile: "os.chmod(p, 0o640); os.utime(p, (978307200, 978307200))")
        let made = try Tools.run("hs-backup", ["run", "--source", src, "--to", dir.sub("nas"), "--name", "io", "-q"],
                                 environment: ["HS_BACKUP_SQLITE_CAPTURE": "0"])
        try #require(made.status == 0, "\(made.stderr)")
        let archive = try #require(filesIn(dir.sub("nas/io")).first { $0.hasSuffix(".tar.gz") })
        var stopped = 0
        for (name, source) in [("from", ["--from", dir.sub("nas"), "--name", "io"]), ("archive", ["--archive", dir.sub("nas/io/" + archive)])] {
            for round in 0 ..< 3 {
                let target = dir.sub("restored-\(name)-\(round)")
                let restore = try RunningTool(Tools.path("hs-restore"), source + ["--to", target])
                // Caught with writer threads at work: a tenth of the directories made.
                guard stopMidWork(restore, with: sig, { FileManager.default.fileExists(atPath: target + "/d012") }) else {
                    _ = restore.wait(upTo: 60)
                    continue   // finished before it was caught: counted below
                }
                _ = restore.wait(upTo: 60)
                #expect(restore.process.terminationReason == .uncaughtSignal && restore.process.terminationStatus == sig,
                        "\(name): \(restore.process.terminationReason) \(restore.process.terminationStatus) \(restore.stderr)")
                stopped += 1
                let bad = try unfinished(target, source: src)
                #expect(bad.isEmpty, "\(name) round \(round): \(bad.count) files cut short or without their metadata, e.g. \(bad.prefix(5))")
            }
        }
        // Not passing by luck: most restores must have been stopped mid-way.
        #expect(stopped >= 4, "only \(stopped) of 6 restores were stopped mid-way")
    }
}
