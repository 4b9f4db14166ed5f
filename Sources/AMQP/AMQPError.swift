import CRabbitMQ

/// What went wrong talking to the broker, in words an operator can act on.
public enum AMQPError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalidSettings(String)
    /// TCP, TLS or login failed; `detail` says which and why.
    case connectFailed(String)
    /// The connection died (socket closed, heartbeat missed, broker shut down).
    case connectionLost(String)
    /// The broker closed the channel, e.g. 404 for a missing exchange, 406 for a queue
    /// declared with other arguments.
    case channelClosed(code: UInt16, text: String)
    case connectionClosed(code: UInt16, text: String)
    /// The broker refused a published message (basic.nack).
    case nacked
    /// A `mandatory` message matched no queue (basic.return): it was not stored anywhere.
    case unroutable(exchange: String, routingKey: String, replyText: String)
    case protocolError(String)
    /// The publisher or consumer was shut down before the operation completed.
    case shutDown
    /// No confirm within the publish timeout (the broker or the link is stuck).
    case timedOut(String)

    public var description: String {
        switch self {
        case .invalidSettings(let text): "invalid AMQP settings: \(text)"
        case .connectFailed(let text): "cannot connect to the broker: \(text)"
        case .connectionLost(let text): "connection to the broker lost: \(text)"
        case .channelClosed(let code, let text): "the broker closed the channel (\(code)): \(text)"
        case .connectionClosed(let code, let text): "the broker closed the connection (\(code)): \(text)"
        case .nacked: "the broker refused the message (nack)"
        case .unroutable(let exchange, let key, let text):
            "no queue is bound to exchange \"\(exchange)\" for routing key \"\(key)\" (\(text)): the message was not stored"
        case .protocolError(let text): "AMQP protocol error: \(text)"
        case .shutDown: "the AMQP client is shut down"
        case .timedOut(let text): "timed out: \(text)"
        }
    }

    /// Whether a new connection may fix it (as opposed to a configuration or message error).
    public var isConnectionFailure: Bool {
        switch self {
        case .connectFailed, .connectionLost, .connectionClosed: true
        default: false
        }
    }

    static func status(_ status: Int32) -> String {
        String(cString: amqp_error_string2(status))
    }
}
