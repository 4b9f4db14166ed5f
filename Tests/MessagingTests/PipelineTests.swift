import AMQP
import Crypto
import Events
import Foundation
import Publisher
import Repository
@testable import Workers
import XCTest

/// Jobs end to end through the real broker: planner, transfer ranges shared by two worker
/// processes' worth of consumers, commit, restore.
final class PipelineTests: XCTestCase {
    var directory: URL!

    override func setUp() async throws {
        try await LifeboatQueues.reset()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("lifeboat-pipeline-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDown() async throws {
        if let directory { try? FileManager.default.removeItem(at: directory) }
    }

    /// A sparse raw image: holes, random data, text.
    private func makeImage(size: UInt64) throws -> String {
        let path = directory.appendingPathComponent("disk.img").path
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.truncate(atOffset: size)
        var rng = SeededGenerator(seed: 7)
        for (offset, length) in [(UInt64(3) << 20, 5 << 20), (UInt64(300) << 20, 24 << 20), (size - (1 << 20), 1 << 20)] {
            try handle.seek(toOffset: offset)
            handle.write(Data((0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) }))
        }
        try handle.seek(toOffset: 700 << 20)
        handle.write(Data(String(repeating: "guest filesystem text ", count: 200_000).utf8))
        return path
    }

    private func sha256(_ path: String) throws -> String {
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        var hasher = SHA256()
        while let data = try handle.read(upToCount: 8 << 20), !data.isEmpty { hasher.update(data: data) }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }

    /// Results of `job` until one has `status` (bounded).

    func testTwoWorkersShareTheRangesAndEveryRestorePointIsBitIdentical() async throws {
        let image = try makeImage(size: 1 << 30)
        let repositoryPath = directory.appendingPathComponent("repository").path
        _ = try Repository.create(path: repositoryPath)
        let workers = try [RunningWorker(repository: repositoryPath, files: directory.path, rangeBytes: 64 << 20),
                           RunningWorker(repository: repositoryPath, files: directory.path, rangeBytes: 64 << 20)]
        let publisher = LifeboatPublisher(settings: try TestBroker.settings())

        try await publisher.send(BackupRequest(requestId: "pipe-full", project: "p1", instance: "vm-pipe", mode: .incremental,
                                               source: .files(disks: [LocalDisk(name: "vda", path: image, format: .raw)])))
        let full = try await LifeboatQueues.results(of: "pipe-full", until: .succeeded)
        XCTAssertEqual(full.last?.status, .succeeded, "\(full.map { "\($0.status) \($0.reason ?? "")" })")
        XCTAssertEqual(full.first?.details?["fallback"], "full: no earlier backup of this instance")
        let progress = full.compactMap(\.progress)
        XCTAssertEqual(progress.count, 16, "one progress report per 64 MiB range")
        XCTAssertEqual(progress.map(\.bytesDone).max(), 1 << 30)
        XCTAssertTrue(progress.allSatisfy { $0.bytesTotal == 1 << 30 })
        let original = try sha256(image)

        // The guest writes; an incremental stores only what changed.
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: image))
        try handle.seek(toOffset: 500 << 20)
        handle.write(Data((0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) }))
        try handle.close()
        let modified = try sha256(image)
        try await publisher.send(BackupRequest(requestId: "pipe-incr", project: "p1", instance: "vm-pipe", mode: .incremental,
                                               source: .files(disks: [LocalDisk(name: "vda", path: image, format: .raw)])))
        let incremental = try await LifeboatQueues.results(of: "pipe-incr", until: .succeeded)
        XCTAssertEqual(incremental.last?.status, .succeeded)
        XCTAssertEqual(incremental.last?.details?["parent"], "pipe-full")
        let newStored = UInt64(incremental.last?.details?["newStoredBytes"] ?? "") ?? .max
        XCTAssertLessThan(newStored, 8 << 20, "the incremental stored only the changed chunks")

        for (job, backup, want) in [("restore-full", "pipe-full", original), ("restore-incr", "pipe-incr", modified)] {
            let target = directory.appendingPathComponent(job).path
            try await publisher.send(RestoreRequest(requestId: job, project: "p1", backupId: backup,
                                                    target: .files(directory: target, format: .raw), requestedBy: Principal(userId: "u1")))
            let restored = try await LifeboatQueues.results(of: job, until: .succeeded)
            XCTAssertEqual(restored.last?.status, .succeeded, "\(restored.map { "\($0.status) \($0.reason ?? "")" })")
            XCTAssertEqual(try sha256("\(target)/vda.img"), want, "\(backup) restores bit-identically")
        }
        await publisher.shutdown()
        for worker in workers { await worker.stop() }
        let shares = workers.map { $0.worker.taskRunner?.currentCounts.completed ?? 0 }
        XCTAssertTrue(shares.allSatisfy { $0 > 0 }, "both workers ran tasks: \(shares)")
        XCTAssertEqual(try Repository.open(path: repositoryPath).listBackups().map(\.id).sorted(), ["pipe-full", "pipe-incr"])
    }

    func testAQcow2ImageIsBackedUpAsTheGuestSeesItByTwoWorkersAndRestoredAsRawAndQcow2() async throws {
        // A 1 GiB qcow2 over a raw backing file, written in both layers, with a zeroed range.
        let base = directory.appendingPathComponent("base.raw").path, image = directory.appendingPathComponent("disk.qcow2").path
        let shell = "head -c 50331648 /dev/urandom > \(base) && truncate -s 1G \(base) && "
            + "qemu-img create -q -f qcow2 -F raw -b \(base) \(image) && "
            + "qemu-io -f qcow2 -c 'write -P 0x3c 20M 8M' -c 'write -z 40M 4M' -c 'write -P 0xe1 1000M 24M' \(image) > /dev/null"
        let made = try await runProcess("/bin/sh", ["-c", shell])
        XCTAssertEqual(made, 0)
        let view = directory.appendingPathComponent("view.raw").path
        let converted = try await runProcess("/usr/bin/qemu-img", ["convert", "-O", "raw", image, view])
        XCTAssertEqual(converted, 0)
        let expected = try sha256(view)

        let repositoryPath = directory.appendingPathComponent("repository").path
        _ = try Repository.create(path: repositoryPath)
        let workers = try [RunningWorker(repository: repositoryPath, files: directory.path, rangeBytes: 64 << 20),
                           RunningWorker(repository: repositoryPath, files: directory.path, rangeBytes: 64 << 20)]
        let publisher = LifeboatPublisher(settings: try TestBroker.settings())
        try await publisher.send(BackupRequest(requestId: "qcow2-full", project: "p1", instance: "vm-q", mode: .full,
                                               source: .files(disks: [LocalDisk(name: "vda", path: image, format: .qcow2)])))
        let backup = try await LifeboatQueues.results(of: "qcow2-full", until: .succeeded)
        XCTAssertEqual(backup.last?.status, .succeeded, "\(backup.map { "\($0.status) \($0.reason ?? "")" })")
        XCTAssertEqual(backup.compactMap(\.progress).map(\.bytesTotal).max(), 1 << 30, "the guest-visible size, not the file's")

        for (format, file) in [(DiskFormat.raw, "vda.img"), (.qcow2, "vda.qcow2")] {
            let target = directory.appendingPathComponent("restore-\(format.rawValue)").path
            try await publisher.send(RestoreRequest(requestId: "qcow2-to-\(format.rawValue)", project: "p1", backupId: "qcow2-full",
                                                    target: .files(directory: target, format: format), requestedBy: Principal(userId: "u1")))
            let restored = try await LifeboatQueues.results(of: "qcow2-to-\(format.rawValue)", until: .succeeded)
            XCTAssertEqual(restored.last?.status, .succeeded, "\(restored.map { "\($0.status) \($0.reason ?? "")" })")
            let back = directory.appendingPathComponent("back-\(format.rawValue).raw").path
            let status = try await runProcess("/usr/bin/qemu-img", ["convert", "-O", "raw", "\(target)/\(file)", back])
            XCTAssertEqual(status, 0)
            XCTAssertEqual(try sha256(back), expected, "restored as \(format.rawValue), the guest sees what it saw")
        }
        await publisher.shutdown()
        for worker in workers { await worker.stop() }
        let shares = workers.map { $0.worker.taskRunner?.currentCounts.completed ?? 0 }
        XCTAssertTrue(shares.allSatisfy { $0 > 0 }, "both workers ran tasks: \(shares)")
    }

    func testAVanishedSourceFailsAfterBoundedRetriesWithTheReasonAndCleansUp() async throws {
        let repositoryPath = directory.appendingPathComponent("repository").path
        let repository = try Repository.create(path: repositoryPath)
        try repository.beginBackup("poison")
        let gone = directory.appendingPathComponent("vanished.img").path
        let job = JobReference(jobId: "poison", requestId: "poison", operation: .backup, project: "p1", instance: "vm-gone")
        let plan = BackupPlan(backupId: "poison", parent: nil, disks: [.init(name: "vda", path: gone, size: 1 << 20)], rangeCount: 1,
                              totalBytes: 1 << 20, plannedAt: Date().timeIntervalSince1970)
        let worker = try RunningWorker(repository: repositoryPath, files: directory.path, taskAttempts: 3)
        let publisher = LifeboatPublisher(settings: try TestBroker.settings())
        try await publisher.publish(TaskEvent(taskId: "poison.transfer.vda.0", job: job, kind: .transfer, disk: "vda",
                                              range: ByteRange(offset: 0, length: 1 << 20), parameters: TaskEvent.parameters(plan)))
        let outcome = try await LifeboatQueues.results(of: "poison", until: .failed)
        await publisher.shutdown()
        await worker.stop()
        let failure = try XCTUnwrap(outcome.last)
        XCTAssertEqual(failure.status, .failed)
        XCTAssertTrue(failure.reason?.contains("after 3 attempts") == true, failure.reason ?? "")
        XCTAssertTrue(failure.reason?.contains(gone) == true, "the reason names the missing source: \(failure.reason ?? "")")
        XCTAssertEqual(worker.worker.taskRunner?.currentCounts.retried, 2)
        XCTAssertEqual(try repository.stagedRanges(backup: "poison"), [], "the failed backup's staging is gone")
        XCTAssertThrowsError(try repository.rangeWriter(backup: "poison", disk: "vda", offset: 0, length: 1 << 20),
                             "the backup is no longer begun")
        XCTAssertEqual(try repository.listBackups(), [], "nothing became visible")
    }

    func testABrokerRestartMidJobDoesNotStopIt() async throws {
        let image = try makeImage(size: 512 << 20)
        let repositoryPath = directory.appendingPathComponent("repository").path
        _ = try Repository.create(path: repositoryPath)
        let worker = try RunningWorker(repository: repositoryPath, files: directory.path, rangeBytes: 32 << 20)
        let publisher = LifeboatPublisher(settings: try TestBroker.settings())
        let follower = AMQPConsumer(settings: try TestBroker.settings(heartbeat: 2), topology: LifeboatTopology.core,
                                    queues: [LifeboatTopology.Queue.results], prefetch: 100)
        try await publisher.send(BackupRequest(requestId: "through-restart", project: "p1", instance: "vm-r", mode: .full,
                                               source: .files(disks: [LocalDisk(name: "vda", path: image, format: .raw)])))
        var restarted = false
        var outcome: JobResult?
        let deadline = Task {
            try? await Task.sleep(for: .seconds(180))
            await follower.shutdown(grace: 1)
        }
        for await delivery in follower.deliveries {
            delivery.ack()
            guard let result = try? MessageCodec.decode(JobResult.self, from: delivery.body), result.job?.jobId == "through-restart" else { continue }
            if result.status == .progress && !restarted {
                restarted = true
                try await TestBroker.restart()
            }
            if [.succeeded, .failed].contains(result.status) {
                outcome = result
                break
            }
        }
        deadline.cancel()
        await follower.shutdown(grace: 1)
        await publisher.shutdown()
        await worker.stop()
        XCTAssertTrue(restarted)
        XCTAssertEqual(outcome?.status, .succeeded, outcome?.reason ?? "no outcome within the deadline")
        let target = directory.appendingPathComponent("restored").path
        try Repository.open(path: repositoryPath).restore(backup: "through-restart", disk: "vda", to: target)
        XCTAssertEqual(try sha256(target), try sha256(image))
    }

    func testFilesOutsideTheAllowedDirectoriesAreRefused() async throws {
        let repositoryPath = directory.appendingPathComponent("repository").path
        _ = try Repository.create(path: repositoryPath)
        let allowed = directory.appendingPathComponent("images").path
        try FileManager.default.createDirectory(atPath: allowed, withIntermediateDirectories: true)
        // A link inside the allowed directory that leads out of it.
        try FileManager.default.createSymbolicLink(atPath: "\(allowed)/escape.img", withDestinationPath: "/etc/passwd")
        let worker = try RunningWorker(repository: repositoryPath, files: allowed)
        let publisher = LifeboatPublisher(settings: try TestBroker.settings())
        let cases: [(String, InboundRequest)] = [
            ("steal-passwd", .backup(BackupRequest(requestId: "steal-passwd", project: "p", instance: "i", mode: .full,
                                                   source: .files(disks: [LocalDisk(name: "vda", path: "/etc/passwd", format: .raw)])))),
            ("steal-link", .backup(BackupRequest(requestId: "steal-link", project: "p", instance: "i", mode: .full,
                                                 source: .files(disks: [LocalDisk(name: "vda", path: "\(allowed)/escape.img", format: .raw)])))),
            ("overwrite-etc", .restore(RestoreRequest(requestId: "overwrite-etc", project: "p", backupId: "any",
                                                      target: .files(directory: "/etc", format: .raw), requestedBy: Principal(userId: "u")))),
        ]
        for (_, request) in cases { try await publisher.send(request) }
        await publisher.shutdown()
        let results = try LifeboatQueues.results(try await consume(LifeboatTopology.Queue.results) { $0.count >= cases.count })
        await worker.stop()
        for (id, _) in cases {
            let result = results.first { $0.job?.jobId == id }
            XCTAssertEqual(result?.status, .rejected, id)
            XCTAssertTrue(result?.reason?.contains("outside the directories") == true, "\(id): \(result?.reason ?? "")")
        }
        XCTAssertEqual(try Repository.open(path: repositoryPath).listBackups(), [])
    }
}
