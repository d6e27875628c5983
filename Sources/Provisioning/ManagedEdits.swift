import Foundation
import Support

/// Pure functions that compute the desired content of a file from its current content.
/// Every line they do not manage comes back byte for byte (including `\r`, trailing spaces
/// and a missing final newline).
package enum ManagedEdits {
    /// A file's lines without terminators, and whether the last one had a `\n`.
    struct Lines {
        var lines: [String]
        var finalNewline: Bool

        init(_ text: String) {
            if text.isEmpty { lines = []; finalNewline = true; return }
            // Split on the byte 0x0A: Swift treats "\r\n" as one Character, so a String split
            // on "\n" would not see CRLF line ends. A "\r" stays part of its line.
            let bytes = Array(text.utf8)
            var parts = bytes.split(separator: 0x0A, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
            finalNewline = bytes.last == 0x0A
            if finalNewline { parts.removeLast() }
            lines = parts
        }

        init(lines: [String], finalNewline: Bool = true) { self.lines = lines; self.finalNewline = finalNewline }

        var text: String {
            if lines.isEmpty { return "" }
            return lines.joined(separator: "\n") + (finalNewline ? "\n" : "")
        }
    }

    package static func beginMarker(_ name: String) -> String { "# BEGIN home-server \(name)" }
    package static func endMarker(_ name: String) -> String { "# END home-server \(name)" }

    /// Puts `body` between `# BEGIN home-server <name>` / `# END home-server <name>`: replaces
    /// an existing block in place, otherwise appends one at the end. Never appends twice.
    /// - Throws: `ProvisionError` when the markers are unbalanced or duplicated.
    package static func managedBlock(in content: String, name: String, body: [String], file: String) throws -> String {
        var l = Lines(content)
        let begin = beginMarker(name), end = endMarker(name)
        let trimmed = l.lines.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        let begins = trimmed.indices.filter { trimmed[$0] == begin }
        let ends = trimmed.indices.filter { trimmed[$0] == end }
        let block = [begin] + body + [end]
        switch (begins.count, ends.count) {
        case (0, 0):
            if !l.lines.isEmpty && !l.finalNewline { l.finalNewline = true }
            l.lines += block
            l.finalNewline = true
        case (1, 1) where begins[0] < ends[0]:
            l.lines.replaceSubrange(begins[0]...ends[0], with: block)
        default:
            throw ProvisionError("\(NameEscape.escape(file)): the '\(begin)' / '\(end)' markers are unbalanced or repeated (lines \((begins + ends).sorted().map { String($0 + 1) }.joined(separator: ", "))); fix them by hand so there is exactly one pair, then re-run")
        }
        return l.text
    }

    /// Ensures `line` appears in the file (compared without surrounding whitespace); appends
    /// it otherwise.
    package static func ensureLine(in content: String, _ line: String) -> String {
        var l = Lines(content)
        if l.lines.contains(where: { $0.trimmingCharacters(in: .whitespacesAndNewlines) == line }) { return content }
        l.lines.append(line)
        l.finalNewline = true
        return l.text
    }

    /// True when `value` holds a control character (C0, newline and tab included, DEL, C1): a
    /// line of a file written with it would not be what it says (a newline starts another).
    package static func holdsControlCharacter(_ value: String) -> Bool {
        value.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) }
    }

    /// `value` as one field of an fstab line: a space, a tab, a newline and a backslash as
    /// fstab(5) and getmntent(3) write them (`\040`, `\011`, `\012`, `\134`), so a path with
    /// blanks (a TrueNAS dataset "My Media") stays one field and reads back as itself.
    package static func fstabField(_ value: String) -> String {
        var out = ""
        for c in value.unicodeScalars {
            switch c {
            case " ": out += "\\040"
            case "\t": out += "\\011"
            case "\n": out += "\\012"
            case "\\": out += "\\134"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// The fstab lines (outside home-server blocks) that already mount `mountPoint`.
    package static func foreignMounts(fstab: String, mountPoint: String) -> [(line: Int, text: String)] {
        var inBlock = false
        var out: [(Int, String)] = []
        for (i, raw) in Lines(fstab).lines.enumerated() {
            let t = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if t.hasPrefix("# BEGIN home-server ") { inBlock = true; continue }
            if t.hasPrefix("# END home-server ") { inBlock = false; continue }
            if inBlock || t.isEmpty || t.hasPrefix("#") { continue }
            let fields = t.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if fields.count >= 2 && fields[1] == mountPoint { out.append((i + 1, raw)) }
        }
        return out
    }
}

/// A small template language for `provisioning/*.template`:
/// - lines starting with `#` are template comments and are dropped, as are blank lines;
/// - a line `{{#flag}}` ... `{{/flag}}` keeps the lines between only when `flag` is true;
/// - `{{name}}` is replaced by its value; an unknown name is an error.
package enum Template {
    /// Renders `text`. Pure.
    /// - Throws: `ProvisionError` naming the template and line for unknown or unbalanced names,
    ///   and for a value holding a control character (the line would not be what it says).
    package static func render(_ text: String, values: [String: String], flags: [String: Bool] = [:],
                               name: String) throws -> [String] {
        let name = NameEscape.escape(name)   // in messages
        var out: [String] = []
        var stack: [(String, Bool)] = []
        for (i, line) in ManagedEdits.Lines(text).lines.enumerated() {
            let t = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if t.hasPrefix("#") || t.isEmpty { continue }
            if t.hasPrefix("{{#") && t.hasSuffix("}}") {
                let f = String(t.dropFirst(3).dropLast(2))
                guard let v = flags[f] else { throw ProvisionError("\(name):\(i + 1): unknown section '{{#\(NameEscape.escape(f))}}' (known: \(flags.keys.sorted().joined(separator: ", ")))") }
                stack.append((f, v)); continue
            }
            if t.hasPrefix("{{/") && t.hasSuffix("}}") {
                let f = String(t.dropFirst(3).dropLast(2))
                guard let last = stack.popLast(), last.0 == f else { throw ProvisionError("\(name):\(i + 1): '{{/\(NameEscape.escape(f))}}' closes a section that is not open") }
                continue
            }
            if stack.contains(where: { !$0.1 }) { continue }
            var rendered = ""
            var rest = Substring(line)
            while let open = rest.range(of: "{{") {
                rendered += rest[..<open.lowerBound]
                guard let close = rest[open.upperBound...].range(of: "}}") else {
                    throw ProvisionError("\(name):\(i + 1): '{{' without '}}'")
                }
                let key = String(rest[open.upperBound..<close.lowerBound]).trimmingCharacters(in: .whitespacesAndNewlines)
                guard let v = values[key] else {
                    throw ProvisionError("\(name):\(i + 1): unknown placeholder '{{\(NameEscape.escape(key))}}' (known: \(values.keys.sorted().joined(separator: ", ")))")
                }
                if ManagedEdits.holdsControlCharacter(v) {
                    throw ProvisionError("\(name):\(i + 1): the value of {{\(NameEscape.escape(key))}} ('\(NameEscape.escape(v))') holds a newline or another control character, which the file cannot hold as it is; change it where it comes from (the inventory)")
                }
                rendered += v
                rest = rest[close.upperBound...]
            }
            rendered += rest
            if !rendered.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { out.append(rendered) }
        }
        if let open = stack.last { throw ProvisionError("\(name): section '{{#\(NameEscape.escape(open.0))}}' is never closed") }
        return out
    }
}

/// Edits of a Proxmox LXC config (`/etc/pve/lxc/<vmid>.conf`). Only the live part before the
/// first `[section]` line is touched: a line appended at the end would land in the last
/// snapshot. Proxmox keeps `#` lines as the container's description, so no markers here:
/// each managed line is matched by its key.
package enum LXCConfig {
    /// Index of the first `[section]` line (snapshot or pending), or the line count.
    static func liveEnd(_ lines: [String]) -> Int {
        lines.firstIndex { l in
            let t = l.trimmingCharacters(in: .whitespacesAndNewlines)
            return t.hasPrefix("[") && t.hasSuffix("]")
        } ?? lines.count
    }

    static func keyValue(_ line: String) -> (key: String, value: String)? {
        let t = line.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !t.hasPrefix("#"), let c = t.firstIndex(of: ":") else { return nil }
        return (String(t[..<c]).trimmingCharacters(in: .whitespacesAndNewlines),
                String(t[t.index(after: c)...]).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// The live section's `key: value` pairs in order.
    package static func liveEntries(_ config: String) -> [(key: String, value: String)] {
        let lines = ManagedEdits.Lines(config).lines
        return lines[..<liveEnd(lines)].compactMap(keyValue)
    }

    /// The mount point index to use for `hostPath` -> `mountPoint`: the existing one when the
    /// bind mount is already there, otherwise the lowest `mpN` not used for anything else.
    package static func mountIndex(config: String, hostPath: String, mountPoint: String) -> (index: Int, present: Bool) {
        var used = Set<Int>()
        for (k, v) in liveEntries(config) {
            guard k.hasPrefix("mp"), let n = Int(k.dropFirst(2)) else { continue }
            used.insert(n)
            let parts = v.split(separator: ",").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            if parts.first == hostPath && parts.contains("mp=\(mountPoint)") { return (n, true) }
        }
        var n = 0
        while used.contains(n) { n += 1 }
        return (n, false)
    }

    /// True when the live config is an unprivileged container (`unprivileged: 1`).
    package static func isUnprivileged(_ config: String) -> Bool {
        liveEntries(config).contains { $0.key == "unprivileged" && $0.value == "1" }
    }

    /// True when the Proxmox 8.1+ `devN: /dev/net/tun` passthrough is already configured.
    package static func hasTunDevice(_ config: String) -> Bool {
        liveEntries(config).contains { $0.key.hasPrefix("dev") && Int($0.key.dropFirst(3)) != nil
            && $0.value.split(separator: ",").first.map(String.init) == "/dev/net/tun" }
    }

    /// Merges comma-separated `k=v` options: desired values win, other options are kept in order.
    package static func mergeOptions(_ current: String, _ desired: String) -> String {
        var items = current.split(separator: ",").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
        for d in desired.split(separator: ",").map(String.init) {
            let k = d.split(separator: "=", maxSplits: 1).first.map(String.init) ?? d
            if let i = items.firstIndex(where: { ($0.split(separator: "=", maxSplits: 1).first.map(String.init) ?? $0) == k }) {
                items[i] = d
            } else {
                items.append(d)
            }
        }
        return items.joined(separator: ",")
    }

    /// The result of merging desired lines into a config.
    package struct Merge: Equatable {
        /// The new file content (identical to the input when nothing changes).
        package var content: String
        /// `pct set` commands for the mount point and features (only when `usePct`).
        package var pctCommands: [[String]]
    }

    /// Merges rendered template lines into the live section of an LXC config. Pure.
    /// - `mpN:` lines are added when missing (or turned into `pct set <vmid> -mpN ...`);
    /// - `features:` is merged option by option (or `pct set <vmid> -features ...`);
    /// - all `lxc.idmap:` lines are replaced as one group (they only work together);
    /// - any other line is added when not present verbatim.
    /// New lines go after the last non-blank line of the live section; everything else,
    /// including every `[section]`, stays byte for byte.
    package static func merge(config: String, desired: [String], vmid: Int, usePct: Bool) -> Merge {
        var file = ManagedEdits.Lines(config)
        let end = liveEnd(file.lines)
        var live = Array(file.lines[..<end])
        let tail = Array(file.lines[end...])
        var additions: [String] = []
        var pct: [[String]] = []
        let desiredIdmap = desired.filter { keyValue($0)?.key == "lxc.idmap" }

        for line in desired {
            guard let (k, v) = keyValue(line) else { continue }
            let present = live.contains { $0.trimmingCharacters(in: .whitespacesAndNewlines) == line.trimmingCharacters(in: .whitespacesAndNewlines) }
            if k == "lxc.idmap" { continue }
            if k == "features" {
                if let i = live.firstIndex(where: { keyValue($0)?.key == "features" }) {
                    let cur = keyValue(live[i])!.value
                    let merged = mergeOptions(cur, v)
                    if merged != cur {
                        if usePct { pct.append(["pct", "set", String(vmid), "-features", merged]) }
                        else { live[i] = "features: \(merged)" }
                    }
                } else if usePct {
                    pct.append(["pct", "set", String(vmid), "-features", v])
                } else {
                    additions.append(line)
                }
                continue
            }
            if present { continue }
            if k.hasPrefix("mp"), Int(k.dropFirst(2)) != nil, usePct {
                pct.append(["pct", "set", String(vmid), "-\(k)", v])
                continue
            }
            additions.append(line)
        }

        if !desiredIdmap.isEmpty {
            let idx = live.indices.filter { keyValue(live[$0])?.key == "lxc.idmap" }
            let current = idx.map { live[$0].trimmingCharacters(in: .whitespacesAndNewlines) }
            if current != desiredIdmap {
                if let first = idx.first {
                    for i in idx.reversed() { live.remove(at: i) }
                    live.insert(contentsOf: desiredIdmap, at: first)
                } else {
                    additions += desiredIdmap
                }
            }
        }

        if !additions.isEmpty {
            let insertAt = (live.lastIndex { !$0.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty } ?? -1) + 1
            live.insert(contentsOf: additions, at: insertAt)
            if tail.isEmpty { file.finalNewline = true }
        }
        file.lines = live + tail
        let out = file.text
        return Merge(content: out == config ? config : out, pctCommands: pct)
    }

    /// Placeholder values for the idmap lines of `lxc-config.template`: PUID/PGID mapped
    /// straight through, everything else to the usual unprivileged range at 100000.
    package static func idmapValues(puid: Int, pgid: Int) -> [String: String] {
        [
            "puid": String(puid), "puid_next": String(puid + 1), "idmap_base_puid_next": String(100000 + puid + 1),
            "puid_rest": String(65536 - puid - 1),
            "pgid": String(pgid), "pgid_next": String(pgid + 1), "idmap_base_pgid_next": String(100000 + pgid + 1),
            "pgid_rest": String(65536 - pgid - 1),
        ]
    }

    /// Picks the rendered template lines that apply to a guest, by key: the `mpN:` line (its
    /// index replaced by `mountIndex`) only with storage, the TUN lines only with `tun`, the
    /// `lxc.idmap:` lines only with `idmap`; every other line always. Pure.
    package static func select(_ rendered: [String], mountIndex: Int, storage: Bool, tun: Bool, idmap: Bool) -> [String] {
        rendered.compactMap { line in
            guard let (k, v) = keyValue(line) else { return line }
            if k.hasPrefix("mp"), Int(k.dropFirst(2)) != nil { return storage ? "mp\(mountIndex): \(v)" : nil }
            if k == "lxc.idmap" { return idmap ? line : nil }
            if (k == "lxc.cgroup2.devices.allow" && v.hasPrefix("c 10:200")) || (k == "lxc.mount.entry" && v.hasPrefix("/dev/net/tun")) {
                return tun ? line : nil
            }
            return line
        }
    }
}

/// A provisioning failure meant for the person running the tool. Its message shows paths,
/// names and values escaped (NameEscape), escaped where it is made.
package struct ProvisionError: Error, CustomStringConvertible {
    package var message: String
    package init(_ message: String) { self.message = message }
    package var description: String { message }

    /// The text of `error` for a message: the toolkit's own errors are escaped where they are
    /// made; any other's (a command's stderr, Foundation's, a SysError's path) is escaped whole.
    package static func text(of error: any Error) -> String {
        switch error {
        case let e as ProvisionError: e.message
        case let e as ToolError: e.message
        case let e as InventoryError: e.message
        default: NameEscape.escape("\(error)")
        }
    }
}
