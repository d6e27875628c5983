/// Bech32 (BIP 173) as age uses it: no length limit, all-lowercase or all-uppercase, the
/// checksum computed over the lowercase string. An encoding, not a cipher.
enum Bech32 {
    private static let charset = Array("qpzry9x8gf2tvdw0s3jn54khce6mua7l".utf8)
    private static let reverse: [Int8] = {
        var r = [Int8](repeating: -1, count: 128)
        for (i, c) in charset.enumerated() { r[Int(c)] = Int8(i) }
        return r
    }()

    private static func polymod(_ values: [UInt8]) -> UInt32 {
        let gen: [UInt32] = [0x3b6a_57b2, 0x2650_8e6d, 0x1ea1_19fa, 0x3d42_33dd, 0x2a14_62b3]
        var chk: UInt32 = 1
        for v in values {
            let top = chk >> 25
            chk = (chk & 0x1ff_ffff) << 5 ^ UInt32(v)
            for i in 0 ..< 5 where (top >> i) & 1 == 1 { chk ^= gen[i] }
        }
        return chk
    }

    private static func hrpExpand(_ hrp: [UInt8]) -> [UInt8] {
        hrp.map { $0 >> 5 } + [0] + hrp.map { $0 & 31 }
    }

    /// Regroups bits (8 to 5 with padding; 5 to 8 strictly: no leftover bits but zeros).
    private static func convert(_ data: [UInt8], from: Int, to: Int, pad: Bool) -> [UInt8]? {
        var acc = 0, bits = 0
        var out: [UInt8] = []
        let maxv = (1 << to) - 1
        for v in data {
            acc = acc << from | Int(v)
            bits += from
            while bits >= to {
                bits -= to
                out.append(UInt8((acc >> bits) & maxv))
            }
        }
        if pad {
            if bits > 0 { out.append(UInt8((acc << (to - bits)) & maxv)) }
        } else if bits >= from || (acc << (to - bits)) & maxv != 0 {
            return nil
        }
        return out
    }

    /// `hrp` (lowercase) and `data` as a lowercase Bech32 string.
    static func encode(hrp: String, data: [UInt8]) -> String {
        let h = Array(hrp.lowercased().utf8)
        let values = convert(data, from: 8, to: 5, pad: true)!
        let poly = polymod(hrpExpand(h) + values + [0, 0, 0, 0, 0, 0]) ^ 1
        let check = (0 ..< 6).map { UInt8((poly >> (5 * (5 - $0))) & 31) }
        return String(decoding: h + [0x31] + (values + check).map { charset[Int($0)] }, as: UTF8.self)
    }

    /// The human-readable part (lowercased) and the data of a Bech32 string; nil when it is
    /// not valid Bech32 (mixed case, bad character, bad checksum, bad padding).
    static func decode(_ s: String) -> (hrp: String, data: [UInt8])? {
        let bytes = Array(s.utf8)
        guard bytes.allSatisfy({ $0 >= 33 && $0 <= 126 }) else { return nil }
        let hasLower = bytes.contains { (0x61 ... 0x7A).contains($0) }
        let hasUpper = bytes.contains { (0x41 ... 0x5A).contains($0) }
        guard !(hasLower && hasUpper) else { return nil }
        let lower = bytes.map { (0x41 ... 0x5A).contains($0) ? $0 + 32 : $0 }
        guard let sep = lower.lastIndex(of: 0x31), sep >= 1, lower.count - sep - 1 >= 6 else { return nil }
        let hrp = Array(lower[..<sep])
        var values: [UInt8] = []
        for c in lower[(sep + 1)...] {
            guard c < 128, reverse[Int(c)] >= 0 else { return nil }
            values.append(UInt8(reverse[Int(c)]))
        }
        guard polymod(hrpExpand(hrp) + values) == 1 else { return nil }
        guard let data = convert(Array(values.dropLast(6)), from: 5, to: 8, pad: false) else { return nil }
        return (String(decoding: hrp, as: UTF8.self), data)
    }
}
