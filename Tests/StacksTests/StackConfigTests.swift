import Foundation
import Stacks
import Support
import Testing
import TestSupport

/// The committed stacks, parsed by the real `docker compose config`, against the plan's
/// tables and verification rules (with the upstream corrections listed in docs/upstream.md).
@Suite struct StackConfigTests {
    /// The plan's port table: stack -> service -> ["host:container"]. Upstream corrections:
    /// FileBrowser Quantum listens on 80 (plan: 8080); Tracktor 3000 and ShipShipShip 8080
    /// (plan: TBD); ListingLab has no image and is not started (9009 is reserved, see below).
    static let planPorts: [String: [String: Set<String>]] = [
        "io": ["gluetun": ["5001:8000", "5002:8080"], "sabnzbd": ["5003:8080"], "jdownloader": ["5004:5800"],
               "metube": ["5005:8081"], "immich-drop": ["5006:8080"]],
        "aeos": ["homepage": ["6001:3000"], "jellyseerr": ["6002:5055"], "wizarr": ["6003:5690"],
                 "speedtest": ["6004:80"], "changedetection": ["6005:5000"], "filebrowser": ["6006:80"]],
        "asteria": ["prowlarr": ["7001:9696"], "radarr": ["7002:7878"], "sonarr": ["7003:8989"],
                    "lidarr": ["7004:8686"], "whisparr": ["7005:6969"], "kapowarr": ["7006:5656"],
                    "bazarr": ["7007:6767"], "flaresolverr": ["7008:8191"], "linkarr": ["7009:8080"],
                    "boxarr": ["7010:8888"], "aggregarr": ["7011:7171"]],
        "apollo": ["plex": ["32400:32400"], "jellyfin": ["8096:8096"], "tautulli": ["8001:8181"],
                   "maintainerr": ["8002:6246"], "posterizarr": ["8003:8000"]],
        "helios": ["logseq": ["9001:80"], "trilium": ["9002:8080"], "stirling-pdf": ["9003:8080"],
                   "mealie": ["9004:9000"], "grocy": ["9005:80"], "tracktor": ["9006:3000"],
                   "shipshipship": ["9007:8080"], "opengist": ["9008:6157"]],
        "hera": ["ntfy": ["10001:80"], "pairdrop": ["10002:3000"]],
        "atlas": ["uptime-kuma": ["11001:3001"], "dozzle": ["11002:8080"]],
    ]

    /// Services that read or write media: the same /mnt/storage:/storage mount everywhere.
    static let mediaServices: [String: Set<String>] = [
        "io": ["qbittorrent", "sabnzbd", "jdownloader", "metube"],
        "asteria": ["radarr", "sonarr", "lidarr", "whisparr", "kapowarr", "bazarr", "linkarr"],
        "apollo": ["plex", "jellyfin"],
        "aeos": ["filebrowser"],
    ]

    @Test func everyStackDirectoryIsInThePlan() throws {
        #expect(try StackRepository(root: repoRoot).allStacks() == allStacks)
    }

    @Test(arguments: allStacks)
    func publishedPortsMatchThePlan(stack: String) throws {
        let project = try FilledRepo().project(stack)
        var actual: [String: Set<String>] = [:]
        for (name, s) in project.services where !s.ports.isEmpty {
            actual[name] = Set(s.ports.map { "\($0.published):\($0.target)" })
            #expect(s.ports.allSatisfy { $0.proto == "tcp" })
        }
        #expect(actual == Self.planPorts[stack], "published ports of \(stack)")
        #expect(project.name == stack)
    }

    @Test func listingLabIsAPlaceholderThatIsNotStarted() throws {
        let repo = try FilledRepo()
        let normal = try repo.project("helios")
        #expect(normal.services["listinglab"] == nil)
        let withPlaceholder = try repo.project("helios", profiles: ["listinglab-placeholder"])
        let ll = try #require(withPlaceholder.services["listinglab"])
        #expect(ll.ports.map(\.published) == [9009])
        #expect(ll.image?.contains("placeholder") == true)
        // hs-deploy's summary of services does not include it either.
        let text = try repo.read("stacks/helios/docker-compose.yml")
        #expect(text.contains("PLACEHOLDER"))
    }

    @Test(arguments: allStacks)
    func mediaServicesMountStorageAtTheSamePath(stack: String) throws {
        let project = try FilledRepo().project(stack)
        var mounting: Set<String> = []
        for s in project.services.values {
            for v in s.volumes where v.source == "/mnt/storage" || v.source.hasPrefix("/mnt/storage/") {
                // One mount of the export root at one container path: anything else breaks hardlinks.
                #expect(v.source == "/mnt/storage" && v.target == "/storage" && v.type == "bind",
                        "\(stack)/\(s.name) mounts \(v.source) at \(v.target)")
                mounting.insert(s.name)
            }
        }
        #expect(mounting == Self.mediaServices[stack] ?? [], "services mounting /mnt/storage in \(stack)")
        // hs-deploy derives the storage guard's scope from the same parsed config.
        #expect(Set(project.services(mounting: "/mnt/storage")) == Self.mediaServices[stack] ?? [])
    }

    @Test func qbittorrentRunsInsideGluetun() throws {
        let io = try FilledRepo().project("io")
        let qbt = try #require(io.services["qbittorrent"])
        let gluetun = try #require(io.services["gluetun"])
        #expect(qbt.networkMode == "service:gluetun")
        #expect(qbt.ports.isEmpty)
        #expect(gluetun.ports.contains(ComposeProject.Port(published: 5002, target: 8080, proto: "tcp")))
        #expect(qbt.environment["WEBUI_PORT"] == "8080")
        #expect(gluetun.capAdd.contains("NET_ADMIN"))
        #expect(gluetun.devices.contains("/dev/net/tun:/dev/net/tun"))
        #expect(gluetun.environment["WIREGUARD_PRIVATE_KEY"] == testValue("WIREGUARD_PRIVATE_KEY"))
    }

    @Test(arguments: allStacks)
    func cloudflaredOnlyInPublicStacks(stack: String) throws {
        let repo = try FilledRepo()
        let project = try repo.project(stack)
        let raw = try repo.project(stack, interpolate: false)
        let tunnels = project.services.values.filter { $0.image?.hasPrefix("cloudflare/cloudflared") == true }
        if ["apollo", "aeos", "hera"].contains(stack) {
            let t = try #require(tunnels.first, "\(stack) needs cloudflared")
            #expect(tunnels.count == 1)
            #expect(t.command == ["tunnel", "--no-autoupdate", "run"])
            #expect(t.ports.isEmpty)
            #expect(raw.services[t.name]?.environment["TUNNEL_TOKEN"] == "${CLOUDFLARE_TUNNEL_TOKEN}")
            #expect(t.environment["TUNNEL_TOKEN"] == testValue("CLOUDFLARE_TUNNEL_TOKEN"))
        } else {
            #expect(tunnels.isEmpty, "\(stack) has no public services")
        }
    }

    @Test(arguments: allStacks)
    func stateLivesInAppdata(stack: String) throws {
        let repo = try FilledRepo()
        let project = try repo.project(stack)
        let stateless: Set<String> = ["logseq", "flaresolverr", "pairdrop", "cloudflared", "watchtower"]
        for s in project.services.values {
            var hasAppdata = false
            for v in s.volumes where v.type == "bind" {
                if v.source == "/opt/appdata/\(s.name)" || v.source.hasPrefix("/opt/appdata/\(s.name)/") { hasAppdata = true; continue }
                let allowed = v.source == "/mnt/storage" || v.source == "/var/run/docker.sock"
                    || v.source.hasPrefix(repo.root + "/stacks/\(stack)/config/")
                #expect(allowed, "\(stack)/\(s.name): bind source \(v.source) is neither /opt/appdata/\(s.name) nor an allowed path")
                if v.source.hasPrefix(repo.root + "/stacks/") {
                    #expect(v.readOnly, "committed config is mounted read-only: \(v.source)")
                    #expect(FileManager.default.fileExists(atPath: v.source), "\(v.source) is committed")
                }
            }
            #expect(s.volumes.allSatisfy { $0.type == "bind" }, "\(stack)/\(s.name): no named volumes (state must be in /opt/appdata)")
            #expect(hasAppdata != stateless.contains(s.name), "\(stack)/\(s.name): appdata mount expected: \(!stateless.contains(s.name))")
        }
    }

    @Test(arguments: allStacks)
    func idsTimezoneRestartAndSecrets(stack: String) throws {
        let repo = try FilledRepo()
        let project = try repo.project(stack)
        let raw = try repo.project(stack, interpolate: false)
        let common = try EnvFile.load(repo.repo.commonEnv)
        // Images that honour PUID/PGID/UMASK (linuxserver, hotio, MeTube, Linkarr, Tautulli).
        let puidImages: Set<String> = ["qbittorrent", "sabnzbd", "prowlarr", "radarr", "sonarr", "lidarr", "whisparr",
                                       "bazarr", "linkarr", "plex", "tautulli", "grocy", "speedtest", "pairdrop", "kapowarr"]
        let userImages: Set<String> = ["jellyfin", "maintainerr", "posterizarr", "ntfy", "filebrowser"]
        for s in project.services.values {
            #expect(s.restart == "unless-stopped", "\(stack)/\(s.name) restart policy")
            if s.name != "logseq" { #expect(s.environment["TZ"] == common.value("TZ"), "\(stack)/\(s.name) TZ") }
            if puidImages.contains(s.name) {
                for k in ["PUID", "PGID", "UMASK"] {
                    #expect(s.environment[k] == common.value(k), "\(stack)/\(s.name) \(k)")
                }
            }
            if userImages.contains(s.name) {
                #expect(s.user == "\(common.value("PUID")!):\(common.value("PGID")!)", "\(stack)/\(s.name) user")
            }
            if s.name == "jdownloader" {
                #expect(s.environment["USER_ID"] == common.value("PUID") && s.environment["GROUP_ID"] == common.value("PGID"))
                #expect(s.environment["PUID"] == nil)
            }
            // Every secret comes from ${VAR}: no literal in the compose file.
            for (k, v) in raw.services[s.name]?.environment ?? [:] where isSecretKey(k) {
                #expect(v.contains("${"), "\(stack)/\(s.name): \(k) must come from .env, found a literal")
            }
        }
    }

    @Test(arguments: allStacks)
    func healthchecksProbeTheServicesOwnPort(stack: String) throws {
        let project = try FilledRepo().project(stack)
        // Explicit healthchecks where the image has curl/wget or a health command; the rest
        // either ship their own HEALTHCHECK (gluetun, jellyfin, tautulli, homepage,
        // uptime-kuma) or have no tool to probe with.
        let explicit: Set<String> = ["qbittorrent", "sabnzbd", "prowlarr", "radarr", "sonarr", "lidarr", "plex",
                                     "grocy", "jellyseerr", "speedtest", "ntfy", "dozzle"]
        for s in project.services.values {
            #expect(s.hasHealthcheck == explicit.contains(s.name), "\(stack)/\(s.name) healthcheck")
            guard s.hasHealthcheck else { continue }
            let cmd = s.healthcheckTest.joined(separator: " ")
            let port = s.name == "qbittorrent" ? 8080 : s.ports.first?.target
            if let port, s.name != "dozzle" {
                #expect(cmd.contains("localhost:\(port)/"), "\(stack)/\(s.name): healthcheck `\(cmd)` probes the container port \(port)")
            }
        }
    }

    @Test func homepageListsEveryPublishedPort() throws {
        let repo = try FilledRepo()
        let hp = try HomepageServices.load(repo.repo.homepageServices)
        let checker = StackChecker(repo: repo.repo)
        #expect(Set(hp.groups.map { $0.lowercased() }) == Set(allStacks))
        #expect(checker.unknownHomepageGroups(hp, stacks: allStacks).isEmpty)
        for stack in allStacks {
            let project = try repo.project(stack)
            let problems = checker.homepageProblems(stack, project: project, homepage: hp)
            #expect(problems.isEmpty, "\(stack): \(problems)")
            // And the comparison is not vacuous: every published port has an http://stack:port entry.
            let listed = Set(hp.entries.filter { $0.group.lowercased() == stack }.flatMap(\.urls)
                .compactMap(HomepageServices.hostPort).filter { $0.host == stack }.map(\.port))
            #expect(listed == project.publishedPorts)
        }
        // Watchtower has no address but is listed.
        #expect(hp.entries.contains { $0.name == "Watchtower" && $0.urls.isEmpty })
    }

    @Test func templatesHoldNoSecrets() throws {
        for t in ["common/.env.template"] + allStacks.map({ "stacks/\($0)/.env.template" }) {
            let tpl = try EnvFile.load(repoRoot + "/" + t)
            for e in tpl.entries where isSecretKey(e.key) {
                #expect(e.value.isEmpty, "\(t):\(e.line): \(e.key) is a secret and must be empty in the template")
            }
        }
        // .env files are ignored by git; templates are committed.
        let ignore = try String(contentsOfFile: repoRoot + "/.gitignore", encoding: .utf8)
        #expect(ignore.contains("stacks/*/.env") && ignore.contains("common/.env"))
    }

    @Test func everyStackPassesCheckWhenFilledIn() throws {
        let repo = try FilledRepo()
        let r = try repo.deploy(["--check"])
        #expect(r.status == 0, "\(describe(r))")
        #expect(r.stdout.contains("7 stack(s) ok"))
        let j = try repo.deploy(["--check", "--json"])
        #expect(j.status == 0)
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(j.stdout.utf8)) as? [String: Any])
        #expect(obj["ok"] as? Bool == true)
        let stacks = try #require(obj["stacks"] as? [[String: Any]])
        let storage = Dictionary(uniqueKeysWithValues: stacks.map { ($0["stack"] as! String, ($0["storage_services"] as? [String]) ?? []) })
        #expect(Set(storage.filter { !$0.value.isEmpty }.keys) == ["io", "asteria", "apollo", "aeos"])
        #expect(!j.stdout.contains("s3cret-"), "no .env value is printed")
    }
}

/// Image details checked against each image's own documentation or Dockerfile (docs/stacks.md:
/// "Service notes" says what was checked against what).
@Suite struct ImageDetailsTests {
    func service(_ stack: String, _ name: String) throws -> ComposeProject.Service {
        try #require(try FilledRepo().project(stack).services[name], "\(stack)/\(name)")
    }

    func binds(_ s: ComposeProject.Service) -> [String: String] {
        Dictionary(uniqueKeysWithValues: s.volumes.filter { $0.type == "bind" }.map { ($0.target, $0.source) })
    }

    @Test func wizarrKeepsItsAppInTheImage() throws {
        // The image's WORKDIR /data holds the app and its virtualenv; upstream mounts
        // /data/database and /data/wizard_steps. PUID/PGID are honoured (Dockerfile ENV).
        let s = try service("aeos", "wizarr")
        #expect(binds(s)["/data"] == nil, "mounting /data hides the application")
        #expect(binds(s)["/data/database"] == "/opt/appdata/wizarr/database")
        #expect(binds(s)["/data/wizard_steps"] == "/opt/appdata/wizarr/wizard_steps")
        #expect(s.environment["PUID"] == "1000" && s.environment["PGID"] == "1000")
    }

    @Test func kapowarrRunsAsPUIDAndDownloadsOnTheStorageMount() throws {
        let s = try service("asteria", "kapowarr")
        #expect(s.environment["PUID"] == "1000" && s.environment["PGID"] == "1000", "image default is PUID=0 (root)")
        #expect(binds(s)["/app/db"] == "/opt/appdata/kapowarr")
        // /app/temp_downloads: a second bind of the NFS share would be another mount (EXDEV on
        // link/rename); the temp folder lives under the one /storage mount instead.
        #expect(binds(s)["/app/temp_downloads"] == nil)
        #expect(binds(s)["/storage"] == "/mnt/storage")
    }

    @Test func shipShipShipHasItsOwnJWTSecret() throws {
        let repo = try FilledRepo()
        let raw = try repo.project("helios", interpolate: false).services["shipshipship"]
        #expect(raw?.environment["JWT_SECRET"] == "${SHIPSHIPSHIP_JWT_SECRET}")
        let tpl = try EnvFile.load(repoRoot + "/stacks/helios/.env.template")
        #expect(tpl.value("SHIPSHIPSHIP_JWT_SECRET") == "", "a secret: empty in the template, required by hs-deploy")
        let s = try service("helios", "shipshipship")
        #expect(s.environment["DB_PATH"] == "/app/data/changelog.db")
        #expect(binds(s)["/app/data"] == "/opt/appdata/shipshipship")
    }

    @Test func linkarrComesFromDockerHubWithATag() throws {
        let s = try service("asteria", "linkarr")
        #expect(s.image == "kheopsian/linkarr:latest", "upstream publishes to Docker Hub (latest on the default branch)")
        #expect(s.environment["WEBUI_PORT"] == "8080")
        #expect(s.environment["BROWSE_BASE_PATH"] == "/storage")
    }

    @Test func immichDropStateDatabaseIsOnTheMount() throws {
        let s = try service("io", "immich-drop")
        #expect(s.environment["STATE_DB"] == "/data/state.db")
        #expect(binds(s)["/data"] == "/opt/appdata/immich-drop")
    }

    @Test func meTubeTakesUIDAndGID() throws {
        let s = try service("io", "metube")
        #expect(s.environment["UID"] == "1000" && s.environment["GID"] == "1000" && s.environment["UMASK"] == "002")
        #expect(s.environment["PUID"] == nil && s.environment["PGID"] == nil, "MeTube ignores PUID/PGID")
    }

    @Test func changeDetectionRunsAsPUID() throws {
        let s = try service("aeos", "changedetection")
        #expect(s.environment["PUID"] == "1000" && s.environment["PGID"] == "1000")
    }

    @Test func qbittorrentFollowsGluetunRestarts() throws {
        let repo = try FilledRepo()
        let r = try DockerCompose(envFiles: [repo.repo.commonEnv, repo.repo.env("io")], composeFile: repo.repo.composeFile("io")).run(["config", "--format", "json"])
        let top = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let qbt = try #require((top["services"] as? [String: Any])?["qbittorrent"] as? [String: Any])
        let dep = try #require((qbt["depends_on"] as? [String: Any])?["gluetun"] as? [String: Any])
        #expect(dep["restart"] as? Bool == true, "compose restarts qbittorrent when gluetun is restarted or recreated")
        #expect(dep["condition"] as? String == "service_healthy")
    }

    @Test func imageUpdatesOnEveryGuest() throws {
        // One mechanism on every guest: the nightly `hs-deploy --pull` of the host's stacks
        // (checks, storage guard, compose recreates dependants such as qbittorrent).
        let cron = try HostScopeTests.crontabLines()
        let pull = try #require(cron.first { $0.contains("hs-deploy --pull") }, "crontab.example has no image update line")
        let after = pull.components(separatedBy: "hs-deploy --pull").last ?? ""
        #expect(after.split(separator: " ").allSatisfy { $0.hasPrefix("-") }, "no stack names: the host's own stacks: \(pull)")
        let backup = try #require(cron.first { $0.contains("hs-backup run") })
        func minute(_ l: String) -> Int { let f = l.split(separator: " "); return Int(f[1])! * 60 + Int(f[0])! }
        #expect(minute(pull) > minute(backup), "updates after the nightly backup")
        // Watchtower on atlas only reports; it does not update behind compose's back.
        let wt = try service("atlas", "watchtower")
        #expect(wt.environment["WATCHTOWER_MONITOR_ONLY"] == "true")
    }

    @Test func homepageIsNotPublishedWithoutAnAccessPolicy() throws {
        let text = try String(contentsOfFile: repoRoot + "/stacks/aeos/.env.template", encoding: .utf8)
        #expect(!text.contains("public: Homepage"), "the tunnel token comment must not publish Homepage")
        let compose = try String(contentsOfFile: repoRoot + "/stacks/aeos/docker-compose.yml", encoding: .utf8)
        #expect(compose.contains("Cloudflare Access"), "the compose file says Homepage is only published behind an Access policy")
    }
}
