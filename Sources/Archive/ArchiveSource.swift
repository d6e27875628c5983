import Support

/// Random-access bytes of an archive from a read closure (e.g. a Storage `DestinationReader`
/// on an NFS export: `ArchiveSource(size: r.size, displayName: url) { try r.read(at: $0, count: $1) }`).
/// Any other `ByteSource` (a `FileByteSource`, an age-decrypting reader, stdin) serves as well.
package struct ArchiveSource: ByteSource, @unchecked Sendable {
    // The closure is called from the reader's decompression job, one call at a time.
    private let length: UInt64
    package let displayName: String
    private let reader: (UInt64, Int) throws -> [UInt8]

    package init(size: UInt64, displayName: String, read: @escaping (UInt64, Int) throws -> [UInt8]) {
        self.length = size; self.displayName = displayName; self.reader = read
    }

    package var size: UInt64? { length }

    package func read(at offset: UInt64, count: Int) throws -> [UInt8] { try reader(offset, count) }

    /// A local file.
    /// - Throws: `SysError` when it cannot be opened or is not a regular file.
    package static func file(_ path: String) throws -> FileByteSource { try FileByteSource(path: path) }
}
