// What the mount shows, without anything of FUSE: `/SET/ID/...` for every backup of every set
// in the destination (one set with --name) and `/SET/latest` as a symlink to the newest id.
// Sets and backups are listed again when older than a second, so new backups appear without a
// remount. Everything below `/SET/ID` comes from that backup's manifest (`BackupTree`) and is
// immutable; file contents and xattrs come from its archives (`ArchiveContent`).
//
// Inode numbers: 1 is the root; the set directories, backup directories and `latest` links get
// numbers below 2^32 as they are first seen; an entry of a backup is
// (slot << 44) | (member << 14) | index, where slot (>= 1) numbers the backup within this mount.
// The same entry always has the same number, and a hardlink is looked up as the file it links
// to (one inode, st_nlink = its number of names), so `cp -a`, `rsync -H` and `tar` see hardlinks.
import Archive
import Backup
import FoundationEssentials
import Glibc
import Storage
import Support
import Synchronization

/// A node's attributes as `stat` shows them.
package struct NodeAttributes: Sendable, Equatable {
    package enum Kind: Sendable, Equatable { case directory, file, symlink }
    package var ino: UInt64
    package var kind: Kind
    /// Permission bits (07777).
    package var mode: UInt32
    package var uid: UInt32
    package var gid: UInt32
    package var size: UInt64
    package var mtime: FileTime
    package var ctime: FileTime
    package var nlink: UInt32
}

/// Why a mount call fails (the FUSE layer maps it to an errno).
package enum MountFailure: Error, Equatable {
    case notFound, notDirectory, notSymlink, isDirectory, noAttribute
    /// The backup was removed (pruned) since this inode was handed out.
    case stale
    /// Reading failed or the backup is damaged; the message says which and is logged once.
    case io(String)
}

package final class MountTree: Sendable {
    package let destination: any Destination
    /// The identities an encrypted set is read with (`--identity`).
    package let keys: SetKeys
    package let onlySet: String?
    private let owner: (uid: UInt32, gid: UInt32)
    private let mounted: FileTime
    package let cache: MemberTableCache
    package let content: ArchiveContent
    private let state = Mutex(State())
    /// How long a listing of sets or of a set's backups is reused.
    private let relist: Double = 1

    package static let rootIno: UInt64 = 1
    static let slotShift: UInt64 = 44
    static let memberShift: UInt64 = 14

    private enum Synthetic: Hashable {
        case set(String)
        case backup(set: String, id: String)
        case latest(set: String)
    }

    private struct State {
        var synthetic: [UInt64: Synthetic] = [:]
        var numbers: [Synthetic: UInt64] = [:]
        var nextSynthetic: UInt64 = 2
        var slots: [String: UInt64] = [:]         // "set/id" -> slot
        var slotNames: [UInt64: (set: String, id: String)] = [:]
        var indexes: [UInt64: BackupTree] = [:]
        var sets: (at: Double, names: [String])?
        var backups: [String: (at: Double, ids: [String], started: [String: Double])] = [:]
    }

    /// - Parameters:
    ///   - onlySet: show only this set (`--name`).
    ///   - cacheBytes: bound of the caches together: half for decoded manifest members, half for
    ///     decompressed archive members.
    package init(destination: any Destination, keys: SetKeys = SetKeys(), onlySet: String?, cacheBytes: Int = 96 << 20,
                 uid: UInt32 = getuid(), gid: UInt32 = getgid()) {
        self.destination = destination
        self.keys = keys
        self.onlySet = onlySet
        owner = (uid, gid)
        let now = Date().timeIntervalSince1970
        mounted = FileTime(seconds: Int64(now), nanoseconds: 0)
        cache = MemberTableCache(maxBytes: cacheBytes / 2)
        content = ArchiveContent(destination: destination, keys: keys, cacheBytes: cacheBytes / 2)
    }

    // MARK: sets and backups

    /// The sets shown (re-listed when older than a second).
    package func sets() throws -> [String] {
        let now = Date().timeIntervalSince1970
        if let s = state.withLock({ $0.sets }), now - s.at < relist { return s.names }
        var names: [String]
        if let only = onlySet {
            names = [only]
        } else {
            names = []
            for e in try destination.list("") where e.kind == .directory && !e.name.hasPrefix(".") {
                if try destination.list(e.name).contains(where: { $0.kind == .file && $0.name.hasSuffix(".manifest") }) { names.append(e.name) }
            }
            names.sort()
        }
        state.withLock { $0.sets = (now, names) }
        return names
    }

    /// The committed backups of a set, oldest first, with their start times.
    private func backups(_ set: String, fresh: Bool = false) throws -> (ids: [String], started: [String: Double]) {
        let now = Date().timeIntervalSince1970
        if !fresh, let b = state.withLock({ $0.backups[set] }), now - b.at < relist { return (b.ids, b.started) }
        let bs = BackupSet(destination: destination, name: set, keys: keys)
        let ids = try bs.committedIDs()
        var started = state.withLock { $0.backups[set]?.started } ?? [:]
        for id in ids where started[id] == nil {
            // The id is the start time; the header says it exactly (read once per backup).
            started[id] = (try? bs.peekHeader(id).started) ?? Self.time(ofID: id)
        }
        state.withLock { $0.backups[set] = (now, ids, started) }
        return (ids, started)
    }

    /// The UTC time an id names (`20261127T030000Z`), 0 when it names none.
    static func time(ofID id: String) -> Double {
        BackupID.seconds(of: String(id.prefix(16))).map(Double.init) ?? 0
    }

    private func number(_ s: Synthetic) -> UInt64 {
        state.withLock { st in
            if let n = st.numbers[s] { return n }
            let n = st.nextSynthetic
            st.nextSynthetic += 1
            st.numbers[s] = n
            st.synthetic[n] = s
            return n
        }
    }

    private func slot(set: String, id: String) -> UInt64 {
        state.withLock { st in
            let key = set + "/" + id
            if let s = st.slots[key] { return s }
            let s = UInt64(st.slots.count + 1)
            st.slots[key] = s
            st.slotNames[s] = (set, id)
            return s
        }
    }

    /// The index of the backup in `slot`, built on first use.
    package func index(slot: UInt64) throws(MountFailure) -> BackupTree {
        if let i = state.withLock({ $0.indexes[slot] }) { return i }
        guard let (set, id) = state.withLock({ $0.slotNames[slot] }) else { throw .stale }
        do {
            let members = try BackupSet(destination: destination, name: set, keys: keys).manifestMembers(id)
            let index = try BackupTree(id: id, members: members, cache: cache)
            return state.withLock { st in
                if let i = st.indexes[slot] { return i }
                st.indexes[slot] = index
                return index
            }
        } catch {
            if removed(slot: slot) { throw .stale }
            throw .io("\(HumanError.describe(error))")
        }
    }

    /// True when the backup of `slot` is no longer in its set, listed afresh: what failed
    /// because a prune removed it meanwhile answers ESTALE, and is not damage to report.
    package func removed(slot: UInt64) -> Bool {
        guard let (set, id) = state.withLock({ $0.slotNames[slot] }) else { return true }
        return (try? backups(set, fresh: true).ids.contains(id)) == false
    }

    /// Opens a regular file (`ArchiveContent.open`); ESTALE when its backup was pruned since.
    package func open(_ ino: UInt64, _ place: ArchivePlace) throws(MountFailure) -> OpenFile {
        do { return try content.open(place) } catch { throw staleIfPruned(ino, error) }
    }

    /// A read of `ino`'s backup that failed: ESTALE instead of the I/O failure when that backup
    /// was pruned since (not damage to report), else `error` as it is.
    private func staleIfPruned(_ ino: UInt64, _ error: MountFailure) -> MountFailure {
        if case .io = error, let (slot, _) = Self.split(ino), removed(slot: slot) { return .stale }
        return error
    }

    // MARK: inode numbers of entries

    static func entryIno(slot: UInt64, _ r: EntryRef) -> UInt64 {
        slot << slotShift | UInt64(r.member) << memberShift | UInt64(r.index)
    }

    static func split(_ ino: UInt64) -> (slot: UInt64, ref: EntryRef)? {
        let slot = ino >> slotShift
        guard slot > 0 else { return nil }
        return (slot, EntryRef(member: Int((ino >> memberShift) & (1 << (slotShift - memberShift) - 1)), index: Int(ino & (1 << memberShift - 1))))
    }

    // MARK: what the file system asks

    private func directory(_ ino: UInt64, mtime: Double, nlink: UInt32 = 1) -> NodeAttributes {
        let t = FileTime(seconds: Int64(mtime.rounded(.down)), nanoseconds: UInt32((mtime - mtime.rounded(.down)) * 1e9))
        return NodeAttributes(ino: ino, kind: .directory, mode: 0o555, uid: owner.uid, gid: owner.gid, size: 0, mtime: t, ctime: t, nlink: nlink)
    }

    /// Attributes of any node.
    package func attributes(_ ino: UInt64) throws(MountFailure) -> NodeAttributes {
        if ino == Self.rootIno { return directory(ino, mtime: Double(mounted.seconds)) }
        if let (slot, ref) = Self.split(ino) {
            let index = try index(slot: slot)
            return try attributes(index, slot: slot, ref)
        }
        guard let s = state.withLock({ $0.synthetic[ino] }) else { throw .stale }
        switch s {
        case .set(let set):
            let b = try wrap { try backups(set) }
            return directory(ino, mtime: b.ids.last.flatMap { b.started[$0] } ?? Double(mounted.seconds))
        case .backup(let set, let id):
            let b = try wrap { try backups(set) }
            return directory(ino, mtime: b.started[id] ?? Self.time(ofID: id))
        case .latest(let set):
            let b = try wrap { try backups(set) }
            guard let last = b.ids.last else { throw .stale }
            var a = directory(ino, mtime: b.started[last] ?? 0)
            a.kind = .symlink; a.mode = 0o777; a.size = UInt64(last.utf8.count)
            return a
        }
    }

    private func attributes(_ index: BackupTree, slot: UInt64, _ ref: EntryRef) throws(MountFailure) -> NodeAttributes {
        let (e, path, link) = try wrap { try index.entry(ref) }
        let ino = Self.entryIno(slot: slot, ref)
        let mtime = FileTime(seconds: e.mtime.seconds, nanoseconds: e.mtime.nanoseconds)
        let ctime = FileTime(seconds: e.ctime.seconds, nanoseconds: e.ctime.nanoseconds)
        var a = NodeAttributes(ino: ino, kind: .file, mode: e.mode & 0o7777, uid: e.uid, gid: e.gid, size: e.size, mtime: mtime, ctime: ctime, nlink: 1)
        switch e.type {
        case .directory: a.kind = .directory; a.size = 0
        case .symlink: a.kind = .symlink; a.size = UInt64(link.count)
        case .file: a.nlink = index.nlink(path)
        case .hardlink:
            // Looked up as its target; reached by number only if the target is missing.
            a.nlink = 1
        }
        return a
    }

    /// The node called `name` in directory `parent`.
    package func lookup(_ parent: UInt64, _ name: [UInt8]) throws(MountFailure) -> NodeAttributes {
        if parent == Self.rootIno {
            let set = String(decoding: name, as: UTF8.self)
            guard Array(set.utf8) == name, try wrap({ try sets() }).contains(set) else { throw .notFound }
            return try attributes(number(.set(set)))
        }
        if let (slot, ref) = Self.split(parent) {
            let index = try index(slot: slot)
            let (e, path, _) = try wrap { try index.entry(ref) }
            guard e.type == .directory else { throw .notDirectory }
            return try lookup(index, slot: slot, path + [UInt8(ascii: "/")] + name)
        }
        guard let s = state.withLock({ $0.synthetic[parent] }) else { throw .stale }
        switch s {
        case .set(let set):
            let id = String(decoding: name, as: UTF8.self)
            let b = try wrap { try backups(set) }
            if id == "latest" && !b.ids.isEmpty { return try attributes(number(.latest(set: set))) }
            guard Array(id.utf8) == name, b.ids.contains(id) else { throw .notFound }
            return try attributes(number(.backup(set: set, id: id)))
        case .backup(let set, let id):
            let slot = slot(set: set, id: id)
            return try lookup(try index(slot: slot), slot: slot, name)
        case .latest: throw .notDirectory
        }
    }

    private func lookup(_ index: BackupTree, slot: UInt64, _ path: [UInt8]) throws(MountFailure) -> NodeAttributes {
        guard let ref = try wrap({ try index.find(path) }) else { throw .notFound }
        let (e, _, link) = try wrap { try index.entry(ref) }
        if e.type == .hardlink, let target = try wrap({ try index.find(link) }), try wrap({ try index.entry(target) }).entry.type == .file {
            return try attributes(index, slot: slot, target)
        }
        return try attributes(index, slot: slot, ref)
    }

    /// The entries of a directory (without `.` and `..`).
    package func children(_ ino: UInt64) throws(MountFailure) -> [(name: [UInt8], attributes: NodeAttributes)] {
        if ino == Self.rootIno {
            var out: [(name: [UInt8], attributes: NodeAttributes)] = []
            for set in try wrap({ try sets() }) { out.append((Array(set.utf8), try attributes(number(.set(set))))) }
            return out
        }
        if let (slot, ref) = Self.split(ino) {
            let index = try index(slot: slot)
            let (e, path, _) = try wrap { try index.entry(ref) }
            guard e.type == .directory else { throw .notDirectory }
            return try children(index, slot: slot, path)
        }
        guard let s = state.withLock({ $0.synthetic[ino] }) else { throw .stale }
        switch s {
        case .set(let set):
            let ids = try wrap { try backups(set) }.ids
            var out: [(name: [UInt8], attributes: NodeAttributes)] = []
            for id in ids { out.append((Array(id.utf8), try attributes(number(.backup(set: set, id: id))))) }
            if !ids.isEmpty { out.append((Array("latest".utf8), try attributes(number(.latest(set: set))))) }
            return out
        case .backup(let set, let id):
            let slot = slot(set: set, id: id)
            return try children(try index(slot: slot), slot: slot, [])
        case .latest: throw .notDirectory
        }
    }

    private func children(_ index: BackupTree, slot: UInt64, _ dir: [UInt8]) throws(MountFailure) -> [(name: [UInt8], attributes: NodeAttributes)] {
        let refs = try wrap { try index.children(dir) }
        let skip = dir.isEmpty ? 0 : dir.count + 1
        return try refs.map { r throws(MountFailure) in
            let (e, path, _) = try wrap { try index.entry(r) }
            let a = e.type == .hardlink ? try lookup(index, slot: slot, path) : try attributes(index, slot: slot, r)
            return (Array(path[skip...]), a)
        }
    }

    /// A symlink's target.
    package func readlink(_ ino: UInt64) throws(MountFailure) -> [UInt8] {
        if let (slot, ref) = Self.split(ino) {
            let (e, _, link) = try wrap { try index(slot: slot).entry(ref) }
            guard e.type == .symlink else { throw .notSymlink }
            return link
        }
        guard case .latest(let set)? = state.withLock({ $0.synthetic[ino] }) else { throw .notSymlink }
        guard let last = try wrap({ try backups(set) }).ids.last else { throw .stale }
        return Array(last.utf8)
    }

    /// Where a file's content (or an entry's xattrs) is: its backup's set, the archive and the
    /// place of its tar header; nil for an entry without one.
    package func place(_ ino: UInt64) throws(MountFailure) -> ArchivePlace? {
        guard let (slot, ref) = Self.split(ino) else { return nil }
        let index = try index(slot: slot)
        let (e, path, _) = try wrap { try index.entry(ref) }
        guard let archive = index.members.header.archiveID(e.archive) else { return nil }
        guard let (set, _) = state.withLock({ $0.slotNames[slot] }) else { throw .stale }
        return ArchivePlace(set: set, archive: archive, member: e.memberOffset, skip: e.memberSkip, path: path, type: e.type,
                            size: e.size, sha256: e.hash, hasXattrs: e.xattrHash != 0)
    }

    /// An entry's extended attributes (read from its archive's header only when the manifest
    /// says it has any).
    package func xattrs(_ ino: UInt64) throws(MountFailure) -> [(name: [UInt8], value: [UInt8])] {
        guard let p = try place(ino), p.hasXattrs else { return [] }
        do { return try content.xattrs(p) } catch { throw staleIfPruned(ino, error) }
    }

    private func wrap<R>(_ body: () throws -> R) throws(MountFailure) -> R {
        do { return try body() } catch let e as MountFailure { throw e } catch { throw .io(HumanError.describe(error)) }
    }
}
