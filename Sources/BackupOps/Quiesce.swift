// Quiesce: stop Compose stacks on this host for the length of a backup, then start them again.
//
// A stack is a Compose project (`name:` in stacks/<S>/docker-compose.yml, e.g. `atlas`). Its
// containers are found by the label Compose puts on them, `com.docker.compose.project=<S>`;
// the ones *running* before the backup are stopped with `docker stop` and exactly those are
// started again with `docker start` afterwards - also when the backup fails or the process gets
// SIGINT/SIGTERM/SIGHUP. Containers that were already stopped stay stopped. This needs no compose
// file or .env on the backup side, and works for any project name.
//
// Not guaranteed: a restart after SIGKILL or a power cut (the containers' restart policy does
// not bring a `docker stop`ped container back either); run `docker compose up -d` by hand then.
import Backup
import FoundationEssentials
import Glibc
import Support
import Synchronization

/// Stops and restarts the running containers of Compose projects.
package final class Quiesce: Sendable {
    /// Compose project names.
    package let stacks: [String]
    /// Seconds `docker stop` waits before killing a container.
    package let stopTimeout: Int
    private let docker: String
    /// Whether `stop()` installs its own SIGINT/SIGTERM/SIGHUP handlers (off when the caller
    /// has a signal guard that calls `startAfterSignal()`).
    private let handleSignals: Bool
    private struct State {
        var stopped: [(stack: String, ids: [String])] = []
        var signalWatch: SignalWatch.Token?
    }
    private let state = Mutex(State())

    /// - Parameters:
    ///   - stacks: Compose project names to stop (e.g. `["arr", "plex"]`).
    ///   - stopTimeout: grace period for `docker stop -t`.
    ///   - docker: the docker CLI (looked up on PATH).
    ///   - handleSignals: install SIGINT/SIGTERM/SIGHUP handlers while stacks are stopped.
    package init(stacks: [String], stopTimeout: Int = 60, docker: String = "docker", handleSignals: Bool = true) {
        self.stacks = stacks
        self.stopTimeout = stopTimeout
        self.docker = docker
        self.handleSignals = handleSignals
    }

    /// Checks the names: Compose project names are lowercase letters, digits, `-` and `_`.
    package static func validate(_ stacks: [String]) throws {
        for s in stacks {
            let ok = !s.isEmpty && s.unicodeScalars.allSatisfy {
                ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" || $0 == "_"
            } && s.first != "-" && s.first != "_"
            if !ok {
                throw ToolError.usage("--stop-stacks \(NameEscape.escape(s)): not a Compose project name (lowercase letters, digits, '-', '_'); use the stack's `name:`, e.g. atlas")
            }
        }
    }

    /// IDs of the running containers of `stack`.
    package func runningContainers(of stack: String) throws -> [String] {
        let r = try Subprocess.run([docker, "ps", "-q", "--no-trunc",
                                    "--filter", "label=com.docker.compose.project=\(stack)",
                                    "--filter", "status=running"])
        guard r.succeeded else {
            throw ToolError("cannot list the containers of stack \(stack): `docker ps` exited \(r.status): "
                + "\(r.stderr.trimmingWhitespaceAndNewlines()). Is dockerd running and may this user use it?")
        }
        return r.stdout.split(whereSeparator: \.isNewline).map(String.init).filter { !$0.isEmpty }
    }

    /// Stops the running containers of every stack, remembering them. On a failure, starts
    /// again what was already stopped and throws.
    /// - Returns: warnings (e.g. a stack with no running container on this host).
    @discardableResult
    package func stop() throws -> [String] {
        if handleSignals { installSignalHandlers() }
        var warnings: [String] = []
        for stack in stacks {
            let ids: [String]
            do { ids = try runningContainers(of: stack) } catch {
                _ = start()
                throw error
            }
            if ids.isEmpty {
                warnings.append("--stop-stacks \(stack): no running container of that Compose project on this host")
                continue
            }
            // Remember before stopping: a partial stop must be undone too.
            state.withLock { $0.stopped.append((stack, ids)) }
            let r = try? Subprocess.run([docker, "stop", "-t", String(stopTimeout)] + ids)
            if r?.succeeded != true {
                let detail = r?.stderr.trimmingWhitespaceAndNewlines() ?? "docker not runnable"
                let restartProblems = start()
                throw ToolError("cannot stop stack \(stack): `docker stop` failed: \(detail)"
                    + (restartProblems.isEmpty ? "; the stacks were started again" : "; " + restartProblems.joined(separator: "; ")))
            }
        }
        return warnings
    }

    /// Starts again every container `stop()` stopped, oldest-created first (`docker ps` lists
    /// newest first, and Compose creates dependencies such as a VPN container whose network
    /// others share before their dependents); containers that fail are retried once after the
    /// others. Idempotent: a second call does nothing.
    /// - Returns: problems (each names the stack and what to run by hand); empty on success.
    @discardableResult
    package func start() -> [String] {
        defer { removeSignalHandlers() }
        return restart()
    }

    /// Starts the stopped containers from a signal handler (no handler bookkeeping).
    package func startAfterSignal() -> [String] { restart() }

    private func restart() -> [String] {
        let todo = state.withLock { s in defer { s.stopped = [] }; return s.stopped }
        var problems: [String] = []
        for (stack, ids) in todo.reversed() {
            var failed: [(String, String)] = []
            for id in ids.reversed() {
                if let err = startOne(id) { failed.append((id, err)) }
            }
            // A container that needs another one (network_mode: service:...) may start now.
            failed = failed.compactMap { id, _ in startOne(id).map { (id, $0) } }
            if !failed.isEmpty {
                let detail = failed.map(\.1).joined(separator: "; ")
                problems.append("could not start stack \(stack) again (\(detail)); run `docker compose -p \(stack) up -d` or `docker start \(failed.map { String($0.0.prefix(12)) }.joined(separator: " "))`")
            }
        }
        return problems
    }

    private func startOne(_ id: String) -> String? {
        guard let r = try? Subprocess.run([docker, "start", id]) else { return "docker not runnable" }
        return r.succeeded ? nil : r.stderr.trimmingWhitespaceAndNewlines()
    }

    /// Runs `body` with the stacks stopped; starts them again afterwards whatever happens
    /// (error, or SIGINT/SIGTERM/SIGHUP, after which the process exits 128+signal).
    /// - Parameter warn: receives warnings and restart problems.
    package func around<T>(warn: (String) -> Void, _ body: () throws -> T) throws -> T {
        for w in try stop() { warn(w) }
        let result: Result<T, any Error> = Result { try body() }
        for p in start() { warn(p) }
        return try result.get()
    }

    // MARK: Signals

    /// Armed when this returns (SignalWatch).
    private func installSignalHandlers() {
        state.withLock { s in
            guard s.signalWatch == nil else { return }
            s.signalWatch = SignalWatch.shared.watch([SIGINT, SIGTERM, SIGHUP]) { [self] sig in
                Reporter.holdJSONForSignal()
                Reporter.writeStderr("hs-backup: signal \(sig): starting the stopped stacks again\n")
                let problems = restart()
                for p in problems { Reporter.writeStderr("error: \(p)\n") }
                Reporter.emitStoppedBySignal(sig, problems.isEmpty ? "; the stopped stacks were started again"
                                             : "; starting the stopped stacks again: " + problems.joined(separator: "; "))
                fflush(nil)
                _exit(128 + sig)   // not exit: the run's other threads are still going (see SignalGuard)
            }
        }
    }

    private func removeSignalHandlers() {
        let token: SignalWatch.Token? = state.withLock { s in
            defer { s.signalWatch = nil }
            return s.signalWatch
        }
        if let token { SignalWatch.shared.cancel(token) }
    }
}
