import Foundation
import Support
import Testing
import TestSupport

/// How `scripts/bootstrap.sh` decides whether the machine has a Docker the tests can use
/// (issue 22). The tests need a LOCAL daemon: one that answers on /var/run/docker.sock, or a
/// `dockerd` that `scripts/services.sh` can start. A client alone (the static 28.x client in
/// /usr/local/bin of a brand-new machine, or a client pointed at a remote daemon) is not one,
/// and then docker.io is installed. Each case runs `bootstrap.sh --plan` with stand-in
/// `docker`, `dockerd` and `dpkg-query` on a PATH that holds nothing else of Docker's.
@Suite struct BootstrapDecisionTests {
    /// One machine: which stand-ins exist and how they answer.
    struct Machine {
        var dockerCE = false         // dpkg-query says docker-ce is installed
        var client = true            // a `docker` client is on PATH
        var localDaemon = false      // `docker -H unix:///var/run/docker.sock info` answers
        var remoteDaemon = false     // `docker info` answers through DOCKER_HOST (tcp://...)
        var dockerd = false          // a `dockerd` binary is on PATH
        var dockerHost = ""          // DOCKER_HOST in the environment
    }

    struct Plan { var decision: String; var install: [String]; var stderr: String }

    /// The script under test; `HS_BOOTSTRAP_SCRIPT` names another (to run these cases against
    /// an older script).
    static var script: String {
        ProcessInfo.processInfo.environment["HS_BOOTSTRAP_SCRIPT"] ?? ReleasePackage.repoRoot + "/scripts/bootstrap.sh"
    }

    static func plan(_ m: Machine) throws -> Plan {
        let dir = try TempDir("hs-bootstrap-plan")
        let standIns = dir.sub("stand-ins"), tools = dir.sub("tools")
        try FileManager.default.createDirectory(atPath: standIns, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: tools, withIntermediateDirectories: true)
        // The few real tools the script uses besides the stand-ins: nothing of Docker's.
        for tool in ["bash", "env", "timeout", "grep", "id", "cat", "sed", "dirname", "head", "swift"] {
            guard let real = Subprocess.which(tool) ?? (tool == "swift" ? "/opt/swift/usr/bin/swift" : nil),
                  FileManager.default.isExecutableFile(atPath: real) else { continue }
            try FileManager.default.createSymbolicLink(atPath: tools + "/" + tool, withDestinationPath: real)
        }
        func write(_ name: String, _ body: String) throws {
            // Written by a short-lived child, never through a descriptor of this multi-threaded
            // test process: Foundation's atomic write opens its temporary file without
            // O_CLOEXEC, so a bash another test forks meanwhile keeps it open for writing and
            // every exec of the stand-in fails with ETXTBSY while that bash lives (seen: the
            // stand-in dpkg-query "failed" for the first 22 packages, so the plan listed them).
            try Subprocess.checked(["sh", "-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh", standIns + "/" + name],
                                   input: Data(("#!/bin/sh\n" + body).utf8))
        }
        // dpkg-query -W -f='${Status}' PKG: every package but Docker's is installed, so the plan's
        // install list is exactly the Docker decision.
        try write("dpkg-query", """
            for last; do :; done
            case "$last" in
              docker-ce) [ "\(m.dockerCE ? 1 : 0)" = 1 ] || exit 1 ;;
              docker.io) exit 1 ;;
            esac
            printf 'install ok installed'
            """)
        if m.client {
            // Like the real client: -H wins over DOCKER_HOST; `info` answers only where a daemon is.
            try write("docker", """
                host="${DOCKER_HOST:-unix:///var/run/docker.sock}"
                while [ $# -gt 0 ]; do
                  case "$1" in
                    -H) host="$2"; shift 2 ;;
                    --version) echo "Docker version 28.2.2, build e6534b4"; exit 0 ;;
                    info)
                      case "$host" in
                        unix:///var/run/docker.sock) [ "\(m.localDaemon ? 1 : 0)" = 1 ] && exit 0 ;;
                        tcp://*) [ "\(m.remoteDaemon ? 1 : 0)" = 1 ] && exit 0 ;;
                      esac
                      echo "Cannot connect to the Docker daemon at $host. Is the docker daemon running?" >&2; exit 1 ;;
                    *) shift ;;
                  esac
                done
                exit 1
                """)
        }
        if m.dockerd { try write("dockerd", "exit 0\n") }
        let r = try Subprocess.run(["/bin/bash", script, "--plan"],
                                   environment: ["PATH": standIns + ":" + tools, "DOCKER_HOST": m.dockerHost,
                                                 "DOCKER_CONTEXT": ""])
        #expect(r.status == 0, "bootstrap.sh --plan exited \(r.status): \(r.stderr)")
        var decision = "", install: [String] = []
        for line in r.stdout.split(separator: "\n") {
            if line.hasPrefix("docker: ") { decision = String(line.dropFirst(8)) }
            if line.hasPrefix("install:") { install = line.dropFirst(8).split(separator: " ").map(String.init) }
        }
        return Plan(decision: decision, install: install, stderr: r.stderr)
    }

    @Test func dockerCEIsKeptAndDockerIOIsNeverInstalledOverIt() throws {
        let p = try Self.plan(Machine(dockerCE: true, client: true, localDaemon: false))
        #expect(p.decision == "docker-ce", "\(p)")
        #expect(!p.install.contains("docker.io"), "\(p)")
    }

    @Test func aRunningLocalDaemonIsKept() throws {
        let p = try Self.plan(Machine(client: true, localDaemon: true))
        #expect(p.decision == "local-daemon", "\(p)")
        #expect(p.install.isEmpty, "\(p)")
    }

    /// The brand-new machine of issue 22: a static client in /usr/local/bin, no daemon, no
    /// dockerd. The old script took `docker --version` for a Docker and installed nothing.
    @Test func aClientAloneGetsDockerIO() throws {
        let p = try Self.plan(Machine(client: true))
        #expect(p.decision == "docker.io", "\(p)")
        #expect(p.install == ["docker.io"], "\(p)")
        #expect(p.stderr.contains("only a Docker client"), "\(p.stderr)")
    }

    /// A client pointed at a remote daemon answers `docker info`, but the tests bind-mount
    /// local directories: that daemon is not one they can use.
    @Test func aClientPointedAtARemoteDaemonGetsDockerIO() throws {
        let p = try Self.plan(Machine(client: true, remoteDaemon: true, dockerHost: "tcp://nas.lan:2375"))
        #expect(p.decision == "docker.io", "\(p)")
        #expect(p.install == ["docker.io"], "\(p)")
    }

    @Test func aDockerdThatServicesCanStartIsKept() throws {
        let p = try Self.plan(Machine(client: true, dockerd: true))
        #expect(p.decision == "dockerd", "\(p)")
        #expect(p.install.isEmpty, "\(p)")
    }

    @Test func nothingGetsDockerIO() throws {
        let p = try Self.plan(Machine(client: false))
        #expect(p.decision == "docker.io", "\(p)")
        #expect(p.install == ["docker.io"], "\(p)")
    }

    /// services.sh on a machine with only a client says what to do, not bash's "command not found".
    @Test func servicesSaysToRunBootstrapWhenThereIsNoDockerd() throws {
        let dir = try TempDir("hs-services")
        let bin = dir.sub("bin")
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        for tool in ["bash", "env", "timeout", "pgrep", "mkdir", "seq", "sleep", "tail"] {
            if let real = Subprocess.which(tool) {
                try FileManager.default.createSymbolicLink(atPath: bin + "/" + tool, withDestinationPath: real)
            }
        }
        // rpcbind is running here (the suite's services), so services.sh goes on to Docker.
        try "#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n".write(toFile: bin + "/docker", atomically: true, encoding: .utf8)
        chmod(bin + "/docker", 0o755)
        let r = try Subprocess.run(["/bin/bash", ReleasePackage.repoRoot + "/scripts/services.sh"], environment: ["PATH": bin])
        #expect(r.status == 1, "\(r)")
        #expect(r.stderr.contains("run scripts/bootstrap.sh: it installs docker.io"), "\(r.stderr)")
        #expect(!r.stderr.contains("command not found"), "\(r.stderr)")
    }
}
