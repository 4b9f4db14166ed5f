import AMQP
import Events
import Foundation
import Publisher
import Repository
@testable import Workers
import XCTest

/// Priorities that take effect on RabbitMQ 3.x, whose quorum queues deliver in order whatever
/// a message's priority: an urgent job's tasks go to `lifeboat.tasks.urgent`, which a worker
/// takes from alongside the backlog in `lifeboat.tasks` instead of behind it.
final class PriorityTests: XCTestCase {
    func testAnUrgentJobRunsBesideTheBacklogWhileAnOrdinaryOneWaitsBehindIt() async throws {
        try await LifeboatQueues.reset()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lifeboat-priority-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        // A backlog of 192 one-chunk ranges, and two one-chunk disks.
        for (name, mebibytes) in [("backlog", 192), ("ordinary", 1), ("urgent", 1)] {
            let status = try await runProcess("/bin/dd", ["if=/dev/urandom", "of=\(directory.path)/\(name).img", "bs=1M", "count=\(mebibytes)",
                                                          "status=none"])
            XCTAssertEqual(status, 0)
        }
        let repositoryPath = directory.appendingPathComponent("repository").path
        _ = try Repository.create(path: repositoryPath)
        // One task at a time per queue.
        let worker = try RunningWorker(repository: repositoryPath, files: directory.path, rangeBytes: 1 << 20)
        let publisher = LifeboatPublisher(settings: try TestBroker.settings())
        func request(_ name: String, priority: Int?) -> BackupRequest {
            BackupRequest(requestId: "prio-\(name)", project: "p1", instance: "vm-\(name)", mode: .full,
                          source: .files(disks: [LocalDisk(name: "vda", path: "\(directory.path)/\(name).img", format: .raw)]), priority: priority)
        }
        // The backlog is planned (its tasks queued) before the other two are sent.
        try await publisher.send(request("backlog", priority: 2))
        let planned = try await LifeboatQueues.results(of: "prio-backlog", until: .accepted, seconds: 60)
        XCTAssertEqual(planned.last?.status, .accepted, LifeboatQueues.summary(planned))
        try await publisher.send(request("ordinary", priority: 4))
        try await publisher.send(request("urgent", priority: 8))

        let jobs = ["prio-backlog", "prio-ordinary", "prio-urgent"]
        let results = try LifeboatQueues.results(try await consume(LifeboatTopology.Queue.results, seconds: 240) { deliveries in
            let done = Set(deliveries.compactMap { try? MessageCodec.decode(JobResult.self, from: $0.body) }
                .filter { [.succeeded, .failed, .rejected].contains($0.status) }.compactMap { $0.job?.jobId })
            return jobs.allSatisfy(done.contains)
        })
        await worker.stop()
        let finished = results.filter { $0.status == .succeeded }.compactMap { $0.job?.jobId }
        XCTAssertEqual(Set(finished), Set(jobs), LifeboatQueues.summary(results))
        let order = Dictionary(uniqueKeysWithValues: finished.enumerated().map { ($1, $0) })
        XCTAssertLessThan(order["prio-urgent"] ?? .max, order["prio-backlog"] ?? -1, "the urgent job does not wait for the backlog: \(finished)")
        XCTAssertLessThan(order["prio-urgent"] ?? .max, order["prio-ordinary"] ?? -1,
                          "the ordinary job, sent before it, waits behind the backlog: \(finished)")
        // Its tasks said so too.
        let urgentResult = try XCTUnwrap(results.first { $0.job?.jobId == "prio-urgent" })
        XCTAssertEqual(urgentResult.job?.priority, 8)
        XCTAssertEqual(urgentResult.job?.isUrgent, true)
    }
}
