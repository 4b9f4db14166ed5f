import AMQP
import Events
import Foundation
import Publisher
import Synchronization
import Workers
import XCTest

/// The intake, the dead-letter path, retries and reconnects against the real broker.
final class IntakeTests: XCTestCase {
    override func setUp() async throws {
        try await LifeboatQueues.reset()
    }

    func testBadRequestsAreDeadLetteredWithTheirReasonAndReported() async throws {
        let worker = try RunningWorker()
        let publisher = ConfirmingPublisher(settings: try TestBroker.settings(), topology: LifeboatTopology.core)
        let good = BackupRequest(requestId: "req-good", project: "p1", instance: "vm-1", mode: .full)
        let bad: [(id: String, body: String, reason: String)] = [
            ("bad-json", "{\"type\": \"backup.request\", ", "not valid JSON"),
            ("bad-version", #"{"type":"backup.request","version":99,"requestId":"r","project":"p","instance":"i","mode":"full"}"#,
             "version 99 is not supported"),
            ("bad-missing", #"{"type":"backup.request","version":1,"requestId":"r","project":"p","mode":"full"}"#,
             "\"instance\" is missing"),
            ("bad-type", #"{"type":"backup.request","version":1,"requestId":"r","project":"p","instance":7,"mode":"full"}"#,
             "\"instance\" must be a string"),
            ("bad-mode", #"{"type":"backup.request","version":1,"requestId":"r","project":"p","instance":"i","mode":"fast"}"#,
             "\"fast\" is not one of \"full\", \"incremental\""),
            ("bad-kind", #"{"type":"reboot.request","version":1}"#, "unknown message type \"reboot.request\""),
        ]
        var messages = bad.map { item in
            OutgoingMessage(exchange: LifeboatTopology.Exchange.requests, routingKey: "request.backup", body: Data(item.body.utf8),
                            properties: MessageProperties(messageId: item.id))
        }
        messages.append(.request(.backup(good)))
        try await publisher.publishAll(messages)
        await publisher.shutdown()

        let results = try LifeboatQueues.results(try await consume(LifeboatTopology.Queue.results) { $0.count >= bad.count + 1 })
        let deadLetters = try await consume(LifeboatTopology.Queue.deadLetters) { $0.count >= bad.count }
        await worker.stop()

        XCTAssertEqual(results.filter { $0.status == .accepted }.map(\.job?.jobId), ["req-good"])
        let rejected = Dictionary(uniqueKeysWithValues: results.filter { $0.status == .rejected }.map { ($0.rejected?.messageId ?? "?", $0) })
        XCTAssertEqual(Set(rejected.keys), Set(bad.map(\.id)))
        for item in bad {
            let reason = rejected[item.id]?.reason ?? ""
            XCTAssertTrue(reason.contains(item.reason), "\(item.id): \"\(reason)\" should say \(item.reason)")
            XCTAssertEqual(rejected[item.id]?.rejected?.queue, LifeboatTopology.Queue.requests)
        }
        XCTAssertEqual(deadLetters.count, bad.count)
        for letter in deadLetters {
            let id = try XCTUnwrap(letter.properties.messageId)
            let original = try XCTUnwrap(bad.first { $0.id == id })
            XCTAssertEqual(letter.body, Data(original.body.utf8), "dead-lettered unchanged")
            XCTAssertEqual(letter.properties.headers[LifeboatTopology.Header.reason]?.stringValue, rejected[id]?.reason)
            XCTAssertEqual(letter.properties.headers[LifeboatTopology.Header.sourceQueue]?.stringValue, LifeboatTopology.Queue.requests)
            XCTAssertEqual(letter.properties.headers[LifeboatTopology.Header.originalRoutingKey]?.stringValue, "request.backup")
        }
        XCTAssertEqual(worker.worker.intake.currentCounts.rejected, bad.count)
        XCTAssertEqual(worker.worker.intake.currentCounts.accepted, 1)
    }

    func testRealNovaNotificationsAreReadFromLifeboatsOwnQueueOnly() async throws {
        let captures = try Capture.all().filter {
            $0.exchange == "nova" && LifeboatTopology.NotificationSource.nova.routingKeys.contains($0.routingKey)
        }
        XCTAssertGreaterThan(captures.count, 50)
        // The queue Nova's other listeners read, declared the way oslo.messaging declares it.
        let theirs = "versioned_notifications.info"
        try await BrokerChores.declare(Topology(queues: [QueueSpec(name: theirs, durable: false)],
                                                bindings: [BindingSpec(queue: theirs, exchange: "nova", routingKey: theirs)]))
        try await BrokerChores.purge([theirs])
        let worker = try RunningWorker()
        let publisher = ConfirmingPublisher(settings: try TestBroker.settings(), topology: LifeboatTopology.withNotifications([.nova]))
        try await publisher.publishAll(captures.map {
            OutgoingMessage(exchange: $0.exchange, routingKey: $0.routingKey, body: $0.body, properties: MessageProperties(persistent: false))
        })
        await publisher.shutdown()
        let instanceCaptures = captures.filter { $0.name.contains("-instance.") || $0.name.contains("compute.instance") }.count
        for _ in 0..<100 {
            let counts = worker.worker.intake.currentCounts
            if counts.notificationsHandled + counts.notificationsIgnored + counts.rejected >= captures.count { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        await worker.stop()
        let counts = worker.worker.intake.currentCounts
        XCTAssertEqual(counts.rejected, 0, "every real notification is understood")
        XCTAssertEqual(counts.notificationsHandled, instanceCaptures, "each instance notification reaches the handler")
        XCTAssertEqual(counts.notificationsHandled + counts.notificationsIgnored, captures.count)
        let left = try await BrokerChores.count(theirs)
        XCTAssertEqual(Int(left), captures.filter { $0.routingKey == theirs }.count, "Nova's own queue is not consumed")
        try await BrokerChores.delete([theirs])
    }

    func testResultsAreRoutedByProjectInstanceAndJob() async throws {
        let worker = try RunningWorker()
        let watch = TestBroker.uniqueName("watch-project")
        try await BrokerChores.declare(Topology(queues: [QueueSpec(name: watch, durable: false, autoDelete: false)],
                                                bindings: [BindingSpec(queue: watch, exchange: LifeboatTopology.Exchange.results, routingKey: "p-routed.#")]))
        let publisher = LifeboatPublisher(settings: try TestBroker.settings())
        try await publisher.send(BackupRequest(requestId: "job-a", project: "p-routed", instance: "vm-a", mode: .full))
        try await publisher.send(BackupRequest(requestId: "job-b", project: "p-other", instance: "vm-b", mode: .full))
        await publisher.shutdown()
        let mine = try LifeboatQueues.results(try await BrokerChores.collect(watch) { $0.count >= 1 })
        _ = try await consume(LifeboatTopology.Queue.results) { $0.count >= 2 }
        let extra = try await BrokerChores.drain(watch)
        await worker.stop()
        XCTAssertEqual(mine.map(\.job?.jobId), ["job-a"])
        XCTAssertEqual(extra.count, 0, "the other project's result is not routed to this binding")
        XCTAssertEqual(mine.first?.job?.instance, "vm-a")
        try await BrokerChores.delete([watch])
    }

    func testADelayedRetryComesBackAfterItsTTL() async throws {
        let publisher = LifeboatPublisher(settings: try TestBroker.settings())
        let task = TaskEvent(taskId: "job-r.transfer.vda.0", job: JobReference(jobId: "job-r", requestId: "job-r", operation: .backup,
                                                                               project: "p", instance: "i"),
                             kind: .transfer, disk: "vda", range: ByteRange(offset: 0, length: 1 << 20),
                             createdAt: Date(timeIntervalSince1970: 1_795_000_000.25))
        try await publisher.publishAll([.retry(task, attempt: 2)])
        await publisher.shutdown()
        let early = try await BrokerChores.drain(LifeboatTopology.Queue.tasks)
        XCTAssertEqual(early.count, 0, "the retry waits in its delay queue first")

        let arrived = try await BrokerChores.collect(LifeboatTopology.Queue.tasks) { !$0.isEmpty }
        let delivery = try XCTUnwrap(arrived.first)
        XCTAssertEqual(try MessageCodec.decode(TaskEvent.self, from: delivery.body), task)
        XCTAssertEqual(delivery.properties.headers[LifeboatTopology.Header.attempt]?.intValue, 2)
        // The broker's own record says it sat in the 1 s delay queue until it expired.
        guard case .array(let deaths)? = delivery.properties.headers["x-death"], case .table(let death)? = deaths.first else {
            return XCTFail("no x-death header: \(delivery.properties.headers)")
        }
        XCTAssertEqual(death["queue"]?.stringValue, LifeboatTopology.Queue.taskRetry(afterSeconds: 1))
        XCTAssertEqual(death["reason"]?.stringValue, "expired")
    }

    func testBrokerRestartMidStreamLosesNoConfirmedMessage() async throws {
        let queue = TestBroker.uniqueName("restart")
        let topology = Topology(queues: [.quorum(queue)])
        let settings = try TestBroker.settings(heartbeat: 2)
        let publisher = ConfirmingPublisher(settings: settings, topology: topology, options: .init(confirmTimeout: 120))
        let consumer = AMQPConsumer(settings: settings, topology: topology, queues: [queue], prefetch: 100)
        let confirmed = Mutex<Set<String>>([])
        let failures = Mutex<[String]>([])

        let producing = Task {
            for batch in 0..<40 {
                let messages = (0..<100).map { OutgoingMessage(exchange: "", routingKey: queue, body: Data("m-\(batch)-\($0)".utf8)) }
                let results = await publisher.publish(messages)
                for (message, result) in zip(messages, results) {
                    switch result {
                    case .success: confirmed.withLock { _ = $0.insert(String(decoding: message.body, as: UTF8.self)) }
                    case .failure(let error): failures.withLock { $0.append("\(error)") }
                    }
                }
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
        let received = Mutex<Set<String>>([])
        let consuming = Task {
            for await delivery in consumer.deliveries {
                received.withLock { _ = $0.insert(String(decoding: delivery.body, as: UTF8.self)) }
                delivery.ack()
            }
        }
        while confirmed.withLock({ $0.count }) < 800 { try await Task.sleep(for: .milliseconds(50)) }
        try await TestBroker.restart()
        await producing.value

        let want = confirmed.withLock { $0 }
        for _ in 0..<300 where !want.isSubset(of: received.withLock({ $0 })) {
            try await Task.sleep(for: .milliseconds(100))
        }
        await consumer.shutdown(grace: 2)
        await consuming.value
        await publisher.shutdown()

        XCTAssertEqual(failures.withLock { $0 }, [], "every publish was confirmed in the end")
        XCTAssertEqual(want.count, 4000)
        let missing = want.subtracting(received.withLock { $0 })
        XCTAssertTrue(missing.isEmpty, "confirmed but never delivered: \(missing.count), e.g. \(missing.prefix(3))")
        XCTAssertGreaterThanOrEqual(publisher.connections, 2, "the publisher reconnected")
        XCTAssertGreaterThanOrEqual(consumer.connections, 2, "the consumer reconnected")
        try await BrokerChores.delete([queue])
    }
}
