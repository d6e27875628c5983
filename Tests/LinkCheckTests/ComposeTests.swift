import Foundation
import Testing
@testable import LinkCheck
import Support
import TestSupport

/// Compose consistency on fixture repositories (validated by the real `docker compose config`).
@Suite struct ComposeTests {
    static let good = """
    x-media: &media
      volumes:
        - /opt/appdata/sonarr:/config
        - ${STORAGE_ROOT:-/mnt/storage}:/storage
    services:
      radarr:
        image: lscr.io/linuxserver/radarr
        volumes:
          - /opt/appdata/radarr:/config
          - /mnt/storage:/storage
      sonarr:
        image: lscr.io/linuxserver/sonarr
        <<: *media
      plex:
        image: plexinc/pms-docker
        volumes:
          - type: bind
            source: ${MEDIA}
            target: /storage
            read_only: true
      qbittorrent:
        image: lscr.io/linuxserver/qbittorrent
        volumes:
          - /mnt/storage/downloads/torrents:/storage/downloads/torrents:rw
      homepage:
        image: ghcr.io/gethomepage/homepage
        volumes:
          - /opt/appdata/homepage:/app/config
          - appdata:/data
    volumes:
      appdata: {}
    """

    static let bad = """
    services:
      lidarr:
        image: lscr.io/linuxserver/lidarr
        volumes:
          - /opt/appdata/lidarr:/config
          - /mnt/storage/downloads:/downloads
          - /mnt/storage/library/music:/music
      whisparr:
        image: ghcr.io/hotio/whisparr
        volumes:
          - /mnt/storage:/data
      jellyfin:
        image: jellyfin/jellyfin
        volumes:
          - /srv/media:/storage
      bazarr:
        image: lscr.io/linuxserver/bazarr
        volumes:
          - /mnt/storage:/storage
    """

    func makeRepo(_ t: TempDir, files: [String: String]) throws {
        for (stack, text) in files { try Fx.write(t.sub("stacks/\(stack)/docker-compose.yml"), Array(text.utf8)) }
        try Fx.write(t.sub("stacks/apollo/.env.template"), Array("MEDIA=/mnt/storage\nTZ=Etc/UTC\n".utf8))
        // The fixtures are real compose files: the real parser accepts them.
        for stack in files.keys {
            let r = try Subprocess.run(["docker", "compose", "-f", t.sub("stacks/\(stack)/docker-compose.yml"), "config", "-q"],
                                       environment: ["MEDIA": "/mnt/storage"])
            #expect(r.status == 0, "docker compose config rejected the \(stack) fixture: \(r.stderr)")
        }
    }

    @Test func consistentStacksHaveNoFindings() throws {
        let t = try TempDir("lc-compose-good")
        try makeRepo(t, files: ["apollo": Self.good])
        let report = try ComposeCheck(directory: t.path, hostRoots: ["/nonexistent", "/mnt/storage"]).run()
        #expect(report.findings.isEmpty, "\(report.findings)")
        #expect(report.containerRoot == "/storage")
        #expect(report.mediaServices.map(\.service) == ["plex", "qbittorrent", "radarr", "sonarr"])
        // Interpolated from .env.template and from the ${VAR:-default}.
        #expect(report.mediaServices.first { $0.service == "plex" }?.volumes == [MediaVolume(host: "/mnt/storage", container: "/storage")])
        #expect(report.mediaServices.first { $0.service == "sonarr" }?.volumes == [MediaVolume(host: "/mnt/storage", container: "/storage")])
    }

    @Test func inconsistentServicesAreNamed() throws {
        let t = try TempDir("lc-compose-bad")
        try makeRepo(t, files: ["apollo": Self.good, "asteria": Self.bad])
        let report = try ComposeCheck(directory: t.path, hostRoots: ["/nonexistent", "/mnt/storage"]).run()
        #expect(report.containerRoot == "/storage")
        let byCode = Dictionary(grouping: report.findings, by: \.code)
        let split = byCode["compose-split-mounts"] ?? []
        #expect(split.count == 1)
        #expect(split.first?.message.hasPrefix("asteria/lidarr mounts parts of the media tree as separate volumes") == true)
        let paths = (byCode["compose-container-path"] ?? []).map(\.message)
        #expect(paths.contains { $0.hasPrefix("asteria/whisparr mounts /mnt/storage at /data") })
        #expect(paths.contains { $0.hasPrefix("asteria/lidarr mounts /mnt/storage/downloads at /downloads") && $0.contains("/storage/downloads") })
        let roots = byCode["compose-host-root"] ?? []
        #expect(roots.count == 1)
        #expect(roots.first?.message.hasPrefix("asteria/jellyfin mounts /srv/media at /storage") == true)
        // bazarr and the good stack are not named.
        #expect(!report.findings.contains { $0.message.contains("bazarr") || $0.message.contains("apollo/") })
    }

    @Test func cliRunsTheComposeCheckAndFailsOnProblems() throws {
        let t = try TempDir("lc-compose-cli")
        let root = t.sub("storage")
        try Fx.mkdirs(root + "/downloads", root + "/library")
        let bad = Self.bad.replacingOccurrences(of: "/mnt/storage", with: root)
        let good = Self.good.replacingOccurrences(of: "/mnt/storage", with: root)
        try makeRepo(t, files: ["asteria": bad])
        let (code, obj, _) = try Fx.runJSON([root, "--compose", t.path])
        #expect(code == 1)
        #expect(Fx.codes(obj, severity: "error").contains("compose-split-mounts"))
        // Default: ./stacks in the working directory is picked up.
        let (code2, obj2, _) = try Fx.runJSON([root], directory: t.path)
        #expect(code2 == 1)
        #expect((obj2["compose"] as? [String: Any])?["files"] as? [String] != nil)
        // A good repository passes.
        let t2 = try TempDir("lc-compose-cli2")
        try Fx.write(t2.sub("stacks/apollo/docker-compose.yml"), Array(good.utf8))
        try Fx.write(t2.sub("stacks/apollo/.env"), Array("MEDIA=\(root)\n".utf8))
        let (code3, obj3, r3) = try Fx.runJSON([root, "--compose", t2.path])
        #expect(code3 == 0, "\(r3.stdout)")
        #expect(((obj3["compose"] as? [String: Any])?["media_services"] as? [Any])?.count == 4)
        // Stacks that mount the plan's /mnt/storage are held to it, not to the ROOT checked here.
        let t3 = try TempDir("lc-compose-cli3")
        try Fx.write(t3.sub("stacks/apollo/docker-compose.yml"), Array(Self.good.utf8))
        try Fx.write(t3.sub("stacks/apollo/.env.template"), Array("MEDIA=/mnt/storage\n".utf8))
        let (code4, obj4, r4) = try Fx.runJSON([root], directory: t3.path)
        #expect(code4 == 0, "\(r4.stdout)")
        #expect((obj4["compose"] as? [String: Any])?["host_root"] as? String == "/mnt/storage")
    }

    @Test func theRepositorysOwnStacksAreConsistent() throws {
        // Tests/LinkCheckTests/ComposeTests.swift -> repository root.
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
        let report = try ComposeCheck(directory: repo, hostRoots: ["/mnt/storage"]).run()
        #expect(report.files.count == 7, "\(report.files)")
        #expect(report.findings.isEmpty, "\(report.findings)")
        #expect(report.containerRoot == "/storage")
        // The plan's media services are all seen (and all mount /mnt/storage:/storage).
        let names = Set(report.mediaServices.map(\.service))
        for s in ["qbittorrent", "sabnzbd", "radarr", "sonarr", "lidarr", "plex", "jellyfin"] {
            #expect(names.contains(s), "\(s) not found among \(names.sorted())")
        }
        #expect(report.mediaServices.allSatisfy { $0.volumes == [MediaVolume(host: "/mnt/storage", container: "/storage")] })
    }

    @Test func interpolation() {
        let env = ["A": "/x", "E": ""]
        #expect(ComposeCheck.interpolate("${A}/y", env: env) == "/x/y")
        #expect(ComposeCheck.interpolate("$A/y", env: env) == "/x/y")
        #expect(ComposeCheck.interpolate("${B:-/mnt/storage}", env: env) == "/mnt/storage")
        #expect(ComposeCheck.interpolate("${E:-/d}", env: env) == "/d")
        #expect(ComposeCheck.interpolate("${E-/d}", env: env) == "")
        #expect(ComposeCheck.interpolate("${B:?must-be-set}", env: env) == "${B:?must-be-set}")
        #expect(ComposeCheck.interpolate("$$HOME", env: env) == "$HOME")
    }
}
