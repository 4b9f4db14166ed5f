import Ceph
import Crypto
import Foundation
import Repository
import XCTest

/// librbd through Lifeboat's Ceph module, checked against the rbd CLI on a real cluster.
final class RBDImageTests: XCTestCase {
    override func setUpWithError() throws {
        try TestCeph.require()
    }

    /// Allocated and changed extents are exactly what `rbd diff` prints, discards included.
    func testChangedExtentsEqualRbdDiff() throws {
        let name = TestCeph.uniqueImage("diff")
        defer { TestCeph.remove(name) }
        try TestCeph.edit(name, "create:256M", "fill:0:1M:0xab", "random:5M:3M:1", "random:100M:10M:2", "snap:s1",
                          "fill:512K:4K:0x01", "random:101M:1M:3", "discard:5M:1M", "discard:104M:4M", "random:200M:9000:4", "snap:s2")
        let pool = try TestCeph.connect().pool(TestCeph.pool)
        let atS2 = try RBDImage(pool: pool, name: name, snapshot: "s2", readOnly: true)
        let changes = try atS2.changedExtents(since: "s1", offset: 0, length: 256 << 20)
        XCTAssertEqual(changes, try TestCeph.diff("\(TestCeph.pool)/\(name)@s2", from: "s1"))
        XCTAssertTrue(changes.contains { !$0.exists } || changes.count > 3, "\(changes)")
        let allocated = try RBDImage(pool: pool, name: name, snapshot: "s1", readOnly: true).changedExtents(since: nil, offset: 0, length: 256 << 20)
        XCTAssertEqual(allocated, try TestCeph.diff("\(TestCeph.pool)/\(name)@s1", from: nil))
        // A sub-range sees only its part.
        let middle = try atS2.changedExtents(since: "s1", offset: 96 << 20, length: 32 << 20)
        XCTAssertFalse(middle.isEmpty)
        XCTAssertTrue(middle.allSatisfy { $0.range.lowerBound >= 96 << 20 && $0.range.upperBound <= 128 << 20 }, "\(middle)")
        // The cheap whole-object pass covers every precise extent.
        let coarse = try atS2.changedExtents(since: "s1", offset: 0, length: 256 << 20, wholeObject: true)
        for change in changes {
            XCTAssertTrue(coarse.contains { $0.range.lowerBound <= change.range.lowerBound && change.range.upperBound <= $0.range.upperBound },
                          "\(change) is outside the whole-object extents \(coarse)")
        }
    }

    /// A full backup of a snapshot from its allocated extents, then an incremental from the
    /// changed extents since the first snapshot: each restores to exactly `rbd export`.
    func testStreamedBackupsRestoreToTheExportedSnapshots() throws {
        let name = TestCeph.uniqueImage("stream")
        defer { TestCeph.remove(name) }
        try TestCeph.edit(name, "create:96M", "random:0:10M:1", "fill:20M:3M:0x5a", "random:60M:1536K:2", "snap:s1",
                          "random:1M:700K:3", "discard:20M:2M", "random:95M:1M:4", "snap:s2")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lifeboat-rbd-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let repository = try Repository.create(path: directory.appendingPathComponent("repo").path)
        let pool = try TestCeph.connect().pool(TestCeph.pool)

        let full = try RBDImageSource(image: RBDImage(pool: pool, name: name, snapshot: "s1", readOnly: true), since: nil, readsInFlight: 4)
        try repository.beginBackup("b1")
        for offset in stride(from: UInt64(0), to: full.size, by: 32 << 20) {
            try repository.backupRange(placing: full, extents: .dataElsewhereZero, backup: "b1", disk: "vda", offset: offset, length: 32 << 20)
        }
        try repository.commitBackup("b1", disks: [DiskLayout(name: "vda", size: full.size)])
        XCTAssertLessThan(full.bytesRead, 24 << 20, "only allocated objects are read")

        let incremental = try RBDImageSource(image: RBDImage(pool: pool, name: name, snapshot: "s2", readOnly: true), since: "s1")
        try repository.beginBackup("b2", parent: "b1")
        for offset in stride(from: UInt64(0), to: incremental.size, by: 32 << 20) {
            try repository.backupRange(placing: incremental, extents: .changesSinceParent, backup: "b2", disk: "vda", offset: offset, length: 32 << 20)
        }
        try repository.commitBackup("b2", disks: [DiskLayout(name: "vda", size: incremental.size)])
        // What `rbd diff` lists, nothing else (an object new since s1 counts whole).
        let changed = try TestCeph.diff("\(TestCeph.pool)/\(name)@s2", from: "s1").reduce(UInt64(0)) { $0 + UInt64($1.range.count) }
        XCTAssertEqual(incremental.bytesRead, changed, "an incremental reads the changed extents, nothing else")
        XCTAssertLessThan(changed, 8 << 20)

        for (backup, snapshot) in [("b1", "s1"), ("b2", "s2")] {
            let file = directory.appendingPathComponent("\(backup).img").path
            try repository.restore(backup: backup, disk: "vda", to: file)
            XCTAssertEqual(try sha256(file), try TestCeph.exportDigest("\(TestCeph.pool)/\(name)@\(snapshot)"), backup)
        }
    }

    func testSnapshotsAndMetadata() throws {
        let name = TestCeph.uniqueImage("snaps")
        defer { TestCeph.remove(name) }
        let pool = try TestCeph.connect().pool(TestCeph.pool)
        try pool.createImage(name, size: 8 << 20)
        XCTAssertTrue(try pool.imageExists(name))
        XCTAssertFalse(try pool.imageExists(name + "-missing"))
        XCTAssertTrue(try pool.imageNames().contains(name))
        let image = try RBDImage(pool: pool, name: name, readOnly: false)
        XCTAssertEqual(try image.watcherCount(), 1, "a handle open for writing watches the image")
        try image.createSnapshot("lifeboat-a")  // the only watcher: no quiesce notification
        do {
            // Another client watching (as QEMU would): the snapshot notifies it first.
            let other = try RBDImage(pool: pool, name: name, readOnly: false)
            XCTAssertEqual(try other.watcherCount(), 2)
            try image.createSnapshot("operator-own")
        }
        XCTAssertEqual(try image.snapshots().map(\.name).sorted(), ["lifeboat-a", "operator-own"])
        try image.removeSnapshot("lifeboat-a")
        XCTAssertEqual(try image.snapshots().map(\.name), ["operator-own"])
        XCTAssertThrowsError(try image.removeSnapshot("lifeboat-a")) { XCTAssertTrue(($0 as? CephError)?.isNotFound == true, "\($0)") }

        for n in 0..<520 { try image.setMetadata("lifeboat.done.\(String(format: "%05d", n))", "1") }
        try image.setMetadata("other", "x")
        XCTAssertEqual(try image.metadataKeys(prefix: "lifeboat.done.").count, 520)
        XCTAssertEqual(try image.metadata("other"), "x")
        XCTAssertNil(try image.metadata("absent"))
        try image.removeMetadata("other")
        XCTAssertNil(try image.metadata("other"))
    }

    /// A key that is not the user's: refused at once with "Permission denied", naming the user.
    func testWrongKeyringIsRefusedClearly() throws {
        let keyring = FileManager.default.temporaryDirectory.appendingPathComponent("lifeboat-wrong-\(UUID().uuidString).keyring").path
        defer { try? FileManager.default.removeItem(atPath: keyring) }
        try "[client.\(TestCeph.user)]\n\tkey = AQBxmWFlAAAAABAAr3xGCrbKx6Vw9oMXQm1GxA==\n".write(toFile: keyring, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try RadosCluster(name: "test", configurationFile: TestCeph.conf, user: TestCeph.user, keyring: keyring)) { error in
            guard let error = error as? CephError else { return XCTFail("\(error)") }
            XCTAssertTrue(error.isPermissionDenied, "\(error)")
            XCTAssertTrue(error.description.contains("client.\(TestCeph.user)"), error.description)
        }
    }

    private func sha256(_ path: String) throws -> String {
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        var hash = SHA256()
        while let data = try handle.read(upToCount: 4 << 20), !data.isEmpty { hash.update(data: data) }
        return hash.finalize().map { String(format: "%02x", $0) }.joined()
    }
}
