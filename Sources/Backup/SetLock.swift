import FoundationEssentials
import Glibc
import Storage
import Support
import Synchronization

/// The lock of one backup set: `DEST/SET/lock`, created with O_EXCL semantics, holding
/// `{"host":..,"pid":..,"started":..}`. A lock whose process is gone (same host) or that is
/// older than `staleAfter` is stale and is taken over with a warning.
package final class SetLock {
    package struct Holder: Codable, Sendable, Equatable {
        package var host: String
        package var pid: Int32
        /// Seconds since the epoch.
        package var started: Double
        package var operation: String?

        package init(host: String, pid: Int32, started: Double, operation: String?) {
            self.host = host; self.pid = pid; self.started = started; self.operation = operation
        }

        /// The lock file's bytes: `{"host":..,"pid":..,"started":..,"operation":..}`, which
        /// `JSONDecoder` reads as a `Holder` (written by hand: JSONEncoder's reflection and type
        /// lookups were ~0.5% of a one-file backup's CPU, issue 23; `lockJSONDecodes` checks it).
        package var json: [UInt8] {
            var out = "{\"host\":" + JSONText.string(host) + ",\"pid\":\(pid),\"started\":\(started.isFinite ? started : 0)"
            if let operation { out += ",\"operation\":" + JSONText.string(operation) }
            return Array((out + "}").utf8)
        }
    }

    let destination: any Destination
    let path: String
    package private(set) var held = false
    /// The removal registered with `InterruptCleanup` while the lock is held.
    private var cleanupToken: Int?

    package init(destination: any Destination, set: String) {
        self.destination = destination
        self.path = set + "/lock"
    }

    package static var hostName: String {
        var buf = [UInt8](repeating: 0, count: 256)
        _ = buf.withUnsafeMutableBufferPointer { gethostname(UnsafeMutableRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), 255) }
        return String(decoding: buf.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// Takes the lock. Returns warnings (a stale lock taken over).
    /// - Throws: `ToolError` naming the holder when another live run holds it.
    @discardableResult
    package func acquire(operation: String, staleAfter: TimeInterval = 12 * 3600) throws -> [String] {
        let me = Holder(host: Self.hostName, pid: getpid(), started: Date().timeIntervalSince1970, operation: operation)
        let bytes = me.json
        var warnings: [String] = []
        for _ in 0 ..< 3 {
            // Created and registered for removal on a signal as one step (a SIGTERM between the
            // two left the lock behind); the removal only removes a lock this run created, as the
            // one it finds may be another run's.
            let (dest, path) = (destination, path)
            let mine = CreatedFlag()
            let (created, token) = try InterruptCleanup.shared.creating("the lock \(NameEscape.escape("\(dest.displayName)/\(path)"))", remove: {
                if mine.made.withLock({ $0 }) { try dest.remove(path) }
            }) {
                let made = try dest.createExclusive(path, contents: bytes)
                mine.made.withLock { $0 = made }
                return made
            }
            if created {
                held = true
                cleanupToken = token
                return warnings
            }
            InterruptCleanup.shared.unregister(token)
            // Someone holds it (or held it). Read, judge, maybe take over.
            let existing: Holder?
            do {
                existing = try JSONDecoder().decode(Holder.self, from: Data(try destination.readAll(path)))
            } catch {
                existing = nil
            }
            guard let h = existing else {
                // Unreadable (empty or partial): its creator died between creating and writing
                // it (a live creator writes it at once). Look again after a moment, then take over.
                usleep(2_000_000)
                let again = try? JSONDecoder().decode(Holder.self, from: Data(try destination.readAll(path)))
                if again != nil { continue }
                warnings.append("took over an unreadable lock \(NameEscape.escape("\(destination.displayName)/\(path)")) (a run was killed while creating it)")
                try destination.remove(path)
                continue
            }
            let age = Date().timeIntervalSince1970 - h.started
            let sameHost = h.host == Self.hostName
            let dead = sameHost && kill(h.pid, 0) != 0 && errno == ESRCH
            // What the lock says is text from a file (an older version's, or edited by hand):
            // escaped like a name.
            let host = NameEscape.escape(h.host)
            if dead || age > staleAfter {
                let why = dead ? "process \(h.pid) on \(host) is gone" : "it is older than \(Int(staleAfter / 3600))h"
                warnings.append("took over a stale lock of \(host) pid \(h.pid) started \(Self.iso(h.started)) (\(why))")
                try destination.remove(path)
                continue
            }
            let started = Self.iso(h.started)
            throw ToolError("backup set \(NameEscape.escape("\(destination.displayName)/\(parentDirectory(path))")) is locked by host \(host), pid \(h.pid), started \(started)\(h.operation.map { " (\(NameEscape.escape($0)))" } ?? ""). Wait for it to finish; if that process is gone, the lock is taken over automatically after \(Int(staleAfter / 3600))h or by a run on \(host)." + Self.bestEffortNote(destination))
        }
        throw ToolError("could not take the lock \(NameEscape.escape("\(destination.displayName)/\(path)")): another run keeps taking it")
    }

    /// Whether this run created the lock, for the removal on a signal. A class (a `Mutex`
    /// captured by the closure itself was boxed, and freeing that box looked its generic type
    /// up at run time: ~0.2 ms of a one-file backup, issue 23).
    private final class CreatedFlag: Sendable {
        let made = Mutex(false)
    }

    package func release() {
        guard held else { return }
        try? destination.remove(path)
        held = false
        if let t = cleanupToken { InterruptCleanup.shared.unregister(t); cleanupToken = nil }
    }

    static func iso(_ t: Double) -> String { Format.time(t) }

    /// What a lock is worth where the destination has no exclusive create (rclone remotes).
    package static func bestEffortNote(_ destination: any Destination) -> String {
        destination.exclusiveCreateIsAtomic ? "" : " (Locks on rclone remotes are best-effort: rclone has no exclusive create, so two runs "
            + "starting within the same second on two hosts could both proceed. Give each host its own set, and run copy and prune "
            + "for one remote from one place.)"
    }
}
