import Storage
import Support

/// What commits backups in a set: a backup run, or `copy` from another destination. Both make
/// the set directory and keep it durable by the same rule (`makeDirectory`,
/// `makeDurableBeforeCommit`); their messages say which did nothing.
package enum SetCommitter: Sendable {
    case backup, copy

    var nothingDone: String { self == .backup ? "nothing was backed up" : "nothing was copied" }
    var again: String { self == .backup ? "run the backup again" : "run the copy again" }
    var checkDestination: String { self == .backup ? "Check that DEST exists and is writable." : "Check that --to is writable." }
}

extension BackupSet {
    /// Makes the set directory and DEST where they are missing, each new one durable
    /// (`Destination.makeDirectories`: a commit in them must not be lost with the directory).
    /// - Throws: `ToolError` naming the set directory: not durable (a parent's fsync failed),
    ///   or not created.
    package func makeDirectory(for committer: SetCommitter) throws {
        do { try destination.makeDirectories(name) } catch let e as StorageError where e.operation == StorageError.directorySync {
            throw notDurable(e, committer)
        } catch {
            throw ToolError("cannot create the backup set directory \(location): \(error). \(committer.checkDestination)")
        }
    }

    /// Before a commit in the set, `backupsThere` being how many backups it has committed: the
    /// set's first (none) makes the set directory and DEST durable. An earlier run or copy may
    /// have made them and stopped before it fsynced their parents (`makeDirectory` syncs only
    /// what this process made), so they are made durable now, before anything is committed in
    /// them (`Destination.syncParents`). Once a backup is committed this was done: later runs
    /// pay nothing. (Parents this process fsynced when it made a directory are not fsynced again.)
    /// - Throws: `ToolError` naming the set directory and the failed sync.
    package func makeDurableBeforeCommit(backupsThere: Int, by committer: SetCommitter) throws {
        guard backupsThere == 0 else { return }
        do { try destination.syncParents(of: name) } catch { throw notDurable(error, committer) }
    }

    /// The failure of a sync that makes the set directory durable: nothing is committed.
    private func notDurable(_ error: any Error, _ committer: SetCommitter) -> ToolError {
        ToolError("cannot make the backup set directory \(location) durable: \(error); a power loss could take it away, "
                  + "so \(committer.nothingDone). Check the disk or NAS (dmesg, zpool status), then \(committer.again).")
    }
}
