import ArgumentParser
import Backup
import Foundation

/// `--recipient`, `--recipients-file`, `--rotate-keys`, `--state-dir` of `hs-backup run`.
struct EncryptionRunOptions: ParsableArguments {
    @Option(name: .customLong("recipient"),
            help: ArgumentHelp("Encrypt the backup with age to this X25519 public key (age1..., what `age-keygen -y KEYFILE` prints); "
                               + "repeatable. Only public keys belong on a guest: it can then write backups it cannot read.",
                               valueName: "AGE1..."))
    var recipients: [String] = []

    @Option(name: .customLong("recipients-file"),
            help: ArgumentHelp("A file of recipients, one age1... per line ('#' comments), as `age -R` reads it; repeatable.",
                               valueName: "FILE"))
    var recipientsFiles: [String] = []

    @Flag(name: .customLong("rotate-keys"),
          help: "Accept recipients that differ from the ones the set's newest backup was encrypted to (or encrypt a set that was not): starts a new chain with a full backup.")
    var rotateKeys = false

    @Option(name: .customLong("state-dir"),
            help: ArgumentHelp("Where an encrypted set's newest manifest is kept in plaintext for the next incremental "
                               + "(default: $HS_STATE_DIR or /var/lib/home-server-tools).", valueName: "DIR"))
    var stateDir: String?

    /// Reads the recipients (a bad key or unreadable file exits 2) into `options`.
    func apply(to options: inout BackupOptions) throws {
        options.encryption.recipients = try SetKeys.recipients(recipients, files: recipientsFiles)
        options.encryption.rotateKeys = rotateKeys
        if let dir = stateDir ?? ProcessInfo.processInfo.environment["HS_STATE_DIR"], !dir.isEmpty {
            options.encryption.stateDirectory = dir
        }
    }
}
