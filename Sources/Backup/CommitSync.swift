import Storage
import Support

/// Syncs the files of one commit (the archive, the manifest, the index), each already complete
/// (`StoredWriter.endStream`), and returns only when every one is on stable storage; the first
/// failure is thrown as a `PassFailure` naming its step (then nothing is committed: the caller
/// renames nothing). With `concurrently` (a local destination) the syncs run at once on their
/// own threads: each fsync waits for the device, and one no longer waits behind the other (issue
/// 23: the C floor in bench/sparse-floor.c, three fsyncs of a commit at once against one after the
/// other, 6.7 against 14.7 ms with other I/O on the disk, 1.9 against 2.1 ms without). The order
/// that matters is kept: nothing is renamed into place before all of them return.
func syncForCommit(_ files: [(writer: (any DestinationWriter)?, step: String)], concurrently: Bool) throws {
    let files = files.compactMap { f in f.writer.map { (writer: $0, step: f.step) } }
    @Sendable func sync(_ f: (writer: any DestinationWriter, step: String)) throws {
        do { try f.writer.sync() } catch { throw PassFailure(step: f.step, cause: error) }
    }
    guard concurrently, files.count > 1 else {
        for f in files { try sync(f) }
        return
    }
    // One thread per file (a shared pool lets the first thread take a second job before the
    // next thread is up, and the syncs would queue again).
    let pools = files.dropFirst().map { _ in WorkPool(threads: 1, stackSize: 256 << 10, name: "hs-sync") }
    defer { for p in pools { p.close() } }
    for (pool, f) in zip(pools, files.dropFirst()) {
        let box = UnsafeSendable(f)  // each writer is used by its own sync only until the pools are closed
        try pool.submit { try sync(box.value) }
    }
    var failure: (any Error)?
    do { try sync(files[0]) } catch { failure = error }
    for p in pools {
        do { try p.wait() } catch { failure = failure ?? error }
    }
    if let failure { throw failure }
}
