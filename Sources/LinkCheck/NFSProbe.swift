#if canImport(Glibc)
import Glibc
#endif
import NFS
import Support

/// The hardlink probe over libnfs, for `nfs://server/export/path` roots: usable on the Proxmox
/// host before anything is mounted. Checks downloads/ and library/ exist on one filesystem of
/// the export (same fsid: no child dataset in between), then creates
/// `.hs-linkcheck-probe-<pid>-<random>` under downloads, hardlinks it into library, checks one
/// inode with link count 2, and removes both (in every path).
package enum NFSProbeRunner {
    package static func run(url: String, downloads: String, library: String, report: inout LinkCheckReport,
                            randomSuffix: String = LocalProbe.randomSuffix()) throws {
        let client: NFSClient
        do {
            client = try NFSClient(url: url)
        } catch let e as NFSError {
            report.add(Finding(.error, "nfs", "cannot mount \(NameEscape.escape(e.location)): \(e.kind) (\(NameEscape.escape(e.detail))).", fix: e.hint))
            return
        }
        let location = client.displayURL
        var missing = false
        var stats: [String: NFSStat] = [:]
        for (label, rel) in [("downloads", downloads), ("library", library)] {
            do {
                guard let st = try client.lstatIfExists(rel) else {
                    missing = true
                    report.add(Finding(.error, "missing-directory", "\(label) directory \(NameEscape.escape(rel)) does not exist in \(NameEscape.escape(location)).",
                                       fix: "Mount the export and run `hs-linkcheck --init /mnt/storage`, or create it on the NAS (owner PUID:PGID, mode 775)."))
                    continue
                }
                guard st.kind == .directory else {
                    missing = true
                    report.add(Finding(.error, "missing-directory", "\(label) path \(NameEscape.escape(rel)) in \(NameEscape.escape(location)) is not a directory.", fix: nil))
                    continue
                }
                stats[label] = st
            } catch let e as NFSError {
                missing = true
                report.add(Finding(.error, "nfs", "cannot stat \(NameEscape.escape(rel)) in \(NameEscape.escape(location)): \(e)", fix: e.hint))
            }
        }
        if missing { return }
        let dlSt = stats["downloads"]!, libSt = stats["library"]!
        var crossDevice = false
        if dlSt.device != libSt.device {
            crossDevice = true
            report.add(Finding(.error, "cross-device",
                               "downloads (\(NameEscape.escape(downloads))) and library (\(NameEscape.escape(library))) in \(NameEscape.escape(location)) are on different filesystems of the NAS (fsid \(dlSt.device) and \(libSt.device)): separate datasets under one export. Hardlinks cannot cross them.",
                               fix: "Keep downloads/ and library/ in ONE dataset (TrueNAS: one dataset such as /mnt/tank/media holding both folders, no child dataset for either), exported once."))
        }

        let name = ".hs-linkcheck-probe-\(Sys.pid)-\(randomSuffix)"
        let src = downloads + "/" + name, dst = library + "/" + name
        var result = ProbeResult(via: "nfs", downloadsFile: src, libraryFile: dst, sameInode: false, linkCount: 0,
                                 ok: false, failure: nil, cleanedUp: false)
        var created = false, linked = false
        func cleanup() {
            if linked { try? client.unlink(dst); linked = false }
            if created { try? client.unlink(src); created = false }
            result.cleanedUp = ((try? client.lstatIfExists(src)) ?? nil) == nil && ((try? client.lstatIfExists(dst)) ?? nil) == nil
        }
        do {
            let f = try client.create(src, mode: 0o644, .exclusive)
            created = true
            defer { try? f.close() }
            try f.write(Array("hs-linkcheck probe \(Sys.pid)\n".utf8))
        } catch let e as NFSError {
            result.failure = e.description
            report.add(cannotWrite(client: client, dir: downloads, st: dlSt, error: e, url: url))
            cleanup()
            report.probe = result
            return
        }
        do {
            try client.link(src, dst)
            linked = true
        } catch let e as NFSError {
            result.failure = e.description
            switch e.kind {
            case .other(EXDEV):
                if !crossDevice {
                    report.add(Finding(.error, "cross-device", "the NAS refused the hardlink \(NameEscape.escape(dst)) with EXDEV (cross-device): downloads and library are on different filesystems behind this export.",
                                       fix: "Keep downloads/ and library/ in one dataset."))
                }
            case .permissionDenied, .readOnly:
                report.add(cannotWrite(client: client, dir: library, st: libSt, error: e, url: url))
            default:
                report.add(Finding(.error, "no-hardlinks", "the NAS refused the hardlink \(NameEscape.escape(dst)): \(e)",
                                   fix: "Check the export's filesystem supports hardlinks (ZFS does) and the export is read-write for this host."))
            }
            cleanup()
            report.probe = result
            return
        }
        if let a = try? client.lstat(src), let b = try? client.lstat(dst) {
            result.sameInode = a.inode == b.inode && a.device == b.device
            result.linkCount = b.linkCount
        }
        result.ok = result.sameInode && result.linkCount == 2
        if !result.ok {
            report.add(Finding(.error, "probe-mismatch",
                               "the hardlink was created on the NAS but does not behave like one: same inode \(result.sameInode), link count \(result.linkCount) (expected 2).",
                               fix: "Check the NAS filesystem and export options."))
        }
        cleanup()
        report.probe = result
    }

    /// "cannot write" over NFS: the uid/gid libnfs sends, the directory owner, root_squash/idmap.
    static func cannotWrite(client: NFSClient, dir: String, st: NFSStat, error: NFSError, url: String) -> Finding {
        let query = url.split(separator: "?", maxSplits: 1).dropFirst().first.map(String.init) ?? ""
        var args: [String: String] = [:]
        for kv in query.split(separator: "&") {
            let p = kv.split(separator: "=", maxSplits: 1).map(String.init)
            if p.count == 2 { args[p[0]] = p[1] }
        }
        let uid = args["uid"].flatMap(UInt32.init) ?? getuid()
        let gid = args["gid"].flatMap(UInt32.init) ?? getgid()
        let owner = "uid \(st.uid) gid \(st.gid) mode \(String(st.permissions, radix: 8))"
        var why: [String] = []
        if error.kind == .readOnly {
            why.append("the export is read-only for this host: make it Read-Write on the NAS.")
        }
        if uid == 0 {
            why.append("libnfs sends uid 0 (root), and NFS exports squash root to nobody by default (root_squash; TrueNAS: Maproot User empty): add `?uid=PUID&gid=PGID` to the URL, or set Maproot User/Group to root for this host only.")
        }
        if st.uid == 65534 {
            why.append("the directory belongs to nobody (65534): an ID-mapping problem (all_squash/Mapall, or NFSv4 idmap domains that differ; use the NFSv3 ownership model).")
        }
        why.append("give the tree to the apps' user on the NAS: owner PUID:PGID, mode 775 (UMASK 002).")
        return Finding(.error, "cannot-write",
                       "cannot create a file in \(dir) of \(client.displayURL) as uid \(uid) gid \(gid) (what libnfs sends): \(error.kind) (\(NameEscape.escape(error.detail))). The directory: \(owner).",
                       fix: why.joined(separator: " "))
    }
}
