// Retention: which backups a policy keeps, with restic's `forget` semantics, never breaking a
// chain: a kept incremental keeps every backup whose archives it reads.
//
// Pure: no I/O. `OpsPrune.swift` applies the result to a Destination.

import FoundationEssentials
import Glibc
import Support

/// One backup as retention sees it.
package struct RetentionItem: Sendable, Equatable {
    package enum Kind: String, Sendable, Equatable, Codable { case full, incremental }
    /// Backup ID (unique within the set).
    package var id: String
    /// When the backup was taken.
    package var date: Date
    package var kind: Kind
    /// The backup this incremental builds on (nil for a full backup).
    package var parent: String?
    /// Other backups whose archives this backup's restore reads (besides `parent`).
    package var requires: Set<String>

    package init(id: String, date: Date, kind: Kind, parent: String? = nil, requires: Set<String> = []) {
        self.id = id; self.date = date; self.kind = kind; self.parent = parent; self.requires = requires
    }
}

/// A retention policy: the union of its rules (restic `forget` semantics).
package struct RetentionPolicy: Sendable, Equatable {
    /// Keep the N most recent backups.
    package var keepLast: Int = 0
    /// Keep the most recent backup of each of the N most recent days that have backups.
    package var keepDaily: Int = 0
    /// Same per ISO-8601 week.
    package var keepWeekly: Int = 0
    /// Same per calendar month.
    package var keepMonthly: Int = 0
    /// Same per calendar year.
    package var keepYearly: Int = 0
    /// Keep the last backup of each of the N most recent hours that have backups.
    package var keepHourly: Int = 0
    /// Keep every backup made within this span before the newest backup (restic's
    /// `--keep-within`: measured from the newest backup, not from now).
    package var keepWithin: RetentionSpan?

    package init(keepLast: Int = 0, keepDaily: Int = 0, keepWeekly: Int = 0, keepMonthly: Int = 0, keepYearly: Int = 0,
                 keepHourly: Int = 0, keepWithin: RetentionSpan? = nil) {
        self.keepLast = keepLast; self.keepDaily = keepDaily; self.keepWeekly = keepWeekly
        self.keepMonthly = keepMonthly; self.keepYearly = keepYearly
        self.keepHourly = keepHourly; self.keepWithin = keepWithin
    }

    /// True when no rule keeps anything (a prune with it would remove everything: refused).
    package var isEmpty: Bool {
        keepLast + keepHourly + keepDaily + keepWeekly + keepMonthly + keepYearly == 0 && (keepWithin?.isZero ?? true)
    }
}

/// A span of years, months, days and hours in restic's syntax (`1y2m3d4h`; any of the four,
/// in any order, each at most once), counted back in the calendar of the retention's time zone.
package struct RetentionSpan: Sendable, Equatable, CustomStringConvertible {
    package var years = 0, months = 0, days = 0, hours = 0

    package init(years: Int = 0, months: Int = 0, days: Int = 0, hours: Int = 0) {
        self.years = years; self.months = months; self.days = days; self.hours = hours
    }

    /// A malformed span: the text and what is wrong.
    package struct ParseError: Error, CustomStringConvertible {
        package var text: String
        package var problem: String
        package var description: String {
            // Both quote what a person typed: escaped.
            "'\(NameEscape.escape(text))': \(NameEscape.escape(problem)); give numbers with the units y (years), m (months), d (days), h (hours), e.g. 1y2m3d4h or 14d"
        }
    }

    /// Parses `1y2m3d4h`.
    package init(parsing text: String) throws(ParseError) {
        var digits = ""
        var seen = Set<Character>()
        for c in text {
            if c.isASCII && c.isNumber { digits.append(c); continue }
            guard !digits.isEmpty else { throw ParseError(text: text, problem: "'\(c)' does not follow a number") }
            guard let n = Int(digits) else { throw ParseError(text: text, problem: "\(digits) is too large") }
            guard !seen.contains(c) else { throw ParseError(text: text, problem: "the unit \(c) is given twice") }
            seen.insert(c)
            switch c {
            case "y": years = n
            case "m": months = n
            case "d": days = n
            case "h": hours = n
            default: throw ParseError(text: text, problem: "unknown unit '\(c)'")
            }
            digits = ""
        }
        guard digits.isEmpty else { throw ParseError(text: text, problem: "\(digits) has no unit") }
        guard !seen.isEmpty else { throw ParseError(text: text, problem: "empty") }
    }

    package var isZero: Bool { years == 0 && months == 0 && days == 0 && hours == 0 }

    /// `date` minus this span in `zone` (years, months and days on the wall clock, then hours
    /// of elapsed time), as Calendar.date(byAdding:) in that time zone computed it: one field
    /// after the other, each result a point in time (ICU's `add`), so a step that lands in a
    /// skipped hour moves the time of day for the next (`RetentionZoneTests` compares them).
    package func before(_ date: Date, in zone: RetentionZone) -> Date {
        var t = date
        for (field, amount) in [(Calendar.Component.year, -years), (.month, -months), (.day, -days)] where amount != 0 {
            let wall = zone.wallClock(t)
            t = zone.instant(ofWallClock: RetentionZone.gregorian.date(byAdding: field, value: amount, to: wall) ?? wall)
        }
        return t.addingTimeInterval(-3600 * Double(hours))
    }

    package var description: String {
        var s = ""
        if years != 0 { s += "\(years)y" }
        if months != 0 { s += "\(months)m" }
        if days != 0 { s += "\(days)d" }
        if hours != 0 { s += "\(hours)h" }
        return s.isEmpty ? "0h" : s
    }
}

/// Why a backup is kept.
package enum RetentionReason: Sendable, Hashable, CustomStringConvertible {
    case last, hourly, daily, weekly, monthly, yearly
    /// Made within `--keep-within` of the newest backup.
    case within(String)
    /// Kept because the kept backup with this ID needs its archives.
    case neededBy(String)

    package var description: String {
        switch self {
        case .last: "last"
        case .hourly: "hourly"
        case .within(let span): "within \(span)"
        case .daily: "daily"
        case .weekly: "weekly"
        case .monthly: "monthly"
        case .yearly: "yearly"
        case .neededBy(let id): "needed by \(id)"
        }
    }
}

/// What a policy decides for a list of backups.
package struct RetentionDecision: Sendable, Equatable {
    /// Kept backups, newest first, with the reasons.
    package var keep: [(id: String, reasons: [RetentionReason])]
    /// Backups to remove, newest first: removing in this order never leaves a backup whose
    /// ancestor is already gone, even if the prune stops half-way.
    package var remove: [String]
    /// Kept backups whose required ancestor is not in the list (their chain is already broken).
    package var missingAncestors: [(id: String, missing: String)]

    package var keptIDs: Set<String> { Set(keep.map(\.id)) }

    package static func == (a: RetentionDecision, b: RetentionDecision) -> Bool {
        a.keep.map(\.id) == b.keep.map(\.id) && a.keep.map(\.reasons) == b.keep.map(\.reasons)
            && a.remove == b.remove && a.missingAncestors.map(\.id) == b.missingAncestors.map(\.id)
            && a.missingAncestors.map(\.missing) == b.missingAncestors.map(\.missing)
    }
}

/// Where the calendar rules' days, weeks and months begin: a time zone, or the local time as
/// the C library knows it (TZ, else /etc/localtime: what Foundation's `TimeZone.current` read;
/// FoundationEssentials alone has only GMT, and hs-backup links it only: issue 23). The
/// calendar arithmetic runs on the wall clock (the time shifted by the zone's offset then) in
/// a GMT Gregorian calendar, which gives the same days, ISO weeks, months and years.
package struct RetentionZone: Sendable {
    package let offset: @Sendable (Date) -> Int

    /// The system's local time (glibc's localtime_r).
    package static let local = RetentionZone { date in
        var t = time_t(date.timeIntervalSince1970.rounded(.down))
        var tm = tm()
        return localtime_r(&t, &tm) == nil ? 0 : Int(tm.tm_gmtoff)
    }

    package init(offset: @escaping @Sendable (Date) -> Int) { self.offset = offset }

    package init(_ timeZone: TimeZone) { self.init { timeZone.secondsFromGMT(for: $0) } }

    package func wallClock(_ date: Date) -> Date { date.addingTimeInterval(Double(offset(date))) }

    /// The point in time a wall-clock reading names, as ICU's calendar resolves it: in a
    /// repeated hour the later one, in a skipped hour the reading with the offset before the
    /// change (02:30 in a skipped 02:00-03:00 is 03:30).
    package func instant(ofWallClock wall: Date) -> Date {
        let before = offset(wall.addingTimeInterval(-86_400)), after = offset(wall.addingTimeInterval(86_400))
        let early = wall.addingTimeInterval(-Double(before)), late = wall.addingTimeInterval(-Double(after))
        guard before != after else { return early }
        switch (offset(early) == before, offset(late) == after) {
        case (true, true): return max(early, late)
        case (false, true): return late
        default: return early
        }
    }

    package static let gregorian: Calendar = { var c = Calendar(identifier: .gregorian); c.timeZone = TimeZone(secondsFromGMT: 0)!; return c }()
    package static let iso8601: Calendar = { var c = Calendar(identifier: .iso8601); c.timeZone = TimeZone(secondsFromGMT: 0)!; return c }()
}

/// Retention as a pure function.
package enum Retention {
    /// Applies `policy` to `items` (restic semantics, in `timeZone`), then keeps every ancestor a
    /// kept backup needs.
    ///
    /// Newest means the greatest id (ids sort by name in the order backups were taken, also
    /// when a clock was behind: see `BackupID`); `--keep-last` keeps the greatest ids. The
    /// calendar rules place a backup at the later of its own start and its parent's place, so
    /// a backup taken with a clock that was behind never lands before the one it builds on.
    ///
    /// Per rule, backups are walked newest first; a backup is kept when its bucket (day, ISO
    /// week, month, year) differs from the bucket of the previous backup *kept by that rule*,
    /// until the rule has kept N. So `--keep-daily 7` keeps the newest backup of each of the 7
    /// most recent days that have backups. The result is the union of the rules.
    /// - Parameter timeZone: nil: the local time (`RetentionZone.local`).
    package static func decide(_ items: [RetentionItem], policy: RetentionPolicy,
                               timeZone: TimeZone? = nil, now: Date = Date()) -> RetentionDecision {
        let zone = timeZone.map(RetentionZone.init) ?? .local
        let cal = RetentionZone.gregorian, iso = RetentionZone.iso8601
        // Newest first: by id.
        let sorted = items.sorted { $0.id > $1.id }
        let placed = calendarDates(items)

        var reasons: [String: [RetentionReason]] = [:]
        func apply(_ count: Int, _ reason: RetentionReason, bucket: (Date) -> [Int]) {
            guard count > 0 else { return }
            var left = count
            var last: [Int]? = nil
            for item in sorted where left > 0 {
                let b = bucket(zone.wallClock(placed[item.id] ?? item.date))
                if b != last {
                    reasons[item.id, default: []].append(reason)
                    last = b
                    left -= 1
                }
            }
        }
        if policy.keepLast > 0 {
            for item in sorted.prefix(policy.keepLast) { reasons[item.id, default: []].append(.last) }
        }
        // restic: newer than (the newest backup - span), strictly; "newest" ignores the future.
        if let span = policy.keepWithin, !span.isZero, let newest = sorted.first(where: { $0.date <= now }) ?? sorted.last {
            let limit = span.before(newest.date, in: zone)
            for item in sorted where item.date > limit { reasons[item.id, default: []].append(.within(span.description)) }
        }
        apply(policy.keepHourly, .hourly) { let c = cal.dateComponents([.year, .month, .day, .hour], from: $0); return [c.year!, c.month!, c.day!, c.hour!] }
        apply(policy.keepDaily, .daily) { let c = cal.dateComponents([.year, .month, .day], from: $0); return [c.year!, c.month!, c.day!] }
        apply(policy.keepWeekly, .weekly) { let c = iso.dateComponents([.yearForWeekOfYear, .weekOfYear], from: $0); return [c.yearForWeekOfYear!, c.weekOfYear!] }
        apply(policy.keepMonthly, .monthly) { let c = cal.dateComponents([.year, .month], from: $0); return [c.year!, c.month!] }
        apply(policy.keepYearly, .yearly) { [cal.component(.year, from: $0)] }

        // Keep every ancestor a kept backup needs (transitively).
        let byID = Dictionary(items.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        var missing: [(String, String)] = []
        var queue = sorted.filter { reasons[$0.id] != nil }.map(\.id)
        while let id = queue.popLast() {
            guard let item = byID[id] else { continue }
            var needs = item.requires
            if let p = item.parent { needs.insert(p) }
            for need in needs.sorted() where need != id {
                guard byID[need] != nil else { missing.append((id, need)); continue }
                if reasons[need] == nil { queue.append(need) }
                if !(reasons[need] ?? []).contains(.neededBy(id)) {
                    reasons[need, default: []].append(.neededBy(id))
                }
            }
        }
        let keep = sorted.filter { reasons[$0.id] != nil }.map { (id: $0.id, reasons: reasons[$0.id]!) }
        let remove = sorted.filter { reasons[$0.id] == nil }.map(\.id)
        return RetentionDecision(keep: keep, remove: remove,
                                 missingAncestors: missing.sorted { $0 < $1 }.map { (id: $0.0, missing: $0.1) })
    }

    /// Where each backup falls for the calendar rules: the later of its own start and its
    /// parent's place (transitively; a parent missing from `items` counts as not there).
    static func calendarDates(_ items: [RetentionItem]) -> [String: Date] {
        let byID = Dictionary(items.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        var placed: [String: Date] = [:]
        func place(_ id: String, depth: Int) -> Date? {
            if let d = placed[id] { return d }
            guard let item = byID[id] else { return nil }
            var d = item.date
            // A chain longer than the set (a cycle in damaged headers) stops here.
            if depth < items.count, let p = item.parent, p != id, let pd = place(p, depth: depth + 1) { d = max(d, pd) }
            placed[id] = d
            return d
        }
        for item in items { _ = place(item.id, depth: 0) }
        return placed
    }
}
