import Events
import Foundation
import OpenStack
import Publisher
@testable import Workers
import XCTest

/// The policies' schedules: slots and windows (pure arithmetic), and the scheduler against real
/// Nova, publishing one backup request per slot for exactly the servers a policy protects.
final class SchedulerTests: XCTestCase {
    func testSlotsStartAtTheirTimeOfDayAndCloseAfterTheirWindow() throws {
        let json = #"{"name": "nightly", "every": "1d", "startAt": "01:30", "window": "4h", "mode": "incremental"}"#
        let nightly = try JSONDecoder().decode(BackupSchedule.self, from: Data(json.utf8))
        XCTAssertEqual(nightly, BackupSchedule(name: "nightly", every: 86_400, startAt: 5_400, window: 14_400, mode: .incremental))
        let day = 20_000 * 86_400.0  // a midnight, UTC
        func at(_ hours: Double) -> Date { Date(timeIntervalSince1970: day + hours * 3600) }
        XCTAssertEqual(nightly.slot(at: at(1.5)).start, at(1.5))
        XCTAssertTrue(nightly.slot(at: at(1.5)).open)
        XCTAssertTrue(nightly.slot(at: at(5.4)).open)
        XCTAssertFalse(nightly.slot(at: at(5.6)).open, "the window closes four hours after 01:30")
        XCTAssertEqual(nightly.slot(at: at(1.4)).start, at(1.5 - 24), "before 01:30 the slot is yesterday's (closed)")
        XCTAssertFalse(nightly.slot(at: at(1.4)).open)
        let hourly = BackupSchedule(name: "hourly", every: 3600)
        XCTAssertEqual(hourly.slot(at: at(7.75)).start, at(7))
        XCTAssertTrue(hourly.slot(at: at(7.99)).open, "without a window, the whole period")

        for bad in [#"{"name": "x", "every": "30s"}"#, #"{"name": "x", "every": "1h", "window": "2h"}"#,
                    #"{"name": "x", "every": "1h", "startAt": "25:00"}"#, #"{"name": "x", "every": "soon"}"#] {
            XCTAssertThrowsError(try JSONDecoder().decode(BackupSchedule.self, from: Data(bad.utf8)), bad)
        }
    }

    func testTheSchedulerRequestsOneBackupPerSlotForTheServersItsPolicyProtects() async throws {
        try TestOpenStack.require()
        try await LifeboatQueues.reset()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lifeboat-schedule-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let suffix = UUID().uuidString.prefix(6).lowercased()
        let policies = directory.appendingPathComponent("policies.json")
        try Data(#"""
            {"policies": [{"name": "sched", "metadataKey": "lifeboat-schedule", "metadataValue": "\#(suffix)", "priority": 3,
                           "schedules": [{"name": "hourly", "every": "1h", "mode": "full"}]}]}
            """#.utf8).write(to: policies)
        let plain = try await TestOpenStack.createServer("lb-unscheduled-\(suffix)")
        let protected = try await TestOpenStack.createServer("lb-scheduled-\(suffix)", properties: ["lifeboat-schedule": String(suffix)])
        defer { Task { await TestOpenStack.deleteServer(plain); await TestOpenStack.deleteServer(protected) } }

        // No repository: the worker accepts the requests and plans nothing; what is looked at
        // here is what the scheduler asks for. A pass every second.
        let hourly = BackupSchedule(name: "hourly", every: 3600)
        let slotBefore = Int(hourly.slot(at: Date()).start.timeIntervalSince1970)
        let worker = try RunningWorker(policies: policies.path, openstackCloud: "lifeboat-admin", schedulerSeconds: 1)
        let scheduler = try XCTUnwrap(worker.worker.scheduler)
        func requestId(_ server: String, _ slot: Int) -> String { "sched-\(server)-hourly-\(slot)" }
        let first = try LifeboatQueues.results(try await consume(LifeboatTopology.Queue.results, seconds: 120) { deliveries in
            deliveries.contains { delivery in
                guard let job = (try? MessageCodec.decode(JobResult.self, from: delivery.body))?.job?.jobId else { return false }
                return job.hasPrefix("sched-\(protected)-hourly-")
            }
        })
        let slotAfter = Int(hourly.slot(at: Date()).start.timeIntervalSince1970)
        let scheduled = try XCTUnwrap(first.first { $0.job?.jobId.hasPrefix("sched-\(protected)-hourly-") == true }, "\(first)")
        XCTAssertTrue([requestId(protected, slotBefore), requestId(protected, slotAfter)].contains(scheduled.job?.jobId ?? ""), "\(scheduled)")
        XCTAssertEqual(scheduled.status, .accepted)
        XCTAssertEqual(scheduled.job?.instance, protected)
        XCTAssertEqual(scheduled.job?.operation, .backup)

        // Three more passes: the slot is not requested again, and the plain server never.
        let later = try LifeboatQueues.results(try await consume(LifeboatTopology.Queue.results, seconds: 4) { _ in false })
        XCTAssertFalse(later.contains { $0.job?.jobId == scheduled.job?.jobId }, "one request per slot: \(later)")
        XCTAssertFalse((first + later).contains { $0.job?.instance == plain }, "a server no policy protects is not scheduled")

        // The next slot is due for the protected server, until its metadata no longer matches.
        let admin = OpenStackInventory(configuration: try CloudConfiguration.load(cloud: "lifeboat-admin"), logger: .init(label: "test"))
        let nextHour = Date().addingTimeInterval(3600)
        var servers = try await runBlocking { try [plain, protected].compactMap { try admin.server($0) } }
        XCTAssertEqual(scheduler.due(servers: servers, now: nextHour).map(\.0.instance), [protected])
        XCTAssertEqual(scheduler.due(servers: servers, now: nextHour).first?.0.priority, 3)
        XCTAssertEqual(scheduler.due(servers: servers, now: nextHour).first?.0.mode, .full)
        let unset = try await runProcess("/usr/bin/openstack", ["--os-cloud", "lifeboat-admin", "server", "unset", "--property", "lifeboat-schedule", protected])
        XCTAssertEqual(unset, 0)
        servers = try await runBlocking { try [plain, protected].compactMap { try admin.server($0) } }
        XCTAssertEqual(scheduler.due(servers: servers, now: nextHour).map(\.0.instance), [], "protection removed with the metadata")
        await worker.stop()
    }
}
