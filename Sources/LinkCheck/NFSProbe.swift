import Support

/// The hardlink probe over libnfs, for `nfs://server/export/path` roots (no kernel mount needed).
package enum NFSProbeRunner {
    package static func run(url: String, downloads: String, library: String, report: inout LinkCheckReport) throws {
        throw ToolError("nfs:// probe is not available in this build yet (waiting for the NFS module).")
    }
}
