import Foundation
import Support

#if canImport(Glibc)
import Glibc
#endif

/// A throwaway Debian 12 root for tests that run apt, the packaged tools or provisioning for
/// real: `debootstrap --variant=minbase bookworm`, cached as a tarball in `cache` between runs
/// (the cached root is the pristine debootstrap result; whatever a test installs goes into
/// its own unpacked copy). Prepared for apt: a policy-rc.d that keeps package scripts from
/// starting services, the host's resolv.conf, /proc mounted.
///
/// Creating one needs root and debootstrap (even when the cache exists); without them `init` throws, so a
/// test using it fails instead of skipping. `close()` (or deinit) unmounts /proc before the
/// tree is removed with `rm --one-file-system`, so a leftover mount is never walked into.
package final class DebianRoot: @unchecked Sendable {
    /// The cached pristine root (a tar of the debootstrap result).
    package static let cache = "/var/cache/hs-tests/debian-bookworm-minbase.tar"

    /// The temporary directory holding `root` (free for the test's own files).
    package let workPath: String
    /// The root directory of the Debian system.
    package let root: String
    private var procMounted = false
    private var closed = false

    /// The Debian mirror apt on this machine uses (first `.../debian` URI that is not security).
    package static func mirror() -> String {
        var texts: [String] = []
        if let s = try? String(contentsOfFile: "/etc/apt/sources.list", encoding: .utf8) { texts.append(s) }
        for f in (try? FileManager.default.contentsOfDirectory(atPath: "/etc/apt/sources.list.d")) ?? []
        where f.hasSuffix(".sources") || f.hasSuffix(".list") {
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

    /// Unpacks (or debootstraps, then caches) a fresh root under a new temporary directory.
    /// - Parameter prefix: name prefix of the temporary directory.
    /// - Throws: `ToolError` naming what is missing (root, debootstrap, the mirror) or what failed.
    package init(prefix: String = "hs-debian-root") throws {
        guard getuid() == 0 else {
            throw ToolError("a Debian chroot needs root (debootstrap, mount -t proc, chroot): run the tests as root (scripts/test.sh)")
        }
        // Checked even when the cache exists: a machine without debootstrap cannot rebuild the
        // cache, so the tests fail there instead of passing on a stale tarball.
        guard Subprocess.which("debootstrap") != nil else {
            throw ToolError("debootstrap is not installed: apt-get install debootstrap (scripts/bootstrap.sh installs it)")
        }
        var template = Array((FileManager.default.temporaryDirectory.path + "/\(prefix).XXXXXX").utf8CString)
        guard let p = mkdtemp(&template) else { throw ToolError("mkdtemp failed in \(FileManager.default.temporaryDirectory.path)") }
        workPath = String(cString: p)
        root = workPath + "/root"
        do {
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            try Self.unpackPristine(into: root)
            try prepare()
        } catch {
            close()
            throw error
        }
    }

    deinit { close() }

    /// Runs `argv` inside the root (`chroot ROOT argv...`) with a plain PATH and the C locale.
    @discardableResult
    package func run(_ argv: [String], input: Data? = nil, environment: [String: String] = [:]) throws -> ProcessResult {
        var env = ["PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C",
                   "DEBIAN_FRONTEND": "noninteractive"]
        for (k, v) in environment { env[k] = v }
        return try Subprocess.run(["chroot", root] + argv, input: input, environment: env)
    }

    /// Like `run`, but throws `ToolError` with the output when the command fails.
    @discardableResult
    package func checked(_ argv: [String], environment: [String: String] = [:]) throws -> ProcessResult {
        let r = try run(argv, environment: environment)
        guard r.succeeded else {
            throw ToolError("in the chroot \(root): `\(argv.joined(separator: " "))` exited \(r.status):\n\(r.stdout.suffix(2000))\n\(r.stderr.suffix(3000))")
        }
        return r
    }

    /// The packages the root's dpkg lists as installed (`dpkg-query` run inside the root).
    package func installedPackages() throws -> Set<String> {
        let r = try checked(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Abbrev}\\n"])
        var out = Set<String>()
        for line in r.stdout.split(separator: "\n") {
            let f = line.split(separator: " ")
            if f.count >= 2, f[1].hasPrefix("ii") { out.insert(String(f[0])) }
        }
        return out
    }

    /// Unmounts /proc and removes the whole temporary directory (idempotent).
    package func close() {
        if closed { return }
        closed = true
        if procMounted {
            if !((try? Subprocess.run(["umount", root + "/proc"]))?.succeeded ?? false) {
                _ = try? Subprocess.run(["umount", "-l", root + "/proc"])
            }
            procMounted = false
        }
        _ = try? Subprocess.run(["rm", "-rf", "--one-file-system", workPath])
    }

    /// A pristine minbase bookworm root in `root`: from the cache, or debootstrap (then cache
    /// it). Creating the cache is serialised with a lock file, so tests that start together
    /// debootstrap once.
    private static func unpackPristine(into root: String) throws {
        let dir = (cache as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let lockFD = open(cache + ".lock", O_CREAT | O_RDWR | O_CLOEXEC, 0o644)
        guard lockFD >= 0 else { throw ToolError("cannot open \(cache).lock: errno \(errno)") }
        defer { Glibc.close(lockFD) }
        while flock(lockFD, LOCK_EX) != 0 {
            guard errno == EINTR else { throw ToolError("flock \(cache).lock: errno \(errno)") }
        }
        defer { _ = flock(lockFD, LOCK_UN) }

        if !FileManager.default.fileExists(atPath: cache) {
            let d = try Subprocess.run(["debootstrap", "--variant=minbase", "bookworm", root, mirror()])
            guard d.succeeded else {
                throw ToolError("debootstrap --variant=minbase bookworm failed (mirror \(mirror())): \(d.stderr.suffix(2000))")
            }
            let partial = cache + ".partial-\(getpid())"
            if (try Subprocess.run(["tar", "--numeric-owner", "-cpf", partial, "-C", root, "."])).succeeded {
                rename(partial, cache)
            } else {
                unlink(partial)
            }
            return
        }
        let x = try Subprocess.run(["tar", "--numeric-owner", "-xpf", cache, "-C", root])
        guard x.succeeded else { throw ToolError("cannot unpack \(cache): \(x.stderr) (delete it to rebuild)") }
    }

    /// Services must not start, the host's resolver, /proc mounted.
    private func prepare() throws {
        let policy = root + "/usr/sbin/policy-rc.d"
        // Written by a child process: a write fd of this process could leak into a child another
        // test spawns concurrently, and exec of the script would then fail with ETXTBSY.
        try Subprocess.checked(["sh", "-c", "printf '#!/bin/sh\\nexit 101\\n' > \"$1\" && chmod 0755 \"$1\"", "sh", policy])
        if let resolv = FileManager.default.contents(atPath: "/etc/resolv.conf") {
            try? FileManager.default.removeItem(atPath: root + "/etc/resolv.conf")
            guard FileManager.default.createFile(atPath: root + "/etc/resolv.conf", contents: resolv) else {
                throw ToolError("cannot write \(root)/etc/resolv.conf (the root's package installs need it)")
            }
        }
        let m = try Subprocess.run(["mount", "-t", "proc", "proc", root + "/proc"])
        guard m.succeeded else { throw ToolError("mount -t proc \(root)/proc failed: \(m.stderr)") }
        procMounted = true
    }
}
