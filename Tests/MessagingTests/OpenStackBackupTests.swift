import Events
import Foundation
import Logging
import OpenStack
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
        guard let demo = environment["LIFEBOAT_TEST_OS_DEMO_PROJECT_ID"],
              let carolID = environment["LIFEBOAT_TEST_OS_CAROL_USER_ID"], let bobID = environment["LIFEBOAT_TEST_OS_BOB_USER_ID"],
              let aliceID = environment["LIFEBOAT_TEST_OS_ALICE_USER_ID"], let restoreProject = environment["LIFEBOAT_TEST_OS_RESTORE_PROJECT_ID"] else {
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
        // Data a restore must bring back (the root disk is the blank image's zeros).
        try await TestCephCluster.edit("volume-\(volume)", ["random:1M:3M:31", "fill:700M:1M:0x5a"])

        let hypervisors = try TestOpenStack.computeHostFile(in: directory)
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

        // Keystone stops accepting the worker's token (revoked: what it answers for an expired
        // one too, 401): the next job logs in again without failing.
        let admin = OpenStackInventory(configuration: try CloudConfiguration.load(cloud: "lifeboat-admin"), logger: Logger(label: "test"))
        let workerSession = try XCTUnwrap(worker.worker.inventory?.session)
        let revoked = try XCTUnwrap(workerSession.heldToken)
        _ = try await runBlocking {
            try admin.session.send(HTTPRequest(.delete, try admin.session.configuration.identityURL.appendingPathComponent("auth/tokens"),
                                               headers: ["X-Subject-Token": revoked.revealed]))
        }

        // Restore as a new server in project restore-target, asked by bob (a member of demo and
        // of restore-target), after carol deleted her key pair: it is recreated for her.
        let deleted = try await runProcess("/usr/bin/openstack", ["--os-cloud", "lifeboat-carol", "keypair", "delete", keyName])
        XCTAssertEqual(deleted, 0)
        let asNew = RestoreTarget.instance(project: restoreProject, name: "lb-restored-\(suffix)", flavor: nil, networks: nil, keypair: nil)
        try await publisher.send(RestoreRequest(requestId: "os-\(suffix)-new", project: demo, backupId: "os-\(suffix)", target: asNew,
                                                requestedBy: Principal(userId: bobID)))
        let restored = try await LifeboatQueues.results(of: "os-\(suffix)-new", until: .succeeded, seconds: 600)
        XCTAssertEqual(restored.last?.status, .succeeded, LifeboatQueues.summary(restored))
        XCTAssertNotEqual(workerSession.heldToken, revoked, "the worker logged in again")
        let newServer = try XCTUnwrap(restored.last?.details?["server"], LifeboatQueues.summary(restored))
        let made = try await runBlocking { try XCTUnwrap(try admin.server(newServer)) }
        defer {
            Task {
                await TestOpenStack.deleteServer(newServer, andVolumes: made.attachedVolumes.map(\.id))
                _ = try? await runProcess("/usr/bin/openstack", ["--os-cloud", "lifeboat-admin", "keypair", "delete", keyName])
            }
        }
        XCTAssertEqual(made.status, "ACTIVE")
        XCTAssertEqual(made.projectID, restoreProject)
        XCTAssertEqual(made.keyName, keyName, "the saved key pair, imported for Lifeboat's user")
        XCTAssertEqual(made.flavor.originalName, environment["LIFEBOAT_TEST_OS_FLAVOR"] ?? "m1.tiny")
        XCTAssertEqual(made.metadata["owner"], "carol")
        XCTAssertEqual(made.metadata["lifeboat_restored_by"], bobID)
        XCTAssertEqual(made.metadata["lifeboat_restored_from"], server)
        XCTAssertEqual(restored.last?.details?["keypairRecreatedFor"], carolID)
        let recreated = try await runBlocking { try NovaClient(session: admin.session).keyPair(named: keyName, userID: carolID) }
        XCTAssertEqual(recreated.publicKey.trimmingCharacters(in: .whitespacesAndNewlines), publicKey, "carol's key pair is back")
        // Every disk is a volume of the new server holding exactly the backup's data (the same
        // bytes bob's restore to files wrote).
        XCTAssertEqual(made.attachedVolumes.count, 2, "\(made.attachedVolumes)")
        let cinder = try await runBlocking { try CinderClient(session: admin.session) }
        for attached in made.attachedVolumes {
            let info = try await runBlocking { try cinder.volume(attached.id) }
            let disk = try XCTUnwrap(info.metadata["lifeboat_disk"], "\(info)")
            XCTAssertEqual(info.projectID, restoreProject)
            let written = try await TestCephCluster.exportDigest("\(TestCephCluster.pool)/volume-\(attached.id)")
            XCTAssertEqual(written, try sha256(of: directory.appendingPathComponent("\(disk).img").path), "disk \(disk)")
        }

        // The same backup restored with its disks as Glance images: the server boots from the
        // root image, the volume disk is a volume Nova made from its image.
        let asImages = RestoreTarget.instance(project: restoreProject, name: "lb-imaged-\(suffix)", flavor: nil, networks: nil, keypair: nil,
                                              disksAs: .images)
        try await publisher.send(RestoreRequest(requestId: "os-\(suffix)-images", project: demo, backupId: "os-\(suffix)", target: asImages,
                                                requestedBy: Principal(userId: bobID)))
        let imaged = try await LifeboatQueues.results(of: "os-\(suffix)-images", until: .succeeded, seconds: 600)
        XCTAssertEqual(imaged.last?.status, .succeeded, LifeboatQueues.summary(imaged))
        let imagedServer = try XCTUnwrap(imaged.last?.details?["server"], LifeboatQueues.summary(imaged))
        let rootImage = try XCTUnwrap(imaged.last?.details?["image"], LifeboatQueues.summary(imaged))
        let booted = try await runBlocking { try XCTUnwrap(try admin.server(imagedServer)) }
        defer {
            Task {
                await TestOpenStack.deleteServer(imagedServer, andVolumes: booted.attachedVolumes.map(\.id))
                _ = try? await runProcess("/usr/bin/openstack", ["--os-cloud", "lifeboat-admin", "image", "delete", rootImage])
            }
        }
        XCTAssertEqual(booted.status, "ACTIVE")
        XCTAssertEqual(booted.projectID, restoreProject)
        XCTAssertEqual(booted.imageID, rootImage)
        XCTAssertEqual(booted.keyName, keyName)
        let disks = try manifestDisks(repositoryPath, "os-\(suffix)")
        let rootCopy = directory.appendingPathComponent("root-image.raw").path
        let glance = try GlanceClient(session: admin.session)
        _ = try await runBlocking { try glance.downloadImage(rootImage, toFile: rootCopy) }
        XCTAssertEqual(try sha256(of: rootCopy), try sha256(of: directory.appendingPathComponent("\(disks[0]).img").path), "the root image")
        try? FileManager.default.removeItem(atPath: rootCopy)
        XCTAssertEqual(booted.attachedVolumes.count, 1, "\(booted.attachedVolumes)")
        for attached in booted.attachedVolumes {
            let written = try await TestCephCluster.exportDigest("\(TestCephCluster.pool)/volume-\(attached.id)")
            XCTAssertEqual(written, try sha256(of: directory.appendingPathComponent("\(disks[1]).img").path), "the volume Nova made from its image")
        }
        let leftImages = try await runBlocking { try glance.images().filter { $0.properties["lifeboat_job"] == "os-\(suffix)-images" }.map(\.id) }
        XCTAssertEqual(leftImages, [rootImage], "the data disk's image is removed once its volume exists")

        // carol is a member of demo but not of restore-target: refused.
        try await publisher.send(RestoreRequest(requestId: "os-\(suffix)-carol", project: demo, backupId: "os-\(suffix)", target: asNew,
                                                requestedBy: Principal(userId: carolID)))
        let notMember = try await LifeboatQueues.results(of: "os-\(suffix)-carol", until: .succeeded, seconds: 120)
        XCTAssertEqual(notMember.last?.status, .rejected, LifeboatQueues.summary(notMember))
        XCTAssertTrue(notMember.last?.reason?.contains("is not a member of project \(restoreProject)") == true, LifeboatQueues.summary(notMember))
        await worker.stop()

        // A worker whose Ceph cluster list does not hold Cinder's backend cannot write the new
        // volumes: the job fails saying so, and the volume it made goes again.
        let unmapped = try RunningWorker(repository: repositoryPath, files: directory.path, rangeBytes: 64 << 20, hypervisors: hypervisors,
                                         cephClusters: try TestCephCluster.clusterFile(in: directory, openstackBackends: [:]),
                                         openstackCloud: "lifeboat-admin")
        try await publisher.send(RestoreRequest(requestId: "os-\(suffix)-unmapped", project: demo, backupId: "os-\(suffix)", target: asNew,
                                                disks: [try XCTUnwrap(manifestDisks(repositoryPath, "os-\(suffix)").first)],
                                                requestedBy: Principal(userId: bobID)))
        let failed = try await LifeboatQueues.results(of: "os-\(suffix)-unmapped", until: .succeeded, seconds: 300)
        XCTAssertEqual(failed.last?.status, .failed, LifeboatQueues.summary(failed))
        XCTAssertTrue(failed.last?.reason?.contains("openstackBackends") == true, LifeboatQueues.summary(failed))
        var left: [Volume] = []
        for _ in 0..<120 {
            left = try await runBlocking { try cinder.volumes(allProjects: true).filter { $0.name?.hasPrefix("lifeboat-os-\(suffix)-unmapped-") == true } }
            if left.isEmpty { break }
            try await Task.sleep(for: .seconds(1))
        }
        XCTAssertEqual(left.map(\.id), [], "the failed restore's volumes are removed")
        await publisher.shutdown()
        await unmapped.stop()

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

/// The disks of a committed backup, in the order it saved them.
private func manifestDisks(_ repository: String, _ backup: String) throws -> [String] {
    try JSONDecoder().decode(BackupMetadata.self, from: try Repository.open(path: repository).manifest(backup).metadata).disks
}
