import Events
import Foundation
import Logging
import OpenStack
import Publisher
import Repository
@testable import Workers
import XCTest

/// Disk attachment against the real cloud: Cinder snapshots carol's volumes, Lifeboat attaches
/// volumes made from the snapshots to its proxy server (a real Nova server on the real libvirt
/// driver), reads them where the proxy's hypervisor sees them, and detaches and deletes all it
/// made — after a success and after a failure.
final class AttachmentBackupTests: XCTestCase {
    func testCinderVolumesAreReadThroughTheProxyServerAndWhatWasMadeForThemIsDeleted() async throws {
        try await Leftovers.removing { try await cinderVolumesAreReadThroughTheProxy($0) }
    }

    private func cinderVolumesAreReadThroughTheProxy(_ leftovers: Leftovers) async throws {
        let (demo, bobID, suffix, directory, cinder, nova) = try await Self.prepare(leftovers, "attach")

        // Lifeboat's proxy server, and a volume of carol's that is attached to nothing, with data.
        let proxy = try await TestOpenStack.createServer("lb-proxy-\(suffix)")
        let volume = try await Self.volume(named: "lb-att-\(suffix)", cloud: "lifeboat-carol")
        leftovers.add { await TestOpenStack.deleteServer(proxy, andVolumes: [volume]) }
        try await TestCephCluster.edit("volume-\(volume)", ["random:1M:3M:41", "fill:600M:1M:0x3c"])
        let volumeDigest = try await TestCephCluster.exportDigest("\(TestCephCluster.pool)/volume-\(volume)")

        let repositoryPath = directory.appendingPathComponent("repository").path
        _ = try Repository.create(path: repositoryPath)
        let hypervisors = try TestOpenStack.computeHostFile(in: directory)
        let clusters = try TestCephCluster.clusterFile(in: directory)
        var worker = try RunningWorker(repository: repositoryPath, files: directory.path, rangeBytes: 64 << 20, hypervisors: hypervisors,
                                       cephClusters: clusters, openstackCloud: "lifeboat-admin", attachmentProxy: proxy, attachmentBackends: ["*"])
        let publisher = LifeboatPublisher(settings: try TestBroker.settings())

        // The volume, named as the source: read through the proxy, and an incremental says why it is a full.
        try await publisher.send(BackupRequest(requestId: "att-\(suffix)", project: demo, instance: volume, mode: .incremental,
                                               source: .cinder(disks: [CinderDisk(name: "vdb", volume: volume)])))
        let backup = try await LifeboatQueues.results(of: "att-\(suffix)", until: .succeeded, seconds: 300)
        XCTAssertEqual(backup.last?.status, .succeeded, LifeboatQueues.summary(backup))
        XCTAssertTrue(backup.contains { $0.details?["fallback"]?.hasPrefix("full: disk attachment reads whole volumes") == true },
                      LifeboatQueues.summary(backup))
        XCTAssertEqual(backup.last?.details?["proxyServer"], proxy)
        try await assertNothingLeft(of: "att-\(suffix)", disks: ["vdb"], cinder: cinder, nova: nova, proxy: proxy)
        // Byte for byte the volume.
        try await publisher.send(RestoreRequest(requestId: "att-\(suffix)-files", project: demo, backupId: "att-\(suffix)",
                                                target: .files(directory: directory.path, format: .raw), disks: nil,
                                                requestedBy: Principal(userId: bobID)))
        let restored = try await LifeboatQueues.results(of: "att-\(suffix)-files", until: .succeeded, seconds: 240)
        XCTAssertEqual(restored.last?.status, .succeeded, LifeboatQueues.summary(restored))
        XCTAssertEqual(try sha256(of: directory.appendingPathComponent("vdb.img").path), volumeDigest)

        // Refused at once: a volume Cinder does not know, and one of another project.
        try await publisher.send(BackupRequest(requestId: "att-\(suffix)-missing", project: demo, instance: "x", mode: .full,
                                               source: .cinder(disks: [CinderDisk(name: "vdb", volume: "no-such-volume")])))
        let missing = try await LifeboatQueues.results(of: "att-\(suffix)-missing", until: .succeeded, seconds: 60)
        XCTAssertEqual(missing.last?.status, .rejected, LifeboatQueues.summary(missing))
        XCTAssertTrue(missing.last?.reason?.contains("Cinder has no volume no-such-volume") == true, LifeboatQueues.summary(missing))
        try await publisher.send(BackupRequest(requestId: "att-\(suffix)-other", project: "another-project", instance: volume, mode: .full,
                                               source: .cinder(disks: [CinderDisk(name: "vdb", volume: volume)])))
        let other = try await LifeboatQueues.results(of: "att-\(suffix)-other", until: .succeeded, seconds: 60)
        XCTAssertEqual(other.last?.status, .rejected, LifeboatQueues.summary(other))
        XCTAssertTrue(other.last?.reason?.contains("is not in project another-project") == true, LifeboatQueues.summary(other))

        // A server of carol's that boots from a volume: naming only the server, the worker (which
        // reads every backend by attachment) chooses disk attachment and saves the server's metadata.
        let bootVolume = try await Self.volume(named: "lb-att-boot-\(suffix)", cloud: "lifeboat-carol",
                                               extra: ["--image", TestOpenStack.environment["LIFEBOAT_TEST_OS_IMAGE"] ?? "lifeboat-blank", "--bootable"])
        let server = try await TestOpenStack.createServer("lb-att-\(suffix)", cloud: "lifeboat-carol", bootVolume: bootVolume)
        leftovers.add { await TestOpenStack.deleteServer(server, andVolumes: [bootVolume]) }
        try await TestCephCluster.edit("volume-\(bootVolume)", ["random:64M:2M:43"])
        let bootDigest = try await TestCephCluster.exportDigest("\(TestCephCluster.pool)/volume-\(bootVolume)")
        try await publisher.send(BackupRequest(requestId: "att-\(suffix)-server", project: demo, instance: server, mode: .full))
        let serverBackup = try await LifeboatQueues.results(of: "att-\(suffix)-server", until: .succeeded, seconds: 300)
        XCTAssertEqual(serverBackup.last?.status, .succeeded, LifeboatQueues.summary(serverBackup))
        XCTAssertEqual(serverBackup.first?.details?["strategy"], "attachment", LifeboatQueues.summary(serverBackup))
        let repository = try Repository.open(path: repositoryPath)
        let metadata = try JSONDecoder().decode(BackupMetadata.self, from: try repository.manifest("att-\(suffix)-server").metadata)
        XCTAssertEqual(metadata.openstack?.server.id, server, "the server's metadata is saved")
        XCTAssertEqual(metadata.attachment?.volumes.values.map(\.volumeID), [bootVolume])
        let disk = try XCTUnwrap(metadata.disks.first, "\(metadata)")
        try await assertNothingLeft(of: "att-\(suffix)-server", disks: [disk], cinder: cinder, nova: nova, proxy: proxy)
        try await publisher.send(RestoreRequest(requestId: "att-\(suffix)-server-files", project: demo, backupId: "att-\(suffix)-server",
                                                target: .files(directory: directory.path, format: .raw), disks: nil,
                                                requestedBy: Principal(userId: bobID)))
        let serverRestored = try await LifeboatQueues.results(of: "att-\(suffix)-server-files", until: .succeeded, seconds: 240)
        XCTAssertEqual(serverRestored.last?.status, .succeeded, LifeboatQueues.summary(serverRestored))
        XCTAssertEqual(try sha256(of: directory.appendingPathComponent("\(disk).img").path), bootDigest)

        // A worker whose proxy is gone: the snapshot and its volume are made, the attach fails for
        // good, and the rollback deletes both.
        await worker.stop()
        worker = try RunningWorker(repository: repositoryPath, files: directory.path, rangeBytes: 64 << 20, hypervisors: hypervisors,
                                   cephClusters: clusters, openstackCloud: "lifeboat-admin", attachmentProxy: "no-such-proxy", attachmentBackends: ["*"])
        try await publisher.send(BackupRequest(requestId: "att-\(suffix)-noproxy", project: demo, instance: volume, mode: .full,
                                               source: .cinder(disks: [CinderDisk(name: "vdb", volume: volume)])))
        let failed = try await LifeboatQueues.results(of: "att-\(suffix)-noproxy", until: .failed, seconds: 300)
        XCTAssertEqual(failed.last?.status, .failed, LifeboatQueues.summary(failed))
        XCTAssertTrue(failed.last?.reason?.contains("proxy server no-such-proxy") == true, LifeboatQueues.summary(failed))
        var left: [String] = []
        for _ in 0..<60 {
            left = try await madeForBackup("att-\(suffix)-noproxy", disks: ["vdb"], cinder: cinder)
            if left.isEmpty { break }
            try await Task.sleep(for: .seconds(2))
        }
        XCTAssertEqual(left, [], "the rollback deletes the snapshot and the volume made from it")
        XCTAssertFalse(try repository.listBackups().contains { $0.id == "att-\(suffix)-noproxy" })
        await worker.stop()
    }

    /// One job, two strategies: a server booted from an image (its root disk a file on the
    /// hypervisor, read through the libvirt snapshot) with a volume on a backend read by disk
    /// attachment. A full, then an incremental after new data in both: each restores to exactly
    /// the volume's data at its time, and each releases what it made for the volume.
    func testAServerWithItsOwnDiskAndAnAttachedVolumeIsBackedUpInOneJobByBothStrategies() async throws {
        try await Leftovers.removing { try await serverWithBothStrategies($0) }
    }

    private func serverWithBothStrategies(_ leftovers: Leftovers) async throws {
        let (demo, bobID, suffix, directory, cinder, nova) = try await Self.prepare(leftovers, "mixed")

        let proxy = try await TestOpenStack.createServer("lb-proxy-\(suffix)")
        let server = try await TestOpenStack.createServer("lb-mixed-\(suffix)", cloud: "lifeboat-carol")
        let volume = try await Self.volume(named: "lb-mixed-\(suffix)", cloud: "lifeboat-carol")
        leftovers.add { await TestOpenStack.deleteServer(proxy) }
        leftovers.add { await TestOpenStack.deleteServer(server, andVolumes: [volume]) }
        let status = try await runProcess("/usr/bin/openstack", ["--os-cloud", "lifeboat-carol", "server", "add", "volume", server, volume])
        XCTAssertEqual(status, 0)
        try await TestOpenStack.waitFor(volume: volume, status: "in-use")
        try await TestCephCluster.edit("volume-\(volume)", ["random:2M:3M:51"])
        let firstDigest = try await TestCephCluster.exportDigest("\(TestCephCluster.pool)/volume-\(volume)")

        let repositoryPath = directory.appendingPathComponent("repository").path
        _ = try Repository.create(path: repositoryPath)
        let worker = try RunningWorker(repository: repositoryPath, files: directory.path, rangeBytes: 64 << 20,
                                       hypervisors: try TestOpenStack.computeHostFile(in: directory),
                                       cephClusters: try TestCephCluster.clusterFile(in: directory), openstackCloud: "lifeboat-admin",
                                       attachmentProxy: proxy, attachmentBackends: ["*"])
        let publisher = LifeboatPublisher(settings: try TestBroker.settings())
        let repository = try Repository.open(path: repositoryPath)

        var previous: String?
        for (round, mode) in [BackupMode.full, .incremental].enumerated() {
            let id = "mixed-\(suffix)-\(round)"
            if round == 1 { try await TestCephCluster.edit("volume-\(volume)", ["random:500M:1M:52"]) }
            let expected = round == 0 ? firstDigest : try await TestCephCluster.exportDigest("\(TestCephCluster.pool)/volume-\(volume)")
            try await publisher.send(BackupRequest(requestId: id, project: demo, instance: server, mode: mode))
            let backup = try await LifeboatQueues.results(of: id, until: .succeeded, seconds: 300)
            XCTAssertEqual(backup.last?.status, .succeeded, LifeboatQueues.summary(backup))
            XCTAssertEqual(backup.last?.details?["released"], volume, LifeboatQueues.summary(backup))
            let metadata = try JSONDecoder().decode(BackupMetadata.self, from: try repository.manifest(id).metadata)
            XCTAssertNotNil(metadata.libvirt, "the root disk is read through the libvirt snapshot")
            let attachedDisk = try XCTUnwrap(metadata.attachment?.volumes.first { $0.value.volumeID == volume }?.key, "\(metadata)")
            XCTAssertEqual(Set(metadata.disks).count, 2, "\(metadata.disks)")
            if round == 1 { XCTAssertEqual(try repository.manifest(id).parent, previous, "the root disk continues the full") }
            previous = id
            try await assertNothingLeft(of: id, disks: [attachedDisk], cinder: cinder, nova: nova, proxy: proxy)

            try await publisher.send(RestoreRequest(requestId: "\(id)-files", project: demo, backupId: id,
                                                    target: .files(directory: directory.path, format: .raw), disks: [attachedDisk],
                                                    requestedBy: Principal(userId: bobID)))
            let restored = try await LifeboatQueues.results(of: "\(id)-files", until: .succeeded, seconds: 240)
            XCTAssertEqual(restored.last?.status, .succeeded, LifeboatQueues.summary(restored))
            let file = directory.appendingPathComponent("\(attachedDisk).img").path
            XCTAssertEqual(try sha256(of: file), expected, "round \(round)")
            try FileManager.default.removeItem(atPath: file)
        }
        await worker.stop()
    }

    /// The test cloud's demo project and bob (a member of it), a unique suffix for names, a
    /// scratch directory (removed with the leftovers), and admin clients of Cinder and Nova.
    private static func prepare(_ leftovers: Leftovers, _ name: String) async throws
        -> (demo: String, bobID: String, suffix: String, directory: URL, cinder: CinderClient, nova: NovaClient) {
        try TestOpenStack.require()
        try TestCephCluster.require()
        let environment = ProcessInfo.processInfo.environment
        guard let demo = environment["LIFEBOAT_TEST_OS_DEMO_PROJECT_ID"], let bobID = environment["LIFEBOAT_TEST_OS_BOB_USER_ID"] else {
            throw TestEnvironmentMissing("needs scripts/openstack.sh env (demo project, bob)")
        }
        try await LifeboatQueues.reset()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lifeboat-\(name)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        leftovers.add { try? FileManager.default.removeItem(at: directory) }
        let admin = OpenStackInventory(configuration: try CloudConfiguration.load(cloud: "lifeboat-admin"), logger: Logger(label: "test"))
        let (cinder, nova) = try await runBlocking { (try CinderClient(session: admin.session), try NovaClient(session: admin.session)) }
        return (demo, bobID, String(UUID().uuidString.prefix(6).lowercased()), directory, cinder, nova)
    }

    /// A volume of `cloud`'s project, available; its id.
    private static func volume(named name: String, cloud: String, extra: [String] = []) async throws -> String {
        guard let created = try await TestOpenStack.cli(cloud, ["volume", "create", "--size", "1"] + extra + [name]) as? [String: Any],
              let id = created["id"] as? String else { throw TestEnvironmentMissing("volume create printed no id") }
        try await TestOpenStack.waitFor(volume: id, status: "available")
        return id
    }

    /// Snapshots and volumes named for a backup's disks that still exist.
    private func madeForBackup(_ backup: String, disks: [String], cinder: CinderClient) async throws -> [String] {
        try await runBlocking {
            try disks.flatMap { disk -> [String] in
                let name = jobResourceName(job: backup, disk: disk)
                return try cinder.volumes(allProjects: true, filters: ["name": name]).map { "volume \($0.id) (\($0.status))" }
                    + cinder.snapshots(allProjects: true, filters: ["name": name]).map { "snapshot \($0.id) (\($0.status))" }
            }
        }
    }

    /// After a backup's success: nothing it made is left in Cinder, nothing attached to the proxy.
    private func assertNothingLeft(of backup: String, disks: [String], cinder: CinderClient, nova: NovaClient, proxy: String,
                                   file: StaticString = #filePath, line: UInt = #line) async throws {
        let left = try await madeForBackup(backup, disks: disks, cinder: cinder)
        XCTAssertEqual(left, [], "snapshots and volumes made for the backup", file: file, line: line)
        let attached = try await runBlocking { try nova.volumeAttachments(ofServer: proxy) }
        XCTAssertEqual(attached.map(\.volumeID), [], "volumes still attached to the proxy", file: file, line: line)
    }
}
