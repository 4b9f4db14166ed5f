/// An exchange to declare.
public struct ExchangeSpec: Sendable, Hashable {
    public enum Kind: String, Sendable { case direct, topic, fanout, headers }

    public var name: String
    public var kind: Kind
    public var durable: Bool
    public var autoDelete: Bool
    public var `internal`: Bool
    /// Only check that it exists (for exchanges another service owns and declares).
    public var passive: Bool
    public var arguments: [String: HeaderValue]

    public init(name: String, kind: Kind, durable: Bool = true, autoDelete: Bool = false, internal: Bool = false,
                passive: Bool = false, arguments: [String: HeaderValue] = [:]) {
        self.name = name
        self.kind = kind
        self.durable = durable
        self.autoDelete = autoDelete
        self.internal = `internal`
        self.passive = passive
        self.arguments = arguments
    }
}

/// A queue to declare.
public struct QueueSpec: Sendable, Hashable {
    public var name: String
    public var durable: Bool
    public var exclusive: Bool
    public var autoDelete: Bool
    public var passive: Bool
    public var arguments: [String: HeaderValue]

    public init(name: String, durable: Bool = true, exclusive: Bool = false, autoDelete: Bool = false, passive: Bool = false,
                arguments: [String: HeaderValue] = [:]) {
        self.name = name
        self.durable = durable
        self.exclusive = exclusive
        self.autoDelete = autoDelete
        self.passive = passive
        self.arguments = arguments
    }

    /// A replicated, durable queue for work that must not be lost (RabbitMQ quorum queue).
    ///
    /// - deadLetterExchange: where the broker moves a message rejected without requeue, or
    ///   redelivered more than `deliveryLimit` times (a poison message that crashes workers).
    /// - The dead-lettering is at-least-once (RabbitMQ 3.10+), which needs `reject-publish` overflow.
    public static func quorum(_ name: String, deadLetterExchange: String? = nil, deadLetterRoutingKey: String? = nil,
                              deliveryLimit: Int? = nil, messageTTLMilliseconds: Int? = nil, maxLength: Int? = nil) -> QueueSpec {
        var arguments: [String: HeaderValue] = ["x-queue-type": .string("quorum")]
        if let deadLetterExchange {
            arguments["x-dead-letter-exchange"] = .string(deadLetterExchange)
            arguments["x-dead-letter-strategy"] = .string("at-least-once")
            arguments["x-overflow"] = .string("reject-publish")
        }
        if let deadLetterRoutingKey { arguments["x-dead-letter-routing-key"] = .string(deadLetterRoutingKey) }
        if let deliveryLimit { arguments["x-delivery-limit"] = .int(Int64(deliveryLimit)) }
        if let messageTTLMilliseconds { arguments["x-message-ttl"] = .int(Int64(messageTTLMilliseconds)) }
        if let maxLength {
            arguments["x-max-length"] = .int(Int64(maxLength))
            if deadLetterExchange == nil { arguments["x-overflow"] = .string("drop-head") }
        }
        return QueueSpec(name: name, arguments: arguments)
    }
}

public struct BindingSpec: Sendable, Hashable {
    public var queue: String
    public var exchange: String
    public var routingKey: String

    public init(queue: String, exchange: String, routingKey: String) {
        self.queue = queue
        self.exchange = exchange
        self.routingKey = routingKey
    }
}

/// Everything a component needs to exist on the broker. Declared on every (re)connect:
/// declarations are idempotent, and a broker that lost its definitions gets them back.
public struct Topology: Sendable, Hashable {
    public var exchanges: [ExchangeSpec]
    public var queues: [QueueSpec]
    public var bindings: [BindingSpec]

    public init(exchanges: [ExchangeSpec] = [], queues: [QueueSpec] = [], bindings: [BindingSpec] = []) {
        self.exchanges = exchanges
        self.queues = queues
        self.bindings = bindings
    }

    public func declare(on connection: AMQPConnection) throws(AMQPError) {
        for exchange in exchanges { try connection.declare(exchange) }
        for queue in queues { try connection.declare(queue) }
        for binding in bindings { try connection.bind(binding) }
    }

    public static func + (lhs: Topology, rhs: Topology) -> Topology {
        Topology(exchanges: lhs.exchanges + rhs.exchanges.filter { !lhs.exchanges.contains($0) },
                 queues: lhs.queues + rhs.queues.filter { !lhs.queues.contains($0) },
                 bindings: lhs.bindings + rhs.bindings.filter { !lhs.bindings.contains($0) })
    }
}
