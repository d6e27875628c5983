// Retention policy: restic `forget` semantics on dated synthetic backups, plus chains.
import Backup
import BackupOps
import Foundation
import Testing

/// Builds dated synthetic backups: "F" full, "I" incremental on the previous backup.
enum OpsChain {
    static let utc = TimeZone(identifier: "UTC")!

    static func date(_ s: String) -> Date {
        let f = ISO8601DateFormatter()
        f.timeZone = utc
        return f.date(from: s.count == 10 ? s + "T03:00:00Z" : s + "Z")!
    }

    /// `spec` entries like "2026-11-01 F", "2026-11-02T04:00:00 I" (I builds on the previous
    /// entry), "2026-11-03 D" (a differential: builds on the last full). IDs are the dates.
    static func items(_ spec: [String]) -> [RetentionItem] {
        var out: [RetentionItem] = []
        var lastFull: String?
        for line in spec {
            let parts = line.split(separator: " ").map(String.init)
            let d = date(parts[0])
            let id = parts[0]
            switch parts[1] {
            case "F": out.append(RetentionItem(id: id, date: d, kind: .full)); lastFull = id
            case "I": out.append(RetentionItem(id: id, date: d, kind: .incremental, parent: out.last!.id))
            default: out.append(RetentionItem(id: id, date: d, kind: .incremental, parent: lastFull))
            }
        }
        return out
    }

    /// Ancestors of every backup (transitive parent + requires).
    static func ancestors(_ items: [RetentionItem], of id: String) -> Set<String> {
        let byID = Dictionary(uniqueKeysWithValues: items.map { ($0.id, $0) })
        var out: Set<String> = []
        var todo = [id]
        while let x = todo.popLast(), let item = byID[x] {
            for n in item.requires.union(item.parent.map { [$0] } ?? []) where out.insert(n).inserted { todo.append(n) }
        }
        return out
    }
}

@Suite("Retention policy (restic semantics, chains kept whole)")
struct OpsRetentionTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var name: String
        var backups: [String]
        var policy: RetentionPolicy
        var kept: [String]   // expected, newest first
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(name: "keep-last 3 of 6 fulls",
             backups: (1...6).map { "2026-11-0\($0) F" },
             policy: RetentionPolicy(keepLast: 3),
             kept: ["2026-11-06", "2026-11-05", "2026-11-04"]),
        Case(name: "keep-daily takes the newest of each day",
             backups: ["2026-11-01T01:00:00 F", "2026-11-01T13:00:00 F", "2026-11-02T01:00:00 F",
                       "2026-11-02T23:59:00 F", "2026-11-03T02:00:00 F"],
             policy: RetentionPolicy(keepDaily: 2),
             kept: ["2026-11-03T02:00:00", "2026-11-02T23:59:00"]),
        Case(name: "keep-daily counts days that have backups, not calendar days",
             backups: ["2026-11-01 F", "2026-11-02 F", "2026-11-05 F", "2026-11-09 F"],
             policy: RetentionPolicy(keepDaily: 3),
             kept: ["2026-11-09", "2026-11-05", "2026-11-02"]),
        Case(name: "keep-weekly uses ISO weeks (Monday start)",
             // 2026-11-01 is a Sunday (week 44), 11-02 Monday (week 45), 11-08 Sunday (45), 11-09 Monday (46)
             backups: ["2026-11-01 F", "2026-11-02 F", "2026-11-08 F", "2026-11-09 F"],
             policy: RetentionPolicy(keepWeekly: 2),
             kept: ["2026-11-09", "2026-11-08"]),
        Case(name: "keep-monthly across a year boundary",
             backups: ["2025-11-30 F", "2025-12-01 F", "2025-12-31 F", "2026-01-01 F", "2026-01-15 F"],
             policy: RetentionPolicy(keepMonthly: 3),
             kept: ["2026-01-15", "2025-12-31", "2025-11-30"]),
        Case(name: "union of rules: last 1 + monthly 2",
             backups: ["2026-10-01 F", "2026-10-20 F", "2026-11-01 F", "2026-11-02 F"],
             policy: RetentionPolicy(keepLast: 1, keepMonthly: 2),
             kept: ["2026-11-02", "2026-10-20"]),
        Case(name: "a kept incremental keeps its whole chain",
             backups: ["2026-11-01 F", "2026-11-02 I", "2026-11-03 I", "2026-11-04 I"],
             policy: RetentionPolicy(keepLast: 1),
             kept: ["2026-11-04", "2026-11-03", "2026-11-02", "2026-11-01"]),
        Case(name: "a new full frees the previous chain",
             backups: ["2026-11-01 F", "2026-11-02 I", "2026-11-03 I", "2026-11-04 F", "2026-11-05 I"],
             policy: RetentionPolicy(keepLast: 2),
             kept: ["2026-11-05", "2026-11-04"]),
        Case(name: "differentials need only their full",
             backups: ["2026-11-01 F", "2026-11-02 D", "2026-11-03 D", "2026-11-04 D"],
             policy: RetentionPolicy(keepLast: 1),
             kept: ["2026-11-04", "2026-11-01"]),
        Case(name: "weekly keeps reach back into an old chain",
             backups: ["2026-10-05 F", "2026-10-06 I", "2026-10-07 I", "2026-10-12 F", "2026-10-13 I", "2026-10-14 I"],
             policy: RetentionPolicy(keepWeekly: 2),
             kept: ["2026-10-14", "2026-10-13", "2026-10-12", "2026-10-07", "2026-10-06", "2026-10-05"]),
        Case(name: "more rules than backups keeps everything",
             backups: ["2026-11-01 F", "2026-11-02 F"],
             policy: RetentionPolicy(keepLast: 5, keepDaily: 5),
             kept: ["2026-11-02", "2026-11-01"]),
    ]

    @Test("policy table", arguments: cases)
    func table(_ c: Case) {
        let items = OpsChain.items(c.backups)
        let d = Retention.decide(items, policy: c.policy, timeZone: OpsChain.utc)
        #expect(d.keep.map(\.id) == c.kept)
        #expect(Set(d.remove) == Set(items.map(\.id)).subtracting(c.kept))
        #expect(d.missingAncestors.isEmpty)
    }

    @Test("reasons name the rule or the kept backup that needs it")
    func reasons() {
        let items = OpsChain.items(["2026-11-01 F", "2026-11-02 I", "2026-11-03 I"])
        let d = Retention.decide(items, policy: RetentionPolicy(keepLast: 1, keepDaily: 1), timeZone: OpsChain.utc)
        #expect(d.keep[0].reasons == [.last, .daily])
        #expect(d.keep[1].reasons == [.neededBy("2026-11-03")])
        #expect(d.keep[2].reasons == [.neededBy("2026-11-02")])
    }

    @Test("a kept backup whose ancestor is gone is reported, not dropped")
    func missingAncestor() {
        var items = OpsChain.items(["2026-11-02 F", "2026-11-03 I"])
        items[1].parent = "2026-11-01"
        let d = Retention.decide(items, policy: RetentionPolicy(keepLast: 1), timeZone: OpsChain.utc)
        #expect(d.keep.map(\.id) == ["2026-11-03"])
        #expect(d.missingAncestors.map(\.missing) == ["2026-11-01"])
    }

    @Test("requires (archives of other backups) are kept like parents")
    func requires() {
        var items = OpsChain.items(["2026-11-01 F", "2026-11-02 F", "2026-11-03 F"])
        items[2].requires = ["2026-11-01"]
        let d = Retention.decide(items, policy: RetentionPolicy(keepLast: 1), timeZone: OpsChain.utc)
        #expect(d.keep.map(\.id) == ["2026-11-03", "2026-11-01"])
        #expect(d.remove == ["2026-11-02"])
    }

    @Test("time zone decides the day")
    func timeZone() {
        // 23:30 UTC on the 1st is already the 2nd in Berlin.
        let items = OpsChain.items(["2026-11-01T23:30:00 F", "2026-11-02T10:00:00 F"])
        let utc = Retention.decide(items, policy: RetentionPolicy(keepDaily: 2), timeZone: OpsChain.utc)
        let berlin = Retention.decide(items, policy: RetentionPolicy(keepDaily: 2), timeZone: TimeZone(identifier: "Europe/Berlin")!)
        #expect(utc.keep.count == 2)
        #expect(berlin.keep.map(\.id) == ["2026-11-02T10:00:00"])
    }

    @Test("invariants on random chains and policies")
    func randomChains() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<80 {
            var spec: [String] = []
            var day = OpsChain.date("2025-06-01")
            for i in 0..<Int.random(in: 1...60, using: &rng) {
                day = day.addingTimeInterval(Double(Int.random(in: 1...60, using: &rng)) * 3600 * 6)
                let f = ISO8601DateFormatter(); f.timeZone = OpsChain.utc
                let kind = i == 0 ? "F" : ["F", "I", "I", "I", "D"].randomElement(using: &rng)!
                spec.append(String(f.string(from: day).dropLast()) + " " + kind)
            }
            let items = OpsChain.items(spec)
            let policy = RetentionPolicy(keepLast: Int.random(in: 0...3, using: &rng), keepDaily: Int.random(in: 0...7, using: &rng),
                                         keepWeekly: Int.random(in: 0...4, using: &rng), keepMonthly: Int.random(in: 0...6, using: &rng))
            let d = Retention.decide(items, policy: policy, timeZone: OpsChain.utc)
            let kept = d.keptIDs
            #expect(kept.isDisjoint(with: d.remove) && kept.count + d.remove.count == items.count)
            if !policy.isEmpty { #expect(kept.contains(items.max { $0.date < $1.date }!.id), "the newest backup is kept") }
            for id in kept { #expect(OpsChain.ancestors(items, of: id).isSubset(of: kept), "chain of \(id) kept") }
            // Removal order: nothing removed later is an ancestor of something removed earlier...
            // i.e. each removed backup is removed before its ancestors.
            for (i, id) in d.remove.enumerated() {
                #expect(OpsChain.ancestors(items, of: id).isDisjoint(with: d.remove.prefix(i)))
            }
            // keep-last N alone keeps exactly the N newest plus their chains.
            let lastOnly = Retention.decide(items, policy: RetentionPolicy(keepLast: policy.keepLast), timeZone: OpsChain.utc)
            let newest = items.sorted { $0.date > $1.date }.prefix(policy.keepLast).map(\.id)
            let expected = Set(newest).union(newest.flatMap { OpsChain.ancestors(items, of: $0) })
            #expect(lastOnly.keptIDs == expected)
        }
    }
}
