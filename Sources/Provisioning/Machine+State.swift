import Foundation
import Support

/// Read-only state queries. They work in every mode: file-based ones read under the root
/// prefix; command-based ones return nil ("unknown") in `--root` mode.
extension Machine {
    /// Installed packages among `names`, asked of `dpkg-query` (dpkg's database is dpkg's own
    /// business, Debian policy 2.5): on the live system directly, for `--root` and `--chroot`
    /// with this machine's `dpkg-query --root=DIR` (the target's database; a chroot need not
    /// have dpkg).
    /// - Throws: `ProvisionError` when dpkg-query is missing or fails.
    package func installedPackages(_ names: [String]) throws -> Set<String> {
        let r = try dpkgQuery(["--show", "--showformat", DpkgStatus.showFormat])
        return DpkgStatus.installed(in: r).intersection(names)
    }

    /// `dpkg-query ARGS` about the target (see `installedPackages`); its standard output.
    func dpkgQuery(_ args: [String]) throws -> String {
        let argv = ["dpkg-query"] + (mode == .live ? [] : ["--root=" + mode.prefix]) + args
        guard Subprocess.which("dpkg-query") != nil else {
            throw ProvisionError("dpkg-query is not installed here, so the target's packages cannot be read: hs-provision manages Debian hosts (install dpkg)")
        }
        let r: ProcessResult
        do { r = try Subprocess.run(argv, environment: Self.commandEnvironment) } catch {
            throw ProvisionError("cannot run \(NameEscape.escape(argv.joined(separator: " "))): \(ProvisionError.text(of: error))")
        }
        guard r.succeeded else {
            throw ProvisionError("\(NameEscape.escape(argv.joined(separator: " "))) failed (exit \(r.status)): \(NameEscape.escape(String(r.stderr.suffix(500)))); "
                                 + "is dpkg's database of \(mode.prefix.isEmpty ? "this system" : NameEscape.escape(mode.prefix)) intact?")
        }
        return r.stdout
    }

    /// Permission bits of a target path (nil when missing; links not followed).
    package func mode(_ p: String) -> mode_t? {
        var st = stat()
        guard lstat(path(p), &st) == 0 else { return nil }
        return st.st_mode & 0o7777
    }

    /// Whether a target path is a symbolic link (links are how systemd records "enabled").
    package func isSymlink(_ p: String) -> Bool {
        var st = stat()
        return lstat(path(p), &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK
    }

    /// `/etc/os-release` as key/value pairs (quotes removed).
    package func osRelease() -> [String: String] {
        var out: [String: String] = [:]
        for line in (read("/etc/os-release") ?? read("/usr/lib/os-release") ?? "").split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            var v = String(line[line.index(after: eq)...])
            if v.count >= 2, let f = v.first, f == "\"" || f == "'", v.last == f { v = String(v.dropFirst().dropLast()) }
            out[String(line[..<eq])] = v
        }
        return out
    }

    /// dpkg's native architecture (`dpkg --print-architecture`); in `--root` mode the
    /// architecture of the root's installed `dpkg` package (dpkg-query), else derived from this
    /// machine.
    package func architecture() -> String {
        if let r = query(["dpkg", "--print-architecture"]), r.succeeded {
            let a = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            if !a.isEmpty { return a }
        }
        if case .root = mode, let out = try? dpkgQuery(["--show", "--showformat", "${Architecture}", "dpkg"]),
           !out.isEmpty, !out.contains(where: \.isWhitespace) {
            return out
        }
        var u = utsname()
        uname(&u)
        let m = withUnsafeBytes(of: &u.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return ["x86_64": "amd64", "aarch64": "arm64", "armv7l": "armhf", "i686": "i386"][m] ?? m
    }

    /// One entry of the passwd or group database by name or numeric id, as its colon-separated
    /// fields: `getent` on the target when commands run, the files under the root otherwise.
    package func lookup(_ database: String, _ key: String) -> [String]? {
        if mode.runsCommands, let r = query(["getent", database, key]) {
            guard r.succeeded, let line = r.stdout.split(separator: "\n").first else { return nil }
            return line.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        }
        for line in (read("/etc/\(database)") ?? "").split(separator: "\n") {
            let f = line.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            if f.count >= 3 && (f[0] == key || f[2] == key) { return f }
        }
        return nil
    }

    /// Whether `path` is a mount point on the live system (nil: unknown in --root/--chroot).
    package func isMounted(_ p: String) -> Bool? {
        guard mode == .live, let mi = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return nil }
        return mi.split(separator: "\n").contains { $0.split(separator: " ").dropFirst(4).first.map(String.init) == p }
    }

    /// `systemctl is-enabled UNIT` == enabled (nil: unknown, e.g. no systemctl or --root).
    package func unitEnabled(_ unit: String) -> Bool? {
        guard let r = query(["systemctl", "is-enabled", unit]) else { return nil }
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "enabled"
    }

    /// `tailscale status --json` output (nil when tailscale is absent or in --root mode).
    package func tailscaleStatus() -> String? {
        guard let r = query(["tailscale", "status", "--json"]) else { return nil }
        return r.stdout.isEmpty ? nil : r.stdout
    }
}

/// Parser for dpkg's status database. Pure.
package enum DpkgStatus {
    /// dpkg-query's `--showformat` that prints each package as a stanza `installed(in:)` reads.
    package static let showFormat = "Package: ${Package}\nStatus: ${Status}\n\n"

    /// Names of packages whose status is `install|hold ok installed`, from stanzas with
    /// `Package:` and `Status:` fields (dpkg-query with `showFormat`, or a status file).
    package static func installed(in status: String) -> Set<String> {
        var out = Set<String>()
        var pkg: String?
        var st: String?
        func flush() {
            if let p = pkg, let s = st {
                let w = s.split(separator: " ")
                if w.count == 3 && (w[0] == "install" || w[0] == "hold") && w[2] == "installed" { out.insert(p) }
            }
            pkg = nil; st = nil
        }
        for line in status.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.isEmpty { flush(); continue }
            if line.hasPrefix("Package:") { pkg = line.dropFirst(8).trimmingCharacters(in: .whitespaces) }
            else if line.hasPrefix("Status:") { st = line.dropFirst(7).trimmingCharacters(in: .whitespaces) }
        }
        flush()
        return out
    }
}

/// What to do about Tailscale given `tailscale status --json`. Pure.
package enum TailscaleDecision: Equatable, Sendable {
    /// Running under the right name: nothing to do.
    case running
    /// Not logged in / not running: `tailscale up` with the auth key.
    case enroll
    /// Running under another name: `tailscale set --hostname=...`.
    case rename(from: String)

    /// Decides from the status JSON (nil or unparsable JSON means not enrolled).
    /// Also returns whether the status says TUN is missing (`"TUN": false`).
    package static func decide(statusJSON: String?, hostname: String) -> (TailscaleDecision, tunMissing: Bool) {
        guard let s = statusJSON, let obj = try? JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any] else {
            return (.enroll, false)
        }
        let tunMissing = (obj["TUN"] as? Bool) == false
        guard (obj["BackendState"] as? String) == "Running" else { return (.enroll, tunMissing) }
        let me = obj["Self"] as? [String: Any]
        let current = (me?["HostName"] as? String) ?? ""
        let dnsLabel = ((me?["DNSName"] as? String) ?? "").split(separator: ".").first.map(String.init) ?? ""
        if current.lowercased() == hostname.lowercased() || dnsLabel.lowercased() == hostname.lowercased() {
            return (.running, tunMissing)
        }
        return (.rename(from: current), tunMissing)
    }
}
