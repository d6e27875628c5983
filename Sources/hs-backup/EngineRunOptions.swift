import ArgumentParser
import Backup

/// `--one-file-system`, `--exclude-file`, `--exclude-caches`, `--exclude-if-present`,
/// `--dry-run` of `hs-backup run`: options of the
/// backup engine itself, kept in one block.
struct EngineRunOptions: ParsableArguments {
    @Flag(name: .customLong("one-file-system"), help: "Do not descend into mount points below the source (each one is named in a warning).")
    var oneFileSystem = false

    @Option(name: .customLong("exclude-file"), help: ArgumentHelp("File of patterns to skip, one per line ('#' comments and blank lines ignored); repeatable.", valueName: "FILE"))
    var excludeFiles: [String] = []

    @Flag(name: .customLong("exclude-caches"), help: "Leave out the contents of directories holding a CACHEDIR.TAG with the standard signature (bford.info/cachedir); the directory and the tag are kept, as GNU tar does.")
    var excludeCaches = false

    @Option(name: .customLong("exclude-if-present"), help: ArgumentHelp("Leave out the contents of directories holding a file of this name (like .nobackup); the directory and that file are kept, as GNU tar's --exclude-tag. Repeatable.", valueName: "NAME"))
    var excludeIfPresent: [String] = []

    @Flag(name: .customLong("dry-run"), help: "List what would be archived; write nothing (no lock, no archive, no manifest).")
    var dryRun = false

    /// The options as plain values (what `hs-backup run` consumes: `RunValues`).
    var values: EngineRunValues {
        EngineRunValues(oneFileSystem: oneFileSystem, excludeFiles: excludeFiles, excludeCaches: excludeCaches,
                        excludeIfPresent: excludeIfPresent, dryRun: dryRun)
    }
}

/// `EngineRunOptions` as plain values.
struct EngineRunValues {
    var oneFileSystem: Bool
    var excludeFiles: [String]
    var excludeCaches: Bool
    var excludeIfPresent: [String]
    var dryRun: Bool

    /// Copies the options into `options` (reads the exclude files: a missing one is a usage error).
    func apply(to options: inout BackupOptions) throws {
        options.oneFileSystem = oneFileSystem
        options.dryRun = dryRun
        for f in excludeFiles { options.excludes += try ExcludeSet.patterns(fromFile: f) }
        options.markers = ExcludeMarkers(caches: excludeCaches, ifPresent: try excludeIfPresent.map(ExcludeMarkers.name))
    }
}
