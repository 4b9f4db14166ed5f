import AMQP
import Events
import Logging
import Publisher

/// How every consumer of Lifeboat ends a delivery: publish what it caused, with confirms, and
/// only then acknowledge; or dead-letter it with a reason and report that; or, when publishing
/// fails, give it back to its queue. Shared by the intake and the task runner.
struct DeliverySettler: Sendable {
    let publisher: LifeboatPublisher
    let logger: Logger

    /// Returns whether the delivery was acknowledged (false: it went back to its queue).
    @discardableResult
    func settle(_ delivery: InboundDelivery, publishing messages: [OutgoingMessage]) async -> Bool {
        do {
            try await publisher.publishAll(messages)
            delivery.ack()
            return true
        } catch {
            logger.warning("publishing failed, returning the delivery to its queue", metadata: ["error": "\(error)"])
            delivery.reject(requeue: true)
            return false
        }
    }

    /// The delivery, unchanged, to the dead-letter queue with `reason`, and a `rejected` result.
    @discardableResult
    func reject(_ delivery: InboundDelivery, reason: String, job: JobReference?) async -> Bool {
        let rejected = RejectedMessage(messageId: delivery.delivery.properties.messageId, exchange: delivery.delivery.exchange,
                                       routingKey: delivery.delivery.routingKey, queue: delivery.queue,
                                       deadLetterQueue: LifeboatTopology.Queue.deadLetters)
        logger.notice("message rejected", metadata: ["queue": "\(delivery.queue)", "reason": "\(reason)",
                                                     "message_id": "\(rejected.messageId ?? "-")"])
        return await settle(delivery, publishing: [
            .deadLetter(of: delivery.delivery, queue: delivery.queue, reason: reason),
            .result(JobResult(job: job, status: .rejected, reason: reason, rejected: rejected)),
        ])
    }
}
