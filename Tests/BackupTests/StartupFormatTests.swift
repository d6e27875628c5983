// Formatting without String(format:) (issue 23: Foundation's CVarArg boxing cost ~0.3 ms of
// every start): the results must be the very strings String(format:) gave.
import Backup
import Foundation
import Support
import Testing

@Suite("Start-up: ids, sizes and seconds are formatted exactly as String(format:) formatted them")
struct StartupFormatTests {
    @Test("Format.fixed1 is String(format: \"%.1f\") for halfway cases, extremes and random values")
    func fixed1() {
        var values: [Double] = [0, -0.0, 0.05, 0.15, 0.25, 0.35, 0.45, 0.95, 1.05, 2.5, 9.95, 99.95, 1023.95, 1023.96, 1e15 + 0.05,
                                -0.05, -2.25, 1e300, -1e300, .infinity, -.infinity, .nan, .ulpOfOne, .leastNonzeroMagnitude,
                                .greatestFiniteMagnitude, 3.2, 0.04999999999999999, 123456.789]
        var g = SystemRandomNumberGenerator()
        for _ in 0 ..< 20_000 { values.append(Double.random(in: 0 ..< 2000, using: &g)) }
        for k in 0 ..< 20_000 { values.append(Double(k) / 20 + 0.05) }
        for v in values {
            #expect(Format.fixed1(v) == String(format: "%.1f", v), "\(v): \(Format.fixed1(v)) vs \(String(format: "%.1f", v))")
        }
    }

    @Test("Format.bytes and Format.seconds give the strings they gave with String(format:)")
    func bytesAndSeconds() {
        func old(_ n: UInt64) -> String {
            let units = ["B", "KiB", "MiB", "GiB", "TiB"]
            var v = Double(n)
            var i = 0
            while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
            return i == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[i])
        }
        var sizes: [UInt64] = [0, 1, 1023, 1024, 1025, 1536, 1048576, 1048950, 1_054_720, 1 << 40, 1 << 50, .max, .max - 1]
        var g = SystemRandomNumberGenerator()
        for shift in 0 ..< 64 { for _ in 0 ..< 50 { sizes.append(UInt64.random(in: 0 ... (UInt64.max >> shift), using: &g)) } }
        for n in sizes { #expect(Format.bytes(n) == old(n), "\(n)") }
        for s in [0, 0.04, 0.05, 0.2, 3.25, 59.95, 86399.95, 1e9] + (0 ..< 2000).map({ Double($0) * 0.0137 }) {
            #expect(Format.seconds(s) == String(format: "%.1fs", s), "\(s)")
        }
    }

    @Test("BackupID.format is String(format: \"%04d%02d%02dT%02d%02d%02dZ\") of gmtime, and its inverse holds")
    func ids() {
        func old(_ seconds: Int64) -> String {
            var t = time_t(seconds)
            var tm = tm()
            gmtime_r(&t, &tm)
            return String(format: "%04d%02d%02dT%02d%02d%02dZ", Int(tm.tm_year) + 1900, Int(tm.tm_mon) + 1, Int(tm.tm_mday),
                          Int(tm.tm_hour), Int(tm.tm_min), Int(tm.tm_sec))
        }
        var times: [Int64] = [0, -1, 59, 86_399, 951_782_400, 1_765_000_000, 1_796_083_200, 4_102_444_799, 253_402_300_799,
                              253_402_300_800, -62_167_219_200, -62_167_219_201, -99_999_999_999]
        var g = SystemRandomNumberGenerator()
        for _ in 0 ..< 5000 { times.append(Int64.random(in: -100_000_000_000 ... 400_000_000_000, using: &g)) }
        for t in times {
            #expect(BackupID.format(t) == old(t), "\(t): \(BackupID.format(t)) vs \(old(t))")
        }
        for t in times where t >= 0 && t < 253_402_300_800 { #expect(BackupID.seconds(of: BackupID.format(t)) == t, "\(t)") }
    }

    @Test("BackupID.seconds(of:) is timegm of the id's fields, also for a day past the month's end or second 60")
    func idSeconds() {
        func old(_ id: String) -> Int64 {
            let b = Array(id.utf8)
            func n(_ r: Range<Int>) -> Int32 { r.reduce(0) { $0 * 10 + Int32(b[$1] - 0x30) } }
            var tm = tm()
            tm.tm_year = n(0 ..< 4) - 1900; tm.tm_mon = n(4 ..< 6) - 1; tm.tm_mday = n(6 ..< 8)
            tm.tm_hour = n(9 ..< 11); tm.tm_min = n(11 ..< 13); tm.tm_sec = n(13 ..< 15)
            return Int64(timegm(&tm))
        }
        var ids = ["19700101T000000Z", "20000229T235960Z", "20260231T120000Z", "21000229T000000Z", "19691231T235959Z",
                   "00000101T000000Z", "99991231T235959Z", "20261127T030000Z-07", "16000301T000000Z"]
        var g = SystemRandomNumberGenerator()
        for _ in 0 ..< 5000 {
            func r(_ lo: Int, _ hi: Int, _ w: Int) -> String {
                let s = String(Int.random(in: lo ... hi, using: &g))
                return String(repeating: "0", count: w - s.count) + s
            }
            ids.append(r(0, 9999, 4) + r(1, 12, 2) + r(1, 31, 2) + "T" + r(0, 23, 2) + r(0, 59, 2) + r(0, 60, 2) + "Z")
        }
        for id in ids { #expect(BackupID.seconds(of: id) == old(id), "\(id)") }
    }
}
