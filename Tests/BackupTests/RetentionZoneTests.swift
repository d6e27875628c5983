// Retention's calendar rules without Foundation's time zones (hs-backup links
// FoundationEssentials only, whose TimeZone.current is GMT: issue 23): the wall clock in a GMT
// calendar gives what Calendar in the time zone gave (the code before, kept here as the
// reference), and the local zone is the C library's.
import Backup
import Foundation
import Testing

@Suite struct RetentionZoneTests {
    static let zones = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "America/St_Johns", "UTC", "Pacific/Chatham"]

    @Test("days, hours, ISO weeks, months, years and --keep-within limits are Calendar's in the time zone", arguments: zones)
    func sameAsCalendar(_ name: String) throws {
        let tz = try #require(TimeZone(identifier: name))
        var cal = Calendar(identifier: .gregorian); cal.timeZone = tz
        var iso = Calendar(identifier: .iso8601); iso.timeZone = tz
        let zone = RetentionZone(tz)
        var rng = SystemRandomNumberGenerator()
        var differ: [String] = []
        for _ in 0 ..< 20000 {
            let date = Date(timeIntervalSince1970: Double(Int.random(in: 1_700_000_000 ... 1_900_000_000, using: &rng)))
            let w = zone.wallClock(date)
            let a = cal.dateComponents([.year, .month, .day, .hour], from: date), b = RetentionZone.gregorian.dateComponents([.year, .month, .day, .hour], from: w)
            let c = iso.dateComponents([.yearForWeekOfYear, .weekOfYear], from: date), d = RetentionZone.iso8601.dateComponents([.yearForWeekOfYear, .weekOfYear], from: w)
            if a.year != b.year || a.month != b.month || a.day != b.day || a.hour != b.hour || c.yearForWeekOfYear != d.yearForWeekOfYear || c.weekOfYear != d.weekOfYear {
                differ.append("bucket \(date)")
            }
            let span = RetentionSpan(years: Int.random(in: 0 ... 1, using: &rng), months: Int.random(in: 0 ... 13, using: &rng),
                                     days: Int.random(in: 0 ... 40, using: &rng), hours: Int.random(in: 0 ... 30, using: &rng))
            var comps = DateComponents(); comps.year = -span.years; comps.month = -span.months; comps.day = -span.days
            let old = (cal.date(byAdding: comps, to: date) ?? date).addingTimeInterval(-3600 * Double(span.hours))
            let new = span.before(date, in: zone)
            if old != new { differ.append("within \(span) of \(date): \(old) vs \(new)") }
        }
        #expect(differ.isEmpty, "\(differ.prefix(5))")
    }

    /// The default before was Foundation's `TimeZone.current` (this process links Foundation).
    @Test("the local zone has TimeZone.current's offsets")
    func localIsTimeZoneCurrent() {
        for t in stride(from: 1_700_000_000.0, to: 1_900_000_000, by: 86_400 * 7 + 3_601) {
            let d = Date(timeIntervalSince1970: t)
            #expect(RetentionZone.local.offset(d) == TimeZone.current.secondsFromGMT(for: d), "\(d)")
        }
    }
}
