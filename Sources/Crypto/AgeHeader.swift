import Support

/// One recipient stanza of an age header: `-> TYPE ARGS...` and a binary body.
struct AgeStanza: Equatable {
    var type: String
    var args: [String]
    var body: [UInt8]
}

/// The textual header of an age v1 file (age-encryption.org/v1, "Header"):
///
///     age-encryption.org/v1
///     -> X25519 <base64 ephemeral share>
///     <base64 body, 64 columns a line, ending with a line shorter than 64>
///     --- <base64 HMAC-SHA-256 of everything up to and including "---">
struct AgeHeader {
    static let versionPrefix = Array("age-encryption.org/".utf8)
    static let v1Line = Array("age-encryption.org/v1\n".utf8)
    /// The largest header read (a few hundred bytes per recipient).
    static let maxSize = 1 << 20

    var stanzas: [AgeStanza]
    var mac: [UInt8]
    /// The bytes the MAC covers: the header up to and including `---`.
    var macInput: [UInt8]
    /// The header's length in the file (the payload starts there).
    var length: Int

    /// Parses the header at the start of `bytes`; nil when `bytes` ends before the header does
    /// (read more and call again).
    /// - Throws: `AgeError` (.notAgeFile, .unsupportedVersion, .malformedHeader).
    static func parse(_ bytes: [UInt8], name: String) throws(AgeError) -> AgeHeader? {
        func bad(_ why: String) -> AgeError { AgeError(name, .malformedHeader(why)) }
        var lines = LineReader(bytes: bytes)
        guard let version = lines.next() else {
            let head = bytes.prefix(versionPrefix.count)
            guard versionPrefix.starts(with: head), bytes.count < 256 else {
                throw versionPrefix.starts(with: head) ? bad("the version line is too long") : AgeError(name, .notAgeFile)
            }
            return nil
        }
        guard version.starts(with: versionPrefix) else { throw AgeError(name, .notAgeFile) }
        guard version.elementsEqual(v1Line.dropLast()) else {
            throw AgeError(name, .unsupportedVersion(NameEscape.escape(version.dropFirst(versionPrefix.count).prefix(40))))
        }
        var stanzas: [AgeStanza] = []
        while true {
            let lineStart = lines.position
            guard let line = lines.next() else { return nil }
            if line.starts(with: Array("---".utf8)) {
                guard line.count == 47, line[line.startIndex + 3] == 0x20 else { throw bad("the MAC line is not '--- ' and 43 base64 characters") }
                guard let mac = Base64Raw.decode(line.dropFirst(4)), mac.count == 32 else { throw bad("the MAC is not canonical base64 of 32 bytes") }
                guard !stanzas.isEmpty else { throw bad("no recipient stanza") }
                return AgeHeader(stanzas: stanzas, mac: mac, macInput: Array(bytes[..<(lineStart + 3)]), length: lines.position)
            }
            guard line.starts(with: Array("-> ".utf8)) else { throw bad("a line starts with neither '->' nor '---'") }
            let args = line.dropFirst(3).split(separator: 0x20, omittingEmptySubsequences: false)
            guard !args.isEmpty, args.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0 >= 0x21 && $0 <= 0x7E } }) else {
                throw bad("a stanza has an empty argument or one with characters outside printable ASCII")
            }
            var body: [UInt8] = []
            while true {
                guard let bodyLine = lines.next() else { return nil }
                guard bodyLine.count <= 64, bodyLine.allSatisfy(Base64Raw.isBase64Character) else {
                    throw bad("a stanza body line is longer than 64 columns or not base64")
                }
                body += bodyLine
                if bodyLine.count < 64 { break }
            }
            guard let decoded = Base64Raw.decode(body) else { throw bad("a stanza body is not canonical base64") }
            let strings = args.map { String(decoding: $0, as: UTF8.self) }
            stanzas.append(AgeStanza(type: strings[0], args: Array(strings.dropFirst()), body: decoded))
        }
    }

    /// The header's bytes for `stanzas`, with its MAC under `fileKey`.
    static func encode(stanzas: [AgeStanza], fileKey: [UInt8]) throws(AgeError) -> [UInt8] {
        var out = v1Line
        for s in stanzas {
            out += Array(("-> " + ([s.type] + s.args).joined(separator: " ") + "\n").utf8)
            let b64 = Base64Raw.encode(s.body)
            var i = 0
            while b64.count - i >= 64 { out += b64[i ..< i + 64] + [0x0A]; i += 64 }
            out += b64[i...] + [0x0A]   // the final line, shorter than 64 (maybe empty)
        }
        out += Array("---".utf8)
        let mac = try headerMAC(fileKey: fileKey, macInput: out)
        out += [0x20] + Base64Raw.encode(mac) + [0x0A]
        return out
    }

    /// HMAC-SHA-256 of the header under HKDF(file key, salt empty, info "header").
    static func headerMAC(fileKey: [UInt8], macInput: [UInt8]) throws(AgeError) -> [UInt8] {
        do {
            let key = try hkdfSHA256(ikm: fileKey, salt: [], info: Array("header".utf8))
            return try hmacSHA256(key: key, data: macInput)
        } catch { throw AgeError("age header", .io("\(error)")) }
    }
}

/// Lines ending in LF; a CR anywhere, or a line without its LF, is not a line.
private struct LineReader {
    let bytes: [UInt8]
    var position = 0

    /// The next line without its LF; nil when the bytes end first.
    mutating func next() -> ArraySlice<UInt8>? {
        guard let lf = bytes[position...].firstIndex(of: 0x0A) else { return nil }
        let line = bytes[position ..< lf]
        position = lf + 1
        return line
    }
}
