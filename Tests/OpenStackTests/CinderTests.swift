import Foundation
import OpenStack
import XCTest

/// Cinder against the project's OpenStack (RBD back end on the project's Ceph): a volume, its
/// back end, a snapshot, a volume from the snapshot, all deleted again.
final class CinderTests: XCTestCase {
    func testVolumeSnapshotAndVolumeFromSnapshot() throws {
        let cinder = try CinderClient(session: try TestOpenStack.session(cloud: "lifeboat-bob"))
        let adminCinder = try CinderClient(session: try TestOpenStack.admin())

        let volume = try cinder.createVolume(VolumeCreateRequest(size: 1, name: TestOpenStack.name("volume"), metadata: ["lifeboat": "test"]))
        var created = [volume.id]
        var snapshots: [String] = []
        defer {
            for id in snapshots { _ = try? cinder.deleteSnapshot(id); try? cinder.waitForSnapshotDeletion(id, timeout: 120) }
            for id in created.reversed() { _ = try? cinder.deleteVolume(id, cascade: true); try? cinder.waitForVolumeDeletion(id, timeout: 120) }
        }
        let available = try cinder.waitForVolume(volume.id, timeout: 120)
        XCTAssertEqual(available.size, 1)
        XCTAssertEqual(available.metadata, ["lifeboat": "test"])
        XCTAssertNil(available.host, "where a volume lives is for admins only")

        let seen = try adminCinder.volume(volume.id)
        let location = try XCTUnwrap(seen.location, "the admin sees os-vol-host-attr:host")
        XCTAssertEqual(location.backend, "ceph")
        XCTAssertEqual(location.pool, "ceph")
        XCTAssertEqual(try adminCinder.pool(of: seen)?.storageProtocol, "ceph", "an RBD volume: the Ceph strategy reads it")
        XCTAssertTrue(try adminCinder.volumes(allProjects: true).contains { $0.id == volume.id })
        XCTAssertTrue(try cinder.volumes().contains { $0.id == volume.id })

        let snapshot = try cinder.createSnapshot(ofVolume: volume.id, name: TestOpenStack.name("snapshot"))
        snapshots.append(snapshot.id)
        XCTAssertEqual(try cinder.waitForSnapshot(snapshot.id, timeout: 120).volumeID, volume.id)

        let copy = try cinder.createVolume(fromSnapshot: snapshot.id, size: 1, name: TestOpenStack.name("from-snapshot"))
        created.append(copy.id)
        let restored = try cinder.waitForVolume(copy.id, timeout: 120)
        XCTAssertEqual(restored.snapshotID, snapshot.id)
        XCTAssertEqual(try adminCinder.volume(copy.id).location?.backend, "ceph")

        // Delete in order: the copy, the snapshot, the volume.
        XCTAssertTrue(try cinder.deleteVolume(copy.id))
        try cinder.waitForVolumeDeletion(copy.id, timeout: 120)
        XCTAssertTrue(try cinder.deleteSnapshot(snapshot.id))
        try cinder.waitForSnapshotDeletion(snapshot.id, timeout: 120)
        XCTAssertTrue(try cinder.deleteVolume(volume.id))
        try cinder.waitForVolumeDeletion(volume.id, timeout: 120)
        XCTAssertThrowsError(try cinder.volume(volume.id)) { error in XCTAssertEqual((error as? HTTPError)?.statusCode, 404) }
    }

    func testWaitingIsBoundedAndNamesTheLastStatus() throws {
        let cinder = try CinderClient(session: try TestOpenStack.session(cloud: "lifeboat-bob"))
        let volume = try cinder.createVolume(VolumeCreateRequest(size: 1, name: TestOpenStack.name("never-in-use")))
        defer { _ = try? cinder.deleteVolume(volume.id); try? cinder.waitForVolumeDeletion(volume.id, timeout: 120) }
        try cinder.waitForVolume(volume.id, timeout: 120)
        XCTAssertThrowsError(try cinder.waitForVolume(volume.id, status: "in-use", timeout: 1)) { error in
            XCTAssertEqual(error as? OpenStackError, .waitTimedOut(kind: "volume", id: volume.id, wanted: "in-use", lastStatus: "available", seconds: 1))
        }
    }

    func testVolumeLocationParsing() {
        XCTAssertEqual(VolumeLocation(parsing: "node1@ceph#ceph"), VolumeLocation(host: "node1", backend: "ceph", pool: "ceph"))
        XCTAssertEqual(VolumeLocation(parsing: "node1@lvm"), VolumeLocation(host: "node1", backend: "lvm", pool: nil))
        XCTAssertEqual(VolumeLocation(parsing: "cluster@netapp#pool@a"), VolumeLocation(host: "cluster", backend: "netapp", pool: "pool@a"))
        XCTAssertEqual(VolumeLocation(parsing: "node1"), VolumeLocation(host: "node1", backend: nil, pool: nil))
    }
}
