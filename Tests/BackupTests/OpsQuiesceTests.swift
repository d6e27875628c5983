// Quiescing against the real dockerd: containers of a Compose project started with
// `docker compose up` from a locally imported busybox image (images cannot be pulled here).
import Backup
import BackupOps
import Foundation
import Support
import TestSupport
import Testing

/// A tiny local image (`docker import` of busybox-static) and throwaway Compose projects.
enum OpsDocker {
    static let image = "hs-ops-busybox:1"
    private static let lock = NSLock()

    /// Imports the image once (idempotent, also across test runs).
    static func ensureImage() throws {
        lock.lock(); defer { lock.unlock() }
        if try Subprocess.run(["docker", "image", "inspect", image]).succeeded { return }
        guard let busybox = ["/bin/busybox", "/usr/bin/busybox"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw ToolError("busybox not found: apt-get install busybox-static (scripts/bootstrap.sh installs it)")
        }
        let root = try TempDir("hs-ops-rootfs")
        try FileManager.default.createDirectory(atPath: root.sub("bin"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: busybox, toPath: root.sub("bin/busybox"))
        for tool in ["sh", "sleep", "true"] {
            try FileManager.default.createSymbolicLink(atPath: root.sub("bin/\(tool)"), withDestinationPath: "busybox")
        }
        let tar = try Subprocess.checked(["tar", "-C", root.path, "-cf", root.path + ".tar", "."])
        _ = tar
        defer { unlink(root.path + ".tar") }
        try Subprocess.checked(["docker", "import", root.path + ".tar", image])
    }

    /// Starts a Compose project `name` with services `app`, `worker` (sharing app's network,
    /// so it can only start after app) and `idle` (exits at once).
    static func up(_ name: String, in dir: TempDir) throws {
        try ensureImage()
        let compose = """
        name: \(name)
        services:
          app:
            image: \(image)
            command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
            restart: unless-stopped
          worker:
            image: \(image)
            command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
            network_mode: "service:app"   # like qBittorrent behind Gluetun: needs app running to start
          idle:
            image: \(image)
            command: ["/bin/true"]
        """
        try compose.write(toFile: dir.sub("docker-compose.yml"), atomically: true, encoding: .utf8)
        try Subprocess.checked(["docker", "compose", "-f", dir.sub("docker-compose.yml"), "up", "-d", "--quiet-pull"])
    }

    static func down(_ name: String) {
        _ = try? Subprocess.run(["docker", "compose", "-p", name, "down", "-t", "1", "--remove-orphans"])
    }

    /// `running`, `exited`, ... of the project's service container.
    static func state(_ project: String, _ service: String) throws -> String {
        let r = try Subprocess.checked(["docker", "ps", "-a", "--filter", "label=com.docker.compose.project=\(project)",
                                        "--filter", "label=com.docker.compose.service=\(service)", "--format", "{{.State}}"])
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func waitState(_ project: String, _ service: String, _ want: String) throws -> String {
        let deadline = Date().addingTimeInterval(20)
        var s = try state(project, service)
        while s != want, Date() < deadline { usleep(100_000); s = try state(project, service) }
        return s
    }

    static func uniqueName(_ tag: String) -> String { "hsops\(tag)\(getpid())\(Int.random(in: 1000...9999))" }
}

@Suite("Quiescing Compose stacks with a real dockerd")
struct OpsQuiesceTests {
    @Test("stopped during the work, running afterwards; other stacks and stopped services untouched")
    func stopsAndStarts() throws {
        let dir = try TempDir("hs-ops-quiesce"), other = try TempDir("hs-ops-quiesce")
        let name = OpsDocker.uniqueName("a"), bystander = OpsDocker.uniqueName("b")
        defer { OpsDocker.down(name); OpsDocker.down(bystander) }
        try OpsDocker.up(name, in: dir)
        try OpsDocker.up(bystander, in: other)
        #expect(try OpsDocker.waitState(name, "app", "running") == "running")
        #expect(try OpsDocker.waitState(name, "idle", "exited") == "exited")
        var warnings: [String] = []
        let q = Quiesce(stacks: [name], stopTimeout: 5)
        let seen = try q.around(warn: { warnings.append($0) }) {
            (try OpsDocker.state(name, "app"), try OpsDocker.state(name, "worker"), try OpsDocker.state(bystander, "app"))
        }
        #expect(seen.0 == "exited" && seen.1 == "exited", "during the work: \(seen)")
        #expect(seen.2 == "running", "another project must keep running")
        #expect(try OpsDocker.state(name, "app") == "running")
        #expect(try OpsDocker.state(name, "worker") == "running")
        #expect(try OpsDocker.state(name, "idle") == "exited", "a service that was not running stays stopped")
        #expect(warnings.isEmpty, "\(warnings)")
    }

    @Test("started again when the work fails; the failure is passed on")
    func restartsAfterFailure() throws {
        struct BackupFailed: Error {}
        let dir = try TempDir("hs-ops-quiesce")
        let name = OpsDocker.uniqueName("f")
        defer { OpsDocker.down(name) }
        try OpsDocker.up(name, in: dir)
        #expect(try OpsDocker.waitState(name, "app", "running") == "running")
        var during = ""
        #expect(throws: BackupFailed.self) {
            try Quiesce(stacks: [name], stopTimeout: 5).around(warn: { _ in }) {
                during = try OpsDocker.state(name, "app")
                throw BackupFailed()
            }
        }
        #expect(during == "exited")
        #expect(try OpsDocker.state(name, "app") == "running")
        #expect(try OpsDocker.state(name, "worker") == "running")
    }

    @Test("a stack without containers is a warning; bad names are usage errors")
    func namesAndEmptyStacks() throws {
        var warnings: [String] = []
        let ran = try Quiesce(stacks: [OpsDocker.uniqueName("none")]).around(warn: { warnings.append($0) }) { true }
        #expect(ran)
        #expect(warnings.count == 1 && warnings[0].contains("no running container"))
        #expect(throws: ToolError.self) { try Quiesce.validate(["Atlas"]) }
        #expect(throws: ToolError.self) { try Quiesce.validate(["a b"]) }
        #expect(throws: ToolError.self) { try Quiesce.validate(["--all"]) }
        try Quiesce.validate(["atlas", "io", "media_2"])
    }
}
