import Support

/// One data region of a sparse file: `length` bytes at `offset` of the real file.
package struct SparseRegion: Sendable, Equatable {
    package var offset: UInt64
    package var length: UInt64
    package init(offset: UInt64, length: UInt64) { self.offset = offset; self.length = length }
}

/// One entry as the restore engine sees it: what `TarReader` reads from any tar format, and
/// what the tree writer creates. Names and link targets are bytes (never decoded).
package struct TarEntry: Sendable {
    package var path: [UInt8]
    package var type: EntryType
    /// Permission bits including setuid/setgid/sticky (07777).
    package var mode: UInt32 = 0o644
    package var uid: UInt32 = 0
    package var gid: UInt32 = 0
    /// Owner names as recorded (not used to restore: ownership is numeric).
    package var uname: [UInt8]? = nil
    package var gname: [UInt8]? = nil
    /// Size of the file as restored (the real size of a sparse file); 0 for non-files.
    package var size: UInt64 = 0
    package var mtime = FileTime(seconds: 0)
    /// Symlink target, or for hardlinks the path of the entry linked to.
    package var linkTarget: [UInt8] = []
    /// Extended attributes (pax `SCHILY.xattr.*`), names and values as bytes, in archive order.
    package var xattrs: [(name: [UInt8], value: [UInt8])] = []
    package var devMajor: UInt32 = 0
    package var devMinor: UInt32 = 0
    /// The data regions when the file is sparse (holes elsewhere); nil for ordinary content.
    package var sparse: [SparseRegion]? = nil
    /// Tar offset of the entry's first header block (a pax or GNU long-name header if any).
    package var headerOffset: UInt64 = 0

    package init(path: [UInt8], type: EntryType) {
        self.path = path
        self.type = type
    }

    /// The path for messages, escaped (`NameEscape`; never used to name a file).
    package var displayPath: String { NameEscape.escape(path) }
    package var displayLink: String { NameEscape.escape(linkTarget) }
}
