/// A FIFO between one producing and one consuming thread, bounded by the bytes it holds (at
/// least one element is always let in), for a stream produced on its own thread (e.g. gzip
/// decompression ahead of the tar reader: run the producer as a job on a `WorkPool`).
///
/// Each side is woken only when the other has made enough room or data (half the capacity,
/// or `wakeBytes`), not for every element: a stream of many small pieces does not hand over
/// and wake the other thread once per piece. The producer ends the stream with
/// `finish(throwing:)`; the consumer gets the elements before the error, then the error.
///
///     let queue = BoundedQueue<[UInt8]>(capacityBytes: 6 << 20, wakeBytes: 1 << 20)
///     try pool.submit {
///         do {
///             while let chunk = try decoder.nextChunk() {
///                 guard queue.put(chunk, bytes: chunk.count) else { break }   // consumer cancelled
///             }
///             queue.finish()
///         } catch { queue.finish(throwing: error) }
///     }
///     while let chunk = try queue.take() { try parse(chunk) }
package final class BoundedQueue<Element: Sendable>: Sendable {
    private struct State {
        /// Taken items are set to nil at once (the slots are reused later): a taken element
        /// must not stay referenced by the queue (chunks of MiBs each).
        var items: [(Element?, Int)] = []
        var head = 0
        var queuedBytes = 0
        var producerWaiting = false
        var consumerWaiting = false
        var finished = false
        var cancelled = false
        var error: (any Error)?
    }

    private let monitor = Monitor(State(), conditions: 1)
    private let capacityBytes: Int
    private let wakeBytes: Int

    package init(capacityBytes: Int, wakeBytes: Int) {
        self.capacityBytes = capacityBytes
        self.wakeBytes = min(wakeBytes, capacityBytes)
    }

    /// True once the consumer cancelled.
    package var isCancelled: Bool { monitor.withLock { $0.cancelled } }

    /// Bytes queued now (not yet taken).
    package var bytesQueued: Int { monitor.withLock { $0.queuedBytes } }

    /// Producer: queues `element`; blocks while the queue is full.
    /// - Returns: false (nothing queued) once the consumer cancelled.
    package func put(_ element: Element, bytes: Int) -> Bool {
        let capacity = capacityBytes, wake = wakeBytes
        let (ok, wakeConsumer) = monitor.withLock(until: { s in
            let full = s.queuedBytes >= capacity && s.items.count > s.head && !s.cancelled
            s.producerWaiting = full
            return !full
        }) { s -> (Bool, Bool) in
            if s.cancelled { return (false, false) }
            s.items.append((element, bytes))
            s.queuedBytes += bytes
            return (true, s.consumerWaiting && s.queuedBytes >= wake)
        }
        if wakeConsumer { monitor.wakeAll() }
        return ok
    }

    /// Producer: ends the stream (with an error the consumer gets after the elements before it).
    package func finish(throwing error: (any Error)? = nil) {
        monitor.withLock { s in s.finished = true; s.error = error }
        monitor.wakeAll()
    }

    /// Consumer: the next element; nil at the end of the stream.
    /// - Throws: the producer's error, after the elements queued before it.
    package func take() throws -> Element? {
        let capacity = capacityBytes
        let (element, error, wakeProducer) = monitor.withLock(until: { s in
            let empty = s.items.count == s.head && !s.finished
            s.consumerWaiting = empty
            return !empty
        }) { s -> (Element?, (any Error)?, Bool) in
            guard s.items.count > s.head else { return (nil, s.error, false) }
            let (e, n) = s.items[s.head]
            s.items[s.head].0 = nil
            s.head += 1
            s.queuedBytes -= n
            if s.head == s.items.count { s.items.removeAll(keepingCapacity: true); s.head = 0 }
            else if s.head > 64 { s.items.removeFirst(s.head); s.head = 0 }
            return (e, nil, s.producerWaiting && s.queuedBytes <= capacity / 2)
        }
        if wakeProducer { monitor.wakeAll() }
        if let error { throw error }
        return element
    }

    /// Consumer: stops the producer (its `put` returns false) and drops what is queued.
    package func cancel() {
        monitor.withLock { s in s.cancelled = true; s.items.removeAll(); s.head = 0; s.queuedBytes = 0 }
        monitor.wakeAll()
    }
}
