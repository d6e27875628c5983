import Archive
import Support

/// One entry a source plans to restore, with what the executor needs to check its content.
package struct PlannedEntry: Sendable {
    /// The entry as the source names it (the executor normalises and validates its path).
    package var entry: TarEntry
    /// The SHA-256 the content must have (a backup's manifest), or nil.
    package var expectedSHA256: [UInt8]?
    /// Where the content comes from, for messages (e.g. a backup's archive).
    package var origin: String?

    package init(entry: TarEntry, expectedSHA256: [UInt8]? = nil, origin: String? = nil) {
        self.entry = entry; self.expectedSHA256 = expectedSHA256; self.origin = origin
    }
}

/// A source of planned entries for the `RestoreExecutor`: a tar stream (`ArchiveStreamSource`)
/// or a backup's manifest plan (Backup's `ManifestRestoreSource`).
///
/// The executor calls `next(content:)` until nil; for a regular file it may call
/// `readContent` once before the next call (a dry run never does, and passes `content: false`:
/// the source then reads no content and no archive it does not need for the plan). Entries come in restore order: a directory
/// before what it holds, a hardlink after its target (or the source says it cannot tell:
/// `revisit`).
package protocol RestoreSource: AnyObject {
    /// The source as shown to people ("archive '/x.tar.gz'", "backup ID in DEST").
    var name: String { get }
    /// The next entry, or nil at the end.
    /// - Parameter content: whether its content (and metadata kept with the content, such as a
    ///   backup's xattrs in its archive's headers) will be read.
    func next(content: Bool) throws -> PlannedEntry?
    /// The content of the regular file `next()` returned last, as (offset in the file, bytes)
    /// runs in file order; sparse holes are not handed out.
    func readContent(_ body: (UInt64, UnsafeRawBufferPointer) throws -> Void) throws
    /// Where reading is, and up to where the bytes read are verified (a gzip member's CRC, a
    /// file's SHA-256), as offsets of one stream: files written from beyond `verifiedUpTo`
    /// are named when damage is found. A source that checks each file before it is written
    /// returns `.max` for both.
    var position: UInt64 { get }
    var verifiedUpTo: UInt64 { get }
    /// After the last entry: reads what is left, so damage after the last entry is found.
    func finish() throws
    /// Non-fatal oddities met so far.
    var warnings: [String] { get }
    /// A second pass: calls `body` with each regular file whose normalised path is in
    /// `paths` (content readable with `readContent`), for hardlinks whose target `--only`
    /// left out. A source that cannot be read twice (a stream) throws
    /// `RestoreError.missingLinkTarget`.
    func revisit(_ paths: Set<[UInt8]>, _ body: (PlannedEntry) throws -> Void) throws
}

/// Any tar or tar.gz (pax, ustar, GNU, v7; gzip multi-member; a file, an NFS reader, an
/// age-decrypting reader, or stdin) as a source of entries in archive order.
package final class ArchiveStreamSource: RestoreSource {
    private let bytes: any ByteSource
    private var reader: TarReader
    private let start: ExtractStart?
    private let endOffset: UInt64?
    private let limits: TarLimits
    package let name: String

    /// - Parameters:
    ///   - start: begin at an entry in the middle (from an `ArchiveIndex`); nil: the start.
    ///   - endOffset: stop at the first entry starting at or after this tar offset.
    package init(_ bytes: any ByteSource, start: ExtractStart? = nil, endOffset: UInt64? = nil, limits: TarLimits = TarLimits()) throws {
        self.bytes = bytes
        self.start = start
        self.endOffset = endOffset
        self.limits = limits
        name = "archive '\(bytes.displayName)'"
        reader = try TarReader(source: bytes, start: start, limits: limits)
    }

    deinit { reader.close() }

    package func next(content: Bool) throws -> PlannedEntry? {
        // Moved into the planned entry (`Optional.map` handed it over borrowed: one more copy).
        guard let e = try Self.next(reader, endOffset) else { return nil }
        return PlannedEntry(entry: e)
    }

    /// The next entry of `reader`, or nil at the end (or past `endOffset`).
    private static func next(_ reader: TarReader, _ endOffset: UInt64?) throws -> TarEntry? {
        if let end = endOffset, reader.position >= end {
            try reader.skipContent()
            if reader.position >= end { return nil }
        }
        guard let e = try reader.next() else { return nil }
        if let end = endOffset, e.headerOffset >= end { return nil }
        return e
    }

    package func readContent(_ body: (UInt64, UnsafeRawBufferPointer) throws -> Void) throws { try reader.readContent(body) }

    package var position: UInt64 { reader.position }
    package var verifiedUpTo: UInt64 { reader.verifiedUpTo }
    package var warnings: [String] { reader.warnings }

    package func finish() throws {
        if endOffset == nil && start == nil { try reader.drain() }
    }

    package func revisit(_ paths: Set<[UInt8]>, _ body: (PlannedEntry) throws -> Void) throws {
        guard bytes.size != nil else {
            let first = paths.sorted { $0.lexicographicallyPrecedes($1) }.first ?? []
            throw RestoreError.missingLinkTarget(entry: "(hardlinks)", target: NameEscape.escape(first),
                                                 hint: "was left out by --only, and a stream cannot be read a second time to restore it; give the archive as a file, or add the target to --only")
        }
        var left = paths
        let second = try TarReader(source: bytes, start: start, limits: limits)
        let first = reader
        reader = second
        defer { reader = first; second.close() }
        while !left.isEmpty, let e = try Self.next(second, endOffset) {
            guard e.type == .file, left.remove(RestorePath.normalised(e.path)) != nil else { continue }
            try body(PlannedEntry(entry: e))
        }
    }
}
