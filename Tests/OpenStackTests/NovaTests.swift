import Foundation
import OpenStack
import XCTest

/// Nova against the project's OpenStack: microversions, flavors, a server created the way a
/// restore creates one, key pairs of other users through the admin API, attachments.
final class NovaTests: XCTestCase {
    func testMicroversionIsNegotiatedAndFlavorsRead() throws {
        let nova = try NovaClient(session: try TestOpenStack.session(cloud: "lifeboat-bob"))
        XCTAssertGreaterThanOrEqual(nova.microversion, Microversion(2, 47))
        XCTAssertEqual(nova.microversion, min(nova.serviceMaximum, NovaClient.newestSupported))
        XCTAssertNoThrow(try nova.require(Microversion(2, 10), for: "key pairs of other users"))

        let old = try NovaClient(session: try TestOpenStack.session(cloud: "lifeboat-bob"), highest: Microversion(2, 9))
        XCTAssertEqual(old.microversion, Microversion(2, 9))
        XCTAssertThrowsError(try old.keyPair(named: "x", userID: "someone")) { error in
            guard case .microversionUnsupported = error as? OpenStackError else { return XCTFail("\(error)") }
        }

        let flavor = try nova.flavor(try TestOpenStack.value("FLAVOR_ID"))
        XCTAssertEqual(flavor.name, try TestOpenStack.value("FLAVOR"))
        XCTAssertTrue(try nova.flavors().contains { $0.id == flavor.id })
        XCTAssertThrowsError(try nova.flavor("no-such-flavor")) { error in
            XCTAssertEqual((error as? HTTPError)?.statusCode, 404)
            XCTAssertTrue("\(error)".contains("/flavors/no-such-flavor: 404 Not Found"), "\(error)")
        }
    }

    func testServerOfCarolWithHerKeyPairSeenByTheAdmin() throws {
        let carol = try TestOpenStack.session(cloud: "lifeboat-carol")
        let admin = try TestOpenStack.admin()
        let carolNova = try NovaClient(session: carol)
        let adminNova = try NovaClient(session: admin)
        let carolID = try TestOpenStack.value("CAROL_USER_ID")

        let keyName = TestOpenStack.name("key")
        let created = try carolNova.createKeyPair(named: keyName)
        defer { _ = try? carolNova.deleteKeyPair(named: keyName) }
        XCTAssertNotNil(created.privateKey, "Nova generated the key and returned its private half once")
        XCTAssertTrue(created.privateKey?.revealed.contains("PRIVATE KEY") == true)
        XCTAssertFalse("\(created)".contains("PRIVATE KEY"), "a key pair prints without its private key")

        let serverID = try carolNova.createServer(ServerCreateRequest(
            name: TestOpenStack.name("server"), flavorRef: try TestOpenStack.value("FLAVOR_ID"), imageRef: try TestOpenStack.value("IMAGE_ID"),
            networks: .none, keyName: keyName, metadata: ["lifeboat": "test"], tags: ["lifeboat-test"]))
        defer {
            _ = try? adminNova.deleteServer(serverID)
            try? adminNova.waitForServerDeletion(serverID, timeout: 120)
        }

        // The admin reads carol's key pair through the admin API.
        let seen = try adminNova.keyPair(named: keyName, userID: carolID)
        XCTAssertEqual(seen.publicKey, created.publicKey)
        XCTAssertEqual(seen.userID, carolID)
        XCTAssertNil(seen.privateKey)
        XCTAssertThrowsError(try adminNova.keyPair(named: keyName), "not the admin's own key pair") { error in
            XCTAssertEqual((error as? HTTPError)?.statusCode, 404)
        }

        let active = try carolNova.waitForServer(serverID, timeout: 180)
        XCTAssertEqual(active.keyName, keyName)
        XCTAssertEqual(active.metadata, ["lifeboat": "test"])
        XCTAssertEqual(active.tags, ["lifeboat-test"])
        XCTAssertEqual(active.flavor.originalName, try TestOpenStack.value("FLAVOR"), "flavor details are embedded from 2.47")
        XCTAssertEqual(active.imageID, try TestOpenStack.value("IMAGE_ID"))
        XCTAssertNil(active.host, "the host is for admins only")

        let placed = try adminNova.server(serverID)
        XCTAssertEqual(placed.host, try TestOpenStack.value("COMPUTE_NAME"))
        XCTAssertEqual(placed.hypervisorHostname, try TestOpenStack.value("COMPUTE_NAME"))
        let instanceName = try XCTUnwrap(placed.instanceName)
        XCTAssertTrue(instanceName.hasPrefix("instance-"), instanceName)
        XCTAssertEqual(placed.projectID, try TestOpenStack.value("DEMO_PROJECT_ID"))
        XCTAssertEqual(placed.userID, carolID)
        XCTAssertTrue(try adminNova.servers(allProjects: true).contains { $0.id == serverID })
        XCTAssertFalse(try adminNova.servers().contains { $0.id == serverID }, "without all_tenants only the admin's project")
        XCTAssertEqual(try carolNova.volumeAttachments(ofServer: serverID), [])

        // A volume attached through Nova shows up on both sides.
        let cinder = try CinderClient(session: carol)
        let volume = try cinder.createVolume(VolumeCreateRequest(size: 1, name: TestOpenStack.name("attach")))
        defer {
            _ = try? cinder.deleteVolume(volume.id)
            try? cinder.waitForVolumeDeletion(volume.id, timeout: 120)
        }
        try cinder.waitForVolume(volume.id, timeout: 120)
        try carolNova.attachVolume(volume.id, toServer: serverID)
        let inUse = try cinder.waitForVolume(volume.id, status: "in-use", timeout: 120)
        XCTAssertEqual(inUse.attachments.first?.serverID, serverID)
        let attachments = try carolNova.volumeAttachments(ofServer: serverID)
        XCTAssertEqual(attachments.map(\.volumeID), [volume.id])
        XCTAssertEqual(attachments.first?.serverID, serverID)
        XCTAssertEqual(try adminNova.server(serverID).attachedVolumes.map(\.id), [volume.id])
        XCTAssertTrue(try carolNova.detachVolume(volume.id, fromServer: serverID))
        try cinder.waitForVolume(volume.id, timeout: 120)

        XCTAssertTrue(try carolNova.deleteServer(serverID))
        try carolNova.waitForServerDeletion(serverID, timeout: 120)
        XCTAssertFalse(try carolNova.deleteServer(serverID), "deleting what is gone is not an error")
    }

    func testBobCannotReadAnotherUsersKeyPair() throws {
        let bobNova = try NovaClient(session: try TestOpenStack.session(cloud: "lifeboat-bob"))
        XCTAssertThrowsError(try bobNova.keyPair(named: "anything", userID: try TestOpenStack.value("CAROL_USER_ID"))) { error in
            XCTAssertEqual((error as? HTTPError)?.statusCode, 403, "\(error)")
        }
    }
}
