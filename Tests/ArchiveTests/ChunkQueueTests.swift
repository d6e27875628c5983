// The queue between the archive's decoding thread and the extraction: bounded by bytes, every
// chunk delivered once and in order, the producer's error after the chunks before it, and a
// cancelled consumer releases a blocked producer.
import Foundation
import Testing
@testable import Archive

@Suite struct ChunkQueueTests {
    @Test("many small chunks and a few large ones arrive in order; queued bytes stay within the bound")
    func orderAndBound() throws {
        let q = ChunkQueue(capacityBytes: 64 << 10, wakeBytes: 16 << 10)
        let sizes = (0 ..< 3000).map { i in i % 500 == 0 ? 200 << 10 : 1 + (i * 37) % 5000 }
        let producer = Thread {
            for (i, n) in sizes.enumerated() { _ = q.put([UInt8](repeating: UInt8(i & 0xff), count: n)) }
            q.close(error: nil)
        }
        producer.start()
        var got = 0
        var peak = 0
        while let c = try q.take() {
            #expect(c.count == sizes[got], "chunk \(got)")
            #expect(c.first == UInt8(got & 0xff))
            peak = max(peak, q.bytesQueued)
            got += 1
            if got % 97 == 0 { usleep(200) }   // a slow consumer now and then: the producer waits
        }
        #expect(got == sizes.count)
        // One chunk may always go in, so the bound is the capacity plus the largest chunk.
        #expect(peak <= (64 << 10) + (200 << 10), "peak \(peak)")
    }

    @Test("the producer's error comes after the chunks before it; cancel releases a blocked producer")
    func errorAndCancel() throws {
        struct Boom: Error {}
        let q = ChunkQueue(capacityBytes: 1 << 10, wakeBytes: 1 << 20)
        #expect(q.put([1, 2, 3]))
        q.close(error: Boom())
        #expect(try q.take() == [1, 2, 3], "queued below wakeBytes, still delivered at close")
        #expect(throws: Boom.self) { try q.take() }

        let full = ChunkQueue(capacityBytes: 1 << 10, wakeBytes: 512)
        #expect(full.put([UInt8](repeating: 0, count: 2048)))
        let released = DispatchSemaphore(value: 0)
        final class Box: @unchecked Sendable { var value: Bool? }
        let result = Box()
        Thread {
            result.value = full.put([9])   // blocks: the queue is over its capacity
            released.signal()
        }.start()
        #expect(released.wait(timeout: .now() + 0.3) == .timedOut, "the producer waits while the queue is full")
        full.cancel()
        #expect(released.wait(timeout: .now() + 10) == .success)
        #expect(result.value == false)
    }
}
