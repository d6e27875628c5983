import ArgumentParser
import CommandLineSupport
import Foundation
import Stacks
import Support

@main
struct HsDeploy: ToolCommand {
    static let configuration = CommandConfiguration(
        commandName: "hs-deploy",
        abstract: "Validate a stack's .env against its templates, guard the NFS storage mount, and start it.",
        discussion: """
            hs-deploy --check [STACK]...  validate only
            hs-deploy --check --all       validate every stack of the repository (CI)
            hs-deploy STACK...            validate, guard storage, docker compose up -d
            hs-deploy --pull [STACK]...   the same, pulling images first
            hs-deploy --down STACK...     docker compose down
            hs-deploy --save-env DIR      copy common/.env and stacks/*/.env to DIR (600)
            hs-deploy --save-env-to-appdata   the same into HS_APPDATA/.home-server-env
            No STACK with --check or --pull: this host's stacks (those with a
            stacks/STACK/.env).

            Checks: every variable of common/.env.template and stacks/STACK/.env.template has a \
            non-empty value in the matching .env (a template comment line containing @optional \
            above a variable allows it to be empty); every ${VAR} in the compose file is declared \
            in a template; .env files are not readable by group/other (chmod 600); the compose \
            file passes `docker compose config`; Homepage's services.yaml lists exactly the \
            stack's published ports. .env values are never printed.

            Storage guard: a stack whose parsed compose file bind-mounts the storage path \
            (default /mnt/storage) starts only when that path is a mount point of an allowed \
            kind (default nfs, nfs4), never the bare directory on the local disk.

            Compose runs as `docker compose --env-file common/.env --env-file stacks/STACK/.env \
            -f stacks/STACK/docker-compose.yml up -d` with a clean environment (only the .env \
            files set variables).

            Exit codes: 0 success, 1 a check failed (or compose failed), 2 bad usage. \(ExitStatus.onlyBackupRun)

            Examples:
              hs-deploy --check
              hs-deploy io
              hs-deploy --check io asteria --json
              hs-deploy --down io
            """,
        version: homeServerVersion)

    @Argument(help: "Stacks to check or deploy (io, asteria, apollo, helios, aeos, hera, atlas).")
    var stacks: [String] = []

    @Flag(help: "Validate only; with no stack named, this host's stacks (those with a stacks/STACK/.env).")
    var check = false

    @Flag(help: "Stop and remove the stack's containers instead of starting them.")
    var down = false

    @Flag(help: "Pull images before starting; with no stack named, this host's stacks.")
    var pull = false

    @Flag(help: "With --check and no stack named: every stack of the repository, not only this host's (CI).")
    var all = false

    @Option(name: .customLong("save-env"),
            help: ArgumentHelp("Copy common/.env and stacks/*/.env into this directory (mode 600) for the nightly backup, then exit.",
                               valueName: "dir"))
    var saveEnv: String?

    @Option(help: "Repository root holding stacks/ and common/ (default: HS_REPO from the environment or the configuration file, else the current directory).")
    var repo: String?

    @Flag(name: .customLong("save-env-to-appdata"),
          help: "Like --save-env, into HS_APPDATA/.home-server-env (HS_APPDATA from the environment or the configuration file): what the nightly backup unit runs first.")
    var saveEnvToAppdata = false

    @Option(help: ArgumentHelp("Storage path the guard checks when a stack bind-mounts it.", valueName: "path"))
    var storage: String = "/mnt/storage"

    @Option(name: .customLong("storage-fstype"),
            help: ArgumentHelp("Filesystem kinds accepted at the storage path, comma separated (default nfs,nfs4; env HS_STORAGE_FSTYPES).",
                               valueName: "types"))
    var storageFSTypes: String?

    @Flag(help: "Print one JSON object on stdout instead of text.")
    var json = false

    @OptionGroup var verbosity: VerbosityOptions

    /// Conflicting flags (exit 2, like every usage error of the toolkit).
    func conflict() -> String? {
        if check && down { return "--check and --down exclude each other" }
        if check && pull { return "--pull starts nothing with --check; drop one of them" }
        if down && pull { return "--pull makes no sense with --down" }
        if all && !stacks.isEmpty { return "--all and stack names exclude each other" }
        if all && !check { return "--all goes with --check (every stack of the repository, for CI); a deploy or --pull names its stacks or acts on this host's" }
        if saveEnv != nil && saveEnvToAppdata { return "--save-env and --save-env-to-appdata exclude each other" }
        if (saveEnv != nil || saveEnvToAppdata) && (check || down || pull || all || !stacks.isEmpty) { return "--save-env takes no other action or stack" }
        return nil
    }

    func run() throws {
        // A usage error as every other (ToolCommand.main: the usage, the hint, the --json object).
        if let conflict = conflict() { throw ValidationError(conflict + ".") }
        let check = check, down = down, pull = pull, all = all, stacks = stacks, storage = storage, json = json
        let repo = repo, saveEnv = saveEnv, saveEnvToAppdata = saveEnvToAppdata, storageFSTypes = storageFSTypes
        let code = toolMain {
            let config = try ToolConfiguration.get()
            var o = DeployOptions()
            o.repo = config.value(.repo, flag: repo, flagName: "--repo")?.value ?? "."
            o.stacks = stacks
            o.action = check ? .check : (down ? .down : .deploy)
            o.pull = pull
            o.all = all
            o.saveEnv = saveEnv
            if saveEnvToAppdata {
                guard let appdata = config.value(.appdata)?.value else {
                    throw ToolError.usage("--save-env-to-appdata: HS_APPDATA is not set (\(config.whereLooked(.appdata))); "
                                          + "set it, or give --save-env DIR")
                }
                o.saveEnv = (appdata.hasSuffix("/") ? appdata : appdata + "/") + ".home-server-env"
            }
            o.storagePath = storage
            if let types = config.value(.storageFSTypes, flag: storageFSTypes, flagName: "--storage-fstype")?.value {
                o.storageFSTypes = types.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            }
            o.json = json
            return try StackDeployer.run(o)
        }
        if code != 0 { throw ExitCode(code) }
    }
}
