// LinkCheck: proves hardlinks work between downloads/ and library/ of the media root, explains
// why they don't (cross-device, missing mount, filesystem type, permissions, compose volumes),
// and finds/reclaims library files that are copies instead of hardlinks.
//
// Guarantees: the probe uses unique names and always removes them; --audit only reads;
// --reclaim --yes replaces a library file only after a byte-for-byte comparison, atomically
// (link to a temporary name, rename over it), so an interrupted run leaves every file intact.
// Not guaranteed: files that change while being audited are reported as of the moment they
// were read; the compose check reads YAML only (it does not ask Docker what is running).
import Foundation
import Storage
import Support

/// What one run of hs-linkcheck should do.
package struct LinkCheckOptions: Sendable {
    package var root: String = "/mnt/storage"
    package var downloads: String = "downloads"
    package var library: String = "library"
    package var requireMount = false
    package var initialize = false
    package var puid: UInt32 = 1000
    package var pgid: UInt32 = 1000
    /// Repository root for the compose check (nil: skip).
    package var composeDirectory: String?
    package var audit = false
    package var reclaim = false
    package var yes = false

    package init() {}

    package var isNFS: Bool { root.hasPrefix("nfs://") }
}

/// Runs hs-linkcheck.
package enum LinkCheck {
    /// Runs every requested check, prints the result for `reporter`'s mode, returns the exit code.
    /// - Throws: `ToolError.usage` for bad option combinations.
    package static func run(_ o: LinkCheckOptions, reporter: Reporter) throws -> Int32 {
        if o.yes && !o.reclaim { throw ToolError.usage("--yes only goes with --reclaim (hs-linkcheck --reclaim --yes).") }
        if let why = DestinationSpec.urlProblem(o.root) {
            throw ToolError.usage("media root '\(o.root)': \(why). Give a directory like /mnt/storage or a URL like nfs://truenas/mnt/tank/media.")
        }
        for (label, rel) in [("--downloads", o.downloads), ("--library", o.library)] {
            if rel.isEmpty || rel.hasPrefix("/") || rel.split(separator: "/").contains("..") {
                throw ToolError.usage("\(label) \(rel.isEmpty ? "(empty)" : NameEscape.escape(rel)) must be a path relative to the root, without `..`.")
            }
        }
        let d = o.downloads.split(separator: "/"), l = o.library.split(separator: "/")
        if d.starts(with: l) || l.starts(with: d) {
            throw ToolError.usage("--downloads \(NameEscape.escape(o.downloads)) and --library \(NameEscape.escape(o.library)) must be separate folders (neither inside the other).")
        }

        var report = LinkCheckReport(root: o.root, downloads: o.downloads, library: o.library)
        if o.isNFS {
            if o.initialize || o.audit || o.reclaim {
                throw ToolError.usage("--init, --audit and --reclaim need a mounted path; with an nfs:// URL only the probe runs.")
            }
            try NFSProbeRunner.run(url: o.root, downloads: o.downloads, library: o.library, report: &report)
        } else {
            try runLocal(o, report: &report, reporter: reporter)
        }
        if let dir = o.composeDirectory {
            let roots = o.isNFS ? ["/mnt/storage"] : [o.root, "/mnt/storage"]
            let c = try ComposeCheck(directory: dir, hostRoots: roots).run()
            report.compose = c
            report.findings += c.findings
        }
        report.ok = report.errors.isEmpty
        report.exitCode = report.ok ? 0 : 1
        ReportPrinter(reporter: reporter).print(report)
        return report.exitCode
    }

    static func runLocal(_ o: LinkCheckOptions, report: inout LinkCheckReport, reporter: Reporter) throws {
        // Touch the directories first: a systemd automount (x-systemd.automount) mounts the NFS
        // export on first access, and the mount table must show the real mount, not autofs.
        for rel in [o.downloads, o.library] { _ = try? Sys.stat(TreeWalker.join(o.root, rel)) }
        let table = try MountTable.load()
        let probe = LocalProbe(root: o.root, downloads: o.downloads, library: o.library,
                               requireMount: o.requireMount, mountTable: table)
        guard probe.checkRoot(&report) else { return }
        if o.initialize {
            report.initialized = MediaTree.initialize(root: probe.root, downloads: o.downloads, library: o.library,
                                                      uid: o.puid, gid: o.pgid, report: &report)
        }
        probe.checkDirectoriesAndProbe(&report)
        guard o.audit || o.reclaim else { return }
        guard report.findings.allSatisfy({ $0.code != "missing-directory" }) else { return }
        let auditor = Auditor(libraryRoot: probe.libraryPath, downloadsRoot: probe.downloadsPath)
        let audit = try auditor.run(progress: { reporter.progress($0) })
        reporter.endProgress()
        report.audit = audit
        for e in audit.errors.prefix(20) { report.add(Finding(.warning, "unreadable", "skipped: \(e)", fix: nil)) }
        if o.reclaim {
            var r = ReclaimReport()
            r.planned = audit.pairs
            if o.yes {
                let rec = Reclaimer()
                rec.removeLeftovers(audit.leftovers, into: &r)
                if report.findings.contains(where: { $0.code == "cross-device" }) {
                    report.add(Finding(.error, "reclaim-skipped", "not reclaiming: downloads and library are on different filesystems or mounts, so they cannot be hardlinked.", fix: "Fix the cross-device problem above first."))
                } else {
                    rec.apply(audit.pairs, into: &r, progress: { reporter.progress($0) })
                    reporter.endProgress()
                    if !r.skipped.isEmpty {
                        report.add(Finding(.error, "reclaim-skipped", "\(r.skipped.count) of \(audit.pairs.count) copies were left as they are (see the list); nothing was changed for them.", fix: "Run `hs-linkcheck --reclaim --yes` again once the files are settled."))
                    }
                }
            } else if audit.copies > 0 {
                report.add(Finding(.error, "wasted-copies",
                                   "\(audit.copies) library files are copies of downloads files (\(Format.bytes(audit.wastedBytes)) wasted).",
                                   fix: "`hs-linkcheck --reclaim --yes` replaces them with hardlinks after a byte-for-byte comparison."))
            }
            report.reclaim = r
        } else if audit.copies > 0 {
            report.add(Finding(.error, "wasted-copies",
                               "\(audit.copies) library files are copies of downloads files (\(Format.bytes(audit.wastedBytes)) wasted).",
                               fix: "`hs-linkcheck --reclaim` shows the plan; `--reclaim --yes` replaces them with hardlinks after a byte-for-byte comparison."))
        }
    }
}
