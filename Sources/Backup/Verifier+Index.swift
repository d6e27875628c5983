import Crypto
import Storage
import Support

/// `hs-backup verify` of what the keyless index says: every backup's archives and manifest
/// are there with the sizes it records, and (for an encrypted backup checked without its key)
/// their bytes hash to the SHA-256 it recorded. Any changed byte of a stored file is found that
/// way without decrypting; with `--identity` the contents are checked as for a plaintext set.
extension SetInspector {
    /// Splits `ids` into those whose contents can be read with the keys held and those that
    /// can only be checked by their index (encrypted, and no identity given).
    static func keylessOnly(_ set: BackupSet, _ ids: [String]) -> Set<String> {
        guard set.keys.identities.isEmpty else { return [] }
        return Set(ids.filter { id in
            if let i = try? set.readIndex(id) { return i.isEncrypted }
            return (try? set.isEncrypted(set.manifestPath(id))) ?? false
        })
    }

    /// Checks each backup's index against the stored files: presence and size always, and the
    /// SHA-256 of each file (each read once) when `hashing`. Problems go to `report.damaged`.
    static func checkIndexes(_ set: BackupSet, _ ids: [String], hashing: Set<String>, report: inout VerifyReport, reporter: Reporter) {
        var seen: [String: String?] = [:]   // stored path -> problem (nil: fine)
        for id in ids {
            let index: BackupIndex
            do {
                guard let i = try set.readIndex(id) else {
                    if hashing.contains(id) { report.damaged.append("\(id).index: missing; an encrypted backup is checked without its key by its index") }
                    continue
                }
                index = i
            } catch {
                report.damaged.append("\(id).index: \(error)")
                continue
            }
            let files = index.archives.map { ("\($0.id).tar.gz", $0) } + [("\(id).manifest", index.manifest)]
            for (name, stored) in files {
                let key = name + (hashing.contains(id) ? "#" : "")
                if seen[key] == nil {
                    if name.hasSuffix(".tar.gz"), hashing.contains(id) { report.archivesChecked += 1 }
                    reporter.progress("checking \(name) against the index")
                    let path = name.hasSuffix(".tar.gz") ? ((try? set.storedArchivePath(stored.id)) ?? set.archivePath(stored.id)) : "\(set.name)/\(name)"
                    seen[key] = .some(check(set, path, stored, hash: hashing.contains(id)))
                }
                if let problem = seen[key]!, !report.damaged.contains("\(name): \(problem)") {
                    report.damaged.append("\(name): \(problem)")
                }
            }
        }
    }

    /// What is wrong with one stored file compared with its index entry, or nil.
    private static func check(_ set: BackupSet, _ path: String, _ stored: StoredFile, hash: Bool) -> String? {
        let st: DestinationEntry
        do {
            guard let s = try set.destination.stat(path) else { return "missing (the index of a backup that needs it lists it)" }
            st = s
        } catch { return "cannot be read: \(HumanError.describe(error))" }
        guard st.size == stored.size else { return "is \(st.size) bytes; the index recorded \(stored.size) when it was written" }
        guard hash, let want = stored.sha256 else { return nil }
        do {
            let r = try set.destination.open(path)
            defer { try? r.close() }
            let (digest, read) = try r.sha256()
            guard read == stored.size, Digest(digest) == want else {
                return "its bytes do not match the SHA-256 the index recorded when it was written: it was changed or damaged"
            }
        } catch { return "cannot be read: \(HumanError.describe(error))" }
        return nil
    }
}
