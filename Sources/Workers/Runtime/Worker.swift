import AMQP
import Logging
import Publisher

/// One worker process: the intake on its consumer thread, a confirming publisher on its own,
/// and the handlers between them.
public final class Worker: Sendable {
    public let configuration: WorkerConfiguration
    public let intake: Intake
    private let consumer: AMQPConsumer
    private let publisher: LifeboatPublisher

    public init(configuration: WorkerConfiguration, requests: any RequestHandler = AcceptOnlyRequestHandler(),
                notifications: any NotificationHandler = IgnoringNotificationHandler(),
                logger: Logger = Logger(label: "lifeboat.worker")) {
        self.configuration = configuration
        let topology = LifeboatTopology.withNotifications(configuration.notificationSources)
        publisher = LifeboatPublisher(settings: configuration.amqp, topology: topology, logger: logger)
        consumer = AMQPConsumer(settings: configuration.amqp, topology: topology,
                                queues: [LifeboatTopology.Queue.requests, LifeboatTopology.Queue.notifications],
                                prefetch: configuration.prefetch, name: "lifeboat-intake", logger: logger)
        intake = Intake(consumer: consumer, publisher: publisher, requests: requests, notifications: notifications, logger: logger)
    }

    /// Runs until `shutdown` is called.
    public func run() async {
        await intake.run()
        await publisher.shutdown()
    }

    /// Stops taking deliveries; those in hand finish (or go back to their queue after `grace` seconds).
    public func shutdown(grace: Double = 30) async {
        await consumer.shutdown(grace: grace)
    }

    /// How many times the intake connected to the broker (reconnects show as more than one).
    public var intakeConnections: Int { consumer.connections }
}
