import ArgumentParser
import Backup
import BackupOps
import Browse
import CommandLineSupport
import Support

/// Opens DEST and the set, then runs a browse command (exit 1 when the set does not exist; an
/// encrypted set is read with the `--identity` files).
private func browse(_ options: DestinationOptions, _ keys: IdentityOptions, _ body: @escaping (BrowseContext) throws -> Int32) throws {
    let code = toolMain {
        let set = try BackupTool.setName(options.set)
        let dest = try options.open()
        try BackupSets.requireSet(dest, set)
        let setKeys = SetKeys(identities: try SetKeys.identities(files: keys.identityFiles))
        return try BrowseContext(destination: dest, set: set, keys: setKeys, json: options.json, reporter: options.reporter).run(body)
    }
    if code != 0 { throw ExitCode(code) }
}

/// A path argument as the exact bytes it stands for (raw argv, or the escaped form the tools print).
private func pathBytes(_ value: String, _ what: String) throws -> [UInt8] {
    do { return try NameArgument.bytes(of: value) } catch {
        throw ToolError.usage("\(what) \(value): \(error). Give the path as `hs-backup ls` prints it (\\\\ for a backslash, \\xNN for a byte).")
    }
}

extension HsBackup {
    struct Ls: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ls",
            abstract: "List the entries of one backup (from its manifest; no archive is read).",
            discussion: """
            Each line: type and mode, numeric owner, size, mtime (UTC), the path (-> TARGET for a symlink, \
            "link to PATH" for a hardlink). Names are printed escaped (\\\\, \\n, \\xNN for bytes that are not \
            UTF-8 and for control and invisible format characters); PATH accepts that form back. \
            --json: {"destination", "set", "backup", "path", "entries": \
            [{"path", "type", "mode", "uid", "gid", "size", "mtime", "link", "sha256"}], "count"}.

            Examples:
              hs-backup ls --to nfs://truenas/mnt/tank/backups
              hs-backup ls --to /mnt/backups --name io --backup 20261127T030000Z radarr
              hs-backup ls --to /mnt/backups -R sonarr --json
            """)
        @OptionGroup var destination: DestinationOptions
        @OptionGroup var keys: IdentityOptions
        @Option(help: ArgumentHelp("Backup to list: an ID or 'latest' (default: latest).", valueName: "ID"))
        var backup: String?
        @Flag(name: [.customShort("R"), .long], help: "List everything below PATH, not only its direct entries.")
        var recursive = false
        @Argument(help: ArgumentHelp("Directory or file inside the backup (default: its top level).", valueName: "PATH"))
        var path: String?

        func run() throws {
            let p = try path.map { try pathBytes($0, "PATH") } ?? []
            try browse(destination, keys) { try BrowseCommands.ls($0, backup: backup, path: p, recursive: recursive) }
        }
    }

    struct Find: ParsableCommand, UsageChecks {
        static let configuration = CommandConfiguration(
            commandName: "find",  // explicit: the default goes through String(describing:) at every start
            abstract: "Find paths in every backup of a set: which backups hold which version of each.",
            discussion: """
            PATTERN is a glob as --exclude takes it: without '/' it matches a name at any depth ('*.db', \
            'config.xml'), with '/' whole components at any depth ('radarr/*.xml'), a leading '/' anchors at \
            the top of the backup. For each matching path, the backups holding each version (type, mode, \
            owner, size, mtime, SHA-256) oldest first, and the backups it is missing from. Only manifests are read.
            --json: {"destination", "set", "patterns", "backups", "matches": [{"path", "versions": [{"first", \
            "last", "type", "mode", "uid", "gid", "size", "mtime", "sha256", "link"}]}], "paths"}.

            Examples:
              hs-backup find --to nfs://truenas/mnt/tank/backups config.xml
              hs-backup find --to /mnt/backups --name io '*.db' 'radarr/Backups/*'
            """)
        @OptionGroup var destination: DestinationOptions
        @OptionGroup var keys: IdentityOptions
        @Argument(help: ArgumentHelp("Globs to look for (any of them matches).", valueName: "PATTERN"))
        var patterns: [String] = []

        func checkUsage() throws {
            if patterns.isEmpty { throw ValidationError("Give at least one PATTERN, e.g. hs-backup find --to DEST config.xml") }
            if let p = patterns.first(where: \.isEmpty) { throw ValidationError("An empty PATTERN ('\(p)') matches nothing; give a glob such as '*.db'.") }
        }

        func run() throws {
            try browse(destination, keys) { try BrowseCommands.find($0, patterns: patterns) }
        }
    }

    struct Diff: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "diff",  // explicit: the default goes through String(describing:) at every start
            abstract: "Show what changed between two backups of a set (from their manifests).",
            discussion: """
            One line per path: '+' added, '-' removed, 'M' content or type changed, 'U' only metadata \
            changed, with what changed: content (or a link's target), type, mode, owner, "xattrs changed", \
            mtime (not for directories); then a summary line. --json: {"destination", "set", "from", "to", \
            "changes": [{"path", "status", "type", "what"}], "added", "removed", "changed", "changed_by"}.

            Examples:
              hs-backup diff --to /mnt/backups 20261126T030000Z 20261127T030000Z
              hs-backup diff --to nfs://truenas/mnt/tank/backups --name io 20261101T030000Z latest --json
            """)
        @OptionGroup var destination: DestinationOptions
        @OptionGroup var keys: IdentityOptions
        @Argument(help: ArgumentHelp("The earlier backup: an ID or 'latest'.", valueName: "ID1"))
        var from: String
        @Argument(help: ArgumentHelp("The later backup: an ID or 'latest'.", valueName: "ID2"))
        var to: String

        func run() throws {
            try browse(destination, keys) { try BrowseCommands.diff($0, from: from, to: to) }
        }
    }
}

extension HsBackup {
    struct Mount: ParsableCommand, UsageChecks {
        static let configuration = CommandConfiguration(
            commandName: "mount",  // explicit: the default goes through String(describing:) at every start
            abstract: "Mount every backup read-only with FUSE: MOUNTPOINT/SET/ID/... and MOUNTPOINT/SET/latest.",
            discussion: """
            Shows every backup of every set in DEST (only SET with --name); backups taken while it is mounted \
            appear without a remount. Types, modes, owners, sizes, times, symlinks, hardlinks and xattrs are as \
            backed up; file contents are read from the archives when asked, decompressing only what holds them. \
            Runs in the foreground: leave with Ctrl-C (or SIGTERM) or `fusermount3 -u MOUNTPOINT`. The mount is \
            private to the user who mounts it; --allow-other lets every user in, with each file's permissions \
            checked by the kernel (as root this needs nothing more; as another user, user_allow_other in \
            /etc/fuse.conf). A SQLite database inside opens with sqlite3 'file:PATH?immutable=1'.
            --json prints {"mountpoint", "destination", "sets"} once mounted.

            Examples:
              hs-backup mount --to nfs://truenas/mnt/tank/backups /mnt/backups
              hs-backup mount --to /srv/backups --name io /mnt/io-backups
            """)
        @OptionGroup var destination: DestinationOptions
        @OptionGroup var keys: IdentityOptions
        @Flag(name: .customLong("allow-other"), help: "Let every local user in, each file's owner and mode checked by the kernel (default_permissions).")
        var allowOther = false
        @Option(name: .customLong("cache-size"), help: ArgumentHelp("MiB of memory for caches: half decompressed archive data, half decoded manifests (default 96).", valueName: "MIB"))
        var cacheSize = 96
        @Flag(name: .customLong("debug-fuse"), help: "Print libfuse's debug trace of every request on stderr.")
        var debugFuse = false
        @Argument(help: ArgumentHelp("An empty directory to mount on.", valueName: "MOUNTPOINT"))
        var mountpoint: String

        func checkUsage() throws {
            if cacheSize < 8 || cacheSize > 65536 { throw ValidationError("--cache-size \(cacheSize): give 8 to 65536 MiB.") }
        }

        func run() throws {
            let code = toolMain {
                // Every set unless --name (HS_BACKUP_NAME does not narrow the mount).
                let set = try destination.name.map { try BackupTool.setName($0) }
                let dest = try destination.open()
                if let set { try BackupSets.requireSet(dest, set) } else { try BackupSets.requireDestination(dest) }
                var options = FuseMount.Options(mountpoint: mountpoint)
                options.allowOther = allowOther
                options.debug = debugFuse
                let setKeys = SetKeys(identities: try SetKeys.identities(files: keys.identityFiles))
                return try BrowseCommands.mount(destination: dest, keys: setKeys, onlySet: set, options: options, cacheMiB: cacheSize,
                                                json: destination.json, reporter: destination.reporter)
            }
            if code != 0 { throw ExitCode(code) }
        }
    }
}

extension HsBackup {
    struct Dump: ParsableCommand, UsageChecks {
        static let configuration = CommandConfiguration(
            commandName: "dump",  // explicit: the default goes through String(describing:) at every start
            abstract: "Write one file of a backup to stdout, or a directory as a tar stream.",
            discussion: """
            Reads only the gzip members that hold what is dumped, and checks every file against the \
            manifest's SHA-256 (exit 1 if one does not match: the output is then incomplete). A directory \
            (or the whole backup, with PATH '.') comes as a pax tar stream with names relative to its parent, \
            owners, modes, times, symlinks, hardlinks and xattrs; it is never written to a terminal. PATH \
            accepts the escaped form `hs-backup ls` prints. --json does not apply (stdout is the data).

            Examples:
              hs-backup dump --to /mnt/backups --name io --backup 20261127T030000Z sonarr/config.xml > config.xml
              hs-backup dump --to nfs://truenas/mnt/tank/backups --backup latest radarr | tar -xf - -C /tmp/r
            """)
        @OptionGroup var destination: DestinationOptions
        @OptionGroup var keys: IdentityOptions
        @Option(help: ArgumentHelp("Backup to read: an ID or 'latest' (default: latest).", valueName: "ID"))
        var backup: String?
        @Argument(help: ArgumentHelp("File or directory inside the backup ('.' for all of it).", valueName: "PATH"))
        var path: String

        func checkUsage() throws {
            if destination.json { throw ValidationError("dump writes the file itself to stdout; --json does not apply. Use `hs-backup ls --json PATH` for its metadata.") }
        }

        func run() throws {
            let p = try pathBytes(path, "PATH")
            try browse(destination, keys) { try BrowseCommands.dump($0, backup: backup, path: p) }
        }
    }
}
