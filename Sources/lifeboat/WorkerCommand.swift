import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import Workers

struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Run a worker: consume requests, notifications and tasks until SIGTERM or SIGINT.")

    func run() async throws {
        bootstrapLogging(defaultLevel: .info)
        let configuration = try WorkerConfiguration.fromEnvironment()
        let logger = Logger(label: "lifeboat.worker")
        logger.info("starting", metadata: ["broker": "\(configuration.amqp)", "prefetch": "\(configuration.prefetch)",
                                           "notifications": "\(configuration.notificationSources.map(\.exchange))",
                                           "repository": "\(configuration.repositoryPath ?? "none: requests are only accepted")"])
        if let address = ProcessInfo.processInfo.environment["LIFEBOAT_METRICS_ADDRESS"], !address.isEmpty {
            try MetricsEndpoint.start(address: address)
            logger.info("serving metrics", metadata: ["address": "\(address)"])
        }
        let worker = try Worker(configuration: configuration, logger: logger)
        // SIGTERM (a container stop) and SIGINT: stop taking deliveries, finish those in hand.
        let group = ServiceGroup(configuration: .init(services: [worker], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        logger.info("stopped")
    }
}
