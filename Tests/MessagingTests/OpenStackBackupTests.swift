import Events
import Foundation
import Publisher
import Repository
@testable import Workers
import XCTest

/// Backups that name only the Nova server, resolved through the real cloud, with the server's
/// metadata saved for a later restore as a new instance; restores allowed only to members of
/// the backup's project (checked against Keystone).
final class OpenStackBackupTests: XCTestCase {
    func testAServerIsResolvedThroughNovaAndItsMetadataSavedWithItsBackup() async throws {
        try TestOpenStack.require()
        try TestCephCluster.require()
        let environment = ProcessInfo.processInfo.environment
        guard let host = environment["LIFEBOAT_TEST_OS_COMPUTE_HOST"].flatMap(Int.init), let demo = environment["LIFEBOAT_TEST_OS_DEMO_PROJECT_ID"],
              let carolID = environment["LIFEBOAT_TEST_OS_CAROL_USER_ID"], let bobID = environment["LIFEBOAT_TEST_OS_BOB_USER_ID"],
              let aliceID = environment["LIFEBOAT_TEST_OS_ALICE_USER_ID"] else {
            throw TestEnvironmentMissing("needs scripts/openstack.sh env (compute host, demo project, users)")
        }
        try await LifeboatQueues.reset()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lifeboat-os-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let suffix = UUID().uuidString.prefix(6).lowercased()

        // Carol's own key pair, and her server in project demo with a volume of hers attached.
        let key = directory.appendingPathComponent("carol_ed25519").path
        var status = try await runProcess("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", key])
        XCTAssertEqual(status, 0)
        let publicKey = try String(contentsOfFile: key + ".pub", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let keyName = "lb-carol-\(suffix)"
        _ = try await TestOpenStack.cli("lifeboat-carol", ["keypair", "create", "--public-key", key + ".pub", keyName])
        let server = try await TestOpenStack.createServer("lb-carol-\(suffix)", cloud: "lifeboat-carol", properties: ["owner": "carol"],
                                                          extra: ["--key-name", keyName])
        guard let created = try await TestOpenStack.cli("lifeboat-carol", ["volume", "create", "--size", "1", "lb-carol-\(suffix)"]) as? [String: Any],
              let volume = created["id"] as? String else { throw TestEnvironmentMissing("volume create printed no id") }
        defer {
            Task {
                await TestOpenStack.deleteServer(server, cloud: "lifeboat-carol")
                _ = try? await TestCephCluster.rbd(["snap", "purge", "\(TestCephCluster.pool)/volume-\(volume)"])
                _ = try? await runProcess("/usr/bin/openstack", ["--os-cloud", "lifeboat-carol", "volume", "delete", volume])
                _ = try? await runProcess("/usr/bin/openstack", ["--os-cloud", "lifeboat-carol", "keypair", "delete", keyName])
            }
        }
        try await TestOpenStack.waitFor(volume: volume, status: "available")
        status = try await runProcess("/usr/bin/openstack", ["--os-cloud", "lifeboat-carol", "server", "add", "volume", server, volume])
        XCTAssertEqual(status, 0)
        try await TestOpenStack.waitFor(volume: volume, status: "in-use")

        let hypervisors = try TestHypervisors.directoryFile(in: directory, hosts: [host], extra: ["cephCluster": "ceph-test"])
        // Name the hypervisor entry after the compute host, as an operator does.
        let entries = try String(contentsOfFile: hypervisors, encoding: .utf8)
            .replacingOccurrences(of: "\"hv\(host)\"", with: "\"\(environment["LIFEBOAT_TEST_OS_COMPUTE_NAME"] ?? "lifeboat-hv\(host)")\"")
        try entries.write(toFile: hypervisors, atomically: true, encoding: .utf8)
        let repositoryPath = directory.appendingPathComponent("repository").path
        _ = try Repository.create(path: repositoryPath)
        let worker = try RunningWorker(repository: repositoryPath, files: directory.path, rangeBytes: 64 << 20, hypervisors: hypervisors,
                                       cephClusters: try TestCephCluster.clusterFile(in: directory), openstackCloud: "lifeboat-admin")
        let publisher = LifeboatPublisher(settings: try TestBroker.settings())

        // No source: Nova says where the server runs.
        try await publisher.send(BackupRequest(requestId: "os-\(suffix)", project: demo, instance: server, mode: .incremental))
        let backup = try await LifeboatQueues.results(of: "os-\(suffix)", until: .succeeded, seconds: 240)
        XCTAssertEqual(backup.last?.status, .succeeded, LifeboatQueues.summary(backup))
        // The same server claimed for another project is refused.
        try await publisher.send(BackupRequest(requestId: "os-\(suffix)-wrong", project: "another-project", instance: server, mode: .full))
        let wrong = try await LifeboatQueues.results(of: "os-\(suffix)-wrong", until: .succeeded, seconds: 240)
        XCTAssertEqual(wrong.last?.status, .rejected, LifeboatQueues.summary(wrong))
        XCTAssertTrue(wrong.last?.reason?.contains("is not in project another-project") == true, LifeboatQueues.summary(wrong))

        // Restores: bob (a member of demo) may; alice (of another domain, not a member) may not.
        try await publisher.send(RestoreRequest(requestId: "os-\(suffix)-bob", project: demo, backupId: "os-\(suffix)",
                                                target: .files(directory: directory.path, format: .raw), disks: nil,
                                                requestedBy: Principal(userId: bobID)))
        let allowed = try await LifeboatQueues.results(of: "os-\(suffix)-bob", until: .succeeded, seconds: 240)
        XCTAssertEqual(allowed.last?.status, .succeeded, LifeboatQueues.summary(allowed))
        try await publisher.send(RestoreRequest(requestId: "os-\(suffix)-alice", project: demo, backupId: "os-\(suffix)",
                                                target: .files(directory: directory.path, format: .raw), disks: nil,
                                                requestedBy: Principal(userId: aliceID)))
        let refused = try await LifeboatQueues.results(of: "os-\(suffix)-alice", until: .succeeded, seconds: 240)
        XCTAssertEqual(refused.last?.status, .rejected, LifeboatQueues.summary(refused))
        XCTAssertTrue(refused.last?.reason?.contains("is not a member of project \(demo)") == true, LifeboatQueues.summary(refused))
        await publisher.shutdown()
        await worker.stop()

        // What a restore as a new instance needs was saved with the backup.
        let manifest = try Repository.open(path: repositoryPath).manifest("os-\(suffix)")
        let record = try XCTUnwrap(try JSONDecoder().decode(BackupMetadata.self, from: manifest.metadata).openstack)
        XCTAssertEqual(record.server.id, server)
        XCTAssertEqual(record.server.metadata["owner"], "carol")
        XCTAssertEqual(record.server.flavor.originalName ?? record.flavor?.name, environment["LIFEBOAT_TEST_OS_FLAVOR"] ?? "m1.tiny")
        XCTAssertEqual(record.keyPair?.name, keyName)
        XCTAssertEqual(record.keyPair?.publicKey.trimmingCharacters(in: .whitespacesAndNewlines), publicKey, "another user's key pair, read as the admin")
        XCTAssertEqual(record.keyPair?.userID, carolID)
        XCTAssertEqual(record.volumes.map(\.id), [volume])
        // Servers here boot without ports (no Neutron agents), so Nova lists no security groups:
        // the record holds exactly the groups Nova names.
        XCTAssertEqual(Set(record.securityGroups.map(\.name)), Set(record.server.securityGroups))
        XCTAssertEqual(record.image?.name, environment["LIFEBOAT_TEST_OS_IMAGE"] ?? "lifeboat-blank")
        XCTAssertEqual(Set(manifest.disks.map(\.name)).count, 2, "the root disk and the volume: \(manifest.disks.map(\.name))")
        XCTAssertFalse(String(decoding: manifest.metadata, as: UTF8.self).contains("PRIVATE KEY"), "no private key is ever saved")
        _ = try? await runProcess("/usr/bin/openstack", ["--os-cloud", "lifeboat-carol", "server", "remove", "volume", server, volume])
    }
}
