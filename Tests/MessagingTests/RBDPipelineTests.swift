import Ceph
import Events
import Foundation
import Publisher
import Repository
@testable import Workers
import XCTest

/// The single-node Ceph `scripts/ceph.sh` runs, as the worker and the tests reach it: the
/// worker as client.lifeboat through its cluster list, the tests as the admin through the rbd
/// CLI and python3-rbd (a guest's writes at exact offsets).
enum TestCephCluster {
    static let environment = ProcessInfo.processInfo.environment
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static var conf: String { environment["LIFEBOAT_TEST_CEPH_CONF"] ?? "" }
    static var adminKeyring: String { environment["LIFEBOAT_TEST_CEPH_ADMIN_KEYRING"] ?? "" }
    static var pool: String { environment["LIFEBOAT_TEST_CEPH_POOL"] ?? "volumes" }

    static func require() throws {
        guard !conf.isEmpty else {
            let message = "needs Ceph: run through scripts/test.sh, which starts it with scripts/ceph.sh"
            if environment["LIFEBOAT_STRICT_TESTS"] != nil { throw TestEnvironmentMissing(message) }
            throw XCTSkip(message)
        }
    }

    /// A cluster list naming the test cluster `ceph-test`, with `keyring` instead of the user's
    /// own, holding the test cloud's Cinder backend `ceph` (pool volumes) unless told otherwise.
    static func clusterFile(in directory: URL, keyring: String? = nil, openstackBackends: [String: String]? = nil) throws -> String {
        let entry: [String: Any] = ["name": "ceph-test", "conf": conf, "user": environment["LIFEBOAT_TEST_CEPH_USER"] ?? "lifeboat",
                                    "keyring": keyring ?? environment["LIFEBOAT_TEST_CEPH_KEYRING"] ?? "",
                                    "openstackBackends": openstackBackends ?? ["ceph": pool]]
        let path = directory.appendingPathComponent("ceph-\(UUID().uuidString.prefix(6)).json").path
        try JSONSerialization.data(withJSONObject: ["clusters": [entry]]).write(to: URL(fileURLWithPath: path))
        return path
    }

    static func uniqueImage(_ stem: String) -> String { "\(stem)-\(UUID().uuidString.prefix(6).lowercased())" }

    /// `scripts/lib/rbd-edit.py` operations on an image of the test pool.
    static func edit(_ image: String, _ operations: [String]) async throws {
        try await check("/usr/bin/python3", [root.appendingPathComponent("scripts/lib/rbd-edit.py").path, conf, "admin", adminKeyring, pool, image]
                        + operations)
    }

    /// The rbd CLI as the admin; its output.
    @discardableResult
    static func rbd(_ arguments: [String]) async throws -> String {
        try await check("/usr/bin/rbd", ["-c", conf, "--id", "admin", "--keyring", adminKeyring] + arguments)
    }

    /// SHA-256 of `rbd export SPEC -`.
    static func exportDigest(_ spec: String) async throws -> String {
        try await check("/bin/bash", ["-c", "set -o pipefail; rbd -c \"$1\" --id admin --keyring \"$2\" --no-progress export \"$3\" - | sha256sum",
                                    "sh", conf, adminKeyring, spec]).split(separator: " ").first.map(String.init) ?? ""
    }

    static func snapshots(_ image: String) async throws -> [String] {
        try await rbd(["snap", "ls", "--format", "json", "\(pool)/\(image)"]).data(using: .utf8)
            .flatMap { try JSONSerialization.jsonObject(with: $0) as? [[String: Any]] }?.compactMap { $0["name"] as? String } ?? []
    }

    static func remove(_ images: [String]) async {
        for image in images {
            _ = try? await rbd(["snap", "purge", "\(pool)/\(image)"])
            _ = try? await rbd(["rm", "--no-progress", "\(pool)/\(image)"])
        }
    }

    @discardableResult
    private static func check(_ path: String, _ arguments: [String]) async throws -> String {
        var output = Data()
        let status = try await runProcess(path, arguments, output: &output)
        guard status == 0 else { throw TestEnvironmentMissing("\(path) \(arguments.joined(separator: " ")) exited \(status)") }
        return String(decoding: output, as: UTF8.self)
    }
}

/// The Ceph strategy end to end through real workers: RBD images snapshotted and read through
/// librbd, full and incremental backups checked against `rbd export` of their snapshots,
/// restores into new images and over the original, and the cluster's faults.
final class RBDPipelineTests: XCTestCase {
    var directory: URL!
    var images: [String] = []

    override func setUp() async throws {
        try TestCephCluster.require()
        try await LifeboatQueues.reset()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("lifeboat-rbd-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDown() async throws {
        await TestCephCluster.remove(images)
        if let directory { try? FileManager.default.removeItem(at: directory) }
    }



    /// A fresh repository, one worker reading the test cluster in ranges of `rangeBytes`, and
    /// a publisher.
    private func startWorker(rangeBytes: UInt64 = 16 << 20) throws -> (String, RunningWorker, LifeboatPublisher) {
        let repositoryPath = directory.appendingPathComponent("repository").path
        _ = try Repository.create(path: repositoryPath)
        let worker = try RunningWorker(repository: repositoryPath, rangeBytes: rangeBytes, cephClusters: try TestCephCluster.clusterFile(in: directory))
        return (repositoryPath, worker, LifeboatPublisher(settings: try TestBroker.settings()))
    }

    /// The ranges ("disk.offset") that tasks of `kind` reported on.
    static func rangeTasks(_ kind: TaskKind, in results: [JobResult]) -> Set<String> {
        Set(results.compactMap { $0.task?.kind == kind ? $0.task?.taskId.components(separatedBy: ".\(kind.rawValue).").last : nil })
    }

    /// SHA-256 of disk vda of `backup`, restored to a file.
    private func restoredDigest(_ repositoryPath: String, backup: String) throws -> String {
        let file = directory.appendingPathComponent("\(backup).img").path
        try Repository.open(path: repositoryPath).restore(backup: backup, disk: "vda", to: file)
        return try sha256(of: file)
    }

    private func backup(_ publisher: LifeboatPublisher, _ id: String, instance: String, disks: [RBDDisk]) async throws -> [JobResult] {
        try await publisher.send(BackupRequest(requestId: id, project: "p1", instance: instance, mode: .incremental,
                                               source: .rbd(cluster: "ceph-test", disks: disks)))
        return try await LifeboatQueues.results(of: id, until: .succeeded)
    }

    private func restore(_ publisher: LifeboatPublisher, _ id: String, backup: String, prefix: String?, overwrite: Bool = false) async throws -> [JobResult] {
        try await publisher.send(RestoreRequest(requestId: id, project: "p1", backupId: backup,
                                                target: .rbd(cluster: "ceph-test", pool: TestCephCluster.pool, imagePrefix: prefix, overwrite: overwrite),
                                                requestedBy: Principal(userId: "u1")))
        return try await LifeboatQueues.results(of: id, until: .succeeded)
    }

    /// A full (reading only the allocated ranges) and two incrementals of a two-disk instance
    /// with writes (and a discard) between them, then an incremental with nothing changed: every restore point, restored into new
    /// images by the worker, equals `rbd export` of its snapshot; one kept snapshot per image,
    /// the operator's own snapshot untouched; the unchanged incremental reads nothing.
    func testFullAndIncrementalsEqualTheExportedSnapshots() async throws {
        let root = TestCephCluster.uniqueImage("lb-root"), data = TestCephCluster.uniqueImage("lb-data")
        images = [root, data]
        try await TestCephCluster.edit(root, ["create:96M", "random:0:12M:1", "fill:40M:5M:0x3c", "random:90M:6M:2", "snap:operator-own"])
        try await TestCephCluster.edit(data, ["create:40M", "random:8M:3M:3"])
        let disks = [RBDDisk(name: "vda", pool: TestCephCluster.pool, image: root), RBDDisk(name: "vdb", pool: TestCephCluster.pool, image: data)]
        let (repositoryPath, worker, publisher) = try startWorker()
        let writes = [["random:1M:300K:4", "discard:40M:2M", "random:70M:1M:5"], ["fill:0:4K:0xee", "random:91M:2M:6"]]
        var digests: [String: [String: String]] = [:]  // backup → disk → export digest of its snapshot
        for step in 0..<3 {
            let id = "rbd-b\(step)"
            let outcome = try await backup(publisher, id, instance: "vm-rbd", disks: disks)
            XCTAssertEqual(outcome.last?.status, .succeeded, LifeboatQueues.summary(outcome))
            let started = outcome.first { $0.status == .started }?.details ?? [:]
            XCTAssertEqual(started["parent"], step == 0 ? "none" : "rbd-b\(step - 1)", LifeboatQueues.summary(outcome))
            if step == 0 {
                XCTAssertEqual(started["fallback"], "full: no earlier backup of this instance")
                // The full reads only the ranges with allocated objects; the holes between them
                // are committed as zeros (the restores below check they are).
                XCTAssertEqual(Self.rangeTasks(.transfer, in: outcome), ["vda.0", "vda.\(32 << 20)", "vda.\(80 << 20)", "vdb.0"],
                               LifeboatQueues.summary(outcome))
            }
            digests[id] = [:]
            for (disk, image) in [("vda", root), ("vdb", data)] {
                digests[id]?[disk] = try await TestCephCluster.exportDigest("\(TestCephCluster.pool)/\(image)@lifeboat-\(id)")
                let kept = try await TestCephCluster.snapshots(image)
                XCTAssertEqual(kept.filter { $0.hasPrefix("lifeboat-") }, ["lifeboat-\(id)"], "one kept snapshot of \(image)")
                if image == root { XCTAssertTrue(kept.contains("operator-own"), "a snapshot Lifeboat did not make stays") }
            }
            if step < 2 { try await TestCephCluster.edit(root, writes[step]) }
        }
        // Nothing changed since rbd-b2: no range is read at all.
        let unchanged = try await backup(publisher, "rbd-b3", instance: "vm-rbd", disks: disks)
        XCTAssertEqual(unchanged.last?.status, .succeeded, LifeboatQueues.summary(unchanged))
        XCTAssertEqual(unchanged.first { $0.status == .started }?.details?["changedObjectBytes"], "0", LifeboatQueues.summary(unchanged))
        XCTAssertFalse(unchanged.contains { $0.task?.kind == .transfer }, "no transfer task for an unchanged image")
        digests["rbd-b3"] = digests["rbd-b2"]

        for (n, backupId) in digests.keys.sorted().enumerated() {
            let outcome = try await restore(publisher, "rbd-r\(n)", backup: backupId, prefix: "lb-restored-\(n)-")
            XCTAssertEqual(outcome.last?.status, .succeeded, LifeboatQueues.summary(outcome))
            if backupId == "rbd-b0" {
                // Into new images (which start as zeros) only the ranges with data are written.
                XCTAssertEqual(Self.rangeTasks(.restore, in: outcome), ["vda.0", "vda.\(32 << 20)", "vda.\(80 << 20)", "vdb.0"],
                               LifeboatQueues.summary(outcome))
            }
            for (disk, image) in [("vda", root), ("vdb", data)] {
                images.append("lb-restored-\(n)-\(image)")
                let restored = try await TestCephCluster.exportDigest("\(TestCephCluster.pool)/lb-restored-\(n)-\(image)")
                XCTAssertEqual(restored, digests[backupId]?[disk], "\(backupId) \(disk)")
            }
        }
        // A new image is never written over: the same names again are refused...
        let again = try await restore(publisher, "rbd-again", backup: "rbd-b0", prefix: "lb-restored-0-")
        XCTAssertEqual(again.last?.status, .rejected, LifeboatQueues.summary(again))
        XCTAssertTrue(again.last?.reason?.contains("already exists") == true, LifeboatQueues.summary(again))
        // ...unless the request says so: the original images go back to the first point.
        let back = try await restore(publisher, "rbd-overwrite", backup: "rbd-b0", prefix: nil, overwrite: true)
        XCTAssertEqual(back.last?.status, .succeeded, LifeboatQueues.summary(back))
        // Over existing images every range is written: the zero ones are cleared.
        XCTAssertEqual(Self.rangeTasks(.restore, in: back).count, 6 + 3, LifeboatQueues.summary(back))
        for (disk, image) in [("vda", root), ("vdb", data)] {
            let now = try await TestCephCluster.exportDigest("\(TestCephCluster.pool)/\(image)")
            XCTAssertEqual(now, digests["rbd-b0"]?[disk], "\(image) overwritten with rbd-b0")
        }
        await publisher.shutdown()
        await worker.stop()
        let repository = try Repository.open(path: repositoryPath)
        XCTAssertTrue(try repository.verify().damaged.isEmpty)
    }

    /// A volume never written to (a fresh Cinder volume): its full reads nothing and goes
    /// straight to the commit, all zeros; its restore is one task that creates the new image.
    func testAnEmptyImageBacksUpWithoutATransferAndRestoresAsZeros() async throws {
        let image = TestCephCluster.uniqueImage("lb-empty")
        images = [image, "lb-restored-\(image)"]
        try await TestCephCluster.edit(image, ["create:40M"])
        let disks = [RBDDisk(name: "vda", pool: TestCephCluster.pool, image: image)]
        let (repositoryPath, worker, publisher) = try startWorker()
        let outcome = try await backup(publisher, "empty-b0", instance: "vm-empty", disks: disks)
        XCTAssertEqual(outcome.last?.status, .succeeded, LifeboatQueues.summary(outcome))
        XCTAssertEqual(Self.rangeTasks(.transfer, in: outcome), [], LifeboatQueues.summary(outcome))
        let manifest = try Repository.open(path: repositoryPath).manifest("empty-b0")
        XCTAssertEqual(manifest.disks.map(\.zeroChunks), [manifest.disks.first?.chunkCount ?? -1])

        let restored = try await restore(publisher, "empty-r0", backup: "empty-b0", prefix: "lb-restored-")
        XCTAssertEqual(restored.last?.status, .succeeded, LifeboatQueues.summary(restored))
        XCTAssertEqual(Self.rangeTasks(.restore, in: restored), ["vda.0"], LifeboatQueues.summary(restored))
        let expected = try await TestCephCluster.exportDigest("\(TestCephCluster.pool)/\(image)@lifeboat-empty-b0")
        let actual = try await TestCephCluster.exportDigest("\(TestCephCluster.pool)/lb-restored-\(image)")
        XCTAssertEqual(actual, expected)
        await publisher.shutdown()
        await worker.stop()
    }

    /// The snapshot the next incremental needs is deleted behind Lifeboat's back: the backup
    /// becomes a full and says why, and is still exact.
    func testDeletedKeptSnapshotFallsBackToAFull() async throws {
        let image = TestCephCluster.uniqueImage("lb-gone")
        images = [image]
        try await TestCephCluster.edit(image, ["create:48M", "random:0:6M:7"])
        let disks = [RBDDisk(name: "vda", pool: TestCephCluster.pool, image: image)]
        let (repositoryPath, worker, publisher) = try startWorker()
        let first = try await backup(publisher, "gone-b0", instance: "vm-gone", disks: disks)
        XCTAssertEqual(first.last?.status, .succeeded, LifeboatQueues.summary(first))
        try await TestCephCluster.rbd(["snap", "rm", "--no-progress", "\(TestCephCluster.pool)/\(image)@lifeboat-gone-b0"])
        try await TestCephCluster.edit(image, ["random:20M:1M:8"])
        let second = try await backup(publisher, "gone-b1", instance: "vm-gone", disks: disks)
        XCTAssertEqual(second.last?.status, .succeeded, LifeboatQueues.summary(second))
        let started = second.first { $0.status == .started }?.details ?? [:]
        XCTAssertEqual(started["parent"], "none", LifeboatQueues.summary(second))
        XCTAssertTrue(started["fallback"]?.contains("lifeboat-gone-b0, kept for this incremental, is gone") == true, LifeboatQueues.summary(second))
        let expected = try await TestCephCluster.exportDigest("\(TestCephCluster.pool)/\(image)@lifeboat-gone-b1")
        await publisher.shutdown()
        await worker.stop()
        XCTAssertEqual(try restoredDigest(repositoryPath, backup: "gone-b1"), expected)
    }

    /// The whole cluster (monitor, OSD, manager) restarted while ranges are being read: the job
    /// completes, exact, with one snapshot.
    func testClusterRestartMidTransferCompletes() async throws {
        let image = TestCephCluster.uniqueImage("lb-restart")
        images = [image]
        try await TestCephCluster.edit(image, ["create:512M", "random:0:512M:9"])
        let disks = [RBDDisk(name: "vda", pool: TestCephCluster.pool, image: image)]
        // One-chunk ranges: 512 tasks, so most of them run after the cluster went down (with
        // fewer, faster reads could finish the job before the restart takes effect).
        let (repositoryPath, worker, publisher) = try startWorker(rangeBytes: 1 << 20)
        try await publisher.send(BackupRequest(requestId: "restart-b0", project: "p1", instance: "vm-restart", mode: .full,
                                               source: .rbd(cluster: "ceph-test", disks: disks)))
        _ = try await consume(LifeboatTopology.Queue.results, seconds: 120) { deliveries in
            deliveries.contains { (try? MessageCodec.decode(JobResult.self, from: $0.body))?.status == .progress }
        }
        guard let control = TestCephCluster.environment["LIFEBOAT_TEST_CEPH_CTL"] else { throw TestEnvironmentMissing("LIFEBOAT_TEST_CEPH_CTL is not set") }
        let restarted = try await runProcess(control, ["restart"])
        XCTAssertEqual(restarted, 0)
        let back = Date()
        let outcome = try await LifeboatQueues.results(of: "restart-b0", until: .succeeded, seconds: 300)
        XCTAssertEqual(outcome.last?.status, .succeeded, LifeboatQueues.summary(outcome))
        XCTAssertTrue(outcome.contains { $0.status == .progress && $0.at > back }, "ranges were still being read when the cluster came back")
        let snapshots = try await TestCephCluster.snapshots(image)
        XCTAssertEqual(snapshots, ["lifeboat-restart-b0"])
        let expected = try await TestCephCluster.exportDigest("\(TestCephCluster.pool)/\(image)@lifeboat-restart-b0")
        await publisher.shutdown()
        await worker.stop()
        XCTAssertEqual(try restoredDigest(repositoryPath, backup: "restart-b0"), expected)
    }

    /// The two last range tasks of a restore may both ask for `restore-finalize`: the run that
    /// finds the image already renamed by the other is done, while a name taken by another image
    /// still fails the restore.
    func testAFinalizeRunTwiceRenamesTheImageOnce() async throws {
        let working = TestCephCluster.uniqueImage("lb-working"), final = TestCephCluster.uniqueImage("lb-final")
        let other = TestCephCluster.uniqueImage("lb-working")
        images = [working, final, other]
        let clusters = try CephClusterDirectory(contentsOf: try TestCephCluster.clusterFile(in: directory))
        let pool = try clusters.connect("ceph-test").pool(TestCephCluster.pool)
        try pool.createImage(working, size: 4 << 20)
        try RBDStrategy.rename(pool, working, to: final)
        try RBDStrategy.rename(pool, working, to: final)  // the second run: the working image is gone
        XCTAssertFalse(try pool.imageExists(working))
        XCTAssertTrue(try pool.imageExists(final))
        try pool.createImage(other, size: 4 << 20)
        XCTAssertThrowsError(try RBDStrategy.rename(pool, other, to: final)) { error in
            XCTAssertEqual((error as? CephError)?.code, -EEXIST)
        }
    }

    /// A keyring with the wrong key: the job fails at once (no retries) saying so, nothing is
    /// visible; a worker without the cluster configured refuses the request by name.
    func testWrongKeyringAndMissingClusterFailClearly() async throws {
        let image = TestCephCluster.uniqueImage("lb-key")
        images = [image]
        try await TestCephCluster.edit(image, ["create:8M", "random:0:1M:10"])
        let keyring = directory.appendingPathComponent("wrong.keyring").path
        try "[client.lifeboat]\n\tkey = AQBxmWFlAAAAABAAr3xGCrbKx6Vw9oMXQm1GxA==\n".write(toFile: keyring, atomically: true, encoding: .utf8)
        let repositoryPath = directory.appendingPathComponent("repository").path
        _ = try Repository.create(path: repositoryPath)
        let disks = [RBDDisk(name: "vda", pool: TestCephCluster.pool, image: image)]
        let publisher = LifeboatPublisher(settings: try TestBroker.settings())

        let wrong = try RunningWorker(repository: repositoryPath, cephClusters: try TestCephCluster.clusterFile(in: directory, keyring: keyring))
        try await publisher.send(BackupRequest(requestId: "key-b0", project: "p1", instance: "vm-key", mode: .full,
                                               source: .rbd(cluster: "ceph-test", disks: disks)))
        let failed = try await LifeboatQueues.results(of: "key-b0", until: .failed)
        await wrong.stop()
        XCTAssertEqual(failed.last?.status, .failed, LifeboatQueues.summary(failed))
        XCTAssertTrue(failed.last?.reason?.contains("Permission denied") == true, LifeboatQueues.summary(failed))
        XCTAssertTrue(failed.last?.reason?.contains("keyring") == true, LifeboatQueues.summary(failed))
        XCTAssertEqual(failed.last?.task?.attempt, 1, "a refused key is not retried")
        let remaining = try await TestCephCluster.snapshots(image)
        XCTAssertEqual(remaining, [])

        let unconfigured = try RunningWorker(repository: repositoryPath)
        try await publisher.send(BackupRequest(requestId: "key-b1", project: "p1", instance: "vm-key", mode: .full,
                                               source: .rbd(cluster: "ceph-test", disks: disks)))
        let refused = try await LifeboatQueues.results(of: "key-b1", until: .rejected)
        await unconfigured.stop()
        await publisher.shutdown()
        XCTAssertEqual(refused.last?.status, .rejected, LifeboatQueues.summary(refused))
        XCTAssertTrue(refused.last?.reason?.contains("Ceph is not configured") == true, LifeboatQueues.summary(refused))
        XCTAssertTrue(try Repository.open(path: repositoryPath).listBackups().isEmpty)
    }
}
