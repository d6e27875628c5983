// restic-familiar names: the aliases backup/snapshots/check/forget, --keep-hourly,
// --keep-yearly and --keep-within (restic's duration syntax, measured from the newest backup).
import Backup
import BackupOps
import Foundation
import Support
import TestSupport
import Testing

@Suite("restic names: aliases, --keep-hourly/--keep-yearly/--keep-within")
struct ResticNamesTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var name: String
        var backups: [String]
        var policy: RetentionPolicy
        var kept: [String]
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(name: "keep-hourly 2: the newest of each of the 2 most recent hours",
             backups: ["2026-11-01T01:10:00 F", "2026-11-01T02:05:00 F", "2026-11-01T02:50:00 F", "2026-11-01T03:20:00 F"],
             policy: RetentionPolicy(keepHourly: 2), kept: ["2026-11-01T03:20:00", "2026-11-01T02:50:00"]),
        Case(name: "keep-yearly 2 over three years",
             backups: ["2024-06-01 F", "2024-12-01 F", "2025-03-01 F", "2025-12-31 F", "2026-01-02 F"],
             policy: RetentionPolicy(keepYearly: 2), kept: ["2026-01-02", "2025-12-31"]),
        Case(name: "keep-within 3d counts from the newest backup, strictly after the limit",
             backups: ["2026-10-01 F", "2026-10-27 F", "2026-10-28 F", "2026-10-29 F", "2026-10-30 F"],
             policy: RetentionPolicy(keepWithin: RetentionSpan(days: 3)),
             kept: ["2026-10-30", "2026-10-29", "2026-10-28"]),
        Case(name: "keep-within 1m2d: calendar months, then days",
             backups: ["2026-01-27 F", "2026-01-29T04:00:00 F", "2026-03-01 F", "2026-03-31 F"],
             policy: RetentionPolicy(keepWithin: RetentionSpan(months: 1, days: 2)),
             kept: ["2026-03-31", "2026-03-01"]),
        Case(name: "keep-within 12h keeps the incremental's full too",
             backups: ["2026-11-01 F", "2026-11-02 I", "2026-11-02T12:00:00 I"],
             policy: RetentionPolicy(keepWithin: RetentionSpan(hours: 12)),
             kept: ["2026-11-02T12:00:00", "2026-11-02", "2026-11-01"]),
    ]

    @Test("policy table", arguments: cases)
    func table(_ c: Case) {
        let items = OpsChain.items(c.backups)
        // "now" is a year after the newest backup: --keep-within must not count from now.
        let d = Retention.decide(items, policy: c.policy, timeZone: OpsChain.utc, now: OpsChain.date("2027-12-01"))
        #expect(d.keep.map(\.id) == c.kept)
    }

    @Test("within: the reason names the span; a set whose newest backup is old still keeps it")
    func withinReason() {
        let items = OpsChain.items(["2020-01-01 F", "2020-01-02 F"])
        let d = Retention.decide(items, policy: RetentionPolicy(keepWithin: RetentionSpan(days: 7)), timeZone: OpsChain.utc)
        #expect(d.keep.map(\.id) == ["2020-01-02", "2020-01-01"])
        #expect(d.keep.first?.reasons == [.within("7d")])
    }

    @Test("restic's duration syntax", arguments: [
        ("1y2m3d4h", RetentionSpan(years: 1, months: 2, days: 3, hours: 4)),
        ("14d", RetentionSpan(days: 14)),
        ("2d12h", RetentionSpan(days: 2, hours: 12)),
        ("4h1y", RetentionSpan(years: 1, hours: 4)),
    ])
    func spanParsing(text: String, span: RetentionSpan) throws {
        #expect(try RetentionSpan(parsing: text) == span)
    }

    @Test("malformed durations are refused with what is wrong", arguments: ["", "7", "d", "3w", "1d2d", "1.5d", "-3d"])
    func spanErrors(text: String) {
        #expect(throws: RetentionSpan.ParseError.self) { try RetentionSpan(parsing: text) }
    }

    @Test("hs-backup backup, snapshots, check and forget are run, list, verify and prune")
    func aliases() throws {
        let work = try TempDir("hs-aliases")
        try Tree.makeSample(work.sub("src"))
        let env = ["HS_CONFIG": "/dev/null"]
        let common = ["--to", work.sub("dest"), "--name", "io"]
        let b1 = try Tools.run("hs-backup", ["backup", "-q", "--source", work.sub("src")] + common, environment: env)
        #expect(b1.status == 0, "\(b1.stderr)")
        sleep(1)
        let b2 = try Tools.run("hs-backup", ["backup", "-q", "--source", work.sub("src")] + common, environment: env)
        #expect(b2.status == 0, "\(b2.stderr)")
        let snaps = try Tools.run("hs-backup", ["snapshots", "--json"] + common, environment: env)
        #expect(snaps.status == 0 && snaps.stdout.contains("\"backups\""), "\(snaps.stderr)")
        #expect(try Tools.run("hs-backup", ["check"] + common, environment: env).status == 0)
        let forget = try Tools.run("hs-backup", ["forget", "--keep-within", "1h", "--dry-run", "--json"] + common, environment: env)
        #expect(forget.status == 0, "\(forget.stderr)")
        #expect(forget.stdout.contains("within 1h"), "\(forget.stdout)")
        let bad = try Tools.run("hs-backup", ["forget", "--keep-within", "3w"] + common, environment: env)
        #expect(bad.status == 2 && bad.stderr.contains("--keep-within '3w': unknown unit 'w'"), "\(bad.stderr)")
        let help = try Tools.run("hs-backup", ["--help"], environment: env)
        #expect(help.stdout.contains("Alias: backup."), "\(help.stdout)")
    }
}
