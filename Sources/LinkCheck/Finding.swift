import Support

/// One thing the check found: what is wrong (or worth knowing), where, and how to fix it.
package struct Finding: Codable, Sendable, Equatable {
    package enum Severity: String, Codable, Sendable { case error, warning, info }

    package var severity: Severity
    /// Stable machine-readable kind: `cross-device`, `not-mount-point`, `filesystem-type`,
    /// `cannot-write`, `missing-directory`, `no-hardlinks`, `probe-mismatch`, `compose-split-mounts`,
    /// `compose-container-path`, `compose-host-root`, `wasted-copies`, `reclaim-skipped`, `nfs`.
    package var code: String
    package var message: String
    package var fix: String?

    package init(_ severity: Severity, _ code: String, _ message: String, fix: String? = nil) {
        self.severity = severity
        self.code = code
        self.message = message
        self.fix = fix
    }
}

/// The result of the hardlink probe: a file created under downloads, hardlinked into library.
package struct ProbeResult: Codable, Sendable, Equatable {
    /// "local" (kernel mount) or "nfs" (libnfs).
    package var via: String
    package var downloadsFile: String
    package var libraryFile: String
    package var sameInode: Bool
    package var linkCount: UInt64
    package var ok: Bool
    /// Why the probe could not finish (nil when it did).
    package var failure: String?
    package var cleanedUp: Bool
}

/// Where the three directories live in the mount table.
package struct MountReport: Codable, Sendable, Equatable {
    package var root: MountInfo?
    package var rootIsMountPoint: Bool
    package var downloads: MountInfo?
    package var library: MountInfo?
}

/// One directory of the media tree handled by `--init`.
package struct InitStep: Codable, Sendable, Equatable {
    package var path: String
    /// "created", "changed" (owner/mode fixed), "ok", "failed".
    package var action: String
    package var detail: String?
}

/// Everything one run found; printed as text or as one JSON object.
package struct LinkCheckReport: Encodable, Sendable {
    package var root: String
    package var downloads: String
    package var library: String
    package var mounts: MountReport?
    package var initialized: [InitStep]?
    package var probe: ProbeResult?
    package var compose: ComposeReport?
    package var audit: AuditReport?
    package var reclaim: ReclaimReport?
    package var findings: [Finding] = []
    package var ok: Bool = true
    package var exitCode: Int32 = 0

    package init(root: String, downloads: String, library: String) {
        self.root = root
        self.downloads = downloads
        self.library = library
    }

    package var errors: [Finding] { findings.filter { $0.severity == .error } }
    package mutating func add(_ f: Finding) { findings.append(f) }
}
