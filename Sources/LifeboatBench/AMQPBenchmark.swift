import AMQP
import Foundation

/// Publish-with-confirms then consume-and-ack of the same messages through Lifeboat's own
/// `ConfirmingPublisher` and `AMQPConsumer`, the way the workers use them.
///
/// Both phases are timed from their first message to their last settlement, not from process
/// start: connection setup is a fixed cost that would hide the per-message one being compared
/// with pika, and pika's baseline (scripts/bench/pika_baseline.py) is timed the same way.
struct AMQPBenchmark: Sendable {
    struct Configuration: Sendable {
        var url: String
        var messages: Int
        var size: Int
        var prefetch: Int
        var window: Int
        var batch: Int
    }

    struct Result: Sendable {
        var configuration: Configuration
        var publishSeconds: Double
        var consumeSeconds: Double
        var redelivered: Int
        /// Acked messages the broker put back in the queue when the consumer closed.
        var requeuedAtClose: Int

        var json: String {
            let c = configuration
            let fields: [(String, String)] = [
                ("client", "\"lifeboat\""), ("messages", "\(c.messages)"), ("size", "\(c.size)"),
                ("window", "\(c.window)"), ("batch", "\(c.batch)"), ("prefetch", "\(c.prefetch)"),
                ("publish_seconds", String(format: "%.3f", publishSeconds)),
                ("publish_msgs_per_s", String(format: "%.1f", Double(c.messages) / publishSeconds)),
                ("consume_seconds", String(format: "%.3f", consumeSeconds)),
                ("consume_msgs_per_s", String(format: "%.1f", Double(c.messages) / consumeSeconds)),
                ("redelivered", "\(redelivered)"), ("requeued_at_close", "\(requeuedAtClose)"),
            ]
            return "{" + fields.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}"
        }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    let configuration: Configuration
    let settings: AMQPSettings
    let queue = "lifeboat-bench-\(UUID().uuidString.lowercased())"

    init(_ configuration: Configuration) throws {
        self.configuration = configuration
        settings = try AMQPSettings(url: configuration.url)
    }

    func run() async throws -> Result {
        let topology = Topology(queues: [.quorum(queue)])
        do {
            let publishSeconds = try await publish(topology)
            let stored = try await Admin.messageCount(queue, settings)
            guard stored == configuration.messages else {
                throw Failure(description: "\(stored) messages in the queue after publishing \(configuration.messages)")
            }
            let (consumeSeconds, redelivered) = try await consume(topology)
            // Every message was acked, but RabbitMQ may still put back a few whose acks came just
            // before the channel closed (quorum queues, rabbitmq-server#10327): counted, not hidden.
            let requeued = try await Admin.messageCount(queue, settings)
            try await Admin.delete(queue, settings)
            return Result(configuration: configuration, publishSeconds: publishSeconds, consumeSeconds: consumeSeconds,
                          redelivered: redelivered, requeuedAtClose: requeued)
        } catch {
            try? await Admin.delete(queue, settings)
            throw error
        }
    }

    /// Batches of `batch` messages, a few batches in flight at once so the publisher's window
    /// never runs dry between one batch's last confirm and the next batch's first publish.
    private func publish(_ topology: Topology) async throws -> Double {
        let c = configuration
        let publisher = ConfirmingPublisher(settings: settings, topology: topology,
                                            options: .init(window: c.window, name: "bench-publisher"))
        // The publisher connects and declares the queue on its own thread; the clock starts
        // once it has, like pika's after its connection and queue_declare.
        try await awaitConnected { publisher.connections > 0 }
        let body = Data((0..<c.size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
        let message = OutgoingMessage(exchange: "", routingKey: queue, body: body,
                                      properties: MessageProperties(contentType: "application/octet-stream", persistent: true))
        let batches = stride(from: 0, to: c.messages, by: c.batch).map { min(c.batch, c.messages - $0) }
        let depth = max(2, c.window / c.batch + 1)

        let clock = ContinuousClock()
        let start = clock.now
        let failures = await withTaskGroup(of: Int.self) { group in
            var failures = 0
            for (index, count) in batches.enumerated() {
                if index >= depth, let failed = await group.next() { failures += failed }
                group.addTask {
                    let results = await publisher.publish(Array(repeating: message, count: count))
                    return results.count { if case .failure = $0 { true } else { false } }
                }
            }
            for await failed in group { failures += failed }
            return failures
        }
        let elapsed = clock.now - start
        await publisher.shutdown()
        guard failures == 0 else { throw Failure(description: "\(failures) messages were not confirmed") }
        return elapsed.seconds
    }

    /// Acks each delivery as it is handled (one ack per message, as pika's baseline does); timed
    /// from the first delivery until the consumer has shut down, which waits for every ack to be
    /// sent and makes a round trip after them.
    private func consume(_ topology: Topology) async throws -> (seconds: Double, redelivered: Int) {
        let c = configuration
        let consumer = AMQPConsumer(settings: settings, topology: topology, queues: [queue],
                                    prefetch: UInt16(clamping: c.prefetch), name: "bench-consumer")
        let clock = ContinuousClock()
        var start: ContinuousClock.Instant?
        var received = 0, redelivered = 0
        for await delivery in consumer.deliveries {
            if start == nil { start = clock.now }
            guard delivery.body.count == c.size else {
                throw Failure(description: "a delivery of \(delivery.body.count) bytes, \(c.size) were published")
            }
            if delivery.delivery.redelivered { redelivered += 1 }
            received += 1
            delivery.ack()
            if received == c.messages { break }
        }
        await consumer.shutdown()
        guard let start, received == c.messages else {
            throw Failure(description: "the consumer stopped after \(received) of \(c.messages) deliveries")
        }
        return ((clock.now - start).seconds, redelivered)
    }

    private func awaitConnected(_ connected: () -> Bool) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(15)
        while !connected() {
            guard clock.now < deadline else { throw Failure(description: "no connection to \(settings) within 15 s") }
            try await Task.sleep(for: .milliseconds(5))
        }
    }
}

extension Duration {
    var seconds: Double {
        let (whole, attoseconds) = components
        return Double(whole) + Double(attoseconds) / 1e18
    }
}
