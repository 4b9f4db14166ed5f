import Events
import Foundation
import Publisher
import Repository
@testable import Workers
import XCTest

/// The libvirt strategy when things go wrong, on the real hypervisors: a changed host key, the
/// network link cut mid-transfer (and restored, or not), the VM deleted mid-backup.
final class LibvirtFaultTests: XCTestCase {
    var directory: URL!
    var repositoryPath: String!

    override func setUp() async throws {
        try await LifeboatQueues.reset()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("lifeboat-libvirt-faults-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        repositoryPath = directory.appendingPathComponent("repository").path
        _ = try Repository.create(path: repositoryPath)
    }

    override func tearDown() async throws {
        for n in (try? TestHypervisors.require(1)) ?? [] { _ = try? await TestHypervisors.run(["link", "up", "\(n)"]) }
        if let directory { try? FileManager.default.removeItem(at: directory) }
    }

    private func summary(_ results: [JobResult]) -> String {
        results.map { "\($0.status.rawValue) \($0.reason ?? "") \($0.details ?? [:])" }.joined(separator: "\n")
    }

    /// Results of `job` until `stop` says so (bounded).
    private func results(of job: String, seconds: Double = 180, until stop: @escaping @Sendable (JobResult) -> Bool) async throws -> [JobResult] {
        try LifeboatQueues.results(try await consume(LifeboatTopology.Queue.results, seconds: seconds) { deliveries in
            deliveries.contains {
                guard let result = try? MessageCodec.decode(JobResult.self, from: $0.body), result.job?.jobId == job else { return false }
                return stop(result) || result.status == .failed || result.status == .rejected || result.status == .succeeded
            }
        }).filter { $0.job?.jobId == job }
    }

    private func worker(hosts: [Int], knownHosts: String? = nil, attempts: Int, changedBlocks: String = "overlay") throws -> RunningWorker {
        let list = try TestHypervisors.directoryFile(in: directory, hosts: hosts, knownHosts: knownHosts, operationTimeout: 4, connectTimeout: 2,
                                                     changedBlocks: changedBlocks)
        return try RunningWorker(repository: repositoryPath, files: directory.path, rangeBytes: 64 << 20, taskAttempts: attempts, hypervisors: list)
    }

    func testAChangedHostKeyIsRefusedAtOnceWithTheReason() async throws {
        let hosts = try TestHypervisors.require(2)
        // known_hosts with another key for host 2: what a man in the middle would present.
        let keyFile = directory.appendingPathComponent("other_key").path
        let made = try await runProcess("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", keyFile])
        XCTAssertEqual(made, 0)
        let otherKey = try String(contentsOfFile: keyFile + ".pub", encoding: .utf8).split(separator: " ").prefix(2).joined(separator: " ")
        let knownHosts = directory.appendingPathComponent("known_hosts").path
        try "\(TestHypervisors.address(hosts[1])) \(otherKey)\n".write(toFile: knownHosts, atomically: true, encoding: .utf8)

        let worker = try worker(hosts: [hosts[1]], knownHosts: knownHosts, attempts: 5)
        let publisher = LifeboatPublisher(settings: try TestBroker.settings())
        try await publisher.send(BackupRequest(requestId: "mitm", project: "p1", instance: "vm-mitm", mode: .full,
                                               source: .libvirt(host: "hv\(hosts[1])", domain: "any", disks: nil)))
        let outcome = try await results(of: "mitm") { _ in false }
        await publisher.shutdown()
        await worker.stop()
        XCTAssertEqual(outcome.last?.status, .failed, summary(outcome))
        XCTAssertTrue(outcome.last?.reason?.contains("host key") == true && outcome.last?.reason?.contains("CHANGED") == true, summary(outcome))
        XCTAssertEqual(outcome.last?.task?.attempt, 1, "a refused host key is not retried")
        XCTAssertEqual(worker.worker.taskRunner?.currentCounts.retried, 0)
    }

    func testALinkCutMidTransferThatComesBackCompletesTheJob() async throws {
        let hosts = try TestHypervisors.require(1)
        let domain = try await TestHypervisors.busyDomain(on: hosts[0])
        let worker = try worker(hosts: [hosts[0]], attempts: 5)
        let publisher = LifeboatPublisher(settings: try TestBroker.settings())
        try await publisher.send(BackupRequest(requestId: "\(domain)-cut", project: "p1", instance: domain, mode: .full,
                                               source: .libvirt(host: "hv\(hosts[0])", domain: domain, disks: nil)))
        let before = try await results(of: "\(domain)-cut") { $0.status == .progress }
        XCTAssertEqual(before.last?.status, .progress, summary(before))
        try await TestHypervisors.run(["link", "down", "\(hosts[0])"])
        try await Task.sleep(for: .seconds(6))
        try await TestHypervisors.run(["link", "up", "\(hosts[0])"])
        let after = try await results(of: "\(domain)-cut") { _ in false }
        await publisher.shutdown()
        await worker.stop()
        XCTAssertEqual(after.last?.status, .succeeded, summary(after))
        XCTAssertGreaterThan(worker.worker.taskRunner?.currentCounts.retried ?? 0, 0, "the cut made tasks fail and retry")
        XCTAssertEqual(try TestHypervisors.overlays(domain, on: hosts[0]), ["\(domain)-vda.qcow2.lifeboat-\(domain)-cut.qcow2"])
        try await TestHypervisors.run(["virsh", "\(hosts[0])", "destroy", domain])
    }

    func testALinkThatStaysCutFailsTheJobAfterBoundedRetriesAndTheOverlayIsMergedBack() async throws {
        let hosts = try TestHypervisors.require(1)
        let domain = try await TestHypervisors.busyDomain(on: hosts[0])
        let worker = try worker(hosts: [hosts[0]], attempts: 2)
        let publisher = LifeboatPublisher(settings: try TestBroker.settings())
        try await publisher.send(BackupRequest(requestId: "\(domain)-down", project: "p1", instance: domain, mode: .full,
                                               source: .libvirt(host: "hv\(hosts[0])", domain: domain, disks: nil)))
        _ = try await results(of: "\(domain)-down") { $0.status == .progress }
        XCTAssertEqual(try TestHypervisors.overlays(domain, on: hosts[0]).count, 1, "the snapshot's overlay")
        try await TestHypervisors.run(["link", "down", "\(hosts[0])"])
        let outcome = try await results(of: "\(domain)-down") { _ in false }
        XCTAssertEqual(outcome.last?.status, .failed, summary(outcome))
        XCTAssertTrue(outcome.last?.reason?.contains("after 2 attempts") == true, summary(outcome))
        XCTAssertFalse(try Repository.open(path: repositoryPath).listBackups().contains { $0.id == "\(domain)-down" }, "nothing visible")

        // The link returns: the rollback (retried meanwhile) merges the overlay back.
        try await TestHypervisors.run(["link", "up", "\(hosts[0])"])
        var left = try TestHypervisors.overlays(domain, on: hosts[0])
        for _ in 0..<60 where !left.isEmpty {
            try await Task.sleep(for: .seconds(1))
            left = try TestHypervisors.overlays(domain, on: hosts[0])
        }
        await publisher.shutdown()
        await worker.stop()
        XCTAssertEqual(left, [], "the failed job's overlay was merged back")
        let source = try await TestHypervisors.run(["virsh", "\(hosts[0])", "domblklist", domain])
        XCTAssertTrue(source.contains("\(domain)-vda.qcow2") && !source.contains("lifeboat"), source)
        try await TestHypervisors.run(["virsh", "\(hosts[0])", "destroy", domain])
    }

    func testACancelledBitmapBackupDeletesItsCheckpointAndTheNextIncrementalMissesNothing() async throws {
        let hosts = try TestHypervisors.require(1)
        let domain = try await TestHypervisors.busyDomain(on: hosts[0])
        let worker = try worker(hosts: [hosts[0]], attempts: 5, changedBlocks: "bitmap")
        let publisher = LifeboatPublisher(settings: try TestBroker.settings())
        let source = BackupSource.libvirt(host: "hv\(hosts[0])", domain: domain, disks: nil)
        func checkpoints() async throws -> [String] {
            try await TestHypervisors.run(["virsh", "\(hosts[0])", "checkpoint-list", "--name", domain]).split(separator: "\n")
                .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        try await publisher.send(BackupRequest(requestId: "\(domain)-b1", project: "p1", instance: domain, mode: .full, source: source))
        let first = try await results(of: "\(domain)-b1") { _ in false }
        XCTAssertEqual(first.last?.status, .succeeded, summary(first))

        // A second full, cancelled while its ranges are read.
        try await TestHypervisors.run(["guest-write", "\(hosts[0])", domain, "500M", "1M", "0x42"])
        try await publisher.send(BackupRequest(requestId: "\(domain)-b2", project: "p1", instance: domain, mode: .full, source: source))
        _ = try await results(of: "\(domain)-b2") { $0.status == .progress }
        try await publisher.send(CancelRequest(requestId: "cancel-\(domain)", jobId: "\(domain)-b2", project: "p1"))
        // The rollback deletes the checkpoint, then the scratch copy: wait for both.
        var left = try await checkpoints()
        var scratch = try TestHypervisors.overlays(domain, on: hosts[0])
        for _ in 0..<40 where left != ["lifeboat-\(domain)-b1"] || !scratch.isEmpty {
            try await Task.sleep(for: .seconds(0.5))
            left = try await checkpoints()
            scratch = try TestHypervisors.overlays(domain, on: hosts[0])
        }
        XCTAssertEqual(left, ["lifeboat-\(domain)-b1"], "the cancelled backup's checkpoint is gone")
        XCTAssertEqual(scratch, [], "no scratch copy is left")

        // The write made before the cancelled backup is in the next incremental from b1.
        try await publisher.send(BackupRequest(requestId: "\(domain)-b3", project: "p1", instance: domain, mode: .incremental, source: source))
        let third = try await results(of: "\(domain)-b3") { _ in false }
        await publisher.shutdown()
        await worker.stop()
        XCTAssertEqual(third.last?.status, .succeeded, summary(third))
        XCTAssertEqual(third.first { $0.status == .started }?.details?["parent"], "\(domain)-b1")
        let restored = directory.appendingPathComponent("b3.raw").path
        try Repository.open(path: repositoryPath).restore(backup: "\(domain)-b3", disk: "vda", to: restored)
        let live = try await guestViewDigest(host: hosts[0], image: "\(domain)-vda.qcow2")
        XCTAssertEqual(try sha256(of: restored), live, "the incremental from b1 holds every write (the guest is idle since)")
        try await TestHypervisors.run(["virsh", "\(hosts[0])", "destroy", domain])
    }

    func testAVMDeletedMidBackupFailsClearlyAndItsOverlayIsRemoved() async throws {
        let hosts = try TestHypervisors.require(1)
        let domain = try await TestHypervisors.busyDomain(on: hosts[0])
        let worker = try worker(hosts: [hosts[0]], attempts: 5)
        let publisher = LifeboatPublisher(settings: try TestBroker.settings())
        try await publisher.send(BackupRequest(requestId: "\(domain)-gone", project: "p1", instance: domain, mode: .full,
                                               source: .libvirt(host: "hv\(hosts[0])", domain: domain, disks: nil)))
        _ = try await results(of: "\(domain)-gone") { $0.status == .progress }
        // What deleting an instance does: the domain goes, and its disk with it.
        try await TestHypervisors.run(["virsh", "\(hosts[0])", "destroy", domain])
        try await TestHypervisors.run(["virsh", "\(hosts[0])", "undefine", domain])
        try FileManager.default.removeItem(atPath: "\(TestHypervisors.images(hosts[0]))/\(domain)-vda.qcow2")
        let outcome = try await results(of: "\(domain)-gone") { _ in false }
        XCTAssertEqual(outcome.last?.status, .failed, summary(outcome))
        XCTAssertTrue(outcome.last?.reason?.contains("was deleted") == true, summary(outcome))
        var left = try TestHypervisors.overlays(domain, on: hosts[0])
        for _ in 0..<20 where !left.isEmpty {
            try await Task.sleep(for: .seconds(0.5))
            left = try TestHypervisors.overlays(domain, on: hosts[0])
        }
        await publisher.shutdown()
        await worker.stop()
        XCTAssertEqual(left, [], "the overlay of the deleted domain was removed")
        XCTAssertFalse(try Repository.open(path: repositoryPath).listBackups().contains { $0.id == "\(domain)-gone" })
    }
}
