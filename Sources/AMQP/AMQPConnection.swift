import CRabbitMQ
import Foundation

/// Method ids from the AMQP 0-9-1 spec; librabbitmq defines them as multi-line macros,
/// which Swift does not import.
enum Method {
    static let connectionClose: UInt32 = 0x000A_0032
    static let connectionCloseOk: UInt32 = 0x000A_0033
    static let connectionBlocked: UInt32 = 0x000A_003C
    static let connectionUnblocked: UInt32 = 0x000A_003D
    static let channelClose: UInt32 = 0x0014_0028
    static let channelCloseOk: UInt32 = 0x0014_0029
    static let basicCancel: UInt32 = 0x003C_001E
    static let basicReturn: UInt32 = 0x003C_0032
    static let basicDeliver: UInt32 = 0x003C_003C
    static let basicAck: UInt32 = 0x003C_0050
    static let basicNack: UInt32 = 0x003C_0078
}

/// Something the broker sent without being asked.
public enum InboundEvent: Sendable {
    case delivery(Delivery)
    /// Publisher confirm: every tag up to `tag` when `multiple`.
    case ack(tag: UInt64, multiple: Bool)
    case nack(tag: UInt64, multiple: Bool)
    /// Arrives just before the ack of the same (unroutable, mandatory) message.
    case returned(ReturnedMessage)
    /// The broker cancelled our consumer (its queue was deleted, or the node holding it left).
    case consumerCancelled(tag: String)
    /// Resource alarm (memory, disk): publishing will block until unblocked.
    case blocked(reason: String)
    case unblocked
}

/// One connection to the broker with one channel, owned by exactly one thread.
///
/// rabbitmq-c is not thread-safe and its calls block, so this type is deliberately not
/// `Sendable`: the publisher and each consumer create theirs on a thread of their own
/// (see `BrokerThread`) and never hand it to Swift's cooperative pool.
public final class AMQPConnection {
    public let settings: AMQPSettings
    let state: amqp_connection_state_t
    static let channel: amqp_channel_t = 1
    private var isOpen = false
    private var destroyed = false
    private var channelOpen = false
    private var nextPublishTag: UInt64 = 1
    public private(set) var confirmsEnabled = false

    /// Connects, logs in and opens the channel; all of it bounded by the connect timeout.
    public init(settings: AMQPSettings) throws(AMQPError) {
        self.settings = settings
        guard let state = amqp_new_connection() else { throw .connectFailed("out of memory") }
        self.state = state
        do {
            try open()
        } catch {
            destroy()
            throw error
        }
    }

    deinit {
        close()
    }

    private func open() throws(AMQPError) {
        let socket: OpaquePointer?
        if let tls = settings.tls {
            socket = amqp_ssl_socket_new(state)
            guard let socket else { throw .connectFailed("cannot create a TLS socket") }
            guard amqp_ssl_socket_set_cacert(socket, tls.caCertificatePath) == AMQP_STATUS_OK.rawValue else {
                throw .connectFailed("cannot read the CA bundle \(tls.caCertificatePath)")
            }
            amqp_ssl_socket_set_verify_peer(socket, tls.verifyPeer ? 1 : 0)
            amqp_ssl_socket_set_verify_hostname(socket, tls.verifyHostname ? 1 : 0)
            if let cert = tls.clientCertificatePath, let key = tls.clientKeyPath {
                guard amqp_ssl_socket_set_key(socket, cert, key) == AMQP_STATUS_OK.rawValue else {
                    throw .connectFailed("cannot read the client certificate \(cert) or its key")
                }
            }
        } else {
            socket = amqp_tcp_socket_new(state)
            guard socket != nil else { throw .connectFailed("cannot create a socket") }
        }
        var timeout = timeval(seconds: settings.connectTimeoutSeconds)
        let status = amqp_socket_open_noblock(socket, settings.host, Int32(settings.port), &timeout)
        guard status == AMQP_STATUS_OK.rawValue else {
            throw .connectFailed("\(settings.host):\(settings.port): \(AMQPError.status(status))")
        }
        _ = amqp_set_handshake_timeout(state, &timeout)
        var rpcTimeout = timeval(seconds: 30)
        _ = amqp_set_rpc_timeout(state, &rpcTimeout)

        let arena = CArena()
        var properties = arena.table([
            "connection_name": .string(settings.connectionName),
            "product": .string("Lifeboat"),
            "capabilities": .table([
                "publisher_confirms": .bool(true), "consumer_cancel_notify": .bool(true),
                "connection.blocked": .bool(true), "basic.nack": .bool(true),
            ]),
        ])
        let reply: amqp_rpc_reply_t
        if settings.tls?.clientCertificatePath != nil && settings.password.value.isEmpty {
            reply = lifeboat_amqp_login_external(state, settings.virtualHost, 0, 131_072, Int32(settings.heartbeatSeconds), &properties, settings.username)
        } else {
            reply = lifeboat_amqp_login_plain(state, settings.virtualHost, 0, 131_072, Int32(settings.heartbeatSeconds), &properties,
                                              settings.username, settings.password.value)
        }
        do {
            try check(reply, "login as \(settings.username) to vhost \(settings.virtualHost)")
        } catch {
            // The broker answers a bad password by closing the socket (ACCESS_REFUSED).
            switch error {
            case .connectionClosed(let code, let text): throw .connectFailed("login refused (\(code)): \(text)")
            case .connectionLost(let text): throw .connectFailed(text + " (wrong credentials or vhost?)")
            default: throw error
            }
        }
        isOpen = true
        try openChannel()
    }

    /// Reopens the channel after the broker closed it (a 404 or 406 ends a channel, not the connection).
    public func openChannel() throws(AMQPError) {
        try ensureUsable()
        _ = amqp_channel_open(state, Self.channel)
        try check(amqp_get_rpc_reply(state), "open channel")
        channelOpen = true
        nextPublishTag = 1
        if confirmsEnabled {
            confirmsEnabled = false
            try enableConfirms()
        }
    }

    /// Closes politely (so the broker logs no error), then frees the connection.
    public func close() {
        if isOpen && !destroyed {
            var quick = timeval(seconds: 2)
            _ = amqp_set_rpc_timeout(state, &quick)
            if channelOpen { _ = amqp_channel_close(state, Self.channel, AMQP_REPLY_SUCCESS) }
            _ = amqp_connection_close(state, AMQP_REPLY_SUCCESS)
        }
        destroy()
    }

    /// Drops the connection without the closing handshake: what a crash looks like to the broker.
    public func abandon() {
        destroy()
    }

    /// Frees the C state; after this every call fails with `connectionLost` instead of touching it.
    private func destroy() {
        isOpen = false
        channelOpen = false
        guard !destroyed else { return }
        destroyed = true
        amqp_destroy_connection(state)
    }

    public var isUsable: Bool { !destroyed && isOpen }

    private func ensureUsable() throws(AMQPError) {
        guard isUsable else { throw .connectionLost("the connection is closed") }
    }

    public var socketDescriptor: Int32 { destroyed ? -1 : amqp_get_sockfd(state) }

    /// Frames already read from the socket: a `poll` on the socket would not see them.
    public var hasBufferedInput: Bool {
        !destroyed && (amqp_frames_enqueued(state) != 0 || amqp_data_in_buffer(state) != 0)
    }

    // MARK: Synchronous methods (RPCs)

    public func declare(_ exchange: ExchangeSpec) throws(AMQPError) {
        try ensureUsable()
        let arena = CArena()
        _ = amqp_exchange_declare(state, Self.channel, arena.bytes(exchange.name), arena.bytes(exchange.kind.rawValue),
                                  exchange.passive ? 1 : 0, exchange.durable ? 1 : 0, exchange.autoDelete ? 1 : 0,
                                  exchange.internal ? 1 : 0, arena.table(exchange.arguments))
        try check(amqp_get_rpc_reply(state), "declare exchange \"\(exchange.name)\"")
    }

    /// Returns the number of messages ready in the queue.
    @discardableResult
    public func declare(_ queue: QueueSpec) throws(AMQPError) -> UInt32 {
        try ensureUsable()
        let arena = CArena()
        let ok = amqp_queue_declare(state, Self.channel, arena.bytes(queue.name), queue.passive ? 1 : 0, queue.durable ? 1 : 0,
                                    queue.exclusive ? 1 : 0, queue.autoDelete ? 1 : 0, arena.table(queue.arguments))
        try check(amqp_get_rpc_reply(state), "declare queue \"\(queue.name)\"")
        return ok?.pointee.message_count ?? 0
    }

    public func bind(_ binding: BindingSpec) throws(AMQPError) {
        try ensureUsable()
        let arena = CArena()
        _ = amqp_queue_bind(state, Self.channel, arena.bytes(binding.queue), arena.bytes(binding.exchange),
                            arena.bytes(binding.routingKey), arena.table([:]))
        try check(amqp_get_rpc_reply(state), "bind queue \"\(binding.queue)\" to \"\(binding.exchange)\" with \"\(binding.routingKey)\"")
    }

    /// Returns how many messages were removed.
    @discardableResult
    public func purge(queue: String) throws(AMQPError) -> UInt32 {
        try ensureUsable()
        let arena = CArena()
        let ok = amqp_queue_purge(state, Self.channel, arena.bytes(queue))
        try check(amqp_get_rpc_reply(state), "purge queue \"\(queue)\"")
        return ok?.pointee.message_count ?? 0
    }

    public func deleteQueue(_ queue: String) throws(AMQPError) {
        try ensureUsable()
        let arena = CArena()
        _ = amqp_queue_delete(state, Self.channel, arena.bytes(queue), 0, 0)
        try check(amqp_get_rpc_reply(state), "delete queue \"\(queue)\"")
    }

    /// At most `count` unacknowledged deliveries on this channel: bounds a worker's memory and
    /// lets other workers take the rest.
    public func setPrefetch(_ count: UInt16) throws(AMQPError) {
        try ensureUsable()
        _ = amqp_basic_qos(state, Self.channel, 0, count, 0)
        try check(amqp_get_rpc_reply(state), "set prefetch \(count)")
    }

    public func enableConfirms() throws(AMQPError) {
        guard !confirmsEnabled else { return }
        _ = amqp_confirm_select(state, Self.channel)
        try check(amqp_get_rpc_reply(state), "enable publisher confirms")
        confirmsEnabled = true
    }

    /// Starts a consumer with manual acknowledgement; returns its tag.
    public func consume(queue: String, consumerTag: String = "", exclusive: Bool = false) throws(AMQPError) -> String {
        try ensureUsable()
        let arena = CArena()
        let ok = amqp_basic_consume(state, Self.channel, arena.bytes(queue), arena.bytes(consumerTag), 0, 0, exclusive ? 1 : 0, arena.table([:]))
        try check(amqp_get_rpc_reply(state), "consume from queue \"\(queue)\"")
        guard let ok else { throw .protocolError("no consume-ok for queue \"\(queue)\"") }
        return CCopy.string(ok.pointee.consumer_tag)
    }

    /// One message from a queue, without a consumer (basic.get); nil when the queue is empty.
    /// For tools and tests: a consumer is the efficient way to read a stream.
    public func get(queue: String) throws(AMQPError) -> Delivery? {
        try ensureUsable()
        let arena = CArena()
        let reply = amqp_basic_get(state, Self.channel, arena.bytes(queue), 0)
        try check(reply, "get from queue \"\(queue)\"")
        guard reply.reply.id == 0x003C_0047 /* basic.get-ok */, let decoded = reply.reply.decoded else { return nil }
        let ok = decoded.assumingMemoryBound(to: amqp_basic_get_ok_t.self).pointee
        let (properties, body) = try readContent(what: "basic.get-ok")
        return Delivery(deliveryTag: ok.delivery_tag, redelivered: ok.redelivered != 0, exchange: CCopy.string(ok.exchange),
                        routingKey: CCopy.string(ok.routing_key), consumerTag: "", properties: properties, body: body)
    }

    // MARK: Asynchronous methods

    /// Sends basic.publish and returns the delivery tag its confirm will carry (0 without confirms).
    /// Does not wait: confirms arrive later through `nextEvent`.
    public func publish(_ message: OutgoingMessage) throws(AMQPError) -> UInt64 {
        try ensureUsable()
        let arena = CArena()
        var properties = message.properties.cValue(in: arena)
        let status: Int32 = message.body.withUnsafeBytes { body in
            let bytes = amqp_bytes_t(len: body.count, bytes: UnsafeMutableRawPointer(mutating: body.baseAddress))
            return amqp_basic_publish(state, Self.channel, arena.bytes(message.exchange), arena.bytes(message.routingKey),
                                      message.mandatory ? 1 : 0, 0, &properties, bytes)
        }
        guard status == AMQP_STATUS_OK.rawValue else {
            throw .connectionLost("publish to \"\(message.exchange)\": \(AMQPError.status(status))")
        }
        guard confirmsEnabled else { return 0 }
        defer { nextPublishTag += 1 }
        return nextPublishTag
    }

    public func ack(_ deliveryTag: UInt64, multiple: Bool = false) throws(AMQPError) {
        try ensureUsable()
        let status = amqp_basic_ack(state, Self.channel, deliveryTag, multiple ? 1 : 0)
        guard status == AMQP_STATUS_OK.rawValue else { throw .connectionLost("ack: \(AMQPError.status(status))") }
    }

    /// Negative acknowledgement: back to the queue (`requeue`), or to the queue's dead-letter exchange.
    public func reject(_ deliveryTag: UInt64, requeue: Bool) throws(AMQPError) {
        try ensureUsable()
        let status = amqp_basic_nack(state, Self.channel, deliveryTag, 0, requeue ? 1 : 0)
        guard status == AMQP_STATUS_OK.rawValue else { throw .connectionLost("nack: \(AMQPError.status(status))") }
    }

    /// Waits at most `timeout` seconds (0 = only what is already there) for the next unsolicited
    /// event; nil when none came. Heartbeats are sent and checked inside this call, so a thread
    /// that owns a connection calls it at least every heartbeat/2 seconds.
    public func nextEvent(timeout: Double) throws(AMQPError) -> InboundEvent? {
        try ensureUsable()
        while true {
            amqp_maybe_release_buffers(state)
            var frame = amqp_frame_t()
            var tv = timeval(seconds: timeout)
            let status = amqp_simple_wait_frame_noblock(state, &frame, &tv)
            if status == AMQP_STATUS_TIMEOUT.rawValue { return nil }
            guard status == AMQP_STATUS_OK.rawValue else {
                destroy()
                throw .connectionLost(AMQPError.status(status))
            }
            guard frame.frame_type == 1 /* method */ else { continue }  // stray content frames: skip
            if let event = try event(from: frame.payload.method) { return event }
        }
    }

    private func event(from method: amqp_method_t) throws(AMQPError) -> InboundEvent? {
        switch method.id {
        case Method.basicDeliver:
            let m = method.decoded.assumingMemoryBound(to: amqp_basic_deliver_t.self).pointee
            let tag = m.delivery_tag, redelivered = m.redelivered != 0
            let exchange = CCopy.string(m.exchange), routingKey = CCopy.string(m.routing_key)
            let consumerTag = CCopy.string(m.consumer_tag)
            let (properties, body) = try readContent(what: "delivery")
            return .delivery(Delivery(deliveryTag: tag, redelivered: redelivered, exchange: exchange, routingKey: routingKey,
                                      consumerTag: consumerTag, properties: properties, body: body))
        case Method.basicAck:
            let m = method.decoded.assumingMemoryBound(to: amqp_basic_ack_t.self).pointee
            return .ack(tag: m.delivery_tag, multiple: m.multiple != 0)
        case Method.basicNack:
            let m = method.decoded.assumingMemoryBound(to: amqp_basic_nack_t.self).pointee
            return .nack(tag: m.delivery_tag, multiple: m.multiple != 0)
        case Method.basicReturn:
            let m = method.decoded.assumingMemoryBound(to: amqp_basic_return_t.self).pointee
            let code = m.reply_code, text = CCopy.string(m.reply_text)
            let exchange = CCopy.string(m.exchange), routingKey = CCopy.string(m.routing_key)
            let (properties, _) = try readContent(what: "returned message")
            return .returned(ReturnedMessage(replyCode: code, replyText: text, exchange: exchange, routingKey: routingKey, properties: properties))
        case Method.basicCancel:
            let m = method.decoded.assumingMemoryBound(to: amqp_basic_cancel_t.self).pointee
            return .consumerCancelled(tag: CCopy.string(m.consumer_tag))
        case Method.connectionBlocked:
            let m = method.decoded.assumingMemoryBound(to: amqp_connection_blocked_t.self).pointee
            return .blocked(reason: CCopy.string(m.reason))
        case Method.connectionUnblocked:
            return .unblocked
        case Method.channelClose:
            let m = method.decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
            let code = m.reply_code, text = CCopy.string(m.reply_text)
            var ok = amqp_channel_close_ok_t()
            _ = amqp_send_method(state, Self.channel, Method.channelCloseOk, &ok)
            channelOpen = false
            throw .channelClosed(code: code, text: text)
        case Method.connectionClose:
            let m = method.decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            let code = m.reply_code, text = CCopy.string(m.reply_text)
            var ok = amqp_connection_close_ok_t()
            _ = amqp_send_method(state, 0, Method.connectionCloseOk, &ok)
            destroy()
            throw .connectionClosed(code: code, text: text)
        default:
            return nil
        }
    }

    /// The header and body frames that follow a deliver, get-ok or return.
    private func readContent(what: String) throws(AMQPError) -> (MessageProperties, Data) {
        var message = amqp_message_t()
        let reply = amqp_read_message(state, Self.channel, &message, 0)
        try check(reply, "read \(what)")
        defer { amqp_destroy_message(&message) }
        let body = message.body.len > 0 ? Data(bytes: message.body.bytes, count: message.body.len) : Data()
        return (MessageProperties(message.properties), body)
    }

    /// Turns an RPC reply into our error, answering the broker's close so the connection or
    /// channel is left in a known state.
    private func check(_ reply: amqp_rpc_reply_t, _ context: String) throws(AMQPError) {
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            return
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            let text = AMQPError.status(reply.library_error)
            if reply.library_error != AMQP_STATUS_TIMEOUT.rawValue, isOpen { destroy() }
            throw reply.library_error == AMQP_STATUS_TIMEOUT.rawValue
                ? .timedOut("\(context): no answer from the broker") : .connectionLost("\(context): \(text)")
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            switch reply.reply.id {
            case Method.channelClose:
                let m = reply.reply.decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
                var ok = amqp_channel_close_ok_t()
                _ = amqp_send_method(state, Self.channel, Method.channelCloseOk, &ok)
                channelOpen = false
                throw .channelClosed(code: m.reply_code, text: "\(context): \(CCopy.string(m.reply_text))")
            case Method.connectionClose:
                let m = reply.reply.decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
                let text = CCopy.string(m.reply_text)
                var ok = amqp_connection_close_ok_t()
                _ = amqp_send_method(state, 0, Method.connectionCloseOk, &ok)
                if isOpen { destroy() }
                throw .connectionClosed(code: m.reply_code, text: "\(context): \(text)")
            default:
                throw .protocolError("\(context): unexpected method 0x\(String(reply.reply.id, radix: 16))")
            }
        default:
            throw .protocolError("\(context): no reply")
        }
    }
}

extension timeval {
    init(seconds: Double) {
        let whole = max(0, seconds.rounded(.down))
        self.init(tv_sec: Int(whole), tv_usec: Int((max(0, seconds) - whole) * 1_000_000))
    }
}
