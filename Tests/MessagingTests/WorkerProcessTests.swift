import AMQP
import Crypto
import Events
import Foundation
import OpenStack
import Publisher
import Repository
import Workers
import XCTest

/// Jobs across real `lifeboat worker` processes: one killed with SIGKILL mid-job, one
/// cancelled mid-job.
final class WorkerProcessTests: XCTestCase {
    var directory: URL!
    var processes: [Process] = []

    override func setUp() async throws {
        try await LifeboatQueues.reset()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("lifeboat-processes-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDown() async throws {
        for process in processes where process.isRunning { kill(process.processIdentifier, SIGKILL) }
        if let directory { try? FileManager.default.removeItem(at: directory) }
    }

    private var lifeboat: String {
        get throws {
            let path = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("lifeboat").path
            guard FileManager.default.isExecutableFile(atPath: path) else { throw XCTSkip("lifeboat is not built at \(path)") }
            return path
        }
    }

    /// A `lifeboat worker` process on the test broker and `repository`.
    private func startWorker(_ name: String, repository: String, concurrency: Int = 1, metricsPort: Int? = nil,
                             hypervisors: String? = nil) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try lifeboat)
        process.arguments = ["worker"]
        var environment = ProcessInfo.processInfo.environment
        environment["LIFEBOAT_AMQP_URL"] = try TestBroker.url
        environment["LIFEBOAT_REPOSITORY"] = repository
        environment["LIFEBOAT_FILE_SOURCES"] = directory.path
        environment["LIFEBOAT_RANGE_MIB"] = "32"
        environment["LIFEBOAT_TASK_CONCURRENCY"] = "\(concurrency)"
        environment["LIFEBOAT_METRICS_ADDRESS"] = metricsPort.map { "127.0.0.1:\($0)" }
        environment["LIFEBOAT_HYPERVISORS"] = hypervisors
        process.environment = environment
        let log = directory.appendingPathComponent("\(name).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: log)
        process.standardError = try FileHandle(forWritingTo: log)
        try process.run()
        processes.append(process)
        return process
    }

    private func makeImage(_ name: String, megabytes: Int) throws -> String {
        let path = directory.appendingPathComponent(name).path
        var rng = SeededGenerator(seed: UInt64(megabytes))
        var data = Data(count: megabytes << 20)
        data.withUnsafeMutableBytes { bytes in
            // Every other MiB random, the rest zeros: both real data and holes in every range.
            for mib in stride(from: 0, to: megabytes, by: 2) {
                for i in stride(from: mib << 20, to: (mib + 1) << 20, by: 8) {
                    bytes.storeBytes(of: rng.next(), toByteOffset: i, as: UInt64.self)
                }
            }
        }
        try data.write(to: URL(fileURLWithPath: path))
        return path
    }

    private func digest(_ path: String) throws -> String {
        SHA256.hash(data: try Data(contentsOf: URL(fileURLWithPath: path))).map { String(format: "%02x", $0) }.joined()
    }

    func testAWorkerKilledMidJobDoesNotStopTheJob() async throws {
        let repository = directory.appendingPathComponent("repository").path
        _ = try Repository.create(path: repository)
        let image = try makeImage("disk.img", megabytes: 512)
        let victim = try startWorker("victim", repository: repository)
        let metricsPort = Int.random(in: 20_000...29_999)
        let survivor = try startWorker("survivor", repository: repository, metricsPort: metricsPort)
        let publisher = LifeboatPublisher(settings: try TestBroker.settings())
        let follower = AMQPConsumer(settings: try TestBroker.settings(), topology: LifeboatTopology.core,
                                    queues: [LifeboatTopology.Queue.results], prefetch: 100)
        try await publisher.send(BackupRequest(requestId: "killed-job", project: "p1", instance: "vm-k", mode: .full,
                                               source: .files(disks: [LocalDisk(name: "vda", path: image, format: .raw)])))
        var killed = false
        var outcome: JobResult?
        for await delivery in follower.deliveries {
            delivery.ack()
            guard let result = try? MessageCodec.decode(JobResult.self, from: delivery.body), result.job?.jobId == "killed-job" else { continue }
            if result.status == .progress && !killed {
                kill(victim.processIdentifier, SIGKILL)  // mid-transfer: its tasks in hand go back to the queue
                killed = true
            }
            if [.succeeded, .failed].contains(result.status) {
                outcome = result
                break
            }
        }
        await follower.shutdown(grace: 1)
        XCTAssertTrue(killed)
        XCTAssertEqual(outcome?.status, .succeeded, outcome?.reason ?? "no outcome")

        let target = directory.appendingPathComponent("restored").path
        try Repository.open(path: repository).restore(backup: "killed-job", disk: "vda", to: target)
        XCTAssertEqual(try digest(target), try digest(image), "the backup is whole and bit-identical")
        await publisher.shutdown()

        // The survivor's Prometheus endpoint counts what it did.
        let metrics = String(decoding: try CurlHandle().get("http://127.0.0.1:\(metricsPort)/metrics"), as: UTF8.self)
        let transfers = metrics.split(separator: "\n").first { $0.hasPrefix("lifeboat_tasks_total{") && $0.contains("kind=\"transfer\"")
            && $0.contains("outcome=\"completed\"") }
        XCTAssertGreaterThan(Int(transfers?.split(separator: " ").last ?? "") ?? 0, 0, metrics)
        XCTAssertTrue(metrics.contains("lifeboat_transferred_bytes_total"), metrics)
        XCTAssertTrue(metrics.contains("lifeboat_task_duration_seconds"), metrics)
        XCTAssertTrue(metrics.contains("lifeboat_queue_lag_seconds"), metrics)

        survivor.terminate()
        survivor.waitUntilExit()
        XCTAssertEqual(survivor.terminationStatus, 0, "SIGTERM stops a worker cleanly")
    }

    /// The libvirt strategy across processes: a worker killed with SIGKILL mid-transfer; the
    /// job completes on the other, and the backup equals the guest's disk at the snapshot.
    func testAWorkerKilledMidLibvirtTransferDoesNotStopTheJob() async throws {
        let hosts = try TestHypervisors.require(1)
        let repository = directory.appendingPathComponent("repository").path
        _ = try Repository.create(path: repository)
        let domain = try await TestHypervisors.busyDomain(on: hosts[0])
        let list = try TestHypervisors.directoryFile(in: directory, hosts: [hosts[0]])
        let victim = try startWorker("victim", repository: repository, hypervisors: list)
        _ = try startWorker("survivor", repository: repository, hypervisors: list)
        let publisher = LifeboatPublisher(settings: try TestBroker.settings())
        let follower = AMQPConsumer(settings: try TestBroker.settings(), topology: LifeboatTopology.core,
                                    queues: [LifeboatTopology.Queue.results], prefetch: 100)
        let job = "\(domain)-killed"
        try await publisher.send(BackupRequest(requestId: job, project: "p1", instance: domain, mode: .full,
                                               source: .libvirt(host: "hv\(hosts[0])", domain: domain, disks: nil)))
        var killed = false
        var outcome: JobResult?
        let deadline = Task {
            try? await Task.sleep(for: .seconds(240))
            await follower.shutdown(grace: 1)
        }
        for await delivery in follower.deliveries {
            delivery.ack()
            guard let result = try? MessageCodec.decode(JobResult.self, from: delivery.body), result.job?.jobId == job else { continue }
            if result.status == .progress && !killed {
                kill(victim.processIdentifier, SIGKILL)  // mid-transfer: its task in hand goes back to the queue
                killed = true
            }
            if [.succeeded, .failed].contains(result.status) {
                outcome = result
                break
            }
        }
        deadline.cancel()
        await follower.shutdown(grace: 1)
        await publisher.shutdown()
        XCTAssertTrue(killed)
        XCTAssertEqual(outcome?.status, .succeeded, outcome?.reason ?? "no outcome")
        // After a full, the disk's file is the frozen point the backup read.
        let target = directory.appendingPathComponent("restored").path
        try Repository.open(path: repository).restore(backup: job, disk: "vda", to: target)
        let frozen = try await guestViewDigest(host: hosts[0], image: "\(domain)-vda.qcow2")
        XCTAssertEqual(try digest(target), frozen, "the backup is whole and equals the disk at the snapshot")
        XCTAssertEqual(try TestHypervisors.overlays(domain, on: hosts[0]), ["\(domain)-vda.qcow2.lifeboat-\(job).qcow2"],
                       "one snapshot, one overlay")
        try await TestHypervisors.run(["virsh", "\(hosts[0])", "destroy", domain])
    }

    func testACancelledJobStopsCleansUpAndIsReported() async throws {
        let repository = directory.appendingPathComponent("repository").path
        _ = try Repository.create(path: repository)
        let image = try makeImage("disk.img", megabytes: 512)
        let worker = try startWorker("worker", repository: repository)
        let publisher = LifeboatPublisher(settings: try TestBroker.settings())
        let follower = AMQPConsumer(settings: try TestBroker.settings(), topology: LifeboatTopology.core,
                                    queues: [LifeboatTopology.Queue.results], prefetch: 100)
        try await publisher.send(BackupRequest(requestId: "doomed", project: "p1", instance: "vm-c", mode: .full,
                                               source: .files(disks: [LocalDisk(name: "vda", path: image, format: .raw)])))
        var statuses: [ResultStatus] = []
        let quiet = Task {
            try? await Task.sleep(for: .seconds(60))
            await follower.shutdown(grace: 1)
        }
        for await delivery in follower.deliveries {
            delivery.ack()
            guard let result = try? MessageCodec.decode(JobResult.self, from: delivery.body), result.job?.jobId == "doomed" else { continue }
            statuses.append(result.status)
            if result.status == .progress && !statuses.dropLast().contains(.progress) {
                try await publisher.send(CancelRequest(requestId: "cancel-doomed", jobId: "doomed", project: "p1"))
            }
            if result.status == .cancelled { break }
        }
        quiet.cancel()
        await follower.shutdown(grace: 1)
        XCTAssertTrue(statuses.contains(.cancelled), "\(statuses)")
        // What was still queued finds the job gone and stops: no success, no failure, nothing visible.
        let later = try LifeboatQueues.results(try await consume(LifeboatTopology.Queue.results, seconds: 5) { _ in false })
            .filter { $0.job?.jobId == "doomed" }
        XCTAssertFalse(later.contains { [.succeeded, .failed].contains($0.status) }, "\(later.map(\.status))")
        let opened = try Repository.open(path: repository)
        XCTAssertEqual(try opened.listBackups(), [])
        XCTAssertFalse(try opened.isBegun("doomed"))
        let tasksLeft = try await BrokerChores.count(LifeboatTopology.Queue.tasks)
        XCTAssertEqual(tasksLeft, 0, "the cancelled job's tasks were drained, not left behind")
        await publisher.shutdown()
        worker.terminate()
        worker.waitUntilExit()
    }

    /// kill -9 at ten points of a job's life: after each of the first nine range reports, and
    /// once the last range is in (finalize running). A replacement worker starts each time.
    func testKillingWorkersAtTenPointsNeverLosesOrCorruptsABackup() async throws {
        let repository = directory.appendingPathComponent("repository").path
        _ = try Repository.create(path: repository)
        let image = try makeImage("disk.img", megabytes: 320)  // ten 32 MiB ranges
        var workers = [try startWorker("w0", repository: repository), try startWorker("w1", repository: repository)]
        let publisher = LifeboatPublisher(settings: try TestBroker.settings())
        let follower = AMQPConsumer(settings: try TestBroker.settings(), topology: LifeboatTopology.core,
                                    queues: [LifeboatTopology.Queue.results], prefetch: 100)
        var iterator = follower.deliveries.makeAsyncIterator()
        var outcomes: [String: ResultStatus] = [:]
        for point in 1...10 {
            let job = "kill-point-\(point)"
            try await publisher.send(BackupRequest(requestId: job, project: "p1", instance: "vm-\(point)", mode: .full,
                                                   source: .files(disks: [LocalDisk(name: "vda", path: image, format: .raw)])))
            var reports = 0
            var killed = false
            while let delivery = await iterator.next() {
                delivery.ack()
                guard let result = try? MessageCodec.decode(JobResult.self, from: delivery.body), result.job?.jobId == job else { continue }
                if result.status == .progress { reports += 1 }
                let atPoint = point < 10 ? reports == point : result.progress?.bytesDone == result.progress?.bytesTotal
                if !killed && result.status == .progress && atPoint {
                    let victim = workers.removeFirst()
                    kill(victim.processIdentifier, SIGKILL)
                    workers.append(try startWorker("w\(point + 1)", repository: repository))
                    killed = true
                }
                if [.succeeded, .failed].contains(result.status) {
                    outcomes[job] = result.status
                    break
                }
            }
            XCTAssertTrue(killed, "\(job): the kill point was reached")
        }
        await follower.shutdown(grace: 1)
        await publisher.shutdown()
        for worker in workers { worker.terminate() }

        XCTAssertEqual(outcomes.count, 10)
        XCTAssertTrue(outcomes.values.allSatisfy { $0 == .succeeded }, "\(outcomes)")
        let opened = try Repository.open(path: repository)
        XCTAssertEqual(try opened.listBackups().count, 10, "each job committed once")
        XCTAssertTrue(try opened.verify().isHealthy)
        let want = try digest(image)
        for point in [1, 5, 10] {
            let target = directory.appendingPathComponent("restored-\(point)").path
            try opened.restore(backup: "kill-point-\(point)", disk: "vda", to: target)
            XCTAssertEqual(try digest(target), want, "kill-point-\(point) restores bit-identically")
        }
    }
}
