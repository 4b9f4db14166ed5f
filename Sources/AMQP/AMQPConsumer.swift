import Foundation
import Logging
import Synchronization

/// A delivery handed to async code, with the means to settle it.
///
/// Settling posts a command to the consumer's own thread (the only one that may touch its
/// connection). A delivery from a connection that has since been lost cannot be settled; the
/// broker has already put it back in the queue, and another worker will get it again.
public struct InboundDelivery: Sendable {
    public let delivery: Delivery
    /// The queue it came from.
    public let queue: String
    let generation: Int
    let mailbox: Mailbox<AMQPConsumer.Command>

    public var body: Data { delivery.body }

    /// Done with it: the broker forgets it. Call only after what it caused is durable.
    public func ack() {
        mailbox.post(.ack(delivery.deliveryTag, generation: generation))
    }

    /// Give it back: to the queue (`requeue`), or to the queue's dead-letter exchange.
    public func reject(requeue: Bool) {
        mailbox.post(.reject(delivery.deliveryTag, requeue: requeue, generation: generation))
    }
}

/// Consumes one or more queues on a connection owned by a thread of its own.
///
/// On every (re)connect it declares `topology`, sets the prefetch and starts consuming, so a
/// broker restart costs a reconnect with backoff and nothing else. Deliveries come out of
/// `deliveries`; heartbeats are serviced by the thread however long a delivery takes to handle.
public final class AMQPConsumer: Sendable {
    enum Command: Sendable {
        case ack(UInt64, generation: Int)
        case reject(UInt64, requeue: Bool, generation: Int)
        case stop(grace: Double)
    }

    public let deliveries: AsyncStream<InboundDelivery>
    private let continuation: AsyncStream<InboundDelivery>.Continuation
    private let mailbox = Mailbox<Command>()
    private let finished = Completion()
    private let consuming = Completion()
    private let connectedCount = Counter()

    /// How many times a connection was established (1 after the first): lets tests and
    /// metrics see reconnects.
    public var connections: Int { connectedCount.value }

    public init(settings: AMQPSettings, topology: Topology, queues: [String], prefetch: UInt16,
                name: String = "amqp-consumer", logger: Logger = Logger(label: "lifeboat.amqp")) {
        (deliveries, continuation) = AsyncStream.makeStream(of: InboundDelivery.self)
        let consuming = self.consuming
        let loop = ConsumerLoop(settings: settings, topology: topology, queues: queues, prefetch: prefetch,
                                mailbox: mailbox, continuation: continuation, connectedCount: connectedCount,
                                onConsuming: { consuming.finish() }, logger: logger)
        let finished = self.finished
        startBrokerThread(name: name) {
            loop.run()
            consuming.finish()
            finished.finish()
        }
    }

    /// Returns once the topology is declared and the consumer registered (or the consumer has
    /// stopped): a watcher binds its queue before it sends the request it wants to follow.
    public func waitUntilConsuming() async {
        await consuming.wait()
    }

    /// Stops taking deliveries, waits (up to `grace` seconds) for the ones in hand to be
    /// settled, then closes; unsettled ones go back to the queue.
    public func shutdown(grace: Double = 30) async {
        mailbox.post(.stop(grace: grace))
        await finished.wait()
    }
}

/// The consumer thread's state; touched by that thread only.
private final class ConsumerLoop: @unchecked Sendable {
    let settings: AMQPSettings
    let topology: Topology
    let queues: [String]
    let prefetch: UInt16
    let mailbox: Mailbox<AMQPConsumer.Command>
    let continuation: AsyncStream<InboundDelivery>.Continuation
    let connectedCount: Counter
    let onConsuming: @Sendable () -> Void
    let logger: Logger

    var connection: AMQPConnection?
    var generation = 0
    var queueByTag: [String: String] = [:]
    var unsettled = UnsettledDeliveries()
    var stopping = false
    var stopDeadline = Date.distantFuture
    var backoff = Backoff()

    init(settings: AMQPSettings, topology: Topology, queues: [String], prefetch: UInt16, mailbox: Mailbox<AMQPConsumer.Command>,
         continuation: AsyncStream<InboundDelivery>.Continuation, connectedCount: Counter,
         onConsuming: @escaping @Sendable () -> Void, logger: Logger) {
        self.settings = settings
        self.topology = topology
        self.queues = queues
        self.prefetch = prefetch
        self.mailbox = mailbox
        self.continuation = continuation
        self.connectedCount = connectedCount
        self.onConsuming = onConsuming
        self.logger = logger
    }

    func run() {
        defer {
            if let connection, connection.isUsable {
                // A round trip after the last acks, before the channel closes: RabbitMQ settles
                // quorum-queue acks asynchronously, and acks racing a channel close were seen
                // to come back as redeliveries.
                try? connection.setPrefetch(prefetch)
                connection.close()
            }
            continuation.finish()
        }
        while true {
            handleCommands()
            if stopping && (unsettled.isEmpty || Date() >= stopDeadline || connection == nil) { return }
            guard let connection else {
                connect()
                continue
            }
            do {
                var handled = 0
                while handled < 256, let event = try connection.nextEvent(timeout: 0) {
                    handle(event)
                    handled += 1
                }
            } catch {
                lost(error)
                continue
            }
            mailbox.wakeup.wait(for: connection, timeout: min(1, Double(settings.heartbeatSeconds) / 4))
        }
    }

    private func connect() {
        do {
            let connection = try AMQPConnection(settings: settings)
            try topology.declare(on: connection)
            try connection.setPrefetch(prefetch)
            queueByTag = [:]
            for queue in queues {
                queueByTag[try connection.consume(queue: queue)] = queue
            }
            self.connection = connection
            generation += 1
            unsettled.reset()
            backoff.reset()
            connectedCount.increment()
            onConsuming()
            logger.info("consuming", metadata: ["queues": "\(queues.joined(separator: ","))", "broker": "\(settings)"])
        } catch {
            let delay = backoff.next()
            logger.warning("cannot consume, retrying", metadata: ["error": "\(error)", "retry_in_s": "\(String(format: "%.1f", delay))"])
            sleepUnlessStopped(delay)
        }
    }

    private func sleepUnlessStopped(_ seconds: Double) {
        let until = Date().addingTimeInterval(seconds)
        while !stopping, Date() < until {
            mailbox.wakeup.wait(for: nil, timeout: until.timeIntervalSinceNow)
            handleCommands()
        }
    }

    private func lost(_ error: any Error) {
        logger.warning("connection lost, reconnecting", metadata: ["error": "\(error)"])
        connection?.abandon()
        connection = nil
        unsettled.reset()
    }

    private func handle(_ event: InboundEvent) {
        switch event {
        case .delivery(let delivery):
            if stopping {
                try? connection?.reject(delivery.deliveryTag, requeue: true)
                return
            }
            unsettled.delivered(delivery.deliveryTag)
            continuation.yield(InboundDelivery(delivery: delivery, queue: queueByTag[delivery.consumerTag] ?? "",
                                               generation: generation, mailbox: mailbox))
        case .consumerCancelled(let tag):
            // The queue went away or moved: reconnecting declares it again and resumes.
            logger.warning("broker cancelled the consumer", metadata: ["queue": "\(queueByTag[tag] ?? tag)"])
            connection?.close()
            connection = nil
        case .blocked(let reason):
            logger.warning("broker blocked the connection", metadata: ["reason": "\(reason)"])
        default:
            break
        }
    }

    private func handleCommands() {
        for command in mailbox.take() {
            switch command {
            case .ack(let tag, let gen):
                guard gen == generation, connection != nil else { continue }  // settled by the broker already
                unsettled.requestAck(tag)
            case .reject(let tag, let requeue, let gen):
                guard gen == generation, let connection, unsettled.remove(tag) else { continue }
                do {
                    try connection.reject(tag, requeue: requeue)
                } catch {
                    lost(error)
                }
            case .stop(let grace):
                guard !stopping else { continue }
                stopping = true
                stopDeadline = Date().addingTimeInterval(grace)
                continuation.finish()
            }
        }
        sendAcks()
    }

    /// The acks asked for in this pass, as few `basic.ack` frames as cover them (see `UnsettledDeliveries`).
    private func sendAcks() {
        guard let connection else { return }
        let (upTo, upToCount, singles) = unsettled.takeAcks()
        do {
            if let upTo { try connection.ack(upTo, multiple: upToCount > 1) }
            for tag in singles { try connection.ack(tag) }
        } catch {
            lost(error)
        }
    }
}
