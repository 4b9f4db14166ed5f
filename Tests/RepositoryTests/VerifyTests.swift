import Foundation
import XCTest
@testable import Repository

/// Damage is found by verify and by restore, and named by backup, disk and offset.
final class VerifyTests: XCTestCase {
    let chunk = 64 * 1024
    var scratch: ScratchDirectory!
    var repo: Repository!
    var data: [UInt8] = []

    override func setUpWithError() throws {
        scratch = ScratchDirectory()
        repo = try Repository.create(path: scratch.file("repo"), options: RepositoryOptions(chunkSize: chunk))
        var rng = SeededBytes(seed: 11)
        data = rng.bytes(3 * chunk) + textBytes(3 * chunk, seed: 12)
        try backUp(repo, data, backup: "monday", scratch: scratch)
        try backUp(repo, data, backup: "tuesday", disk: "vdb", scratch: scratch)
    }

    override func tearDown() { scratch = nil }

    /// The chunk object holding position `i` of the backup's disk.
    private func chunkFile(at i: Int) throws -> (ChunkID, String) {
        let id = try repo.index(backup: "monday", disk: "vda").entries[i].id
        return (id, scratch.file("repo/" + ObjectNames.chunk(id)))
    }

    func testHealthyRepositoryVerifies() throws {
        let report = try repo.verify()
        XCTAssertTrue(report.isHealthy)
        XCTAssertEqual(report.backupsChecked, 2)
        XCTAssertEqual(report.referencedChunks, 6)
        XCTAssertEqual(report.checkedChunks, 6)
    }

    func testFlippedBitIsNamedByVerifyAndFailsRestore() throws {
        let (id, path) = try chunkFile(at: 4) // a compressed text chunk
        var bytes = try readFile(path)
        bytes[bytes.count / 2] ^= 0x10
        try writeFile(path, bytes)

        let report = try repo.verify()
        XCTAssertEqual(report.damagedBackups, ["monday", "tuesday"])
        XCTAssertEqual(report.damaged.map { "\($0.backup)/\($0.disk)@\($0.offset)" },
                       ["monday/vda@\(4 * chunk)", "tuesday/vdb@\(4 * chunk)"])
        XCTAssertTrue(report.damaged.allSatisfy { $0.chunk == id })

        XCTAssertThrowsError(try repo.restore(backup: "monday", disk: "vda", to: scratch.file("out"))) { error in
            guard case .damagedChunk(let damage)? = error as? RepositoryError else { return XCTFail("\(error)") }
            XCTAssertEqual(damage.chunk, id)
            XCTAssertEqual(damage.disk, "vda")
            XCTAssertEqual(damage.offset, UInt64(4 * chunk))
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.file("out")), "a failed restore leaves no output")
    }

    func testFlippedBitInRawChunkIsAHashMismatch() throws {
        let (_, path) = try chunkFile(at: 1)
        var bytes = try readFile(path)
        bytes[100] ^= 1
        try writeFile(path, bytes)
        let report = try repo.verify()
        XCTAssertEqual(report.damaged.first?.problem, .hashMismatch)
        XCTAssertEqual(report.damaged.first?.offset, UInt64(chunk))
        // A restore reads a raw chunk's bytes straight into place, and checks them there.
        XCTAssertThrowsError(try repo.restore(backup: "monday", disk: "vda", to: scratch.file("out"))) { error in
            guard case .damagedChunk(let damage)? = error as? RepositoryError else { return XCTFail("\(error)") }
            XCTAssertEqual(damage.problem, .hashMismatch)
            XCTAssertEqual(damage.offset, UInt64(chunk))
        }
    }

    func testTruncatedChunkIsNamed() throws {
        let (id, path) = try chunkFile(at: 2)
        let bytes = try readFile(path)
        try writeFile(path, Array(bytes.prefix(bytes.count - 1000)))
        let damaged = try repo.verify().damaged
        XCTAssertEqual(damaged.count, 2)
        XCTAssertEqual(damaged[0].chunk, id)
        XCTAssertEqual(damaged[0].offset, UInt64(2 * chunk))
        XCTAssertEqual(damaged[0].backup, "monday")
    }

    func testMissingChunkIsNamed() throws {
        let (_, path) = try chunkFile(at: 0)
        try FileManager.default.removeItem(atPath: path)
        let damaged = try repo.verify().damaged
        XCTAssertEqual(damaged.map(\.problem), [.missing, .missing])
        XCTAssertEqual(damaged.map(\.offset), [0, 0])
    }

    func testSampleChecksAFraction() throws {
        let report = try repo.verify(sampleFraction: 0.5)
        XCTAssertEqual(report.checkedChunks, 3)
        XCTAssertEqual(report.referencedChunks, 6)
    }
}
