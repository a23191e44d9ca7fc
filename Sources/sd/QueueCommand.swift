import ArgumentParser
import Foundation
import Logging
import StableDiffusionServer

/// `sd queue`: the shared job queue's administration.
struct QueueCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "queue", abstract: "Manage the shared PostgreSQL job queue (docs/SCALING.md).",
        subcommands: [QueueMigrateCommand.self])
}

/// `sd queue migrate`: creates or upgrades the queue's tables (versioned, in one transaction; safe to repeat).
struct QueueMigrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "migrate", abstract: "Create or upgrade the queue's schema.")

    @OptionGroup var queue: QueueArguments

    func run() throws {
        guard let url = try queue.url() else { throw ValidationError("--queue (or SD_QUEUE_URL) is required") }
        var quiet = Logger(label: "sd-queue")
        quiet.logLevel = .warning
        let logger = quiet
        try runBlocking {
            let (before, after) = try await PostgresQueue.migrate(url, logger: logger)
            let line = before == after ? "sd queue: schema at version \(after) (nothing to do) on \(url)\n"
                                       : "sd queue: schema migrated from version \(before) to \(after) on \(url)\n"
            FileHandle.standardOutput.write(Data(line.utf8))
        }
    }
}
