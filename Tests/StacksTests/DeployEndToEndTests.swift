import Foundation
import Stacks
import Support
import Testing
import TestSupport

/// hs-deploy against the real Docker engine: a tiny stack whose image is imported locally
/// (busybox-static httpd; nothing can be pulled here) is refused on a plain directory,
/// started on a mounted tmpfs, answers on its published port, and is taken down.
@Suite struct DeployEndToEndTests {
    /// A free TCP port on 127.0.0.1 (bound then released).
    func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard ok else { throw ToolError("cannot find a free port") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// Imports a one-binary image: /bin/busybox (static) with an httpd command.
    func importImage(tag: String, dir: TempDir) throws {
        let busybox = "/bin/busybox"
        let file = try Subprocess.run(["file", "-L", busybox])
        #expect(!file.stdout.contains("dynamically linked"), "busybox-static is needed (scripts/bootstrap.sh installs it)")
        let rootfs = dir.sub("rootfs")
        try FileManager.default.createDirectory(atPath: rootfs + "/bin", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: busybox, toPath: rootfs + "/bin/busybox")
        try Subprocess.checked(["tar", "-C", rootfs, "-cf", dir.sub("rootfs.tar"), "."])
        try Subprocess.checked(["docker", "import", "-c", "CMD [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/storage\"]",
                                dir.sub("rootfs.tar"), tag])
    }

    func containers(project: String) throws -> [String] {
        let r = try Subprocess.checked(["docker", "ps", "-a", "--filter", "label=com.docker.compose.project=\(project)", "--format", "{{.Names}}"])
        return r.stdout.split(separator: "\n").map(String.init)
    }

    @Test func deployRefuseStartAnswerAndDown() throws {
        let info = try Subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"])
        try #require(info.succeeded, "dockerd must be running (scripts/services.sh starts it): \(info.stderr)")

        let dir = try TempDir("hs-e2e")
        let id = String(UUID().uuidString.prefix(8)).lowercased()
        let stack = "hstest\(id)"
        let tag = "hs-test-busybox:\(id)"
        let port = try freePort()
        let storage = dir.sub("storage")
        try FileManager.default.createDirectory(atPath: storage, withIntermediateDirectories: true)
        try importImage(tag: tag, dir: dir)
        defer { _ = try? Subprocess.run(["docker", "rmi", "-f", tag]) }

        // A repository with the real common template and one test stack.
        let root = dir.sub("repo")
        let fm = FileManager.default
        try fm.createDirectory(atPath: root + "/common", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: root + "/stacks/\(stack)", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: root + "/stacks/aeos/config/homepage", withIntermediateDirectories: true)
        try fm.copyItem(atPath: repoRoot + "/common/.env.template", toPath: root + "/common/.env.template")
        let common = try EnvFile.load(root + "/common/.env.template").entries
            .map { "\($0.key)=\($0.value.isEmpty ? testValue($0.key) : $0.value)" }.joined(separator: "\n") + "\n"
        func write(_ rel: String, _ text: String, mode: Int = 0o600) throws {
            try Data(text.utf8).write(to: URL(fileURLWithPath: root + "/" + rel))
            try fm.setAttributes([.posixPermissions: mode], ofItemAtPath: root + "/" + rel)
        }
        try write("common/.env", common)
        try write("stacks/\(stack)/.env.template", "# test stack\nHSTEST_GREETING=\n", mode: 0o644)
        try write("stacks/\(stack)/.env", "HSTEST_GREETING=\(testValue("HSTEST_GREETING"))\n")
        try write("stacks/\(stack)/docker-compose.yml", """
            name: \(stack)
            services:
              web:
                image: \(tag)
                restart: "no"
                ports:
                  - "127.0.0.1:\(port):8080"
                volumes:
                  - \(storage):/storage:ro
                environment:
                  TZ: ${TZ}
                  GREETING: ${HSTEST_GREETING}

            """, mode: 0o644)
        try write("stacks/aeos/config/homepage/services.yaml", """
            - \(stack):
                - Web:
                    href: http://\(stack):\(port)

            """, mode: 0o644)
        let deploy = { (args: [String]) in try Tools.run("hs-deploy", args + ["--repo", root, "--storage", storage]) }
        defer { _ = try? deploy(["--down", stack]) }

        // 1. Plain directory: refused, nothing created.
        let refused = try deploy([stack])
        #expect(refused.status == 1, "\(describe(refused))")
        #expect(refused.stderr.contains("not starting \(stack)") && refused.stderr.contains("is not a mount point"))
        #expect(try containers(project: stack).isEmpty)

        // 2. Mounted tmpfs with the production default (nfs only): refused.
        try Subprocess.checked(["mount", "-t", "tmpfs", "-o", "size=1m", "hs-e2e-\(id)", storage])
        defer { _ = try? Subprocess.run(["umount", "-l", storage]) }
        try Data("hello from the storage mount \(id)\n".utf8).write(to: URL(fileURLWithPath: storage + "/index.html"))
        let strict = try deploy([stack])
        #expect(strict.status == 1)
        #expect(strict.stderr.contains("mounted as tmpfs"))
        #expect(try containers(project: stack).isEmpty)

        // 3. tmpfs explicitly allowed: starts, answers on its port with the file on the mount.
        let up = try Tools.run("hs-deploy", [stack, "--repo", root, "--storage", storage, "--json"],
                               environment: ["HS_STORAGE_FSTYPES": "nfs,nfs4,tmpfs"])
        #expect(up.status == 0, "\(describe(up))")
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(up.stdout.utf8)) as? [String: Any])
        let outcome = try #require((obj["stacks"] as? [[String: Any]])?.first)
        #expect((outcome["storage"] as? [String: Any])?["fs_type"] as? String == "tmpfs")
        let services = try #require(outcome["services"] as? [[String: Any]])
        #expect(services.first?["state"] as? String == "running")
        #expect(!up.stdout.contains("s3cret-"))
        var body = ""
        for _ in 0..<50 {
            let r = try Subprocess.run(["curl", "-fsS", "--max-time", "2", "http://127.0.0.1:\(port)/index.html"])
            if r.succeeded { body = r.stdout; break }
            Thread.sleep(forTimeInterval: 0.2)
        }
        #expect(body == "hello from the storage mount \(id)\n")
        // The .env value reached the container.
        let env = try Subprocess.checked(["docker", "inspect", "--format", "{{range .Config.Env}}{{println .}}{{end}}", "\(stack)-web-1"])
        #expect(env.stdout.contains("GREETING=\(testValue("HSTEST_GREETING"))"))

        // 4. Down: containers gone, the port is closed.
        let down = try deploy(["--down", stack])
        #expect(down.status == 0, "\(describe(down))")
        #expect(try containers(project: stack).isEmpty)
        let closed = try Subprocess.run(["curl", "-fsS", "--max-time", "2", "http://127.0.0.1:\(port)/"])
        #expect(!closed.succeeded)
    }
}
