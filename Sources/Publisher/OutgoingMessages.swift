import AMQP
import Events
import Foundation

/// How each Lifeboat message goes on the wire: exchange, routing key, properties.
extension OutgoingMessage {
    static func json(_ body: Data, exchange: String, routingKey: String, type: String, messageId: String,
                     headers: [String: HeaderValue] = [:], priority: UInt8? = nil) -> OutgoingMessage {
        OutgoingMessage(
            exchange: exchange, routingKey: routingKey, body: body,
            properties: MessageProperties(contentType: "application/json", headers: headers, persistent: true, priority: priority,
                                          messageId: messageId, timestamp: UInt64(Date().timeIntervalSince1970), type: type,
                                          appId: "lifeboat"))
    }

    /// A request, as another system sends it. The request id doubles as message id: the
    /// idempotency key travels where any AMQP tool can see it.
    public static func request(_ request: InboundRequest) -> OutgoingMessage {
        switch request {
        case .backup(let r):
            json(MessageCodec.encode(r), exchange: LifeboatTopology.Exchange.requests, routingKey: "request.backup",
                 type: BackupRequest.messageType, messageId: r.requestId, priority: r.priority.map(UInt8.init))
        case .restore(let r):
            json(MessageCodec.encode(r), exchange: LifeboatTopology.Exchange.requests, routingKey: "request.restore",
                 type: RestoreRequest.messageType, messageId: r.requestId, priority: UInt8(r.priority ?? RestoreRequest.defaultPriority))
        case .cancel(let r):
            json(MessageCodec.encode(r), exchange: LifeboatTopology.Exchange.requests, routingKey: "request.cancel",
                 type: CancelRequest.messageType, messageId: r.requestId)
        }
    }

    /// A task: `task.<kind>` to the task queue, or, for an urgent job, `urgent.<kind>` to the
    /// urgent one. The job's priority is also the message's (what RabbitMQ 4 orders by).
    public static func task(_ task: TaskEvent, attempt: Int = 1) -> OutgoingMessage {
        json(MessageCodec.encode(task), exchange: LifeboatTopology.Exchange.tasks,
             routingKey: "\(task.job.isUrgent ? "urgent" : "task").\(task.kind.rawValue)",
             type: TaskEvent.messageType, messageId: task.taskId, headers: [LifeboatTopology.Header.attempt: .int(Int64(attempt))],
             priority: task.job.priority.map(UInt8.init))
    }

    /// The same task, parked in the delay queue for its `attempt` (2 = first retry), which
    /// returns it to the queue it came from.
    public static func retry(_ task: TaskEvent, attempt: Int) -> OutgoingMessage {
        let delays = LifeboatTopology.retryDelaysSeconds
        let delay = delays[min(max(attempt - 2, 0), delays.count - 1)]
        var message = OutgoingMessage.task(task, attempt: attempt)
        message.exchange = ""
        message.routingKey = LifeboatTopology.Queue.taskRetry(afterSeconds: delay, urgent: task.job.isUrgent)
        return message
    }

    /// An inventory report (`InventoryReport`, encoded by the worker) for monitors.
    public static func inventory(_ body: Data, messageId: String) -> OutgoingMessage {
        json(body, exchange: LifeboatTopology.Exchange.inventory, routingKey: "inventory.report", type: "inventory.report", messageId: messageId)
    }

    public static func result(_ result: JobResult) -> OutgoingMessage {
        json(MessageCodec.encode(result), exchange: LifeboatTopology.Exchange.results, routingKey: result.routingKey,
             type: JobResult.messageType, messageId: result.resultId)
    }

    /// The refused delivery, byte for byte, with why and whence in its headers.
    public static func deadLetter(of delivery: Delivery, queue: String, reason: String) -> OutgoingMessage {
        var properties = delivery.properties
        properties.persistent = true
        properties.headers[LifeboatTopology.Header.reason] = .string(reason)
        properties.headers[LifeboatTopology.Header.sourceQueue] = .string(queue)
        properties.headers[LifeboatTopology.Header.originalExchange] = .string(delivery.exchange)
        properties.headers[LifeboatTopology.Header.originalRoutingKey] = .string(delivery.routingKey)
        properties.headers[LifeboatTopology.Header.rejectedAt] = .string(Timestamp.format(Date()))
        return OutgoingMessage(exchange: LifeboatTopology.Exchange.deadLetters, routingKey: queue, body: delivery.body, properties: properties)
    }
}
