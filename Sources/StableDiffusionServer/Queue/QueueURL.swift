import Foundation
import NIOSSL
import PostgresNIO

/// A libpq-style `postgres://user:password@host:port/database[?sslmode=disable|prefer|require]`, read into
/// postgres-nio's client configuration. Without `sslmode` the connection is plain (as on loopback).
public struct QueueURL: Sendable, CustomStringConvertible {
    public let host: String
    public let port: Int
    public let user: String
    let password: String?
    public let database: String
    public let sslMode: String

    /// `flag` names the argument in messages (`--queue`, `SD_QUEUE_URL`).
    public init(_ text: String, flag: String = "--queue") throws {
        guard let c = URLComponents(string: text), let scheme = c.scheme, ["postgres", "postgresql"].contains(scheme) else {
            throw QueueError.badURL("\(flag) must be postgres://user[:password]@host[:port]/database, got \(Self.redacted(text))")
        }
        guard let host = c.host, !host.isEmpty else { throw QueueError.badURL("\(flag) names no host: \(Self.redacted(text))") }
        guard let user = c.user, !user.isEmpty else { throw QueueError.badURL("\(flag) names no user: \(Self.redacted(text))") }
        let database = String(c.path.drop(while: { $0 == "/" }))
        self.host = host
        port = c.port ?? 5432
        self.user = user.removingPercentEncoding ?? user
        password = c.password.map { $0.removingPercentEncoding ?? $0 }
        self.database = database.isEmpty ? self.user : database
        sslMode = c.queryItems?.first { $0.name == "sslmode" }?.value ?? "disable"
        guard ["disable", "prefer", "require", "verify-full"].contains(sslMode) else {
            throw QueueError.badURL("\(flag): sslmode must be disable, prefer, require or verify-full, got \(sslMode)")
        }
    }

    var clientConfiguration: PostgresClient.Configuration {
        let tls: PostgresClient.Configuration.TLS
        switch sslMode {
        case "prefer": tls = .prefer(.makeClientConfiguration())
        case "require", "verify-full": tls = .require(.makeClientConfiguration())
        default: tls = .disable
        }
        return PostgresClient.Configuration(host: host, port: port, username: user, password: password, database: database, tls: tls)
    }

    /// The URL without its password, for logs and messages.
    public var description: String { "postgres://\(user)@\(host):\(port)/\(database)" }

    static func redacted(_ text: String) -> String {
        guard var c = URLComponents(string: text), c.password != nil else { return text }
        c.password = "***"
        return c.string ?? text
    }
}

/// How the shared queue behaves; the defaults suit a LAN. Tests shorten the lease to see a crash rescued fast.
public struct QueueSettings: Sendable {
    /// Seconds a claimed job is this worker's without a heartbeat; a job whose lease ran out is requeued.
    public var leaseSeconds: Double = 30
    /// Seconds between a worker's heartbeats (lease renewal, progress, its entry in the workers table).
    public var heartbeatSeconds: Double = 1
    /// Seconds between polls when no notification came (LISTEN/NOTIFY is the fast path; this the backstop).
    public var pollSeconds: Double = 2
    /// Runs of a job before it is failed (each lease that expires costs one).
    public var maxAttempts = 3
    /// Seconds a fetched result's pictures are kept; unfetched ones are kept for a day.
    public var retentionSeconds: Double = 600
    /// The priority of the jobs this front submits: workers claim the highest first, the oldest within one.
    public var priority = 0
    public static let priorities = -100...100
    /// This process's name in the jobs and workers tables (a worker's must be unique among live ones).
    public var name = "\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)"

    public init() {}
}

public enum QueueError: Error, CustomStringConvertible, Sendable {
    case badURL(String)
    case schema(String)
    case unavailable(String)
    case conflict(String)

    public var description: String {
        switch self {
        case .badURL(let m), .schema(let m), .unavailable(let m), .conflict(let m): return m
        }
    }
}
