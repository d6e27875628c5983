import Foundation
import Testing
@testable import Provisioning
import Support
import TestSupport

@Suite struct ManagedEditsTests {
    let body = ["nas:/x /mnt/storage nfs rw,hard 0 0"]

    @Test func blockIsAppendedOnceAndReplacedInPlace() throws {
        let original = "# comment\n/dev/sda1 / ext4 defaults 0 1\n"
        let once = try ManagedEdits.managedBlock(in: original, name: "storage", body: body, file: "f")
        #expect(once == original + "# BEGIN home-server storage\n\(body[0])\n# END home-server storage\n")
        #expect(try ManagedEdits.managedBlock(in: once, name: "storage", body: body, file: "f") == once)
        // A user line after the block stays after it; a new body replaces the old one in place.
        let withTail = once + "tmpfs /tmp tmpfs defaults 0 0\n"
        let replaced = try ManagedEdits.managedBlock(in: withTail, name: "storage", body: ["new line"], file: "f")
        #expect(replaced == original + "# BEGIN home-server storage\nnew line\n# END home-server storage\ntmpfs /tmp tmpfs defaults 0 0\n")
    }

    @Test func missingFinalNewlineAndCRLFLinesAreKept() throws {
        let original = "a\r\nb  \t"
        let out = try ManagedEdits.managedBlock(in: original, name: "x", body: ["y"], file: "f")
        #expect(out == "a\r\nb  \t\n# BEGIN home-server x\ny\n# END home-server x\n")
        #expect(try ManagedEdits.managedBlock(in: "", name: "x", body: ["y"], file: "f") == "# BEGIN home-server x\ny\n# END home-server x\n")
    }

    @Test func unbalancedMarkersAreAnErrorNotAGuess() {
        let bad = "# BEGIN home-server storage\nx\n"
        #expect(throws: ProvisionError.self) { try ManagedEdits.managedBlock(in: bad, name: "storage", body: body, file: "/etc/fstab") }
        let twice = "# BEGIN home-server s\n# END home-server s\n# BEGIN home-server s\n# END home-server s\n"
        do { _ = try ManagedEdits.managedBlock(in: twice, name: "s", body: body, file: "/etc/fstab"); Issue.record("no error") } catch {
            #expect("\(error)".contains("/etc/fstab") && "\(error)".contains("lines 1, 2, 3, 4"))
        }
    }

    @Test func ensureLineAppendsOnlyWhenMissing() {
        #expect(ManagedEdits.ensureLine(in: "root:100000:65536\n", "root:1000:1") == "root:100000:65536\nroot:1000:1\n")
        #expect(ManagedEdits.ensureLine(in: "root:1000:1\nx:1:1", "root:1000:1") == "root:1000:1\nx:1:1")
        #expect(ManagedEdits.ensureLine(in: "x:1:1", "root:1000:1") == "x:1:1\nroot:1000:1\n")
        #expect(ManagedEdits.ensureLine(in: "root:1000:1\r\n", "root:1000:1") == "root:1000:1\r\n")
        let crlfBlock = "a\r\n# BEGIN home-server x\r\nold\r\n# END home-server x\r\n"
        #expect(try! ManagedEdits.managedBlock(in: crlfBlock, name: "x", body: ["new"], file: "f") == "a\r\n# BEGIN home-server x\nnew\n# END home-server x\n")
    }

    @Test func foreignStorageMountIsDetected() {
        let fstab = "//nas/media /mnt/storage cifs creds 0 0\n# BEGIN home-server storage\nnas:/m /mnt/storage nfs hard 0 0\n# END home-server storage\n"
        let f = ManagedEdits.foreignMounts(fstab: fstab, mountPoint: "/mnt/storage")
        #expect(f.count == 1 && f[0].line == 1)
    }

    @Test func templateRendering() throws {
        let tpl = "# {{ignored}} comment\n\n{{a}}:{{b}} x\n{{#on}}\nkept {{a}}\n{{/on}}\n{{#off}}\ndropped\n{{/off}}\n"
        #expect(try Template.render(tpl, values: ["a": "1", "b": "2"], flags: ["on": true, "off": false], name: "t") == ["1:2 x", "kept 1"])
        do { _ = try Template.render("{{nope}}\n", values: ["a": "1"], name: "t.template"); Issue.record("no error") } catch {
            #expect("\(error)" == "t.template:1: unknown placeholder '{{nope}}' (known: a)")
        }
    }

    static let snapshotConfig = """
        arch: amd64
        features: fuse=1
        mp0: local-lvm:vm-101-disk-1,mp=/srv/cache
        unprivileged: 1

        [snap1]
        arch: amd64
        mp0: local-lvm:vm-101-disk-1,mp=/srv/cache
        unprivileged: 1

        """

    @Test func lxcMergeEditsOnlyTheLiveSection() {
        let idx = LXCConfig.mountIndex(config: Self.snapshotConfig, hostPath: "/mnt/storage", mountPoint: "/mnt/storage")
        #expect(idx.index == 1 && !idx.present)
        let desired = ["mp1: /mnt/storage,mp=/mnt/storage", "features: nesting=1,keyctl=1", "lxc.cgroup2.devices.allow: c 10:200 rwm"]
        let m = LXCConfig.merge(config: Self.snapshotConfig, desired: desired, vmid: 101, usePct: false)
        #expect(m.pctCommands.isEmpty)
        #expect(m.content == """
            arch: amd64
            features: fuse=1,nesting=1,keyctl=1
            mp0: local-lvm:vm-101-disk-1,mp=/srv/cache
            unprivileged: 1
            mp1: /mnt/storage,mp=/mnt/storage
            lxc.cgroup2.devices.allow: c 10:200 rwm

            [snap1]
            arch: amd64
            mp0: local-lvm:vm-101-disk-1,mp=/srv/cache
            unprivileged: 1

            """)
        // Idempotent: merging again changes nothing; the snapshot section is the same bytes.
        #expect(LXCConfig.merge(config: m.content, desired: desired, vmid: 101, usePct: false).content == m.content)
        #expect(LXCConfig.mountIndex(config: m.content, hostPath: "/mnt/storage", mountPoint: "/mnt/storage") == (1, true))
    }

    @Test func lxcMergeWithPctPlansCommandsForMountAndFeatures() {
        let desired = ["mp1: /mnt/storage,mp=/mnt/storage", "features: nesting=1,keyctl=1", "lxc.mount.entry: /dev/net/tun dev/net/tun none bind,create=file"]
        let m = LXCConfig.merge(config: Self.snapshotConfig, desired: desired, vmid: 101, usePct: true)
        #expect(m.pctCommands == [["pct", "set", "101", "-mp1", "/mnt/storage,mp=/mnt/storage"],
                                  ["pct", "set", "101", "-features", "fuse=1,nesting=1,keyctl=1"]])
        #expect(m.content.contains("unprivileged: 1\nlxc.mount.entry: /dev/net/tun dev/net/tun none bind,create=file\n\n[snap1]"))
        #expect(!m.content.contains("mp1:"))
    }

    @Test func lxcIdmapGroupIsReplacedAndTunDeviceRespected() {
        let cfg = "lxc.idmap: u 0 100000 65536\nmemory: 1\nlxc.idmap: g 0 100000 65536\ndev0: /dev/net/tun\nunprivileged: 1\n"
        #expect(LXCConfig.hasTunDevice(cfg) && LXCConfig.isUnprivileged(cfg))
        let ids = ["lxc.idmap: u 0 100000 1000", "lxc.idmap: u 1000 1000 1"]
        let m = LXCConfig.merge(config: cfg, desired: ids, vmid: 7, usePct: false)
        #expect(m.content == "lxc.idmap: u 0 100000 1000\nlxc.idmap: u 1000 1000 1\nmemory: 1\ndev0: /dev/net/tun\nunprivileged: 1\n")
        let sel = LXCConfig.select(["mp0: a,mp=b", "features: x=1", "lxc.cgroup2.devices.allow: c 10:200 rwm", "lxc.idmap: u 0 1 2"],
                                   mountIndex: 3, storage: true, tun: false, idmap: false)
        #expect(sel == ["mp3: a,mp=b", "features: x=1"])
        #expect(LXCConfig.mergeOptions("fuse=1,nesting=0", "nesting=1,keyctl=1") == "fuse=1,nesting=1,keyctl=1")
    }

    @Test func idmapValuesForOtherIds() {
        let v = LXCConfig.idmapValues(puid: 568, pgid: 1001)
        #expect(v["puid_next"] == "569" && v["idmap_base_puid_next"] == "100569" && v["puid_rest"] == "64967")
        #expect(v["pgid_rest"] == "64534" && v["idmap_base_pgid_next"] == "101002")
    }

    @Test func tailscaleDecisionFromStatusJSON() {
        let running = #"{"Version":"1.76.1","TUN":true,"BackendState":"Running","Self":{"HostName":"io","DNSName":"io.tail1234.ts.net.","Online":true}}"#
        #expect(TailscaleDecision.decide(statusJSON: running, hostname: "io") == (.running, false))
        let renamedDNS = #"{"BackendState":"Running","Self":{"HostName":"debian","DNSName":"io.tail1234.ts.net."}}"#
        #expect(TailscaleDecision.decide(statusJSON: renamedDNS, hostname: "io").0 == .running)
        let other = #"{"BackendState":"Running","TUN":false,"Self":{"HostName":"debian","DNSName":"debian.tail1234.ts.net."}}"#
        #expect(TailscaleDecision.decide(statusJSON: other, hostname: "io") == (.rename(from: "debian"), true))
        let login = #"{"BackendState":"NeedsLogin","Self":{"HostName":"io"}}"#
        #expect(TailscaleDecision.decide(statusJSON: login, hostname: "io").0 == .enroll)
        #expect(TailscaleDecision.decide(statusJSON: "not json", hostname: "io").0 == .enroll)
        #expect(TailscaleDecision.decide(statusJSON: nil, hostname: "io").0 == .enroll)
    }

    @Test func dpkgStatusParsing() {
        let s = "Package: a\nStatus: install ok installed\n\nPackage: b\nStatus: deinstall ok config-files\n\nPackage: c\nVersion: 1\nStatus: hold ok installed\n"
        #expect(DpkgStatus.installed(in: s) == ["a", "c"])
    }

    @Test func appdataNamesComeFromTheStackComposeFile() throws {
        let t = try TempDir()
        try FileManager.default.createDirectory(atPath: t.sub("demo"), withIntermediateDirectories: true)
        try """
            services:
              a:
                volumes:
                  - /opt/appdata/alpha:/config
                  - /opt/appdata/alpha/cache:/cache
                  - /mnt/storage:/storage
              b:
                volumes: ["/opt/appdata/beta-2:/data", "./x:/y"]

            """.write(toFile: t.sub("demo/docker-compose.yml"), atomically: true, encoding: .utf8)
        let inv = try Inventory.parse(InventoryTests.base + "  g: {role: guest, kind: lxc, vmid: 101, proxmox: pve, stack: demo}\n")
        var ctx = ProvisionContext(inventory: inv, host: inv.host("g")!, templatesDir: t.path, stacksDir: t.path, usePct: false, probe: [])
        // Nested directories and their parents, each once, parents first.
        #expect(try Steps.appdataDirectories(ctx).map(\.path) == ["/opt/appdata/alpha", "/opt/appdata/alpha/cache", "/opt/appdata/beta-2"])
        #expect(try Steps.appdataDirectories(ctx).allSatisfy { $0.uid == 1000 && $0.gid == 1000 })
        let req = try StackRequirements.load(stacksDir: t.path, stack: "demo", puid: 1000, pgid: 1000)
        #expect(req.storageServices == ["a"] && !req.needsTun)
        // A missing compose file is an error naming it, not an empty list.
        ctx.stacksDir = t.sub("missing")
        #expect(throws: ProvisionError.self) { try Steps.appdataDirectories(ctx) }
    }

    @Test func appdataOwnerWrittenNextToTheService() throws {
        let yaml = """
            services:
              kuma:
                x-appdata-owner: "0:0"
                volumes: [{type: bind, source: /opt/appdata/kuma/data, target: /app/data}]
              app:
                x-appdata-owner: "${PUID}:${PGID}"
                volumes: ["/opt/appdata/app:/config"]
                devices: ["/dev/net/tun:/dev/net/tun"]
              off:
                profiles: [placeholder]
                volumes: ["/opt/appdata/off:/data"]

            """
        let r = try StackRequirements.parse(yaml, file: "c.yml", stack: "s", puid: 1001, pgid: 1002)
        #expect(r.appdata.map { "\($0.path) \($0.uid):\($0.gid)" } == ["/opt/appdata/app 1001:1002", "/opt/appdata/kuma 0:0", "/opt/appdata/kuma/data 0:0"])
        #expect(r.tunServices == ["app"] && !r.needsStorage)
        // Two owners for one directory, a bad owner, a variable in an appdata path: clear errors.
        let clash = yaml.replacingOccurrences(of: "/opt/appdata/app:/config", with: "/opt/appdata/kuma:/config")
        #expect(throws: ProvisionError.self) { try StackRequirements.parse(clash, file: "c.yml", stack: "s", puid: 1001, pgid: 1002) }
        let bad = yaml.replacingOccurrences(of: "\"0:0\"", with: "root")
        #expect(throws: ProvisionError.self) { try StackRequirements.parse(bad, file: "c.yml", stack: "s", puid: 1, pgid: 1) }
        let variable = yaml.replacingOccurrences(of: "/opt/appdata/app:/config", with: "/opt/appdata/${APP}:/config")
        #expect(throws: ProvisionError.self) { try StackRequirements.parse(variable, file: "c.yml", stack: "s", puid: 1, pgid: 1) }
    }

    @Test func shellJoinQuotes() {
        #expect(Provisioner.shellJoin(["echo", "a b", "it's", "--x=1"]) == "echo 'a b' 'it'\\''s' --x=1")
    }
}
