import AMQP
import Events
import Foundation
import Logging
import Publisher
import Synchronization

/// Where messages enter Lifeboat: requests from other systems and OpenStack notifications.
///
/// Every delivery ends in exactly one of three ways, and is acknowledged only after what it
/// caused is confirmed by the broker:
/// - understood → its handler's messages are published (a job's `accepted` result and first tasks);
/// - not Lifeboat's business (a notification about a flavor) → acknowledged and counted;
/// - unreadable or refused → copied unchanged to the dead-letter queue with the reason in its
///   headers, and a `rejected` result published saying why.
/// If publishing fails (broker gone), the delivery is returned to its queue, never dropped.
public final class Intake: Sendable {
    public struct Counts: Sendable, Equatable {
        public var accepted = 0
        public var rejected = 0
        public var notificationsHandled = 0
        public var notificationsIgnored = 0
        public var requeued = 0
    }

    private let consumer: AMQPConsumer
    private let settler: DeliverySettler
    private let requests: any RequestHandler
    private let notifications: any NotificationHandler
    private let logger: Logger
    private let counts = Mutex(Counts())

    public var currentCounts: Counts { counts.withLock { $0 } }

    public init(consumer: AMQPConsumer, publisher: LifeboatPublisher, requests: any RequestHandler,
                notifications: any NotificationHandler, logger: Logger) {
        self.consumer = consumer
        self.settler = DeliverySettler(publisher: publisher, logger: logger)
        self.requests = requests
        self.notifications = notifications
        self.logger = logger
    }

    /// Handles deliveries until the consumer stops. They are handled concurrently; the
    /// consumer's prefetch bounds how many are in hand at once.
    public func run() async {
        await withDiscardingTaskGroup { group in
            for await delivery in consumer.deliveries {
                group.addTask { await self.handle(delivery) }
            }
        }
    }

    func handle(_ delivery: InboundDelivery) async {
        switch delivery.queue {
        case LifeboatTopology.Queue.notifications:
            await handleNotification(delivery)
        default:
            await handleRequest(delivery)
        }
    }

    private func handleRequest(_ delivery: InboundDelivery) async {
        let request: InboundRequest
        do {
            request = try InboundRequest.decode(delivery.body)
        } catch {
            await reject(delivery, reason: error.description, job: nil)
            return
        }
        let messages: [OutgoingMessage]
        do {
            messages = try await requests.plan(request)
        } catch let refused as RequestRefused {
            await reject(delivery, reason: refused.reason, job: request.job)
            return
        } catch {
            // Not the message's fault (a lookup failed): back to the queue, to be tried again.
            logger.warning("planning failed, returning the request to its queue",
                           metadata: ["request": "\(request.requestId)", "error": "\(error)"])
            requeue(delivery)
            return
        }
        await settle(delivery, publishing: messages, outcome: "accepted") { $0.accepted += 1 }
    }

    private func handleNotification(_ delivery: InboundDelivery) async {
        let event: InstanceEvent
        let notification: OsloNotification
        do {
            notification = try OsloNotification.decode(delivery.body)
            guard let instanceEvent = try InstanceEvent(notification) else {
                delivery.ack()
                counts.withLock { $0.notificationsIgnored += 1 }
                WorkerMetrics.intake("ignored")
                return
            }
            event = instanceEvent
        } catch {
            await reject(delivery, reason: error.description, job: nil)
            return
        }
        do {
            let messages = try await notifications.handle(event, notification: notification)
            await settle(delivery, publishing: messages, outcome: "notification") { $0.notificationsHandled += 1 }
        } catch {
            logger.warning("notification handling failed, returning it to its queue",
                           metadata: ["event": "\(notification.eventType)", "instance": "\(event.instanceId)", "error": "\(error)"])
            requeue(delivery)
        }
    }

    private func reject(_ delivery: InboundDelivery, reason: String, job: JobReference?) async {
        if await settler.reject(delivery, reason: reason, job: job) {
            counts.withLock { $0.rejected += 1 }
            WorkerMetrics.intake("rejected")
        } else {
            requeued()
        }
    }

    private func settle(_ delivery: InboundDelivery, publishing messages: [OutgoingMessage], outcome: String,
                        count: @Sendable (inout Counts) -> Void) async {
        if await settler.settle(delivery, publishing: messages) {
            counts.withLock { count(&$0) }
            WorkerMetrics.intake(outcome)
        } else {
            requeued()
        }
    }

    private func requeue(_ delivery: InboundDelivery) {
        delivery.reject(requeue: true)
        requeued()
    }

    private func requeued() {
        counts.withLock { $0.requeued += 1 }
        WorkerMetrics.intake("requeued")
    }
}
