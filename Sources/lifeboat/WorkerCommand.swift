import ArgumentParser
import Dispatch
import Foundation
import Logging
import Workers

struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Run a worker: consume requests and OpenStack notifications until SIGTERM or SIGINT.")

    func run() async throws {
        bootstrapLogging(defaultLevel: .info)
        let configuration = try WorkerConfiguration.fromEnvironment()
        let logger = Logger(label: "lifeboat.worker")
        logger.info("starting", metadata: ["broker": "\(configuration.amqp)", "prefetch": "\(configuration.prefetch)",
                                           "notifications": "\(configuration.notificationSources.map(\.exchange))",
                                           "repository": "\(configuration.repositoryPath ?? "none: requests are only accepted")"])
        let worker = try Worker(configuration: configuration, logger: logger)
        // SIGTERM (a container stop) and SIGINT: stop taking deliveries, finish those in hand.
        let signals = [SIGTERM, SIGINT].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number)
            source.setEventHandler {
                logger.notice("signal received, shutting down", metadata: ["signal": "\(number)"])
                Task { await worker.shutdown() }
            }
            source.resume()
            return source
        }
        await worker.run()
        signals.forEach { $0.cancel() }
        logger.info("stopped")
    }
}
