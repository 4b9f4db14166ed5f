import AMQP
import Foundation
import Synchronization
import XCTest

/// The AMQP layer against the real RabbitMQ.
final class AMQPTests: XCTestCase {
    func testPublishWithConfirmsThenConsumeWithManualAck() async throws {
        let queue = TestBroker.uniqueName("confirm")
        let topology = Topology(queues: [.quorum(queue)])
        let publisher = ConfirmingPublisher(settings: try TestBroker.settings(), topology: topology)
        let bodies = (0..<500).map { Data("message \($0)".utf8) }
        let results = await publisher.publish(bodies.map { OutgoingMessage(exchange: "", routingKey: queue, body: $0) })
        XCTAssertEqual(results.filter { (try? $0.get()) == nil }.count, 0, "every message is confirmed")
        await publisher.shutdown()
        let ready = try await BrokerChores.count(queue)
        XCTAssertEqual(ready, 500, "confirmed means stored in the queue")

        let consumer = AMQPConsumer(settings: try TestBroker.settings(), topology: topology, queues: [queue], prefetch: 50)
        var received: [Data] = []
        for await delivery in consumer.deliveries {
            XCTAssertEqual(delivery.queue, queue)
            XCTAssertTrue(delivery.delivery.properties.persistent)
            received.append(delivery.body)
            delivery.ack()
            if received.count == bodies.count { break }
        }
        await consumer.shutdown()
        XCTAssertEqual(received, bodies, "all messages, in order, exactly once")
        let left = try await BrokerChores.count(queue)
        XCTAssertEqual(left, 0, "acknowledged messages are gone")
        try await BrokerChores.delete([queue])
    }

    func testStoppingAConsumerKeepsItsAcksAndReturnsTheRest() async throws {
        let queue = TestBroker.uniqueName("stop-early")
        let topology = Topology(queues: [.quorum(queue)])
        let publisher = ConfirmingPublisher(settings: try TestBroker.settings(), topology: topology)
        try await publisher.publishAll((0..<2000).map { OutgoingMessage(exchange: "", routingKey: queue, body: Data("\($0)".utf8)) })
        await publisher.shutdown()
        let consumer = AMQPConsumer(settings: try TestBroker.settings(), topology: topology, queues: [queue], prefetch: 500)
        var acked: Set<Data> = []
        for await delivery in consumer.deliveries {
            delivery.ack()
            acked.insert(delivery.body)
            if acked.count == 1000 { break }
        }
        await consumer.shutdown(grace: 1)
        // A quorum queue counts returned messages a moment after the channel closes.
        var left: UInt32 = 0
        for _ in 0..<50 {
            left = try await BrokerChores.count(queue)
            if left >= 1000 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        XCTAssertEqual(left, 1000, "acknowledged deliveries are gone, the others are back in the queue")
        let rest = Set(try await BrokerChores.drain(queue).map(\.body))
        XCTAssertEqual(rest.count, 1000)
        XCTAssertTrue(rest.isDisjoint(with: acked), "an acknowledged message came back")
        try await BrokerChores.delete([queue])
    }

    func testUnroutableMandatoryMessageFails() async throws {
        let exchange = TestBroker.uniqueName("nowhere")
        let publisher = ConfirmingPublisher(settings: try TestBroker.settings(),
                                            topology: Topology(exchanges: [ExchangeSpec(name: exchange, kind: .topic, durable: false, autoDelete: true)]))
        defer { Task { await publisher.shutdown() } }
        do {
            try await publisher.publish(OutgoingMessage(exchange: exchange, routingKey: "no.queue.bound", body: Data("x".utf8)))
            XCTFail("an unroutable mandatory message must not be reported as published")
        } catch {
            guard case .unroutable(let ex, let key, _) = error else { return XCTFail("unexpected error \(error)") }
            XCTAssertEqual(ex, exchange)
            XCTAssertEqual(key, "no.queue.bound")
            XCTAssertTrue(error.description.contains("not stored"))
        }
    }

    func testMissingExchangeFailsThatMessageOnly() async throws {
        let queue = TestBroker.uniqueName("survivor")
        let publisher = ConfirmingPublisher(settings: try TestBroker.settings(), topology: Topology(queues: [.quorum(queue)]))
        let results = await publisher.publish([
            OutgoingMessage(exchange: "", routingKey: queue, body: Data("before".utf8)),
            OutgoingMessage(exchange: "lifeboat.no-such-exchange", routingKey: "x", body: Data("lost?".utf8)),
            OutgoingMessage(exchange: "", routingKey: queue, body: Data("after".utf8)),
        ])
        await publisher.shutdown()
        XCTAssertNoThrow(try results[0].get())
        XCTAssertThrowsError(try results[1].get()) { error in
            XCTAssertTrue("\(error)".contains("lifeboat.no-such-exchange"), "\(error)")
        }
        XCTAssertNoThrow(try results[2].get())
        let bodies = try await BrokerChores.drain(queue).map { String(decoding: $0.body, as: UTF8.self) }
        XCTAssertEqual(bodies, ["before", "after"])
        try await BrokerChores.delete([queue])
    }

    func testRedeliveryAfterConsumerDiesWithoutAck() async throws {
        let queue = TestBroker.uniqueName("redeliver")
        let topology = Topology(queues: [.quorum(queue)])
        let publisher = ConfirmingPublisher(settings: try TestBroker.settings(), topology: topology)
        try await publisher.publish(OutgoingMessage(exchange: "", routingKey: queue, body: Data("work".utf8)))
        await publisher.shutdown()

        // A consumer takes the message and dies without acknowledging it (no close handshake).
        let settings = try TestBroker.settings()
        let first = try await onThread { () -> Delivery? in
            let connection = try AMQPConnection(settings: settings)
            try connection.setPrefetch(1)
            _ = try connection.consume(queue: queue)
            let deadline = Date().addingTimeInterval(10)
            while Date() < deadline {
                if case .delivery(let delivery)? = try connection.nextEvent(timeout: 0.5) {
                    connection.abandon()
                    return delivery
                }
            }
            return nil
        }
        XCTAssertEqual(first.map { String(decoding: $0.body, as: UTF8.self) }, "work")
        XCTAssertEqual(first?.redelivered, false)

        let consumer = AMQPConsumer(settings: settings, topology: topology, queues: [queue], prefetch: 1)
        var iterator = consumer.deliveries.makeAsyncIterator()
        let second = await iterator.next()
        second?.ack()
        await consumer.shutdown()
        XCTAssertEqual(second.map { String(decoding: $0.body, as: UTF8.self) }, "work")
        XCTAssertEqual(second?.delivery.redelivered, true, "the broker marks it as delivered before")
        try await BrokerChores.delete([queue])
    }

    func testHeartbeatsAreServicedWhileAHandlerIsBusy() async throws {
        let queue = TestBroker.uniqueName("heartbeat")
        let topology = Topology(queues: [.quorum(queue)])
        // A 1 s heartbeat: the broker drops a connection that is silent for 2 s.
        let settings = try TestBroker.settings(heartbeat: 1)
        let publisher = ConfirmingPublisher(settings: settings, topology: topology)
        try await publisher.publish(OutgoingMessage(exchange: "", routingKey: queue, body: Data("slow".utf8)))

        let consumer = AMQPConsumer(settings: settings, topology: topology, queues: [queue], prefetch: 1)
        var iterator = consumer.deliveries.makeAsyncIterator()
        let first = await iterator.next()
        let delivery = try XCTUnwrap(first)
        try await Task.sleep(for: .seconds(5))  // a handler busy for 5 heartbeat periods
        delivery.ack()
        // The publisher sat idle just as long; it must still be connected too.
        try await publisher.publish(OutgoingMessage(exchange: "", routingKey: queue, body: Data("after".utf8)))
        let second = await iterator.next()
        let next = try XCTUnwrap(second)
        XCTAssertEqual(String(decoding: next.body, as: UTF8.self), "after")
        XCTAssertFalse(next.delivery.redelivered)
        next.ack()
        XCTAssertEqual(consumer.connections, 1, "the consumer's connection survived: heartbeats were sent")
        XCTAssertEqual(publisher.connections, 1, "the idle publisher's connection survived")
        await consumer.shutdown()
        await publisher.shutdown()
        let left = try await BrokerChores.count(queue)
        XCTAssertEqual(left, 0, "the late ack reached the broker on the same connection")
        try await BrokerChores.delete([queue])
    }

    func testTLSVerifiesTheBrokerCertificate() async throws {
        guard let dir = TestBroker.tlsDirectory, let port = TestBroker.tlsPort else {
            throw XCTSkip("the test broker's TLS listener is not configured")
        }
        var good = try TestBroker.settings()
        good.host = "localhost"
        good.port = port
        good.tls = AMQPSettings.TLS(caCertificatePath: "\(dir)/ca.pem")
        let queue = TestBroker.uniqueName("tls")
        try await onThread { [good] in
            let connection = try AMQPConnection(settings: good)
            defer { connection.close() }
            try connection.declare(QueueSpec(name: queue, durable: false, autoDelete: true))
        }

        var wrongCA = good
        wrongCA.tls = AMQPSettings.TLS(caCertificatePath: "\(dir)/other-ca.pem")
        do {
            try await onThread { [wrongCA] in _ = try AMQPConnection(settings: wrongCA) }
            XCTFail("a broker certificate from another CA must be refused")
        } catch let error as AMQPError {
            guard case .connectFailed(let text) = error else { return XCTFail("unexpected \(error)") }
            XCTAssertTrue(text.lowercased().contains("ssl") || text.lowercased().contains("verif"), text)
        }

        var wrongName = good
        wrongName.host = "127.0.0.1"  // the certificate names localhost only
        do {
            try await onThread { [wrongName] in _ = try AMQPConnection(settings: wrongName) }
            XCTFail("a certificate for another host name must be refused")
        } catch let error as AMQPError {
            guard case .connectFailed = error else { return XCTFail("unexpected \(error)") }
        }
    }

    func testWrongPasswordIsAClearError() async throws {
        var settings = try TestBroker.settings()
        settings.password = Secret("not-the-password")
        do {
            try await onThread { [settings] in _ = try AMQPConnection(settings: settings) }
            XCTFail("login must fail")
        } catch let error as AMQPError {
            guard case .connectFailed(let text) = error else { return XCTFail("unexpected \(error)") }
            XCTAssertTrue(text.contains("login") || text.contains("credentials"), text)
            XCTAssertFalse("\(error)".contains("not-the-password"), "the password never appears in an error")
        }
    }
}
