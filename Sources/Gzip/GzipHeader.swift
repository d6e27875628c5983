internal import CZlib

/// Reads one gzip member header (RFC 1952) from input given in any chunking, with zlib's
/// rules: magic 1f 8b, method 8 (deflate), no reserved flag bits; FEXTRA, FNAME and FCOMMENT
/// are skipped (nothing is kept, so an endless name costs no memory) and FHCRC is checked.
struct GzipHeaderParser {
    private enum Step {
        case fixed, extraLength, extra(Int), name, comment, headerCRC, done
        var isName: Bool { if case .name = self { return true } else { return false } }
        var isFixedHeader: Bool { if case .fixed = self { return true } else { return false } }
    }
    private var step = Step.fixed
    /// Bytes of the current fixed-size field read so far.
    private var field: [UInt8] = []
    private var flags: UInt8 = 0
    /// CRC-32 of the header bytes so far (kept only when FHCRC is set).
    private var crc: UInt = 0

    private static let fextra: UInt8 = 4, fname: UInt8 = 8, fcomment: UInt8 = 16, fhcrc: UInt8 = 2

    /// The whole header has been read.
    var done: Bool { if case .done = step { return true } else { return false } }

    /// Reads header bytes from the start of `input`.
    /// - Returns: how many bytes belonged to the header (all of `input` unless it ended).
    /// - Throws: `GzipError.corrupt` naming what is wrong.
    mutating func consume(_ input: UnsafeRawBufferPointer) throws -> Int {
        var at = 0
        while at < input.count {
            let rest = UnsafeRawBufferPointer(rebasing: input[at...])
            switch step {
            case .done: return at
            case .fixed:
                at += fill(rest, 10)
                if field.count == 10 { try fixedHeader() }
            case .extraLength:
                at += fill(rest, 2)
                if field.count == 2 {
                    step = .extra(Int(field[0]) | Int(field[1]) << 8)
                    field.removeAll(keepingCapacity: true)
                }
            case .extra(let left):
                let n = min(left, rest.count)
                checksum(UnsafeRawBufferPointer(rebasing: rest[..<n]))
                at += n
                step = n == left ? afterExtra() : .extra(left - n)
            case .name, .comment:
                let end = rest.firstIndex(of: 0)
                let n = end.map { $0 + 1 } ?? rest.count
                checksum(UnsafeRawBufferPointer(rebasing: rest[..<n]))
                at += n
                if end != nil { step = step.isName && flags & Self.fcomment != 0 ? .comment : afterComment() }
            case .headerCRC:
                at += fill(rest, 2, checksummed: false)
                if field.count == 2 {
                    guard UInt(field[0]) | UInt(field[1]) << 8 == crc & 0xffff else {
                        throw GzipError(kind: .corrupt, detail: "header crc mismatch")
                    }
                    step = .done
                }
            }
        }
        if case .done = step { field = [] }
        return at
    }

    /// Appends up to the rest of a `size`-byte field to `field`; returns the bytes taken.
    private mutating func fill(_ input: UnsafeRawBufferPointer, _ size: Int, checksummed: Bool = true) -> Int {
        let n = min(size - field.count, input.count)
        let part = UnsafeRawBufferPointer(rebasing: input[..<n])
        field.append(contentsOf: part)
        if checksummed && step.isFixedHeader == false { checksum(part) }
        return n
    }

    private mutating func fixedHeader() throws {
        guard field[0] == 0x1f && field[1] == 0x8b else { throw GzipError(kind: .corrupt, detail: "incorrect header check") }
        guard field[2] == 8 else { throw GzipError(kind: .corrupt, detail: "unknown compression method") }
        flags = field[3]
        guard flags & 0xe0 == 0 else { throw GzipError(kind: .corrupt, detail: "unknown header flags set") }
        if flags & Self.fhcrc != 0 { crc = field.withUnsafeBytes { Self.crc32(0, $0) } }
        field.removeAll(keepingCapacity: true)
        step = flags & Self.fextra != 0 ? .extraLength : afterExtra()
    }

    private func afterExtra() -> Step {
        flags & Self.fname != 0 ? .name : flags & Self.fcomment != 0 ? .comment : afterComment()
    }

    private func afterComment() -> Step { flags & Self.fhcrc != 0 ? .headerCRC : .done }

    private mutating func checksum(_ bytes: UnsafeRawBufferPointer) {
        if flags & Self.fhcrc != 0 { crc = Self.crc32(crc, bytes) }
    }

    private static func crc32(_ crc: UInt, _ bytes: UnsafeRawBufferPointer) -> UInt {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
        return CZlib.crc32(crc, base.assumingMemoryBound(to: UInt8.self), UInt32(bytes.count))
    }
}
