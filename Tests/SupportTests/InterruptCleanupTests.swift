import Foundation
import Support
import Synchronization
import Testing

/// `InterruptCleanup.committing`: the rename that commits a backup and the unregistering of the
/// files it keeps are one step for the signal handler's `runAll`, which would otherwise remove
/// a `.partial` archive between the manifest's rename and its unregistering.
@Suite("InterruptCleanup: a commit is one step for the signal's cleanup")
struct InterruptCleanupTests {
    final class Log: Sendable {
        let lines = Mutex<[String]>([])
        func add(_ s: String) { lines.withLock { $0.append(s) } }
        var all: [String] { lines.withLock { $0 } }
    }

    @Test("a signal during a commit waits for it and removes nothing the commit kept")
    func signalWaitsForCommit() throws {
        let cleanup = InterruptCleanup()
        let log = Log()
        let archive = cleanup.register("archive.partial") { log.add("removed archive") }
        cleanup.register("manifest.partial") { log.add("removed manifest") }
        let inCommit = DispatchSemaphore(value: 0)
        let committer = Thread {
            _ = try? cleanup.committing {
                inCommit.signal()
                usleep(300_000)
                log.add("renamed")
                cleanup.unregister(archive)
            }
        }
        committer.start()
        inCommit.wait()
        let problems = cleanup.runAll(within: 10)
        #expect(problems.isEmpty, "\(problems)")
        // The commit finished first; only the file it did not keep was removed.
        #expect(log.all == ["renamed", "removed manifest"])
    }

    @Test("after a signal a commit is not started: Stopping, and the cleanup removed the files")
    func noCommitAfterSignal() throws {
        let cleanup = InterruptCleanup()
        let log = Log()
        cleanup.register("archive.partial") { log.add("removed archive") }
        #expect(cleanup.runAll(within: 10).isEmpty)
        #expect(throws: InterruptCleanup.Stopping.self) { try cleanup.committing { log.add("renamed") } }
        #expect(log.all == ["removed archive"])
    }

    @Test("a commit that outlasts the limit: nothing is removed, and the message names what was left")
    func commitOutlastsLimit() throws {
        let cleanup = InterruptCleanup()
        let log = Log()
        cleanup.register("DEST/io/x.tar.gz.partial") { log.add("removed archive") }
        let inCommit = DispatchSemaphore(value: 0)
        let done = DispatchSemaphore(value: 0)
        let committer = Thread {
            _ = try? cleanup.committing { inCommit.signal(); usleep(1_500_000) }
            done.signal()
        }
        committer.start()
        inCommit.wait()
        let problems = cleanup.runAll(within: 0.3)
        #expect(problems.count == 1)
        #expect(problems.first?.contains("DEST/io/x.tar.gz.partial") == true, "\(problems)")
        done.wait()
        #expect(log.all.isEmpty)
    }
}
