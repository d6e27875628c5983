import Support

/// Prints a `LinkCheckReport`: one JSON object, or findings with their fixes plus a summary line.
package struct ReportPrinter {
    package var reporter: Reporter
    package var listLimit = 50

    package func print(_ r: LinkCheckReport) {
        if reporter.mode == .json { reporter.emitJSON(r); return }
        var lines: [String] = []
        if let steps = r.initialized {
            let changed = steps.filter { $0.action != "ok" }
            for s in changed { lines.append("init: \(s.action) \(NameEscape.escape(s.path))\(s.detail.map { " (\($0))" } ?? "")") }
            lines.append("init: \(steps.count) directories, \(changed.count) created or changed")
        }
        if let a = r.audit {
            let dl = a.singleLinkFiles == 0 ? "downloads not scanned (nothing to match)" : "\(a.downloadsFiles) downloads files"
            lines.append("audit: \(a.libraryFiles) library files (\(a.singleLinkFiles) with link count 1), \(dl), \(a.filesHashed) hashed, \(Format.seconds(a.seconds))")
            if a.copies > 0 {
                lines.append("audit: \(a.copies) copies, \(Format.bytes(a.wastedBytes)) wasted")
                for g in a.groups { lines.append("  \(g.folder.shown): \(g.copies) copies, \(Format.bytes(g.wastedBytes))") }
                lines.append("  largest:")
                for p in a.largest { lines.append("    \(Format.bytes(p.size))  \(p.library.shown)  (copy of \(p.downloads.shown))") }
            }
            if !a.leftovers.isEmpty { lines.append("audit: \(a.leftovers.count) temporary links from an interrupted reclaim (removed by --reclaim --yes)") }
        }
        if let rc = r.reclaim {
            if rc.applied {
                for l in rc.leftoversRemoved { lines.append("reclaim: removed leftover \(l.shown)") }
                for s in rc.skipped { lines.append("reclaim: skipped \(s.library.shown): \(s.reason)") }
                lines.append("reclaim: \(rc.reclaimed) files replaced by hardlinks, \(Format.bytes(rc.bytesReclaimed)) reclaimed")
            } else {
                for p in rc.planned.prefix(listLimit) { lines.append("would link \(p.library.shown) -> \(p.downloads.shown) (\(Format.bytes(p.size)))") }
                if rc.planned.count > listLimit { lines.append("... and \(rc.planned.count - listLimit) more (--json lists all)") }
                if !rc.planned.isEmpty { lines.append("reclaim: dry run; add --yes to replace these \(rc.planned.count) copies") }
            }
        }
        if let c = r.compose {
            lines.append("compose: \(c.files.count) files, \(c.mediaServices.count) media services, container root \(c.containerRoot.map { NameEscape.escape($0) } ?? "-")")
        }
        var findings: [String] = []
        for f in r.findings {
            findings.append("\(f.severity.rawValue): \(f.message)")
            if let fix = f.fix { findings.append("  fix: \(fix)") }
        }
        // -q: only the findings (errors, warnings) and, when not ok, the summary, on stderr.
        if Reporter.verbosity == .quiet {
            for l in findings + (r.ok ? [] : [summary(r)]) { Reporter.writeStderr(l + "\n") }
            return
        }
        lines += findings
        lines.append(summary(r))
        for l in lines { reporter.info(l) }
    }

    func summary(_ r: LinkCheckReport) -> String {
        let errors = r.errors.count
        let warnings = r.findings.filter { $0.severity == .warning }.count
        var s = "hs-linkcheck: "
        if let p = r.probe, p.ok {
            let fs = r.mounts?.library.map { " on \($0.describe)" } ?? ""
            s += "hardlinks work between \(NameEscape.escape(r.downloads))/ and \(NameEscape.escape(r.library))/ of \(NameEscape.escape(r.root))\(fs)"
        } else if r.probe != nil {
            s += "hardlinks do NOT work between \(NameEscape.escape(r.downloads))/ and \(NameEscape.escape(r.library))/ of \(NameEscape.escape(r.root))"
        } else {
            s += "\(NameEscape.escape(r.root)) checked"
        }
        if errors > 0 || warnings > 0 { s += "; \(errors) errors, \(warnings) warnings" }
        s += r.ok ? " (ok)" : " (problems found)"
        return s
    }
}
