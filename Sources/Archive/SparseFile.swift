import Glibc
import Support

/// Sparse files: the data regions of a file read by extents (`SEEK_DATA`/`SEEK_HOLE`, never
/// its holes), the GNU pax sparse 1.0 member that holds them (what `tar --sparse --posix`
/// writes; GNU tar, bsdtar, Python's tarfile and `TarReader` extract it with its holes), and
/// the one content hash of a sparse file.
///
/// The member: a pax header with `GNU.sparse.major=1`, `GNU.sparse.minor=0`,
/// `GNU.sparse.name=<path>`, `GNU.sparse.realsize=<size>`; the ustar name
/// `<dir>/GNUSparseFile.0/<name>` (a reader that knows no sparse files extracts that, map
/// included, instead of a wrong file under the real name); the data: the map as decimal text
/// (the count, then offset and length of each region, one number per line), zero-padded to
/// 512 bytes, then the regions' bytes one after the other. A file that ends in a hole ends
/// its map with the region (size, 0), as GNU tar does.
///
/// The hash (`SparseHash`): holes are never read or hashed byte by byte, so the manifest's
/// hash of a sparse file is not the SHA-256 of its logical content but SHA-256 over
/// `"hs-sparse-1\n"`, the real size, the number of regions and each region's offset and
/// length (all u64 little-endian), then the bytes of the regions in order. Regions are
/// canonical: empty ones dropped, touching ones merged. A manifest entry with
/// `ManifestEntry.flagSparse` carries this hash; verify and restore compute it from the
/// member's map and data.
package enum SparseFile {
    /// Regions above this count: the file is archived as a plain member (its holes read).
    package static let maxRegions = 4096
    /// Smaller files are archived as plain members, holes and all.
    package static let minSize: UInt64 = 1 << 20

    /// The data regions of the file open as `fd`, up to `size` (the size the scan saw), when
    /// it has holes: nil for a file without holes, a file system that cannot say, or too
    /// many regions. Reads no data.
    /// The corresponding calls are `lseek(SEEK_DATA)` and `lseek(SEEK_HOLE)`.
    package static func dataRegions(_ fd: Int32, size: UInt64, allocatedBytes: UInt64) -> [SparseRegion]? {
        guard size >= minSize, allocatedBytes < size, size < UInt64(Int64.max) else { return nil }
        var regions: [SparseRegion] = []
        var at: UInt64 = 0
        do {
            while at < size {
                // nil: no data after `at`, a hole to the end.
                guard let data = try Sys.nextData(fd, from: at), data < size else { break }
                let hole = min(try Sys.nextHole(fd, from: data), size)
                regions.append(SparseRegion(offset: data, length: hole - data))
                if regions.count > maxRegions { return nil }
                at = hole
            }
        } catch {
            return nil   // EINVAL: the file system cannot say
        }
        let data = regions.reduce(UInt64(0)) { $0 + $1.length }
        return data < size ? regions : nil
    }

    /// The canonical form of a map: empty regions dropped, touching regions merged (the
    /// regions in order, not overlapping).
    package static func canonical(_ map: [SparseRegion]) -> [SparseRegion] {
        var out: [SparseRegion] = []
        for r in map where r.length > 0 {
            if let last = out.last, last.offset + last.length == r.offset {
                out[out.count - 1].length += r.length
            } else {
                out.append(r)
            }
        }
        return out
    }

    /// The map block of a sparse 1.0 member (zero-padded to 512 bytes) for `map` of a file
    /// of `size` bytes.
    static func mapBlock(_ map: [SparseRegion], size: UInt64) -> [UInt8] {
        var regions = map
        let end = map.last.map { $0.offset + $0.length } ?? 0
        if end < size || map.isEmpty { regions.append(SparseRegion(offset: size, length: 0)) }
        var text = "\(regions.count)\n"
        for r in regions { text += "\(r.offset)\n\(r.length)\n" }
        var out = Array(text.utf8)
        let pad = (512 - out.count % 512) % 512
        out += [UInt8](repeating: 0, count: pad)
        return out
    }

    /// `<dir>/GNUSparseFile.0/<name>` for a member's real path.
    static func placeholderPath(_ path: [UInt8]) -> [UInt8] {
        let slash = path.lastIndex(of: UInt8(ascii: "/"))
        let dir = slash.map { Array(path[...$0]) } ?? []
        let name = slash.map { Array(path[($0 + 1)...]) } ?? path
        return dir + Array("GNUSparseFile.0/".utf8) + name
    }
}

/// The content hash of a sparse file (see `SparseFile`): over the real size, the canonical
/// map and the data of its regions, never over its holes.
package struct SparseHash: ~Copyable {
    private var hasher = SHA256Hasher()

    /// Starts the hash of a file of `realSize` bytes whose data regions are `map`.
    package init(map: [SparseRegion], realSize: UInt64) {
        let regions = SparseFile.canonical(map)
        hasher.update(Array("hs-sparse-1\n".utf8))
        var words: [UInt64] = [realSize, UInt64(regions.count)]
        for r in regions { words += [r.offset, r.length] }
        var le: [UInt8] = []
        le.reserveCapacity(words.count * 8)
        for w in words { withUnsafeBytes(of: w.littleEndian) { le += $0 } }
        hasher.update(le)
    }

    /// The next bytes of the regions' data, in order.
    package mutating func update(_ bytes: UnsafeRawBufferPointer) { hasher.update(bytes) }

    package consuming func finalize() -> [UInt8] { hasher.finalize() }
}
