import Foundation
import Logging
import PostgresNIO

/// The shared queue's tables, one numbered migration per change. `sd queue migrate` applies the missing
/// ones in a transaction (under an advisory lock, so two at once do not race); fronts and workers refuse a
/// database whose version is not `current`.
public enum QueueSchema {
    static let migrations: [String] = [
        // 1: jobs, their pictures, and the workers' heartbeats.
        """
        CREATE TABLE sd_jobs (
            id bigserial PRIMARY KEY,
            kind text NOT NULL,
            model text NOT NULL,
            request jsonb NOT NULL,
            state text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
            priority integer NOT NULL DEFAULT 0,
            attempt integer NOT NULL DEFAULT 0,
            max_attempts integer NOT NULL DEFAULT 3,
            lease_expires_at timestamptz,
            worker text,
            front text,
            task_id text,
            progress_image integer NOT NULL DEFAULT 0,
            progress_step integer NOT NULL DEFAULT 0,
            progress_total integer NOT NULL DEFAULT 0,
            cancel_requested boolean NOT NULL DEFAULT false,
            interrupt_requested boolean NOT NULL DEFAULT false,
            interrupted boolean NOT NULL DEFAULT false,
            scheduler_class text,
            error text,
            error_status integer,
            error_field text,
            created_at timestamptz NOT NULL DEFAULT now(),
            started_at timestamptz,
            finished_at timestamptz,
            fetched_at timestamptz
        );
        CREATE INDEX sd_jobs_claim ON sd_jobs (model, priority DESC, id) WHERE state = 'queued';
        CREATE INDEX sd_jobs_lease ON sd_jobs (lease_expires_at) WHERE state = 'running';
        CREATE INDEX sd_jobs_task ON sd_jobs (task_id) WHERE task_id IS NOT NULL;
        CREATE TABLE sd_job_images (
            job_id bigint NOT NULL REFERENCES sd_jobs (id) ON DELETE CASCADE,
            idx integer NOT NULL,
            png bytea NOT NULL,
            seed bigint NOT NULL,
            infotext text NOT NULL,
            width integer NOT NULL,
            height integer NOT NULL,
            PRIMARY KEY (job_id, idx)
        );
        CREATE TABLE sd_workers (
            name text PRIMARY KEY,
            models jsonb NOT NULL,
            started_at timestamptz NOT NULL DEFAULT now(),
            heartbeat_at timestamptz NOT NULL DEFAULT now()
        );
        """,
        // 2: the PNGs served for OpenAI's response_format=url, so that any front serves them.
        """
        CREATE TABLE sd_files (
            id text PRIMARY KEY,
            png bytea NOT NULL,
            expires_at timestamptz NOT NULL
        );
        CREATE INDEX sd_files_expiry ON sd_files (expires_at);
        """,
        // 3: the running job's live preview (a PNG and a number that changes with it), from the heartbeat.
        """
        ALTER TABLE sd_jobs ADD COLUMN preview bytea, ADD COLUMN preview_id integer;
        """,
    ]

    /// The version this build of sd reads and writes.
    public static var current: Int { migrations.count }

    /// Creates or upgrades the schema; returns (version before, version after).
    static func migrate(_ client: PostgresClient, logger: Logger) async throws -> (Int, Int) {
        let before = try await client.withTransaction(logger: logger) { conn -> Int in
            // A constant key: any two migrations, from any host, take turns.
            try await conn.query("SELECT pg_advisory_xact_lock(5330001)", logger: logger)
            try await conn.query("CREATE TABLE IF NOT EXISTS sd_schema (version integer NOT NULL)", logger: logger)
            var before = 0
            for try await v in try await conn.query("SELECT coalesce(max(version), 0) FROM sd_schema", logger: logger).decode(Int.self) { before = v }
            // A newer schema is left alone (and refused below, outside the transaction, which would wrap the error).
            guard before < current else { return before }
            for version in (before + 1)..<(current + 1) {
                // One statement per query: the extended protocol postgres-nio speaks takes no more.
                for statement in migrations[version - 1].components(separatedBy: ";\n") where !statement.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                    try await conn.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
            }
            try await conn.query("DELETE FROM sd_schema", logger: logger)
            try await conn.query("INSERT INTO sd_schema (version) VALUES (\(current))", logger: logger)
            return before
        }
        guard before <= current else {
            throw QueueError.schema("the queue's schema is version \(before), newer than this sd's (\(current)): upgrade sd")
        }
        return (before, current)
    }

    /// Throws unless the database is at `current` (naming the version found and what to run).
    static func check(_ client: PostgresClient, logger: Logger) async throws {
        var found: Int?
        let rows = try await client.query("SELECT to_regclass('sd_schema') IS NOT NULL", logger: logger)
        var exists = false
        for try await e in rows.decode(Bool.self) { exists = e }
        if exists {
            for try await v in try await client.query("SELECT coalesce(max(version), 0) FROM sd_schema", logger: logger).decode(Int.self) { found = v }
        }
        guard let found, found > 0 else {
            throw QueueError.schema("the queue has no schema: run `sd queue migrate --queue URL` first")
        }
        guard found == current else {
            throw QueueError.schema("the queue's schema is version \(found); this sd needs version \(current)"
                                    + (found < current ? ": run `sd queue migrate --queue URL`" : ": upgrade sd"))
        }
    }
}
