// Test fixture for the SQLite capture tests: a real writer process (python3's sqlite3 module)
// committing numbered transactions to a WAL-mode database, and checks run with the sqlite3 CLI.
import Foundation
import Support
import Testing

/// A python3 process that commits numbered transactions to a WAL-mode database until stopped.
/// Every transaction inserts row n into `a` (random payload) and `b` (its SHA3 digest), sets
/// `counter.n = n`, and rewrites a random older row in both tables. The relation: count(a) =
/// count(b) = counter.n, and every b.digest is the SHA3-256 of its a.payload.
final class OpsSQLiteWriter: @unchecked Sendable {
    static let script = """
    import sqlite3, sys, os, random, hashlib
    db, progress, stopfile = sys.argv[1:4]
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE IF NOT EXISTS a(n INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
    con.execute("CREATE TABLE IF NOT EXISTS b(n INTEGER PRIMARY KEY, a_n INTEGER NOT NULL, digest TEXT NOT NULL)")
    con.execute("CREATE TABLE IF NOT EXISTS counter(id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL)")
    con.execute("INSERT OR IGNORE INTO counter VALUES (1, 0)")
    n = 0
    while not os.path.exists(stopfile):
        n += 1
        payload = os.urandom(random.randint(200, 3000))
        con.execute("BEGIN IMMEDIATE")
        con.execute("INSERT INTO a VALUES (?, ?)", (n, payload))
        con.execute("INSERT INTO b VALUES (?, ?, ?)", (n, n, hashlib.sha3_256(payload).hexdigest()))
        con.execute("UPDATE counter SET n = ?", (n,))
        if n > 1:
            k = random.randint(1, n - 1)
            p2 = os.urandom(random.randint(200, 3000))
            con.execute("UPDATE a SET payload = ? WHERE n = ?", (p2, k))
            con.execute("UPDATE b SET digest = ? WHERE n = ?", (hashlib.sha3_256(p2).hexdigest(), k))
        con.execute("COMMIT")
        with open(progress + ".tmp", "w") as f:
            f.write(str(n))
        os.replace(progress + ".tmp", progress)
    con.close()
    """

    let database: String
    private let progressFile: String
    private let stopFile: String
    private let process = Process()

    /// Starts the writer on `database` (created if missing) and waits for `minimum` commits.
    init(database: String, minimum: Int = 50) throws {
        self.database = database
        progressFile = database + ".progress"
        stopFile = database + ".stop"
        let scriptPath = database + ".writer.py"
        try Self.script.write(toFile: scriptPath, atomically: true, encoding: .utf8)
        guard let python = Subprocess.which("python3") else { throw ToolError("python3 not found") }
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [scriptPath, database, progressFile, stopFile]
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        try waitFor(minimum)
    }

    /// Transactions the writer has reported committed.
    var committed: Int {
        (try? String(contentsOfFile: progressFile, encoding: .utf8)).flatMap { Int($0) } ?? 0
    }

    /// Waits until at least `n` transactions are committed (at most 30 s).
    func waitFor(_ n: Int) throws {
        let deadline = Date().addingTimeInterval(30)
        while committed < n {
            guard process.isRunning else { throw ToolError("the SQLite writer process exited early") }
            guard Date() < deadline else { throw ToolError("the SQLite writer did not reach \(n) commits") }
            usleep(20_000)
        }
    }

    /// Asks the writer to finish and waits; returns the last committed n.
    @discardableResult
    func stop() -> Int {
        _ = FileManager.default.createFile(atPath: stopFile, contents: nil)
        process.waitUntilExit()
        return committed
    }

    /// Kills the writer with SIGKILL (leaves its -wal behind, like a crash).
    func kill() {
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    deinit { if process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL); process.waitUntilExit() } }
}

/// What the sqlite3 CLI finds in a database file.
struct OpsSQLiteCheck: Equatable, CustomStringConvertible {
    var integrity: String
    var countA: Int
    var countB: Int
    var counter: Int
    var digestsMatching: Int
    var journalMode: String

    /// The relation the writer maintains holds.
    var relationHolds: Bool { countA == counter && countB == counter && digestsMatching == counter }
    var consistent: Bool { integrity == "ok" && relationHolds }
    var description: String {
        "integrity=\(integrity.prefix(120)) a=\(countA) b=\(countB) counter=\(counter) matching=\(digestsMatching) journal=\(journalMode)"
    }

    /// Opens `path` with the sqlite3 CLI (read-only) and checks integrity and the relation.
    /// A file that cannot be read at all is reported with integrity = the error.
    static func run(_ path: String) throws -> OpsSQLiteCheck {
        let sql = """
        PRAGMA integrity_check;
        SELECT '#', (SELECT count(*) FROM a), (SELECT count(*) FROM b), (SELECT n FROM counter),
               (SELECT count(*) FROM a JOIN b ON a.n = b.a_n AND b.digest = lower(hex(sha3(a.payload, 256))));
        PRAGMA journal_mode;
        """
        let r = try Subprocess.run(["sqlite3", "-readonly", "-batch", "-separator", "|", path, sql])
        let lines = r.stdout.split(separator: "\n").map(String.init)
        guard r.succeeded, let row = lines.first(where: { $0.hasPrefix("#|") }) else {
            let err = (r.stderr + r.stdout).trimmingCharacters(in: .whitespacesAndNewlines)
            return OpsSQLiteCheck(integrity: err.isEmpty ? "unreadable" : err, countA: -1, countB: -1,
                                  counter: -1, digestsMatching: -1, journalMode: "?")
        }
        let integrity = lines.prefix { !$0.hasPrefix("#|") }.joined(separator: " ")
        let f = row.split(separator: "|").dropFirst().map { Int($0) ?? -1 }
        return OpsSQLiteCheck(integrity: integrity, countA: f[0], countB: f[1], counter: f[2],
                              digestsMatching: f[3], journalMode: lines.last ?? "?")
    }
}

enum OpsFiles {
    static func size(_ path: String) -> Int64? {
        var st = stat()
        return lstat(path, &st) == 0 ? Int64(st.st_size) : nil
    }
    static func inode(_ path: String) -> UInt64? {
        var st = stat()
        return lstat(path, &st) == 0 ? UInt64(st.st_ino) : nil
    }
    static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }
    static func bytes(_ path: String) -> [UInt8]? { FileManager.default.contents(atPath: path).map { Array($0) } }
    static func mode(_ path: String) -> mode_t? {
        var st = stat()
        return lstat(path, &st) == 0 ? st.st_mode & 0o7777 : nil
    }
}
