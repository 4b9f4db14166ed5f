import CRabbitMQ
import Foundation

/// The AMQP basic properties Lifeboat uses.
public struct MessageProperties: Sendable, Hashable {
    public var contentType: String?
    public var contentEncoding: String?
    public var headers: [String: HeaderValue]
    /// Written to disk by the broker (delivery mode 2). Work and results always are.
    public var persistent: Bool
    public var priority: UInt8?
    public var correlationId: String?
    public var replyTo: String?
    /// Per-message TTL in milliseconds, as AMQP writes it: a decimal string.
    public var expiration: String?
    public var messageId: String?
    /// Seconds since 1970.
    public var timestamp: UInt64?
    public var type: String?
    public var appId: String?

    public init(contentType: String? = "application/json", contentEncoding: String? = nil, headers: [String: HeaderValue] = [:],
                persistent: Bool = true, priority: UInt8? = nil, correlationId: String? = nil, replyTo: String? = nil,
                expiration: String? = nil, messageId: String? = nil, timestamp: UInt64? = nil, type: String? = nil,
                appId: String? = nil) {
        self.contentType = contentType
        self.contentEncoding = contentEncoding
        self.headers = headers
        self.persistent = persistent
        self.priority = priority
        self.correlationId = correlationId
        self.replyTo = replyTo
        self.expiration = expiration
        self.messageId = messageId
        self.timestamp = timestamp
        self.type = type
        self.appId = appId
    }

    func cValue(in arena: CArena) -> amqp_basic_properties_t {
        var p = amqp_basic_properties_t()
        var flags: UInt32 = 0
        func set(_ value: String?, _ flag: Int32, _ field: WritableKeyPath<amqp_basic_properties_t, amqp_bytes_t>) {
            guard let value else { return }
            p[keyPath: field] = arena.bytes(value)
            flags |= UInt32(flag)
        }
        set(contentType, AMQP_BASIC_CONTENT_TYPE_FLAG, \.content_type)
        set(contentEncoding, AMQP_BASIC_CONTENT_ENCODING_FLAG, \.content_encoding)
        set(correlationId, AMQP_BASIC_CORRELATION_ID_FLAG, \.correlation_id)
        set(replyTo, AMQP_BASIC_REPLY_TO_FLAG, \.reply_to)
        set(expiration, AMQP_BASIC_EXPIRATION_FLAG, \.expiration)
        set(messageId, AMQP_BASIC_MESSAGE_ID_FLAG, \.message_id)
        set(type, AMQP_BASIC_TYPE_FLAG, \.type)
        set(appId, AMQP_BASIC_APP_ID_FLAG, \.app_id)
        if !headers.isEmpty {
            p.headers = arena.table(headers)
            flags |= UInt32(AMQP_BASIC_HEADERS_FLAG)
        }
        p.delivery_mode = persistent ? 2 : 1
        flags |= UInt32(AMQP_BASIC_DELIVERY_MODE_FLAG)
        if let priority {
            p.priority = priority
            flags |= UInt32(AMQP_BASIC_PRIORITY_FLAG)
        }
        if let timestamp {
            p.timestamp = timestamp
            flags |= UInt32(AMQP_BASIC_TIMESTAMP_FLAG)
        }
        p._flags = flags
        return p
    }

    init(_ p: amqp_basic_properties_t) {
        func get(_ flag: Int32, _ field: amqp_bytes_t) -> String? {
            p._flags & UInt32(flag) != 0 ? CCopy.string(field) : nil
        }
        self.init(
            contentType: get(AMQP_BASIC_CONTENT_TYPE_FLAG, p.content_type),
            contentEncoding: get(AMQP_BASIC_CONTENT_ENCODING_FLAG, p.content_encoding),
            headers: p._flags & UInt32(AMQP_BASIC_HEADERS_FLAG) != 0 ? CCopy.table(p.headers) : [:],
            persistent: p._flags & UInt32(AMQP_BASIC_DELIVERY_MODE_FLAG) != 0 && p.delivery_mode == 2,
            priority: p._flags & UInt32(AMQP_BASIC_PRIORITY_FLAG) != 0 ? p.priority : nil,
            correlationId: get(AMQP_BASIC_CORRELATION_ID_FLAG, p.correlation_id),
            replyTo: get(AMQP_BASIC_REPLY_TO_FLAG, p.reply_to),
            expiration: get(AMQP_BASIC_EXPIRATION_FLAG, p.expiration),
            messageId: get(AMQP_BASIC_MESSAGE_ID_FLAG, p.message_id),
            timestamp: p._flags & UInt32(AMQP_BASIC_TIMESTAMP_FLAG) != 0 ? p.timestamp : nil,
            type: get(AMQP_BASIC_TYPE_FLAG, p.type),
            appId: get(AMQP_BASIC_APP_ID_FLAG, p.app_id))
    }
}

/// A message to publish.
public struct OutgoingMessage: Sendable, Hashable {
    public var exchange: String
    public var routingKey: String
    public var body: Data
    public var properties: MessageProperties
    /// Unroutable means an error, not a silent drop.
    public var mandatory: Bool

    public init(exchange: String, routingKey: String, body: Data, properties: MessageProperties = MessageProperties(), mandatory: Bool = true) {
        self.exchange = exchange
        self.routingKey = routingKey
        self.body = body
        self.properties = properties
        self.mandatory = mandatory
    }
}

/// A message the broker delivered to one of our consumers.
public struct Delivery: Sendable {
    public var deliveryTag: UInt64
    public var redelivered: Bool
    public var exchange: String
    public var routingKey: String
    public var consumerTag: String
    public var properties: MessageProperties
    public var body: Data
}

/// A message the broker handed back (basic.return) because nothing could take it.
public struct ReturnedMessage: Sendable {
    public var replyCode: UInt16
    public var replyText: String
    public var exchange: String
    public var routingKey: String
    public var properties: MessageProperties
}
