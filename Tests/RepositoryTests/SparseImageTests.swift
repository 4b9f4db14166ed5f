import Foundation
import Glibc
import XCTest
@testable import Repository

/// Sparse images: chunks wholly inside holes are recorded as zeros without being read or
/// stored, chunks partly a hole are read normally, and the restore is byte-identical.
final class SparseImageTests: XCTestCase {
    let chunk = 64 * 1024
    var scratch: ScratchDirectory!
    var repo: Repository!

    override func setUpWithError() throws {
        scratch = ScratchDirectory()
        repo = try Repository.create(path: scratch.file("repo"), options: RepositoryOptions(chunkSize: chunk))
    }

    override func tearDown() { scratch = nil }

    /// A file of `size` bytes that is a hole except for `pieces` written at their offsets.
    private func sparseImage(size: Int, _ pieces: [(offset: Int, bytes: [UInt8])]) throws -> String {
        let path = scratch.file("sparse.img")
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o644)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        XCTAssertEqual(ftruncate(fd, off_t(size)), 0)
        for piece in pieces {
            let written = piece.bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(piece.offset)) }
            XCTAssertEqual(written, piece.bytes.count)
        }
        return path
    }

    func testHolesAreSkippedNotStoredAndRestoreIdentically() throws {
        var rng = SeededBytes(seed: 41)
        let size = 24 * chunk + 300 // the partial last chunk lies in a hole
        let pieces: [(offset: Int, bytes: [UInt8])] = [
            (0, rng.bytes(2 * chunk)),                          // chunks 0, 1
            (5 * chunk, textBytes(chunk, seed: 42)),            // chunk 5
            (9 * chunk + chunk / 2, rng.bytes(chunk / 4)),      // chunk 9: partly a hole, read normally
            (14 * chunk, [UInt8](repeating: 0, count: chunk)),  // chunk 14: written zeros, read, still not stored
            (20 * chunk, rng.bytes(chunk)),                     // chunk 20
        ]
        let path = try sparseImage(size: size, pieces)
        var expected = [UInt8](repeating: 0, count: size)
        for piece in pieces { expected.replaceSubrange(piece.offset..<piece.offset + piece.bytes.count, with: piece.bytes) }

        let manifest = try repo.backupImage(path: path, backup: "b1", disk: "vda", threads: 3)
        let disk = manifest.disks[0]
        XCTAssertEqual(disk.chunkCount, 25)
        XCTAssertEqual(disk.zeroChunks, 25 - 5, "every chunk but 0, 1, 5, 9 and 20 is zeros")
        XCTAssertEqual(disk.newChunks, 5)
        XCTAssertEqual(try chunkFiles(scratch.file("repo")).count, 5, "zero chunks of holes are not stored")

        let out = scratch.file("out")
        try repo.restore(backup: "b1", disk: "vda", to: out)
        XCTAssertEqual(try readFile(out), expected)
        XCTAssertTrue(try repo.verify().isHealthy)
    }

    func testDataChunksFollowTheFilesHoles() throws {
        let size = 8 * chunk + 100
        let path = try sparseImage(size: size, [(2 * chunk + 10, [1, 2, 3]), (7 * chunk, [UInt8](repeating: 9, count: chunk + 100))])
        guard allocatedBytes(path) < size / 2 else { throw XCTSkip("this filesystem stored the file without holes") }
        let source = try LocalImageSource(path: path)
        XCTAssertEqual(source.size, UInt64(size))
        let all = Repository.dataChunks(try source.dataExtents(offset: 0, length: UInt64(size)), offset: 0, length: UInt64(size),
                                        chunkSize: UInt64(chunk))
        XCTAssertEqual(all, [false, false, true, false, false, false, false, true, true])
        // A range starting mid-file sees the same chunks, numbered from its start.
        let tail = Repository.dataChunks(try source.dataExtents(offset: UInt64(2 * chunk), length: UInt64(size - 2 * chunk)),
                                         offset: UInt64(2 * chunk), length: UInt64(size - 2 * chunk), chunkSize: UInt64(chunk))
        XCTAssertEqual(tail, [true, false, false, false, false, true, true])
    }
}

/// Batched publishing: a range's new chunks become visible, durable objects no later than
/// `finish`, never under their names before that batch is published, and leave no temporaries.
final class BatchedWriteTests: XCTestCase {
    let chunk = 64 * 1024
    var scratch: ScratchDirectory!
    var repo: Repository!
    var repoPath: String { scratch.file("repo") }

    override func setUpWithError() throws {
        scratch = ScratchDirectory()
        repo = try Repository.create(path: repoPath, options: RepositoryOptions(chunkSize: chunk))
    }

    override func tearDown() { scratch = nil }

    /// Every file under chunks/, temporaries included.
    private func filesUnderChunks() -> [String] {
        FileManager.default.enumerator(atPath: repoPath + "/chunks")?.allObjects as? [String] ?? []
    }

    func testStagedChunksAppearWhenTheRangeFinishes() throws {
        var rng = SeededBytes(seed: 43)
        let data = rng.bytes(6 * chunk)
        try repo.beginBackup("b")
        let writer = try repo.rangeWriter(backup: "b", disk: "vda", offset: 0, length: UInt64(data.count))
        for c in stride(from: 0, to: data.count, by: chunk) {
            try data[c..<c + chunk].withUnsafeBytes { try writer.write(at: UInt64(c), $0) }
        }
        XCTAssertEqual(try chunkFiles(repoPath).count, 0, "staged chunks are not visible under their names")
        try writer.finish()
        XCTAssertEqual(try chunkFiles(repoPath).count, 6)
        XCTAssertEqual(filesUnderChunks().filter { $0.contains(FileSystemBackend.temporaryPrefix) }, [])
        try repo.commitBackup("b", disks: [DiskLayout(name: "vda", size: UInt64(data.count))])
        XCTAssertEqual(try restored(repo, backup: "b", scratch: scratch), data)
    }

    func testFullBatchIsPublishedBeforeTheRangeEnds() throws {
        var rng = SeededBytes(seed: 44)
        let data = rng.bytes(6 * chunk)
        try repo.beginBackup("b")
        // Raw chunks of 64 KiB + 5 bytes: the second write reaches the batch size.
        let writer = try repo.rangeWriter(backup: "b", disk: "vda", offset: 0, length: UInt64(data.count), batchBytes: 2 * chunk)
        for c in stride(from: 0, to: 3 * chunk, by: chunk) {
            try data[c..<c + chunk].withUnsafeBytes { try writer.write(at: UInt64(c), $0) }
        }
        XCTAssertEqual(try chunkFiles(repoPath).count, 2, "the first full batch is published, the third chunk staged")
        for c in stride(from: 3 * chunk, to: data.count, by: chunk) {
            try data[c..<c + chunk].withUnsafeBytes { try writer.write(at: UInt64(c), $0) }
        }
        try writer.finish()
        XCTAssertEqual(try chunkFiles(repoPath).count, 6)
        try repo.commitBackup("b", disks: [DiskLayout(name: "vda", size: UInt64(data.count))])
        XCTAssertEqual(try restored(repo, backup: "b", scratch: scratch), data)
    }

    func testUnbatchedWriterStoresEachChunkAtOnce() throws {
        var rng = SeededBytes(seed: 45)
        let data = rng.bytes(2 * chunk)
        try repo.beginBackup("b")
        let writer = try repo.rangeWriter(backup: "b", disk: "vda", offset: 0, length: UInt64(data.count), batchBytes: 0)
        try data[0..<chunk].withUnsafeBytes { try writer.write(at: 0, $0) }
        XCTAssertEqual(try chunkFiles(repoPath).count, 1)
        try data[chunk...].withUnsafeBytes { try writer.write(at: UInt64(chunk), $0) }
        try writer.finish()
        XCTAssertEqual(try chunkFiles(repoPath).count, 2)
    }
}
