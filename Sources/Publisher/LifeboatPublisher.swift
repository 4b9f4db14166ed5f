import AMQP
import Events
import Logging

/// What other systems (and Lifeboat's own CLI) embed to send requests: typed messages in,
/// confirmed publishes out. Every send returns only once the broker has stored the message.
public final class LifeboatPublisher: Sendable {
    public let confirming: ConfirmingPublisher

    public init(settings: AMQPSettings, topology: Topology = LifeboatTopology.core, logger: Logger = Logger(label: "lifeboat.publisher")) {
        confirming = ConfirmingPublisher(settings: settings, topology: topology, options: .init(name: "lifeboat-publisher"), logger: logger)
    }

    public func send(_ request: InboundRequest) async throws(AMQPError) {
        try await confirming.publish(.request(request))
    }

    public func send(_ request: BackupRequest) async throws(AMQPError) { try await send(.backup(request)) }
    public func send(_ request: RestoreRequest) async throws(AMQPError) { try await send(.restore(request)) }
    public func send(_ request: CancelRequest) async throws(AMQPError) { try await send(.cancel(request)) }

    public func publish(_ task: TaskEvent) async throws(AMQPError) {
        try await confirming.publish(.task(task))
    }

    /// Publishes several messages and returns once all are confirmed (or throws the first failure).
    public func publishAll(_ messages: [OutgoingMessage]) async throws(AMQPError) {
        try await confirming.publishAll(messages)
    }

    public func shutdown() async {
        await confirming.shutdown()
    }
}
