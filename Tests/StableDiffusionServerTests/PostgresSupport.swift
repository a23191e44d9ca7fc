import Foundation
import XCTest

/// A throwaway PostgreSQL 15 for the queue tests: `initdb` into a temporary folder, `pg_ctl start` on
/// 127.0.0.1 with a free port, stopped by its pid at the end. As root (CI) the server runs as the
/// `postgres` user, since PostgreSQL refuses to run as root. Tests skip, saying why, only where the
/// binaries are not installed (`.ci/run` installs Debian's postgresql package).
final class TestPostgres: @unchecked Sendable {
    static let bin = URL(fileURLWithPath: ProcessInfo.processInfo.environment["SD_TEST_PG_BIN"] ?? "/usr/lib/postgresql/15/bin")
    let folder: URL
    let port: Int
    private var pid: Int32?

    var url: String { "postgres://sd@127.0.0.1:\(port)/postgres" }
    func url(database: String) -> String { "postgres://sd@127.0.0.1:\(port)/\(database)" }

    private init(folder: URL, port: Int) {
        self.folder = folder
        self.port = port
    }

    static func start() throws -> TestPostgres {
        guard FileManager.default.isExecutableFile(atPath: bin.appendingPathComponent("initdb").path) else {
            throw XCTSkip("PostgreSQL 15 is not installed (no \(bin.path)/initdb): apt-get install postgresql to run the queue tests")
        }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("sd-pg-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let asRoot = getuid() == 0
        if asRoot { try run("/bin/chown", ["postgres:postgres", folder.path]) }
        let data = folder.appendingPathComponent("data").path
        try runPG("initdb", ["-D", data, "-U", "sd", "--auth=trust", "-E", "UTF8", "--no-sync"], asRoot: asRoot)
        let port = try freePort()
        let pg = TestPostgres(folder: folder, port: port)
        // Small and fast: no fsync (a test database), sockets only in the folder, TCP only on loopback.
        let options = "-p \(port) -k \(folder.path) -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        try runPG("pg_ctl", ["-D", data, "-o", options, "-l", folder.appendingPathComponent("log").path, "-w", "-t", "30", "start"], asRoot: asRoot)
        let pidLine = try String(contentsOfFile: data + "/postmaster.pid", encoding: .utf8).split(separator: "\n").first.map(String.init)
        pg.pid = pidLine.flatMap { Int32($0) }
        return pg
    }

    /// Stops the server (fast shutdown, by its pid) and starts it again on the same folder and port, as a
    /// database restart looks to its clients.
    func restart() throws {
        let asRoot = getuid() == 0
        if let pid {
            kill(pid, SIGINT)
            let deadline = Date().addingTimeInterval(20)
            while kill(pid, 0) == 0, Date() < deadline { usleep(20_000) }
        }
        let data = folder.appendingPathComponent("data").path
        let options = "-p \(port) -k \(folder.path) -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        try Self.runPG("pg_ctl", ["-D", data, "-o", options, "-l", folder.appendingPathComponent("log").path, "-w", "-t", "30", "start"], asRoot: asRoot)
        let pidLine = try String(contentsOfFile: data + "/postmaster.pid", encoding: .utf8).split(separator: "\n").first.map(String.init)
        pid = pidLine.flatMap { Int32($0) }
    }

    /// SIGINT (PostgreSQL's fast shutdown) to the postmaster, waiting for it (bounded), then the folder goes.
    func stop() {
        if let pid {
            kill(pid, SIGINT)
            let deadline = Date().addingTimeInterval(20)
            while kill(pid, 0) == 0, Date() < deadline { usleep(50_000) }
            if kill(pid, 0) == 0 { kill(pid, SIGKILL) }
        }
        pid = nil
        try? FileManager.default.removeItem(at: folder)
    }

    /// A fresh database for one test.
    func createDatabase() throws -> String {
        let name = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(12).lowercased()
        _ = try psql("CREATE DATABASE \(name)", database: "postgres")
        return name
    }

    /// Runs SQL with psql; returns its unaligned, tuples-only output.
    @discardableResult
    func psql(_ sql: String, database: String) throws -> String {
        try Self.run(Self.bin.appendingPathComponent("psql").path,
                     ["-h", "127.0.0.1", "-p", String(port), "-U", "sd", "-d", database, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private static func runPG(_ tool: String, _ arguments: [String], asRoot: Bool) throws {
        let path = bin.appendingPathComponent(tool).path
        if asRoot {
            try run("/usr/sbin/runuser", ["-u", "postgres", "--", path] + arguments)
        } else {
            try run(path, arguments)
        }
    }

    /// Runs a tool to its end (bounded) and returns its stdout; a failure throws with its stderr. Output
    /// goes through files: a tool that leaves a daemon (pg_ctl) would hold a pipe open forever.
    @discardableResult
    static func run(_ executable: String, _ arguments: [String], timeout: Double = 60) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sd-run-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("out").path, err = dir.appendingPathComponent("err").path
        let pid = try Spawn.start(executable, arguments, stdout: out, stderr: err)
        guard let status = Spawn.wait(pid, timeout: timeout) else {
            kill(pid, SIGKILL)
            _ = Spawn.wait(pid, timeout: 5)
            throw NSError(domain: "TestPostgres", code: -1, userInfo: [NSLocalizedDescriptionKey: "\(executable) ran past \(timeout) s"])
        }
        let stdout = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        guard status == 0 else {
            let stderr = (try? String(contentsOfFile: err, encoding: .utf8)) ?? ""
            throw NSError(domain: "TestPostgres", code: Int(status), userInfo: [
                NSLocalizedDescriptionKey: "\(executable) \(arguments.joined(separator: " ")) failed (\(status)): \(stderr)"])
        }
        return stdout
    }

    /// A port nothing listens on now (bound to 0 and released).
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw NSError(domain: "TestPostgres", code: 1) }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard bound else { throw NSError(domain: "TestPostgres", code: 2) }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}

/// Child processes by posix_spawn and waitpid. Foundation's `Process.waitUntilExit` never returned here
/// when called from a test's async context (the child was already a zombie), so the queue tests do not use it.
enum Spawn {
    /// Starts `executable` with stdin from /dev/null and stdout, stderr into the files named; returns its pid.
    static func start(_ executable: String, _ arguments: [String], stdout: String, stderr: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var pid = pid_t()
        let rc = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        guard rc == 0 else {
            throw NSError(domain: "Spawn", code: Int(rc), userInfo: [NSLocalizedDescriptionKey: "cannot start \(executable): \(String(cString: strerror(rc)))"])
        }
        return pid
    }

    /// Waits up to `timeout` seconds for `pid` to end and reaps it: its exit status (128 + N when killed by
    /// signal N), or nil while it still runs.
    static func wait(_ pid: pid_t, timeout: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { return status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f) }
            if r < 0 { return -1 }
            if Date() >= deadline { return nil }
            usleep(10_000)
        }
    }
}

/// An `sd` process (front or worker) for the queue tests, stopped at the end whatever happened.
final class SDChild: @unchecked Sendable {
    let pid: pid_t
    let stdout: URL
    let stderr: URL
    private let lock = NSLock()
    private var exitStatus: Int32?

    static var executable: URL? {
        var candidates: [URL] = []
        if let exe = Bundle.main.executableURL { candidates.append(exe.deletingLastPathComponent()) }
        candidates.append(Bundle.main.bundleURL)
        candidates.append(Bundle.main.bundleURL.deletingLastPathComponent())
        for c in Bundle.allBundles.map(\.bundleURL) { candidates.append(c.deletingLastPathComponent()) }
        return candidates.map { $0.appendingPathComponent("sd") }.first { FileManager.default.isExecutableFile(atPath: $0.path) }
    }

    init(_ arguments: [String], folder: URL, label: String) throws {
        guard let sd = Self.executable else { throw XCTSkip("sd executable not built next to the tests") }
        stdout = folder.appendingPathComponent("\(label).out")
        stderr = folder.appendingPathComponent("\(label).err")
        pid = try Spawn.start(sd.path, arguments, stdout: stdout.path, stderr: stderr.path)
    }

    var output: String { (try? String(contentsOf: stdout, encoding: .utf8)) ?? "" }
    var errors: String { (try? String(contentsOf: stderr, encoding: .utf8)) ?? "" }

    /// The exit status once it ended (reaped here), nil while it runs.
    func status(waiting timeout: Double = 0) -> Int32? {
        lock.withLock {
            if exitStatus == nil { exitStatus = Spawn.wait(pid, timeout: timeout) }
            return exitStatus
        }
    }

    var isRunning: Bool { status() == nil }

    /// Waits (bounded) for `text` on stdout; fails with the process's stderr if it never comes.
    func waitFor(_ text: String, timeout: Double = 60) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if output.contains(text) { return }
            if !isRunning { break }
            usleep(50_000)
        }
        throw NSError(domain: "SDChild", code: 1, userInfo: [NSLocalizedDescriptionKey: "no \"\(text)\" from sd: \(errors.suffix(2000))"])
    }

    /// The port printed by `sd serve --port 0`.
    var port: Int? {
        guard let range = output.range(of: "listening on http://127.0.0.1:") else { return nil }
        return Int(output[range.upperBound...].prefix { $0.isNumber })
    }

    func kill(_ signal: Int32) {
        if isRunning { Foundation.kill(pid, signal) }
    }

    /// SIGTERM, then SIGKILL if it has not ended within `timeout`; returns the exit status.
    @discardableResult
    func stop(timeout: Double = 20) -> Int32 {
        kill(SIGTERM)
        if let s = status(waiting: timeout) { return s }
        kill(SIGKILL)
        return status(waiting: 10) ?? -1
    }
}
