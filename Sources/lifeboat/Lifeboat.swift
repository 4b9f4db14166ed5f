import ArgumentParser
import Foundation

@main
struct Lifeboat: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lifeboat",
        abstract: "Backup and restore for OpenStack virtual machines, as event-driven workers on RabbitMQ.",
        discussion: """
            The broker comes from LIFEBOAT_AMQP_URL (amqp:// or amqps://), its password from
            LIFEBOAT_AMQP_PASSWORD_FILE, TLS settings from LIFEBOAT_AMQP_CA_FILE and friends.
            See the README's configuration table.
            """,
        subcommands: [WorkerCommand.self, BackupCommand.self, RestoreCommand.self, CancelCommand.self, SendCommand.self,
                      WatchCommand.self, InventoryCommand.self, RepositoryCommand.self])
}

import Logging

/// Log lines go to standard error, at LIFEBOAT_LOG_LEVEL (trace … critical) or the command's default:
/// a worker tells what it does; a command a person types stays quiet unless something is wrong.
func bootstrapLogging(defaultLevel: Logger.Level) {
    let level = ProcessInfo.processInfo.environment["LIFEBOAT_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? defaultLevel
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = level
        return handler
    }
}
