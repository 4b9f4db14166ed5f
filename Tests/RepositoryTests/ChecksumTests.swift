import Foundation
import XCTest
@testable import Repository

/// Restores check each chunk against the XXH3 checksum its index recorded; `verify` re-hashes
/// chunks into their ids and checks the recorded checksums too; indexes and range records
/// written before the checksum existed are still read, and their chunks checked by id.
final class ChecksumTests: XCTestCase {
    let chunk = 64 * 1024
    var scratch: ScratchDirectory!
    var repo: Repository!
    var data: [UInt8] = []

    override func setUpWithError() throws {
        scratch = ScratchDirectory()
        repo = try Repository.create(path: scratch.file("repo"), options: RepositoryOptions(chunkSize: chunk))
        var rng = SeededBytes(seed: 21)
        data = rng.bytes(3 * chunk) + textBytes(3 * chunk, seed: 22)  // raw chunks, then compressed ones
        try backUp(repo, data, backup: "monday", scratch: scratch)
        try backUp(repo, data, backup: "tuesday", scratch: scratch)
    }

    override func tearDown() { scratch = nil }

    private func rewriteIndex(_ backup: String, _ change: (inout DiskIndex) -> Void) throws {
        var index = try repo.readIndex(backup: backup, disk: "vda")
        change(&index)
        try repo.putObject(ObjectNames.index(backup, "vda"), index.encoded())
    }

    func testEveryEntryRecordsTheChecksumOfItsChunk() throws {
        let index = try repo.readIndex(backup: "monday", disk: "vda")
        for (i, entry) in index.entries.enumerated() {
            let plain = Array(data[i * chunk..<(i + 1) * chunk])
            XCTAssertEqual(entry.check, plain.withUnsafeBytes { ChunkCodec.check(of: $0) }, "entry \(i)")
            XCTAssertNotEqual(entry.check, 0)
        }
    }

    func testAWrongRecordedChecksumFailsThatBackupsRestoreAndVerifyNamesIt() throws {
        try rewriteIndex("monday") { $0.entries[1].check ^= 1 }     // a raw chunk
        try rewriteIndex("tuesday") { $0.entries[4].check ^= 1 }    // a compressed one

        let report = try repo.verify()
        XCTAssertEqual(report.damaged.map { "\($0.backup)@\($0.offset / UInt64(chunk)) \($0.problem)" },
                       ["monday@1 \(ChunkProblem.checksumMismatch)", "tuesday@4 \(ChunkProblem.checksumMismatch)"])
        for (backup, position) in [("monday", 1), ("tuesday", 4)] {
            XCTAssertThrowsError(try repo.restore(backup: backup, disk: "vda", to: scratch.file("out"))) { error in
                guard case .damagedChunk(let damage)? = error as? RepositoryError else { return XCTFail("\(error)") }
                XCTAssertEqual(damage.problem, .checksumMismatch, "the chunk itself is intact: the record is wrong")
                XCTAssertEqual(damage.offset, UInt64(position * chunk))
            }
        }
    }

    func testAnIndexWithoutChecksumsRestoresCheckingChunksByTheirIDs() throws {
        // Monday's index as the first format wrote it: no checksums.
        let index = try repo.readIndex(backup: "monday", disk: "vda")
        var old = ByteWriter(capacity: 64)
        old.append(DiskIndex.magicWithoutChecks)
        old.append(UInt32(index.chunkSize))
        old.append(index.diskSize)
        old.append(UInt64(index.entries.count))
        for e in index.entries {
            old.append(e.id)
            old.append(e.storedSize)
        }
        try repo.putObject(ObjectNames.index("monday", "vda"), old.bytes)
        XCTAssertEqual(try repo.readIndex(backup: "monday", disk: "vda").entries.map(\.check), Array(repeating: 0, count: 6))

        try repo.restore(backup: "monday", disk: "vda", to: scratch.file("out"))
        XCTAssertEqual(try readFile(scratch.file("out")), data)
        XCTAssertTrue(try repo.verify().isHealthy)

        // A flipped bit in a raw chunk is still caught, by its id.
        let path = scratch.file("repo/" + ObjectNames.chunk(index.entries[2].id))
        var bytes = try readFile(path)
        bytes[200] ^= 4
        try writeFile(path, bytes)
        XCTAssertThrowsError(try repo.restore(backup: "monday", disk: "vda", to: scratch.file("out2"))) { error in
            guard case .damagedChunk(let damage)? = error as? RepositoryError else { return XCTFail("\(error)") }
            XCTAssertEqual(damage.problem, .hashMismatch)
            XCTAssertEqual(damage.offset, UInt64(2 * chunk))
        }
    }

    func testRangeRecordsRoundTripTheirChecksumsAndOldOnesStillDecode() throws {
        let id = ChunkID(digest: [UInt8](repeating: 7, count: 32))
        let record = RangeRecord(chunkSize: chunk, offset: 0, length: UInt64(chunk), entries: [
            RangeEntry(position: 0, entry: IndexEntry(id: id, storedSize: 123, check: 0xfeed_beef), length: chunk, isNew: true),
        ])
        XCTAssertEqual(try RangeRecord.decode(record.encoded(), name: "r"), record)

        var old = ByteWriter(capacity: 128)
        old.append(RangeRecord.magicWithoutChecks)
        old.append(UInt32(chunk))
        old.append(UInt64(0))
        old.append(UInt64(chunk))
        old.append(UInt64(1))
        old.append(UInt64(0))
        old.append(id)
        old.append(UInt32(123))
        old.append(UInt32(chunk))
        old.append(UInt8(1))
        var expected = record
        expected.entries[0].entry.check = 0
        XCTAssertEqual(try RangeRecord.decode(old.bytes, name: "r"), expected)
    }
}
