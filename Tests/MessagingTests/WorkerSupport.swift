import AMQP
import Events
import Foundation
import Synchronization
import Publisher
import Workers
import XCTest

/// A worker running in the test process against the real broker.
final class RunningWorker: Sendable {
    let worker: Worker
    private let task: Task<Void, Never>

    /// `files`: the directory the worker may read images from and restore into.
    init(prefetch: UInt16 = 32, repository: String? = nil, files: String? = nil, rangeBytes: UInt64 = 256 << 20, taskAttempts: Int = 5,
         hypervisors: String? = nil, cephClusters: String? = nil, policies: String? = nil, openstackCloud: String? = nil,
         schedulerSeconds: Int = 60, inventorySeconds: Int = 0, attachmentProxy: String? = nil, attachmentBackends: [String] = []) throws {
        worker = try Worker(configuration: WorkerConfiguration(amqp: try TestBroker.settings(name: "lifeboat-test-worker"),
                                                               prefetch: prefetch, notificationSources: [.nova], repositoryPath: repository,
                                                               rangeBytes: rangeBytes, taskAttempts: taskAttempts, taskConcurrency: 1,
                                                               fileSourceRoots: files.map { [$0] } ?? [], restoreRoots: files.map { [$0] } ?? [],
                                                               hypervisorsFile: hypervisors, cephClustersFile: cephClusters,
                                                               policiesFile: policies, openstackCloud: openstackCloud,
                                                               schedulerSeconds: schedulerSeconds, inventorySeconds: inventorySeconds,
                                                               attachmentProxy: attachmentProxy,
                                                               attachmentBackends: attachmentBackends))
        let worker = self.worker
        task = Task { await worker.serve() }
        LeakedWorkers.shared.add(self)
    }

    func stop() async {
        LeakedWorkers.shared.remove(self)
        await worker.shutdown(grace: 5)
        await task.value
    }
}

/// Workers a test started and did not stop (it threw before `stop`): stopped when the test
/// ends, so they cannot consume the next tests' requests and tasks.
final class LeakedWorkers: XCTestObservation, Sendable {
    static let shared: LeakedWorkers = {
        let observer = LeakedWorkers()
        XCTestObservationCenter.shared.addTestObserver(observer)
        return observer
    }()

    private let live = Mutex<[ObjectIdentifier: RunningWorker]>([:])

    func add(_ worker: RunningWorker) { live.withLock { $0[ObjectIdentifier(worker)] = worker } }
    func remove(_ worker: RunningWorker) { _ = live.withLock { $0.removeValue(forKey: ObjectIdentifier(worker)) } }

    func testCaseDidFinish(_ testCase: XCTestCase) {
        let leaked = live.withLock { workers in
            defer { workers.removeAll() }
            return Array(workers.values)
        }
        for worker in leaked {
            let stopped = DispatchSemaphore(value: 0)
            Task {
                await worker.stop()
                stopped.signal()
            }
            stopped.wait()
        }
    }
}

enum LifeboatQueues {
    static let all = [LifeboatTopology.Queue.requests, LifeboatTopology.Queue.notifications, LifeboatTopology.Queue.tasks,
                      LifeboatTopology.Queue.urgentTasks, LifeboatTopology.Queue.inventory,
                      LifeboatTopology.Queue.results, LifeboatTopology.Queue.deadLetters]

    /// Declares Lifeboat's topology and empties its queues, so a test sees only its own messages.
    static func reset() async throws {
        try await BrokerChores.declare(LifeboatTopology.withNotifications([.nova]))
        try await BrokerChores.purge(all)
    }

    /// Empties `lifeboat.notifications` until no notification has arrived for `quiet` seconds
    /// (at most two minutes): for tests that count notifications while the test cloud's Nova
    /// may still be finishing what an earlier test asked of it.
    static func waitForQuietNotifications(quiet: Int = 5) async throws {
        var quietFor = 0
        for _ in 0..<120 where quietFor < quiet {
            if try await BrokerChores.count(LifeboatTopology.Queue.notifications) == 0 {
                quietFor += 1
            } else {
                quietFor = 0
                try await BrokerChores.purge([LifeboatTopology.Queue.notifications])
            }
            try await Task.sleep(for: .seconds(1))
        }
    }

    static func results(_ deliveries: [Delivery]) throws -> [JobResult] {
        try deliveries.map { try MessageCodec.decode(JobResult.self, from: $0.body) }
    }

    /// The results of `job`, read from the results queue until it reaches `status`, fails or is
    /// rejected (or `seconds` pass).
    static func results(of job: String, until status: ResultStatus, seconds: Double = 180) async throws -> [JobResult] {
        try results(try await consume(LifeboatTopology.Queue.results, seconds: seconds) { deliveries in
            deliveries.contains {
                guard let result = try? MessageCodec.decode(JobResult.self, from: $0.body) else { return false }
                return result.job?.jobId == job && (result.status == status || result.status == .failed || result.status == .rejected)
            }
        }).filter { $0.job?.jobId == job }
    }

    /// One line per result, for assertion messages.
    static func summary(_ results: [JobResult]) -> String {
        results.map { "\($0.status.rawValue) \($0.reason ?? "") \($0.details ?? [:])" }.joined(separator: "\n")
    }
}

/// Reads a queue through a consumer until `enough` says so or `seconds` pass.
///
/// Delivery is at-least-once: a reader that stops may see some of its acknowledged messages
/// again the next time (RabbitMQ settles quorum-queue acks asynchronously, and a channel that
/// closes right after them can lose the race). Messages carry ids, so readers drop repeats,
/// as any monitor of Lifeboat's results should.
func consume(_ queue: String, seconds: Double = 60, until enough: @escaping ([Delivery]) -> Bool) async throws -> [Delivery] {
    let consumer = AMQPConsumer(settings: try TestBroker.settings(name: "lifeboat-test-reader"), topology: Topology(),
                                queues: [queue], prefetch: 500)
    var collected: [Delivery] = []
    let deadline = ContinuousClock.now + .seconds(seconds)
    let timer = Task {
        try? await Task.sleep(until: deadline)
        await consumer.shutdown(grace: 1)
    }
    var seen: Set<String> = []
    for await delivery in consumer.deliveries {
        delivery.ack()
        if let id = delivery.delivery.properties.messageId, !seen.insert(id).inserted { continue }
        collected.append(delivery.delivery)
        if enough(collected) { break }
    }
    timer.cancel()
    await consumer.shutdown(grace: 2)
    return collected
}
