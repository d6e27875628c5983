import ArgumentParser
import Backup
import FoundationEssentials
import Glibc
import Support

/// `--recipient`, `--recipients-file`, `--rotate-keys`, `--state-dir` of `hs-backup run`.
struct EncryptionRunOptions: ParsableArguments {
    @Option(name: .customLong("recipient"),
            help: ArgumentHelp("Encrypt the backup with age to this X25519 public key (age1..., what `age-keygen -y KEYFILE` prints); "
                               + "repeatable. Only public keys belong on a guest: it can then write backups it cannot read.",
                               valueName: "AGE1..."))
    var recipients: [String] = []

    @Option(name: .customLong("recipients-file"),
            help: ArgumentHelp("A file of recipients, one age1... per line ('#' comments), as `age -R` reads it; repeatable "
                               + "(default: HS_AGE_RECIPIENTS_FILE when no --recipient is given).",
                               valueName: "FILE"))
    var recipientsFiles: [String] = []

    @Flag(name: .customLong("rotate-keys"),
          help: "Accept recipients that differ from the ones the set's newest backup was encrypted to (or encrypt a set that was not): starts a new chain with a full backup.")
    var rotateKeys = false

    @Option(name: .customLong("state-dir"),
            help: ArgumentHelp("Where an encrypted set's newest manifest is kept in plaintext for the next incremental "
                               + "(default: $HS_STATE_DIR or /var/lib/home-server-tools).", valueName: "DIR"))
    var stateDir: String?

    /// The options as plain values (what `hs-backup run` consumes: `RunValues`).
    var values: EncryptionRunValues {
        EncryptionRunValues(recipients: recipients, recipientsFiles: recipientsFiles, rotateKeys: rotateKeys, stateDir: stateDir)
    }
}

/// `EncryptionRunOptions` as plain values.
struct EncryptionRunValues {
    var recipients: [String]
    var recipientsFiles: [String]
    var rotateKeys: Bool
    var stateDir: String?

    /// Reads the recipients (a bad key or unreadable file exits 2) into `options`: the flags,
    /// or when none is given HS_AGE_RECIPIENTS_FILE (environment, then the configuration file).
    func apply(to options: inout BackupOptions) throws {
        var files = recipientsFiles
        if recipients.isEmpty && files.isEmpty, let f = try ToolConfiguration.get().value(.ageRecipientsFile) { files = [f.value] }
        options.encryption.recipients = try SetKeys.recipients(recipients, files: files)
        options.encryption.rotateKeys = rotateKeys
        if let dir = stateDir ?? Sys.environment("HS_STATE_DIR"), !dir.isEmpty {
            options.encryption.stateDirectory = dir
        }
    }
}
