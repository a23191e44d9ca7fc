import Foundation
import Logging
import XCTest
import StableDiffusion
import StableDiffusionServer

/// The shared queue against a real PostgreSQL (`TestPostgres`): claims, leases and fencing one step at a
/// time through the worker's own code, then fronts and workers as separate `sd` processes.
final class PostgresQueueTests: XCTestCase {
    nonisolated(unsafe) private static var shared: TestPostgres?

    override class func tearDown() {
        shared?.stop()
        shared = nil
        super.tearDown()
    }

    private func postgres() throws -> TestPostgres {
        if let pg = Self.shared { return pg }
        let pg = try TestPostgres.start()
        Self.shared = pg
        return pg
    }

    private var logger: Logger {
        var l = Logger(label: "sd-queue-test")
        l.logLevel = .critical
        return l
    }

    /// A migrated database of its own for one test.
    private func database() async throws -> (TestPostgres, String, QueueURL) {
        let pg = try postgres()
        let db = try pg.createDatabase()
        let url = try QueueURL(pg.url(database: db))
        _ = try await PostgresQueue.migrate(url, logger: logger)
        return (pg, db, url)
    }

    private func connect(_ url: QueueURL, name: String, lease: Double = 30) async throws -> PostgresQueue {
        var s = QueueSettings()
        s.name = name
        s.leaseSeconds = lease
        s.pollSeconds = 0.2
        return try await PostgresQueue.connect(url, settings: s, logger: logger, patience: 5)
    }

    private func descriptor(_ name: String) throws -> ModelDescriptor {
        var d = try ServerModels.load("tiny-sd1").descriptor
        d.name = name
        return d
    }

    /// A queued txt2img job for `model`, inserted as a front would; returns its id.
    @discardableResult
    private func insertJob(_ pg: TestPostgres, _ db: String, model: String, priority: Int = 0, maxAttempts: Int = 3) throws -> Int64 {
        let request = #"{"task":{"pipeline":"txt2img"},"prompt":"x","steps":1,"guidanceScale":1,"seed":1,"count":1}"#
        let id = try pg.psql("""
            INSERT INTO sd_jobs (kind, model, request, priority, max_attempts)
            VALUES ('txt2img', '\(model)', '\(request)', \(priority), \(maxAttempts)) RETURNING id
            """, database: db)
        return Int64(id.split(separator: "\n").first ?? "") ?? -1
    }

    func testMigrationIsVersionedAndIdempotent() async throws {
        let pg = try postgres()
        let db = try pg.createDatabase()
        let url = try QueueURL(pg.url(database: db))
        let first = try await PostgresQueue.migrate(url, logger: logger)
        XCTAssertEqual(first.before, 0)
        XCTAssertEqual(first.after, QueueSchema.current)
        let again = try await PostgresQueue.migrate(url, logger: logger)
        XCTAssertEqual(again.before, QueueSchema.current)
        // An older schema is upgraded by the migrations it lacks (here the last one, undone by hand).
        try pg.psql("DROP TABLE sd_files; ALTER TABLE sd_jobs DROP COLUMN preview, DROP COLUMN preview_id; UPDATE sd_schema SET version = 1",
                    database: db)
        let upgrade = try await PostgresQueue.migrate(url, logger: logger)
        XCTAssertEqual(upgrade.before, 1)
        XCTAssertEqual(upgrade.after, 3)
        XCTAssertEqual(try pg.psql("SELECT to_regclass('sd_files') IS NOT NULL", database: db), "t")
        XCTAssertEqual(try pg.psql("SELECT count(*) FROM sd_schema", database: db), "1")
        // Another version: fronts and workers refuse it, naming it; migrate refuses a newer one.
        try pg.psql("UPDATE sd_schema SET version = 99", database: db)
        do {
            _ = try await connect(url, name: "w")
            XCTFail("connected to a schema of another version")
        } catch {
            XCTAssertTrue("\(error)".contains("version 99"), "\(error)")
        }
        do {
            _ = try await PostgresQueue.migrate(url, logger: logger)
            XCTFail("migrated a newer schema")
        } catch {
            XCTAssertTrue("\(error)".contains("version 99"), "\(error)")
        }
        // No schema at all: told to migrate.
        let empty = try pg.createDatabase()
        do {
            _ = try await connect(try QueueURL(pg.url(database: empty)), name: "w")
            XCTFail("connected without a schema")
        } catch {
            XCTAssertTrue("\(error)".contains("sd queue migrate"), "\(error)")
        }
    }

    func testClaimsFollowTheWorkersModelsThenPriorityThenFIFO() async throws {
        let (pg, db, url) = try await database()
        let a1 = try insertJob(pg, db, model: "a")
        let b1 = try insertJob(pg, db, model: "b")
        let a2 = try insertJob(pg, db, model: "a", priority: 5)
        let a3 = try insertJob(pg, db, model: "a")
        let queue = try await connect(url, name: "wa")
        defer { queue.close() }
        let onlyA = PostgresJobSource(testQueue: queue, models: [try descriptor("a")])
        var order: [Int64] = []
        while let claim = try await onlyA.claimForTest() {
            XCTAssertEqual(claim.attempt, 1)
            order.append(claim.id)
            let recorded = try await onlyA.completeForTest()
            XCTAssertTrue(recorded)
        }
        XCTAssertEqual(order, [a2, a1, a3])
        XCTAssertEqual(try pg.psql("SELECT state FROM sd_jobs WHERE id = \(b1)", database: db), "queued")
    }

    func testConcurrentWorkersNeverClaimTheSameJob() async throws {
        let (pg, db, url) = try await database()
        for _ in 0..<24 { try insertJob(pg, db, model: "a") }
        let q1 = try await connect(url, name: "w1"), q2 = try await connect(url, name: "w2")
        defer { q1.close(); q2.close() }
        let model = try descriptor("a")
        let claimed = try await withThrowingTaskGroup(of: [Int64].self) { group in
            for q in [q1, q2] {
                let source = PostgresJobSource(testQueue: q, models: [model])
                group.addTask {
                    var ids: [Int64] = []
                    while let c = try await source.claimForTest() {
                        ids.append(c.id)
                        _ = try await source.completeForTest()
                    }
                    return ids
                }
            }
            var all: [Int64] = []
            for try await ids in group { all += ids }
            return all
        }
        XCTAssertEqual(claimed.count, 24)
        XCTAssertEqual(Set(claimed).count, 24)
        XCTAssertEqual(try pg.psql("SELECT count(*) FROM sd_jobs WHERE state = 'succeeded' AND attempt = 1", database: db), "24")
    }

    func testAnExpiredLeaseIsRequeuedAndTheOldWorkersWritesAreFenced() async throws {
        let (pg, db, url) = try await database()
        let id = try insertJob(pg, db, model: "a")
        let qa = try await connect(url, name: "wa"), qb = try await connect(url, name: "wb")
        defer { qa.close(); qb.close() }
        let model = try descriptor("a")
        let a = PostgresJobSource(testQueue: qa, models: [model]), b = PostgresJobSource(testQueue: qb, models: [model])
        let first = try await a.claimForTest()
        XCTAssertEqual(first?.id, id)
        let twice = try await b.claimForTest()
        XCTAssertNil(twice, "a running job was claimed twice")
        // wa stops answering: its lease runs out and the rescuer (any process) requeues the job.
        try pg.psql("UPDATE sd_jobs SET lease_expires_at = now() - interval '1 second' WHERE id = \(id)", database: db)
        try await qb.rescue()
        XCTAssertEqual(try pg.psql("SELECT state || ' ' || attempt FROM sd_jobs WHERE id = \(id)", database: db), "queued 1")
        let second = try await b.claimForTest()
        XCTAssertEqual(second?.id, id)
        XCTAssertEqual(second?.attempt, 2)
        // The first run comes back: its heartbeat and its outcome no longer pass the fence.
        await a.heartbeatForTest()
        let late = try await a.completeForTest()
        XCTAssertFalse(late, "a run that lost its lease wrote its outcome")
        let current = try await b.completeForTest()
        XCTAssertTrue(current)
        XCTAssertEqual(try pg.psql("SELECT state || ' ' || attempt || ' ' || worker FROM sd_jobs WHERE id = \(id)", database: db),
                       "succeeded 2 wb")
    }

    func testAJobWhoseLeaseExpiresMaxAttemptsTimesFails() async throws {
        let (pg, db, url) = try await database()
        let id = try insertJob(pg, db, model: "a", maxAttempts: 2)
        let queue = try await connect(url, name: "wa")
        defer { queue.close() }
        let source = PostgresJobSource(testQueue: queue, models: [try descriptor("a")])
        for attempt in 1...2 {
            let claim = try await source.claimForTest()
            XCTAssertEqual(claim?.attempt, attempt)
            try pg.psql("UPDATE sd_jobs SET lease_expires_at = now() - interval '1 second' WHERE id = \(id)", database: db)
            try await queue.rescue()
        }
        let row = try pg.psql("SELECT state || '|' || error FROM sd_jobs WHERE id = \(id)", database: db)
        XCTAssertTrue(row.hasPrefix("failed|the job was tried 2 times"), row)
        let after = try await source.claimForTest()
        XCTAssertNil(after)
    }
}
