import CNFS

#if canImport(Glibc)
import Glibc
#endif

/// A point in time as the server reports it.
package struct NFSTime: Sendable, Equatable, Comparable {
    package var seconds: Int64
    package var nanoseconds: Int32

    package init(seconds: Int64, nanoseconds: Int32 = 0) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    package static func < (a: NFSTime, b: NFSTime) -> Bool {
        (a.seconds, a.nanoseconds) < (b.seconds, b.nanoseconds)
    }
}

/// What the server knows about a file, directory or symlink (NFS attributes).
package struct NFSStat: Sendable, Equatable {
    package enum Kind: Sendable, Equatable {
        case file, directory, symlink, blockDevice, characterDevice, fifo, socket, unknown
    }

    package var kind: Kind
    /// Permission bits (`mode & 0o7777`), without the type.
    package var permissions: UInt32
    package var uid: UInt32
    package var gid: UInt32
    package var size: UInt64
    package var linkCount: UInt64
    package var inode: UInt64
    package var device: UInt64
    package var accessTime: NFSTime
    package var modificationTime: NFSTime
    package var changeTime: NFSTime

    static func kind(mode: UInt32) -> Kind {
        // POSIX type bits (S_IFMT and friends; literal because Glibc and CNFS both export them).
        switch mode & 0o170000 {
        case 0o100000: .file
        case 0o040000: .directory
        case 0o120000: .symlink
        case 0o060000: .blockDevice
        case 0o020000: .characterDevice
        case 0o010000: .fifo
        case 0o140000: .socket
        default: .unknown
        }
    }

    /// NF3REG ... NF3FIFO as in readdirplus entries.
    static func kind(nfs3Type t: UInt32) -> Kind {
        switch t {
        case 1: .file
        case 2: .directory
        case 3: .blockDevice
        case 4: .characterDevice
        case 5: .symlink
        case 6: .socket
        case 7: .fifo
        default: .unknown
        }
    }

    init(_ st: nfs_stat_64) {
        let mode = UInt32(truncatingIfNeeded: st.nfs_mode)
        kind = NFSStat.kind(mode: mode)
        permissions = mode & 0o7777
        uid = UInt32(truncatingIfNeeded: st.nfs_uid)
        gid = UInt32(truncatingIfNeeded: st.nfs_gid)
        size = st.nfs_size
        linkCount = st.nfs_nlink
        inode = st.nfs_ino
        device = st.nfs_dev
        accessTime = NFSTime(seconds: Int64(bitPattern: st.nfs_atime), nanoseconds: Int32(truncatingIfNeeded: st.nfs_atime_nsec))
        modificationTime = NFSTime(seconds: Int64(bitPattern: st.nfs_mtime), nanoseconds: Int32(truncatingIfNeeded: st.nfs_mtime_nsec))
        changeTime = NFSTime(seconds: Int64(bitPattern: st.nfs_ctime), nanoseconds: Int32(truncatingIfNeeded: st.nfs_ctime_nsec))
    }

    init(_ e: nfsdirent) {
        var k = NFSStat.kind(mode: e.mode)
        if k == .unknown { k = NFSStat.kind(nfs3Type: e.type) }
        kind = k
        permissions = e.mode & 0o7777
        uid = e.uid
        gid = e.gid
        size = e.size
        linkCount = UInt64(e.nlink)
        inode = e.inode
        device = e.dev
        accessTime = NFSTime(seconds: Int64(e.atime.tv_sec), nanoseconds: Int32(truncatingIfNeeded: e.atime_nsec))
        modificationTime = NFSTime(seconds: Int64(e.mtime.tv_sec), nanoseconds: Int32(truncatingIfNeeded: e.mtime_nsec))
        changeTime = NFSTime(seconds: Int64(e.ctime.tv_sec), nanoseconds: Int32(truncatingIfNeeded: e.ctime_nsec))
    }
}

/// One entry of a directory listing, with the attributes READDIRPLUS returned for it.
package struct NFSDirectoryEntry: Sendable, Equatable {
    package var name: String
    package var attributes: NFSStat
}

/// Space on the export (NFS FSSTAT).
package struct NFSSpace: Sendable, Equatable {
    package var totalBytes: UInt64
    package var freeBytes: UInt64
    package var availableBytes: UInt64
}
