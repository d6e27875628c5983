/// One gzip member of an archive: where it sits compressed and which tar-stream bytes it holds.
package struct ArchiveMember: Codable, Sendable, Equatable {
    package var compressedOffset: UInt64
    package var compressedLength: UInt64
    package var uncompressedOffset: UInt64
    package var uncompressedLength: UInt64

    package init(compressedOffset: UInt64, compressedLength: UInt64, uncompressedOffset: UInt64, uncompressedLength: UInt64) {
        self.compressedOffset = compressedOffset; self.compressedLength = compressedLength
        self.uncompressedOffset = uncompressedOffset; self.uncompressedLength = uncompressedLength
    }
}

/// Where one entry's header is: the member holding its first header byte and the tar-stream
/// offset of that byte (a pax or GNU long-name header when the entry has one).
package struct ArchiveIndexEntry: Codable, Sendable, Equatable {
    package var path: String
    package var member: Int
    package var headerOffset: UInt64

    package init(path: String, member: Int, headerOffset: UInt64) {
        self.path = path; self.member = member; self.headerOffset = headerOffset
    }
}

/// What `ArchiveWriter.finish()` hands back: every member, and every entry's header position,
/// so a restore can read one file without reading the archive from the start, and can
/// decompress members independently (each member is a complete gzip stream).
package struct ArchiveIndex: Codable, Sendable, Equatable {
    package var members: [ArchiveMember]
    /// Empty when the writer was told not to record entries (`recordEntries: false`).
    package var entries: [ArchiveIndexEntry]
    package var compressedSize: UInt64
    package var uncompressedSize: UInt64

    package init(members: [ArchiveMember] = [], entries: [ArchiveIndexEntry] = [], compressedSize: UInt64 = 0, uncompressedSize: UInt64 = 0) {
        self.members = members; self.entries = entries
        self.compressedSize = compressedSize; self.uncompressedSize = uncompressedSize
    }

    /// The index of the member that holds tar-stream offset `offset` (binary search).
    package func memberIndex(containing offset: UInt64) -> Int? {
        var lo = 0, hi = members.count - 1
        while lo <= hi {
            let mid = (lo + hi) / 2
            let m = members[mid]
            if offset < m.uncompressedOffset { hi = mid - 1 }
            else if offset >= m.uncompressedOffset + m.uncompressedLength { lo = mid + 1 }
            else { return mid }
        }
        return nil
    }

    /// Where to start reading to reach the entry whose header starts at `headerOffset`:
    /// the member's compressed offset, the member's tar offset, and the header's tar offset.
    package func start(forHeaderAt headerOffset: UInt64) -> ExtractStart? {
        guard let i = memberIndex(containing: headerOffset) else { return nil }
        let m = members[i]
        return ExtractStart(compressedOffset: m.compressedOffset, uncompressedOffset: m.uncompressedOffset,
                            firstHeaderOffset: headerOffset)
    }
}

/// A place to start reading an archive in the middle: at a member boundary
/// (`compressedOffset`, whose first byte is tar offset `uncompressedOffset`), skipping
/// tar bytes up to `firstHeaderOffset` (an entry's first header block).
package struct ExtractStart: Codable, Sendable, Equatable {
    package var compressedOffset: UInt64
    package var uncompressedOffset: UInt64
    package var firstHeaderOffset: UInt64

    package init(compressedOffset: UInt64, uncompressedOffset: UInt64, firstHeaderOffset: UInt64) {
        self.compressedOffset = compressedOffset; self.uncompressedOffset = uncompressedOffset
        self.firstHeaderOffset = firstHeaderOffset
    }
}
