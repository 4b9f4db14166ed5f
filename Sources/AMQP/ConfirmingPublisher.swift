import Foundation
import Logging
import Synchronization

/// Publishes with publisher confirms on a connection owned by a thread of its own.
///
/// `publish` returns only when the broker has taken responsibility for the message (for a
/// quorum queue: written on a majority). Confirms are pipelined: up to `window` messages are on
/// the wire at once, never one round trip per message. Every message is `mandatory` by default,
/// so one that no queue takes fails with `.unroutable` instead of vanishing.
///
/// When the connection drops, messages not yet confirmed are published again after the
/// reconnect (at-least-once: a consumer may see a duplicate, never a loss; each message keeps
/// its `messageId` so duplicates can be recognised).
public final class ConfirmingPublisher: Sendable {
    public struct Options: Sendable {
        /// Messages published and not yet confirmed, at most.
        public var window: Int
        /// A message not confirmed within this many seconds (connection down included) fails.
        public var confirmTimeout: Double
        public var name: String

        public init(window: Int = 2048, confirmTimeout: Double = 60, name: String = "amqp-publisher") {
            self.window = window
            self.confirmTimeout = confirmTimeout
            self.name = name
        }
    }

    typealias Completion = @Sendable (Result<Void, AMQPError>) -> Void

    struct Pending: Sendable {
        var message: OutgoingMessage
        var completion: Completion
        var deadline: Date
        var channelFailures = 0
        var nacks = 0
        /// Not before this time: a nacked message waits a little before it is published again.
        var notBefore = Date.distantPast
    }

    enum Command: Sendable {
        case publish(Pending)
        case stop(grace: Double)
    }

    private let mailbox = Mailbox<Command>()
    private let finished = AMQP.Completion()
    private let options: Options
    private let connectedCount = Counter()

    /// How many times a connection was established.
    public var connections: Int { connectedCount.value }

    public init(settings: AMQPSettings, topology: Topology = Topology(), options: Options = Options(),
                logger: Logger = Logger(label: "lifeboat.amqp")) {
        self.options = options
        let loop = PublisherLoop(settings: settings, topology: topology, options: options, mailbox: mailbox,
                                 connectedCount: connectedCount, logger: logger)
        let finished = self.finished
        startBrokerThread(name: options.name) {
            loop.run()
            finished.finish()
        }
    }

    /// Publishes one message and waits for its confirm.
    public func publish(_ message: OutgoingMessage) async throws(AMQPError) {
        let result: Result<Void, AMQPError> = await withCheckedContinuation { continuation in
            mailbox.post(.publish(pending(message) { continuation.resume(returning: $0) }))
        }
        try result.get()
    }

    /// Publishes many messages pipelined and waits for all confirms; one result per message, in order.
    public func publish(_ messages: [OutgoingMessage]) async -> [Result<Void, AMQPError>] {
        guard !messages.isEmpty else { return [] }
        return await withCheckedContinuation { continuation in
            let collector = ResultCollector(count: messages.count) { continuation.resume(returning: $0) }
            mailbox.post(contentsOf: messages.enumerated().map { index, message in
                .publish(pending(message) { collector.set(index, $0) })
            })
        }
    }

    /// Publishes many messages and throws the first failure, if any.
    public func publishAll(_ messages: [OutgoingMessage]) async throws(AMQPError) {
        for result in await publish(messages) { try result.get() }
    }

    /// Waits up to `grace` seconds for messages in flight to be confirmed, fails the rest, closes.
    public func shutdown(grace: Double = 10) async {
        mailbox.post(.stop(grace: grace))
        await finished.wait()
    }

    private func pending(_ message: OutgoingMessage, completion: @escaping Completion) -> Pending {
        var message = message
        if message.properties.messageId == nil {
            message.properties.messageId = UUID().uuidString.lowercased()
        }
        return Pending(message: message, completion: completion, deadline: Date().addingTimeInterval(options.confirmTimeout))
    }
}

/// Gathers the results of a batch and reports once all are in.
private final class ResultCollector: Sendable {
    private let state: Mutex<(results: [Result<Void, AMQPError>?], remaining: Int)>
    private let done: @Sendable ([Result<Void, AMQPError>]) -> Void

    init(count: Int, done: @escaping @Sendable ([Result<Void, AMQPError>]) -> Void) {
        state = Mutex((Array(repeating: nil, count: count), count))
        self.done = done
    }

    func set(_ index: Int, _ result: Result<Void, AMQPError>) {
        let complete: [Result<Void, AMQPError>]? = state.withLock { state in
            state.results[index] = result
            state.remaining -= 1
            return state.remaining == 0 ? state.results.map { $0! } : nil
        }
        if let complete { done(complete) }
    }
}

/// The publisher thread's state; touched by that thread only.
private final class PublisherLoop: @unchecked Sendable {
    typealias Pending = ConfirmingPublisher.Pending

    struct InFlight {
        var pending: Pending
        var returned: ReturnedMessage?
    }

    let settings: AMQPSettings
    let topology: Topology
    let options: ConfirmingPublisher.Options
    let mailbox: Mailbox<ConfirmingPublisher.Command>
    let connectedCount: Counter
    let logger: Logger

    var connection: AMQPConnection?
    var queued: [Pending] = []
    var queuedHead = 0
    var inFlight: [UInt64: InFlight] = [:]
    var lowestUnconfirmed: UInt64 = 1
    var knownExchanges: Set<String> = []
    var stopping = false
    var stopDeadline = Date.distantFuture
    var backoff = Backoff()

    init(settings: AMQPSettings, topology: Topology, options: ConfirmingPublisher.Options, mailbox: Mailbox<ConfirmingPublisher.Command>,
         connectedCount: Counter, logger: Logger) {
        self.settings = settings
        self.topology = topology
        self.options = options
        self.mailbox = mailbox
        self.connectedCount = connectedCount
        self.logger = logger
    }

    var queuedCount: Int { queued.count - queuedHead }

    func run() {
        defer {
            connection?.close()
            failAll(.shutDown)
        }
        while true {
            takeCommands()
            if stopping && ((queuedCount == 0 && inFlight.isEmpty) || Date() >= stopDeadline) { return }
            expire()
            guard let connection else {
                if queuedCount > 0 || !stopping { connect() }
                continue
            }
            let canPublishMore: Bool
            do {
                let published = try publishQueued(on: connection)
                while let event = try connection.nextEvent(timeout: 0) { handle(event) }
                canPublishMore = published && queuedCount > 0 && inFlight.count < options.window
            } catch {
                failed(error)
                continue
            }
            if !canPublishMore {
                var timeout = min(0.5, Double(settings.heartbeatSeconds) / 4)
                if queuedHead < queued.count { timeout = min(timeout, max(0.001, queued[queuedHead].notBefore.timeIntervalSinceNow)) }
                mailbox.wakeup.wait(for: connection, timeout: timeout)
            }
        }
    }

    private func takeCommands() {
        for command in mailbox.take() {
            switch command {
            case .publish(let pending):
                if stopping { pending.completion(.failure(.shutDown)) } else { queued.append(pending) }
            case .stop(let grace):
                stopping = true
                stopDeadline = Date().addingTimeInterval(grace)
            }
        }
    }

    private func connect() {
        do {
            let connection = try AMQPConnection(settings: settings)
            try topology.declare(on: connection)
            try connection.enableConfirms()
            self.connection = connection
            knownExchanges = Set(topology.exchanges.map(\.name)).union([""])
            lowestUnconfirmed = 1
            backoff.reset()
            connectedCount.increment()
            logger.info("publisher connected", metadata: ["broker": "\(settings)"])
        } catch {
            let delay = backoff.next()
            logger.warning("publisher cannot connect, retrying", metadata: ["error": "\(error)", "retry_in_s": "\(String(format: "%.1f", delay))"])
            let until = Date().addingTimeInterval(delay)
            while Date() < until && !(stopping && Date() >= stopDeadline) {
                mailbox.wakeup.wait(for: nil, timeout: min(0.5, until.timeIntervalSinceNow))
                takeCommands()
                expire()
            }
        }
    }

    /// Publishes what the window allows; returns false when it must wait for confirms first.
    private func publishQueued(on connection: AMQPConnection) throws(AMQPError) -> Bool {
        while queuedHead < queued.count && inFlight.count < options.window {
            let pending = queued[queuedHead]
            guard pending.notBefore <= Date() else { return false }
            let exchange = pending.message.exchange
            if !knownExchanges.contains(exchange) {
                // Publishing to a missing exchange would close the channel and with it every
                // confirm in flight; a passive declare finds out first and fails just this one.
                // It waits until nothing is in flight, so that a closed channel loses no confirm.
                guard inFlight.isEmpty else { return false }
                do {
                    try connection.declare(ExchangeSpec(name: exchange, kind: .topic, passive: true))
                    knownExchanges.insert(exchange)
                } catch {
                    guard case .channelClosed = error else { throw error }
                    queuedHead += 1
                    pending.completion(.failure(.channelClosed(code: 404, text: "exchange \"\(exchange)\" does not exist")))
                    try reopenChannel(connection)
                    continue
                }
            }
            let tag = try connection.publish(pending.message)
            queuedHead += 1
            inFlight[tag] = InFlight(pending: pending)
        }
        if queuedHead > 1024 && queuedHead * 2 > queued.count {
            queued.removeFirst(queuedHead)
            queuedHead = 0
        }
        return true
    }

    private func handle(_ event: InboundEvent) {
        switch event {
        case .ack(let tag, let multiple):
            settle(tag, multiple: multiple) { entry in
                if let returned = entry.returned {
                    return .failure(.unroutable(exchange: returned.exchange, routingKey: returned.routingKey, replyText: returned.replyText))
                }
                return .success(())
            }
        case .nack(let tag, let multiple):
            // A nack is the broker saying "not now" (a quorum queue electing its leader after a
            // restart, a full queue): publish again after a short backoff, a few times.
            var retry: [Pending] = []
            settle(tag, multiple: multiple) { entry in
                guard entry.pending.nacks < 5 else { return .failure(.nacked) }
                var pending = entry.pending
                pending.nacks += 1
                pending.notBefore = Date().addingTimeInterval(0.2 * pow(2, Double(pending.nacks - 1)))
                retry.append(pending)
                return nil
            }
            queued = retry + queued[queuedHead...]
            queuedHead = 0
        case .returned(let returned):
            // The return comes just before the ack of the same message; match it by message id.
            if let (tag, _) = inFlight.filter({ $0.value.returned == nil && $0.value.pending.message.properties.messageId == returned.properties.messageId })
                .min(by: { $0.key < $1.key }) {
                inFlight[tag]?.returned = returned
            }
        case .blocked(let reason):
            logger.warning("broker blocked publishing", metadata: ["reason": "\(reason)"])
        case .unblocked:
            logger.info("broker unblocked publishing")
        default:
            break
        }
    }

    /// Removes confirmed messages from flight and completes them with `result` (nil: kept for a retry).
    private func settle(_ tag: UInt64, multiple: Bool, _ result: (InFlight) -> Result<Void, AMQPError>?) {
        if multiple {
            var current = lowestUnconfirmed
            while current <= tag {
                if let entry = inFlight.removeValue(forKey: current), let outcome = result(entry) { entry.pending.completion(outcome) }
                current += 1
            }
            lowestUnconfirmed = max(lowestUnconfirmed, tag + 1)
        } else if let entry = inFlight.removeValue(forKey: tag) {
            if let outcome = result(entry) { entry.pending.completion(outcome) }
            while lowestUnconfirmed <= tag && inFlight[lowestUnconfirmed] == nil { lowestUnconfirmed += 1 }
        }
    }

    /// What was in flight goes back to the front of the queue, in its original order, to be
    /// published again; returns how many.
    @discardableResult
    private func requeueInFlight(countingChannelFailure error: AMQPError? = nil) -> Int {
        var unconfirmed = inFlight.sorted { $0.key < $1.key }.map(\.value.pending)
        inFlight = [:]
        if let error {
            // A message the broker refuses outright (e.g. 403 on an internal exchange) would
            // close the channel forever: after three such closures a message fails.
            unconfirmed = unconfirmed.compactMap { pending in
                var pending = pending
                pending.channelFailures += 1
                guard pending.channelFailures < 3 else {
                    pending.completion(.failure(error))
                    return nil
                }
                return pending
            }
        }
        queued = unconfirmed + queued[queuedHead...]
        queuedHead = 0
        return unconfirmed.count
    }

    /// The connection or channel failed.
    private func failed(_ error: AMQPError) {
        if case .channelClosed = error, let connection, connection.isUsable {
            logger.warning("broker closed the publishing channel", metadata: ["error": "\(error)"])
            requeueInFlight(countingChannelFailure: error)
            do {
                try reopenChannel(connection)
                return
            } catch {}
        }
        let unconfirmed = requeueInFlight()
        logger.warning("publisher connection lost, reconnecting", metadata: ["error": "\(error)", "unconfirmed": "\(unconfirmed)"])
        connection?.abandon()
        connection = nil
    }

    /// A new channel: confirms restart at tag 1, so what was in flight is published again on it.
    private func reopenChannel(_ connection: AMQPConnection) throws(AMQPError) {
        requeueInFlight()
        try connection.openChannel()
        lowestUnconfirmed = 1
    }

    /// Fails what waited longer than the confirm timeout, queued or in flight.
    private func expire() {
        let now = Date()
        if queuedHead < queued.count, queued[queuedHead...].contains(where: { $0.deadline <= now }) {
            var kept: [Pending] = []
            for pending in queued[queuedHead...] {
                if pending.deadline <= now {
                    pending.completion(.failure(.timedOut("no confirm from the broker within \(Int(options.confirmTimeout)) s")))
                } else {
                    kept.append(pending)
                }
            }
            queued = kept
            queuedHead = 0
        }
        for (tag, entry) in inFlight where entry.pending.deadline <= now {
            inFlight[tag] = nil
            entry.pending.completion(.failure(.timedOut("no confirm from the broker within \(Int(options.confirmTimeout)) s")))
        }
    }

    private func failAll(_ error: AMQPError) {
        for entry in inFlight.values { entry.pending.completion(.failure(error)) }
        inFlight = [:]
        for pending in queued[queuedHead...] { pending.completion(.failure(error)) }
        queued = []
        queuedHead = 0
    }
}
