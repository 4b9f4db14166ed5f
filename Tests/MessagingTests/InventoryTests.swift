import Ceph
import Foundation
import Libvirt
import Logging
import Publisher
import Repository
import OpenStack
@testable import Workers
import XCTest

/// The inventory against the real cloud: compute hosts with the operator's SSH entries (logged
/// in to), servers with where their backup reads them and the policy protecting them, volumes
/// and Cinder pools with the Ceph cluster their backend maps to, and the problems when the
/// operator's lists lack them.
final class InventoryTests: XCTestCase {
    func testTheInventoryHoldsTheCloudAgainstTheOperatorsLists() async throws {
        try TestOpenStack.require()
        try TestCephCluster.require()
        let computeName = try XCTUnwrap(TestOpenStack.environment["LIFEBOAT_TEST_OS_COMPUTE_NAME"])
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lifeboat-inventory-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let suffix = UUID().uuidString.prefix(6).lowercased()
        let policiesFile = directory.appendingPathComponent("policies.json")
        try Data(#"{"policies": [{"name": "inv", "metadataKey": "lifeboat-inventory", "metadataValue": "\#(suffix)"}]}"#.utf8).write(to: policiesFile)
        let server = try await TestOpenStack.createServer("lb-inventory-\(suffix)", properties: ["lifeboat-inventory": String(suffix)])
        guard let created = try await TestOpenStack.cli("lifeboat-admin", ["volume", "create", "--size", "1", "lb-inventory-\(suffix)"]) as? [String: Any],
              let volume = created["id"] as? String else { throw TestEnvironmentMissing("volume create printed no id") }
        defer {
            Task {
                await TestOpenStack.deleteServer(server)
                _ = try? await runProcess("/usr/bin/openstack", ["--os-cloud", "lifeboat-admin", "volume", "delete", volume])
            }
        }
        try await TestOpenStack.waitFor(volume: volume, status: "available")

        let inventory = OpenStackInventory(configuration: try CloudConfiguration.load(cloud: "lifeboat-admin"), logger: Logger(label: "test"))
        let policies = try ProtectionPolicies(contentsOf: policiesFile.path)
        let hypervisors = try HypervisorDirectory(contentsOf: try TestOpenStack.computeHostFile(in: directory))
        let clusters = try CephClusterDirectory(contentsOf: try TestCephCluster.clusterFile(in: directory))
        // A repository holding a backup of this server and two of a server Nova no longer has.
        let repository = try Repository.create(path: directory.appendingPathComponent("repository").path)
        for (id, instance) in [("gone-1", "0d9c2f4e-gone"), ("live-1", server), ("gone-2", "0d9c2f4e-gone")] {
            let record = InstanceRecord(server: try JSONDecoder().decode(Server.self, from: Data(#"{"id": "\#(instance)", "name": "n-\#(instance)", "status": "ACTIVE", "flavor": {}}"#.utf8)),
                                        exportedAt: 0)
            try repository.beginBackup(id)
            _ = try repository.commitBackup(id, disks: [], metadata: try JSONEncoder().encode(
                BackupMetadata(project: "p1", instance: instance, jobId: id, disks: [], openstack: record)))
        }
        // The server doubling as the disk-attachment proxy: found, on a host Lifeboat logs in to.
        let report = try await runBlocking {
            try inventory.report(hypervisors: hypervisors, clusters: clusters, policies: policies, attachmentProxy: server,
                                 repository: repository, checkSSH: true)
        }
        XCTAssertEqual(report.deletedInstances, [InventoryReport.DeletedInstanceEntry(
            id: "0d9c2f4e-gone", name: "n-0d9c2f4e-gone", project: "p1", backups: 2, lastBackup: "gone-2",
            lastBackupAt: try repository.manifest("gone-2").createdAt.timeIntervalSince1970)])
        XCTAssertEqual(report.attachmentProxy?.id, server)
        XCTAssertEqual(report.attachmentProxy?.hypervisorEntry, computeName)
        let host = try XCTUnwrap(report.computeHosts.first { $0.host == computeName }, "\(report.computeHosts)")
        XCTAssertEqual(host.hypervisorEntry, computeName)
        XCTAssertEqual(host.ssh, "ok", "logged in with the operator's key, host key verified, virsh answering")
        let instance = try XCTUnwrap(report.instances.first { $0.id == server })
        XCTAssertEqual(instance.host, computeName)
        XCTAssertEqual(instance.hypervisorEntry, computeName)
        XCTAssertTrue(instance.domain?.hasPrefix("instance-") == true, "\(instance)")
        XCTAssertEqual(instance.policy, "inv")
        let listed = try XCTUnwrap(report.volumes.first { $0.id == volume })
        XCTAssertEqual(listed.backend, "ceph")
        XCTAssertEqual(listed.cephCluster, "ceph-test")
        XCTAssertEqual(listed.cephPool, TestCephCluster.pool)
        XCTAssertTrue(report.pools.contains { $0.backend == "ceph" && $0.cephCluster == "ceph-test" }, "\(report.pools)")
        XCTAssertEqual(report.problems, [])

        // The operator's lists empty: each gap named.
        let bare = try await runBlocking {
            try inventory.report(hypervisors: HypervisorDirectory(), clusters: CephClusterDirectory(), policies: policies, checkSSH: true)
        }
        XCTAssertNil(bare.instances.first { $0.id == server }?.hypervisorEntry)
        XCTAssertTrue(bare.problems.contains { $0.hasPrefix("compute host \(computeName) has no entry in LIFEBOAT_HYPERVISORS") }, "\(bare.problems)")
        XCTAssertTrue(bare.problems.contains { $0.hasPrefix("server \(server) (lb-inventory-\(suffix)) is protected by policy inv") }, "\(bare.problems)")
        XCTAssertTrue(bare.problems.contains { $0.contains("is not mapped to a Ceph cluster") }, "\(bare.problems)")
    }

    /// A worker publishes the report on `lifeboat.inventory` on its own, with the problems of
    /// its configuration (here a disk-attachment proxy server that does not exist).
    func testAWorkerPublishesTheInventoryForMonitors() async throws {
        try TestOpenStack.require()
        let computeName = try XCTUnwrap(TestOpenStack.environment["LIFEBOAT_TEST_OS_COMPUTE_NAME"])
        try await LifeboatQueues.reset()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lifeboat-inventory-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let worker = try RunningWorker(hypervisors: try TestOpenStack.computeHostFile(in: directory), openstackCloud: "lifeboat-admin",
                                       inventorySeconds: 1, attachmentProxy: "no-such-proxy")
        let deliveries = try await consume(LifeboatTopology.Queue.inventory, seconds: 120) { $0.count >= 2 }
        await worker.stop()
        XCTAssertEqual(deliveries.count, 2, "one report a second")
        let first = try XCTUnwrap(deliveries.first)
        XCTAssertEqual(first.properties.type, InventoryReport.messageType)
        let report = try JSONDecoder().decode(InventoryReport.self, from: first.body)
        XCTAssertEqual(report.type, InventoryReport.messageType)
        XCTAssertEqual(report.version, 1)
        XCTAssertNotNil(report.takenBy)
        XCTAssertTrue(report.computeHosts.contains { $0.hypervisorEntry == computeName }, "\(report.computeHosts)")
        XCTAssertNil(report.attachmentProxy)
        XCTAssertTrue(report.problems.contains { $0.contains("proxy server no-such-proxy (LIFEBOAT_ATTACHMENT_PROXY) does not exist") },
                      "\(report.problems)")
    }
}
