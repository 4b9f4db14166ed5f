import Foundation
import XCTest
@testable import Repository

/// Garbage collection frees what nothing needs, and never what a running backup may need.
final class GarbageCollectionTests: XCTestCase {
    let chunk = 64 * 1024
    let hour: TimeInterval = 3600
    var scratch: ScratchDirectory!
    var repo: Repository!
    var repoPath: String { scratch.file("repo") }

    override func setUpWithError() throws {
        scratch = ScratchDirectory()
        repo = try Repository.create(path: repoPath, options: RepositoryOptions(chunkSize: chunk))
    }

    override func tearDown() { scratch = nil }

    private func chunks(_ count: Int, seed: UInt64) -> [UInt8] {
        var rng = SeededBytes(seed: seed)
        return rng.bytes(count * chunk)
    }

    /// Writes `data` as a range of a begun backup, without finishing the range. Each chunk is
    /// published at once (no batching): stored chunks that no record names yet, as a writer
    /// leaves them when it crashes after publishing a batch.
    private func writeUnrecorded(_ data: [UInt8], backup: String, at first: Int = 0) throws -> RangeWriter {
        let writer = try repo.rangeWriter(backup: backup, disk: "vda", offset: UInt64(first * chunk), length: UInt64(data.count),
                                          batchBytes: 0)
        for c in stride(from: 0, to: data.count, by: chunk) {
            try data[c..<c + chunk].withUnsafeBytes { try writer.write(at: UInt64(first * chunk + c), $0) }
        }
        return writer
    }

    func testDeletesOnlyOldUnreferencedChunks() throws {
        let kept = chunks(4, seed: 1)
        try backUp(repo, kept, backup: "a", scratch: scratch)
        try repo.beginBackup("crashed")
        _ = try writeUnrecorded(chunks(3, seed: 2), backup: "crashed")
        try repo.abandonBackup("crashed")
        XCTAssertEqual(try chunkFiles(repoPath).count, 7)

        // Young garbage survives: it could belong to a backup that has not recorded it yet.
        var report = try repo.collectGarbage(gracePeriod: hour)
        XCTAssertEqual(report.deletedChunks, 0)
        XCTAssertEqual(report.youngUnreferencedChunks, 3)

        try age(repoPath, "chunks", by: 2 * hour)
        report = try repo.collectGarbage(gracePeriod: hour)
        XCTAssertEqual(report.deletedChunks, 3)
        XCTAssertEqual(report.referencedChunks, 4)
        XCTAssertEqual(try chunkFiles(repoPath).count, 4)
        XCTAssertTrue(try repo.verify().isHealthy)
        XCTAssertEqual(try restored(repo, backup: "a", scratch: scratch), kept)
    }

    /// A backup runs while GC runs repeatedly; every chunk is older than the grace period
    /// except through the writer's own writes and touches. Nothing it needs may be lost.
    func testGCBesideARunningBackupLosesNothing() throws {
        let old = chunks(4, seed: 3)
        let garbage = chunks(4, seed: 4)
        try backUp(repo, old, backup: "old", scratch: scratch)
        try repo.beginBackup("crashed")
        _ = try writeUnrecorded(garbage, backup: "crashed")
        try repo.abandonBackup("crashed")
        try repo.removeBackup("old")
        try age(repoPath, "", by: 48 * hour) // chunks, indexes and tombstone all old

        // The new disk: 2 chunks of the crashed garbage, 2 of the pruned backup, 4 new.
        let image: [UInt8] = Array(garbage[0..<2 * chunk]) + Array(old[0..<2 * chunk]) + chunks(4, seed: 5)
        try repo.beginBackup("running")
        let first = try writeUnrecorded(Array(image[0..<4 * chunk]), backup: "running")
        let during = try repo.collectGarbage(gracePeriod: hour) // after the writer reused old chunks, before any record
        try first.finish()
        try age(repoPath, "chunks", by: 48 * hour)              // the first range is now protected by its record only
        try repo.collectGarbage(gracePeriod: hour)
        let second = try writeUnrecorded(Array(image.suffix(from: 4 * chunk)), backup: "running", at: 4)
        try repo.collectGarbage(gracePeriod: hour)
        try second.finish()
        try repo.collectGarbage(gracePeriod: hour)
        try repo.commitBackup("running", disks: [DiskLayout(name: "vda", size: UInt64(image.count))])
        let final = try repo.collectGarbage(gracePeriod: hour)

        XCTAssertEqual(try restored(repo, backup: "running", scratch: scratch), image)
        XCTAssertTrue(try repo.verify().isHealthy)
        XCTAssertEqual(try chunkFiles(repoPath).count, 8, "unused garbage and pruned chunks were collected")
        XCTAssertEqual(final.referencedChunks, 8)
        XCTAssertEqual(during.removedIndexes, ["old"])
        XCTAssertEqual(during.deletedChunks, 4, "the unused halves of the garbage and of the pruned backup")
    }

    /// An incremental takes unchanged chunks from its parent's index; if the parent is
    /// pruned meanwhile, GC must keep those chunks until the incremental commits.
    func testGCKeepsTheParentOfARunningIncremental() throws {
        var data = chunks(6, seed: 6)
        try backUp(repo, data, backup: "parent", scratch: scratch)
        try repo.beginBackup("child", parent: "parent")
        try repo.removeBackup("parent")
        try age(repoPath, "", by: 48 * hour)

        let changed = chunks(1, seed: 7)
        data.replaceSubrange(2 * chunk..<3 * chunk, with: changed)
        let report = try repo.collectGarbage(gracePeriod: hour)
        XCTAssertEqual(report.deletedChunks, 0)
        XCTAssertEqual(report.removedIndexes, [])
        let writer = try writeUnrecorded(changed, backup: "child", at: 2)
        try writer.finish()
        try repo.commitBackup("child", disks: [DiskLayout(name: "vda", size: UInt64(data.count))])
        let after = try repo.collectGarbage(gracePeriod: hour)
        XCTAssertEqual(after.deletedChunks, 1, "only the replaced chunk of the pruned parent goes")
        XCTAssertEqual(try restored(repo, backup: "child", scratch: scratch), data)
    }

    func testStaleStagingOfACrashedBackupIsRemoved() throws {
        try repo.beginBackup("crashed")
        let writer = try writeUnrecorded(chunks(2, seed: 8), backup: "crashed")
        try writer.finish()
        try age(repoPath, "", by: 30 * 24 * hour)
        let report = try repo.collectGarbage(gracePeriod: hour, staleStagingAge: 7 * 24 * hour)
        XCTAssertEqual(report.removedStaging, ["crashed"])
        XCTAssertEqual(report.deletedChunks, 2)
        XCTAssertThrowsError(try repo.rangeWriter(backup: "crashed", disk: "vda", offset: 0, length: 1))
    }

    func testDryRunDeletesNothing() throws {
        try repo.beginBackup("crashed")
        _ = try writeUnrecorded(chunks(2, seed: 9), backup: "crashed")
        try repo.abandonBackup("crashed")
        try age(repoPath, "chunks", by: 2 * hour)
        XCTAssertEqual(try repo.collectGarbage(gracePeriod: hour, dryRun: true).deletedChunks, 2)
        XCTAssertEqual(try chunkFiles(repoPath).count, 2)
    }
}
