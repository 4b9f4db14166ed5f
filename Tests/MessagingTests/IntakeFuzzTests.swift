import AMQP
import Events
import Foundation
import Publisher
import XCTest

/// 10 000 mutated messages through the real intake: the worker stays up, every message ends
/// somewhere, and every bad one is dead-lettered with a reason.
final class IntakeFuzzTests: XCTestCase {
    struct Sample {
        var id: String
        var body: Data
        var exchange: String
        var routingKey: String
        var isNotification: Bool
        /// Bytes no JSON parser accepts: these must be rejected whatever else holds.
        var certainlyBroken: Bool
    }

    func testTenThousandMutatedMessages() async throws {
        try await LifeboatQueues.reset()
        // Nova's own notifications would be counted with the fuzz's.
        try await LifeboatQueues.waitForQuietNotifications()
        let captures = try Capture.all().filter { ["nova", "openstack", "glance"].contains($0.exchange) }
        XCTAssertGreaterThan(captures.count, 100)
        let seeds: [Data] = [
            MessageCodec.encode(BackupRequest(requestId: "fz-b", project: "p1", instance: "vm1", mode: .incremental,
                                              source: .files(disks: [LocalDisk(name: "vda", path: "/var/lib/x.img", format: .qcow2)]),
                                              priority: 3, labels: ["team": "db"], requestedBy: Principal(userId: "u1"))),
            MessageCodec.encode(RestoreRequest(requestId: "fz-r", project: "p1", backupId: "b1",
                                               target: .libvirt(host: "hv2", name: "copy", storageDirectory: "/var/lib/libvirt/images", start: true),
                                               disks: ["vda"], requestedBy: Principal(userId: "u1", userDomain: "Default"))),
            MessageCodec.encode(CancelRequest(requestId: "fz-c", jobId: "fz-b", project: "p1")),
        ]
        var rng = SeededGenerator(seed: 20261127)
        var samples: [Sample] = []
        for n in 0..<10_000 {
            let useCapture = rng.next() % 2 == 0
            let base = useCapture ? captures[Int(rng.next() % UInt64(captures.count))].body : seeds[Int(rng.next() % UInt64(seeds.count))]
            let (body, broken) = Mutator.mutate(base, isNotification: useCapture, rng: &rng)
            let capture = useCapture ? captures[Int(rng.next() % UInt64(captures.count))] : nil
            samples.append(Sample(id: "fuzz-\(n)", body: body,
                                  exchange: capture == nil ? LifeboatTopology.Exchange.requests : "nova",
                                  routingKey: capture == nil ? "request.backup" : (rng.next() % 2 == 0 ? "versioned_notifications.info" : "notifications.info"),
                                  isNotification: useCapture, certainlyBroken: broken))
        }

        // What each sample must become, by the same decoders the intake uses.
        var expectRejected: Set<String> = []
        var expectAccepted = 0
        var expectNotifications = 0
        for sample in samples {
            if sample.isNotification {
                do {
                    _ = try InstanceEvent(OsloNotification.decode(sample.body))
                    expectNotifications += 1
                } catch { expectRejected.insert(sample.id) }
            } else {
                if (try? InboundRequest.decode(sample.body)) != nil { expectAccepted += 1 } else { expectRejected.insert(sample.id) }
            }
        }
        let broken = Set(samples.filter(\.certainlyBroken).map(\.id))
        XCTAssertTrue(broken.isSubset(of: expectRejected), "unparseable bytes can never be accepted")
        XCTAssertGreaterThan(expectRejected.count, 3000, "the mutator makes mostly bad messages")
        XCTAssertGreaterThan(expectAccepted + expectNotifications, 500, "and some good ones")

        let worker = try RunningWorker(prefetch: 64)
        let publisher = ConfirmingPublisher(settings: try TestBroker.settings(), topology: LifeboatTopology.withNotifications([.nova]))
        for chunk in stride(from: 0, to: samples.count, by: 500) {
            let messages = samples[chunk..<min(chunk + 500, samples.count)].map { sample in
                OutgoingMessage(exchange: sample.exchange, routingKey: sample.routingKey, body: sample.body,
                                properties: MessageProperties(messageId: sample.id))
            }
            try await publisher.publishAll(messages)
        }

        let deadLetters = try await consume(LifeboatTopology.Queue.deadLetters, seconds: 300) { $0.count >= expectRejected.count }
        let results = try LifeboatQueues.results(
            try await consume(LifeboatTopology.Queue.results, seconds: 120) { $0.count >= expectRejected.count + expectAccepted })

        // Still serving: one more good request is accepted.
        try await publisher.publish(.request(.backup(BackupRequest(requestId: "after-fuzz", project: "p1", instance: "vm1", mode: .full))))
        let afterDeliveries = try await consume(LifeboatTopology.Queue.results, seconds: 30) { deliveries in
            deliveries.contains { (try? MessageCodec.decode(JobResult.self, from: $0.body))?.job?.jobId == "after-fuzz" }
        }
        let after = try LifeboatQueues.results(afterDeliveries)
        await publisher.shutdown()
        let counts = worker.worker.intake.currentCounts
        await worker.stop()

        XCTAssertEqual(after.filter { !Set(results.map(\.resultId)).contains($0.resultId) }.map(\.job?.jobId), ["after-fuzz"],
                       "the worker kept running, and published no result beyond one per message")
        XCTAssertEqual(worker.worker.intakeConnections, 1, "no bad message broke the connection")
        let lettered = Dictionary(deadLetters.map { ($0.properties.messageId ?? "?", $0) }, uniquingKeysWith: { a, _ in a })
        XCTAssertEqual(deadLetters.count, expectRejected.count, "each bad message dead-lettered once")
        XCTAssertEqual(Set(lettered.keys), expectRejected)
        let sent = Dictionary(uniqueKeysWithValues: samples.map { ($0.id, $0) })
        for (id, letter) in lettered {
            let reason = letter.properties.headers[LifeboatTopology.Header.reason]?.stringValue ?? ""
            XCTAssertFalse(reason.isEmpty, "\(id) has no reason")
            XCTAssertEqual(letter.body, sent[id]?.body, "\(id) was not kept unchanged")
        }
        let rejectedResults = results.filter { $0.status == .rejected }
        XCTAssertEqual(Set(rejectedResults.compactMap { $0.rejected?.messageId }), expectRejected)
        XCTAssertTrue(rejectedResults.allSatisfy { !($0.reason ?? "").isEmpty })
        XCTAssertEqual(results.filter { $0.status == .accepted }.count, expectAccepted)
        XCTAssertEqual(counts.rejected, expectRejected.count)
        XCTAssertEqual(counts.accepted, expectAccepted + 1)
        XCTAssertEqual(counts.notificationsHandled + counts.notificationsIgnored, expectNotifications)
        XCTAssertEqual(counts.requeued, 0)
    }
}

/// Reproducible randomness (SplitMix64), so a failing run can be replayed.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Ways a message goes wrong on the way: bit rot, truncation, a field dropped or retyped, an
/// unknown field, an oversize body, garbage. Returns the new body and whether it can no longer
/// be JSON at all.
enum Mutator {
    static func mutate(_ body: Data, isNotification: Bool, rng: inout SeededGenerator) -> (Data, Bool) {
        switch rng.next() % 10 {
        case 0:  // unchanged
            return (body, false)
        case 1:  // flip bytes
            var bytes = [UInt8](body)
            for _ in 0..<(1 + Int(rng.next() % 3)) { bytes[Int(rng.next() % UInt64(bytes.count))] ^= UInt8(1 << (rng.next() % 8)) }
            return (Data(bytes), false)
        case 2:  // truncated: a JSON object cut before its closing brace never parses
            return (body.prefix(Int(rng.next() % UInt64(body.count - 1))), true)
        case 3:  // garbage or empty
            let count = Int(rng.next() % 64)
            return (Data((0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next() % 32) }), true)
        case 4 where rng.next() % 50 == 0:  // oversize (rare: each is megabytes through the broker)
            return (Data("{\"type\":\"backup.request\",\"pad\":\"".utf8) + Data(repeating: 0x61, count: 5 << 20) + Data("\"}".utf8), false)
        default:  // structural: mutate the JSON tree (inside oslo.message for a v2 envelope)
            guard var root = try? JSONDecoder().decode(JSONValue.self, from: body) else { return (body, false) }
            if isNotification, case .string(let inner)? = root["oslo.message"], rng.next() % 4 != 0,
               var message = try? JSONDecoder().decode(JSONValue.self, from: Data(inner.utf8)) {
                mutateTree(&message, rng: &rng)
                let text = String(decoding: (try? JSONEncoder().encode(message)) ?? Data(), as: UTF8.self)
                if case .object(var fields) = root { fields["oslo.message"] = .string(text); root = .object(fields) }
            } else {
                mutateTree(&root, rng: &rng)
            }
            return ((try? JSONEncoder().encode(root)) ?? body, false)
        }
    }

    static func mutateTree(_ value: inout JSONValue, rng: inout SeededGenerator, depth: Int = 0) {
        switch value {
        case .object(var fields) where !fields.isEmpty:
            let keys = fields.keys.sorted()
            let key = keys[Int(rng.next() % UInt64(keys.count))]
            if depth < 4, rng.next() % 3 == 0, var child = fields[key], child.objectValue != nil || child.arrayValue != nil {
                mutateTree(&child, rng: &rng, depth: depth + 1)
                fields[key] = child
            } else {
                switch rng.next() % 6 {
                case 0: fields[key] = nil
                case 1: fields[key] = .int(Int64(truncatingIfNeeded: rng.next()))
                case 2: fields[key] = .string(String(repeating: "x", count: Int(rng.next() % 300)))
                case 3: fields[key] = .null
                case 4: fields["unexpected_\(rng.next() % 100)"] = .bool(true)
                default: fields[key] = .array([.object([:])])
                }
            }
            value = .object(fields)
        case .array(var items) where !items.isEmpty:
            let index = Int(rng.next() % UInt64(items.count))
            if rng.next() % 2 == 0 { items.remove(at: index) } else { mutateTree(&items[index], rng: &rng, depth: depth + 1) }
            value = .array(items)
        default:
            value = .string("mutated")
        }
    }
}
