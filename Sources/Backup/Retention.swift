// Retention: which backups a policy keeps, with restic's `forget` semantics, never breaking a
// chain: a kept incremental keeps every backup whose archives it reads.
//
// Pure: no I/O. `OpsPrune.swift` applies the result to a Destination.

import Foundation

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

    package init(keepLast: Int = 0, keepDaily: Int = 0, keepWeekly: Int = 0, keepMonthly: Int = 0, keepYearly: Int = 0) {
        self.keepLast = keepLast; self.keepDaily = keepDaily; self.keepWeekly = keepWeekly
        self.keepMonthly = keepMonthly; self.keepYearly = keepYearly
    }

    /// True when no rule keeps anything (a prune with it would remove everything: refused).
    package var isEmpty: Bool { keepLast + keepDaily + keepWeekly + keepMonthly + keepYearly == 0 }
}

/// Why a backup is kept.
package enum RetentionReason: Sendable, Hashable, CustomStringConvertible {
    case last, daily, weekly, monthly, yearly
    /// Kept because the kept backup with this ID needs its archives.
    case neededBy(String)

    package var description: String {
        switch self {
        case .last: "last"
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
    package static func decide(_ items: [RetentionItem], policy: RetentionPolicy,
                               timeZone: TimeZone = .current) -> RetentionDecision {
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = timeZone
        var iso = Calendar(identifier: .iso8601)
        iso.timeZone = timeZone
        // Newest first: by id.
        let sorted = items.sorted { $0.id > $1.id }
        let placed = calendarDates(items)

        var reasons: [String: [RetentionReason]] = [:]
        func apply(_ count: Int, _ reason: RetentionReason, bucket: (Date) -> [Int]) {
            guard count > 0 else { return }
            var left = count
            var last: [Int]? = nil
            for item in sorted where left > 0 {
                let b = bucket(placed[item.id] ?? item.date)
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
