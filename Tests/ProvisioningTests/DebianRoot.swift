import Foundation
import Testing
import Support

/// A throwaway Debian 12 (bookworm, minbase) root for tests that run apt for real: unpacked
/// from a cached pristine debootstrap result (/var/cache/hs-tests/, made on first use), with
/// `usr/sbin/policy-rc.d` exiting 101 (package scripts start no services), the host's
/// resolv.conf and /proc mounted. `close()` unmounts /proc and removes the tree with
/// `rm --one-file-system`, so a leftover mount is never walked into. Fails (never skips)
/// when debootstrap or the mirror is unavailable.
final class DebianRoot {
    static let cache = "/var/cache/hs-tests/debian-bookworm-minbase.tar"
    let workPath: String
    let root: String
    private var procMounted = false

    init(prefix: String = "hs-prov-chroot") throws {
        try #require(getuid() == 0, "a Debian chroot needs root (mount -t proc, chroot)")
        try #require(Subprocess.which("debootstrap") != nil, "debootstrap is not installed: apt-get install debootstrap (scripts/bootstrap.sh)")
        var template = Array((FileManager.default.temporaryDirectory.path + "/\(prefix).XXXXXX").utf8CString)
        workPath = try #require(mkdtemp(&template).map { String(cString: $0) })
        root = workPath + "/root"
        do { try prepare() } catch { close(); throw error }
    }

    /// The Debian mirror apt on this machine uses (first `.../debian` URI that is not security).
    static func mirror() -> String {
        var texts: [String] = []
        if let s = try? String(contentsOfFile: "/etc/apt/sources.list", encoding: .utf8) { texts.append(s) }
        for f in (try? FileManager.default.contentsOfDirectory(atPath: "/etc/apt/sources.list.d")) ?? [] where f.hasSuffix(".sources") || f.hasSuffix(".list") {
            if let s = try? String(contentsOfFile: "/etc/apt/sources.list.d/" + f, encoding: .utf8) { texts.append(s) }
        }
        for t in texts {
            for line in t.split(separator: "\n") where !line.hasPrefix("#") {
                for word in line.split(separator: " ") where word.hasPrefix("http") && word.hasSuffix("/debian") {
                    return String(word)
                }
            }
        }
        return "http://deb.debian.org/debian"
    }

    private func prepare() throws {
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        // A pristine minbase bookworm root: from the cache, or debootstrap (then cache it).
        if FileManager.default.fileExists(atPath: Self.cache) {
            let x = try Subprocess.run(["tar", "--numeric-owner", "-xpf", Self.cache, "-C", root])
            try #require(x.succeeded, "cannot unpack \(Self.cache): \(x.stderr) (delete it to rebuild)")
        } else {
            let d = try Subprocess.run(["debootstrap", "--variant=minbase", "bookworm", root, Self.mirror()])
            try #require(d.succeeded, "debootstrap --variant=minbase bookworm failed (mirror \(Self.mirror())): \(d.stderr.suffix(2000))")
            try FileManager.default.createDirectory(atPath: (Self.cache as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            let partial = Self.cache + ".partial-\(getpid())-\(UUID().uuidString)"
            if (try Subprocess.run(["tar", "--numeric-owner", "-cpf", partial, "-C", root, "."])).succeeded {
                rename(partial, Self.cache)
            } else {
                unlink(partial)
            }
        }
        // Services must not start; the host's resolver; /proc.
        let policy = root + "/usr/sbin/policy-rc.d"
        // Written by a child process, so no write fd of this process can leak into a concurrently
        // spawned child and make its exec fail with ETXTBSY.
        try Subprocess.checked(["sh", "-c", "printf '#!/bin/sh\\nexit 101\\n' > \"$1\" && chmod 0755 \"$1\"", "sh", policy])
        if let resolv = FileManager.default.contents(atPath: "/etc/resolv.conf") {
            try? FileManager.default.removeItem(atPath: root + "/etc/resolv.conf")
            _ = FileManager.default.createFile(atPath: root + "/etc/resolv.conf", contents: resolv)
        }
        let m = try Subprocess.run(["mount", "-t", "proc", "proc", root + "/proc"])
        try #require(m.succeeded, "mount -t proc failed: \(m.stderr)")
        procMounted = true
    }

    /// Unmounts /proc and removes the tree.
    func close() {
        if procMounted {
            if !((try? Subprocess.run(["umount", root + "/proc"]))?.succeeded ?? false) {
                _ = try? Subprocess.run(["umount", "-l", root + "/proc"])
            }
            procMounted = false
        }
        _ = try? Subprocess.run(["rm", "-rf", "--one-file-system", workPath])
    }
}
