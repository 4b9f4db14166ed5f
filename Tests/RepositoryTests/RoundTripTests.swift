import Foundation
import XCTest
@testable import Repository

/// Backup then restore gives back the exact bytes, for every shape of disk content.
final class RoundTripTests: XCTestCase {
    let chunk = 64 * 1024
    var scratch: ScratchDirectory!
    var repo: Repository!

    override func setUpWithError() throws {
        scratch = ScratchDirectory()
        repo = try Repository.create(path: scratch.file("repo"), options: RepositoryOptions(chunkSize: chunk))
    }

    override func tearDown() { scratch = nil }

    /// `lifeboat repo restore-to-file --format qcow2`: qemu-img reads back the same guest bytes.
    func testRestoreToQcow2HoldsTheSameGuestContent() throws {
        let qemuImg = "/usr/bin/qemu-img"
        guard FileManager.default.isExecutableFile(atPath: qemuImg) else {
            if ProcessInfo.processInfo.environment["LIFEBOAT_STRICT_TESTS"] != nil { XCTFail("qemu-img is not installed") }
            throw XCTSkip("qemu-img is not installed (scripts/test.sh installs qemu-utils)")
        }
        var rng = SeededBytes(seed: 9)
        let data = [UInt8](repeating: 0, count: 3 * chunk) + rng.bytes(5 * chunk + 100) + textBytes(2 * chunk, seed: 4)
        _ = try backUp(repo, data, backup: "b1", scratch: scratch)
        let qcow2 = scratch.file("disk.qcow2")
        try repo.restoreQcow2(backup: "b1", disk: "vda", to: qcow2)
        let back = scratch.file("back.raw")
        let convert = Process()
        convert.executableURL = URL(fileURLWithPath: qemuImg)
        convert.arguments = ["convert", "-f", "qcow2", "-O", "raw", qcow2, back]
        try convert.run()
        convert.waitUntilExit()
        XCTAssertEqual(convert.terminationStatus, 0)
        // qcow2 sizes are whole 512-byte sectors: a disk whose size is not is padded with zeros.
        let guest = try readFile(back)
        XCTAssertEqual(guest.count, (data.count + 511) / 512 * 512)
        XCTAssertEqual(Array(guest.prefix(data.count)), data)
        XCTAssertTrue(guest.dropFirst(data.count).allSatisfy { $0 == 0 })
        XCTAssertFalse(FileManager.default.fileExists(atPath: qcow2 + ".raw-\(getpid())"), "the temporary raw file is gone")
    }

    func testRandomDataWithPartialLastChunk() throws {
        var rng = SeededBytes(seed: 1)
        let data = rng.bytes(20 * chunk + 12345)
        let manifest = try backUp(repo, data, backup: "b1", scratch: scratch)
        XCTAssertEqual(manifest.disks[0].size, UInt64(data.count))
        XCTAssertEqual(manifest.disks[0].chunkCount, 21)
        XCTAssertEqual(try restored(repo, backup: "b1", scratch: scratch), data)
    }

    func testStructuredSparseData() throws {
        var rng = SeededBytes(seed: 2)
        var data = [UInt8]()
        data += [UInt8](repeating: 0, count: 5 * chunk)         // hole
        data += textBytes(4 * chunk, seed: 3)                    // compressible
        data += rng.bytes(3 * chunk)                             // incompressible
        data += [UInt8](repeating: 0, count: 6 * chunk)          // hole
        data += [UInt8](repeating: 0xAB, count: 2 * chunk)       // two identical chunks
        data += [UInt8](repeating: 0, count: chunk - 1) + [1]    // one byte set at a chunk's end
        data += [UInt8](repeating: 0, count: 777)                // partial zero tail
        let manifest = try backUp(repo, data, backup: "b1", scratch: scratch)
        let disk = manifest.disks[0]
        XCTAssertEqual(disk.zeroChunks, 12)
        XCTAssertEqual(disk.newChunks, 4 + 3 + 1 + 1, "identical chunks are stored once, zeros never")

        let out = scratch.file("out")
        try repo.restore(backup: "b1", disk: "vda", to: out)
        XCTAssertEqual(try readFile(out), data)
        XCTAssertLessThan(allocatedBytes(out), data.count - 10 * chunk, "zero chunks are restored as holes")
    }

    func testAllZeroDiskStoresNothing() throws {
        let data = [UInt8](repeating: 0, count: 10 * chunk + 100)
        let manifest = try backUp(repo, data, backup: "zero", scratch: scratch)
        XCTAssertEqual(manifest.disks[0].zeroChunks, 11)
        XCTAssertEqual(try chunkFiles(scratch.file("repo")).count, 0)
        XCTAssertEqual(try restored(repo, backup: "zero", scratch: scratch), data)
    }

    func testIncompressibleStoredRawAndTextCompressed() throws {
        var rng = SeededBytes(seed: 4)
        let random = rng.bytes(4 * chunk)
        let text = textBytes(4 * chunk, seed: 5)
        let r = try backUp(repo, random, backup: "random", scratch: scratch).disks[0]
        let t = try backUp(repo, text, backup: "text", scratch: scratch).disks[0]
        XCTAssertEqual(r.newStoredBytes, UInt64(4 * (chunk + 5)), "raw: data plus the 5-byte header")
        XCTAssertLessThan(t.newStoredBytes, UInt64(text.count / 2))
        XCTAssertEqual(try restored(repo, backup: "random", scratch: scratch), random)
        XCTAssertEqual(try restored(repo, backup: "text", scratch: scratch), text)
    }

    func testIncrementalWritesOnlyChangedRangesAndRestoresFromOneIndex() throws {
        var rng = SeededBytes(seed: 6)
        var data = rng.bytes(16 * chunk + 999)
        try backUp(repo, data, backup: "full", scratch: scratch)

        // Change chunk 3 and the partial last chunk; the incremental transfers only those.
        data.replaceSubrange(3 * chunk..<4 * chunk, with: rng.bytes(chunk))
        data.replaceSubrange(16 * chunk..<data.count, with: rng.bytes(999))
        try repo.beginBackup("incr", parent: "full")
        for start in [3 * chunk, 16 * chunk] {
            let end = min(start + chunk, data.count)
            let writer = try repo.rangeWriter(backup: "incr", disk: "vda", offset: UInt64(start), length: UInt64(end - start))
            try data[start..<end].withUnsafeBytes { try writer.write(at: UInt64(start), $0) }
            try writer.finish()
        }
        let manifest = try repo.commitBackup("incr", disks: [DiskLayout(name: "vda", size: UInt64(data.count))])
        XCTAssertEqual(manifest.parent, "full")
        XCTAssertEqual(manifest.disks[0].newChunks, 2)
        XCTAssertEqual(try restored(repo, backup: "incr", scratch: scratch), data)
        XCTAssertEqual(try repo.listBackups().map(\.id), ["full", "incr"])
    }

    func testRangesInAnyOrderFromThreadsAndRetriedRangeIsHarmless() throws {
        var rng = SeededBytes(seed: 7)
        let data = rng.bytes(12 * chunk + 5)
        try repo.beginBackup("b")
        let (repo, chunk) = (repo!, chunk)
        let ranges = [(8 * chunk, 12 * chunk + 5), (0, 4 * chunk), (4 * chunk, 8 * chunk)]
        let failures = Locked<[String]>([])
        DispatchQueue.concurrentPerform(iterations: ranges.count) { n in
            let (start, end) = ranges[n]
            do {
                let writer = try repo.rangeWriter(backup: "b", disk: "vda", offset: UInt64(start), length: UInt64(end - start))
                for c in stride(from: start, to: end, by: chunk).reversed() {
                    try data[c..<min(c + chunk, end)].withUnsafeBytes { try writer.write(at: UInt64(c), $0) }
                }
                try writer.finish()
            } catch {
                failures.withLock { $0.append("\(error)") }
            }
        }
        XCTAssertEqual(failures.withLock { $0 }, [])
        // A retried task rewrites its range: same record name, no duplicate.
        let retry = try repo.rangeWriter(backup: "b", disk: "vda", offset: 0, length: UInt64(4 * chunk))
        for c in stride(from: 0, to: 4 * chunk, by: chunk) {
            try data[c..<c + chunk].withUnsafeBytes { try retry.write(at: UInt64(c), $0) }
        }
        try retry.finish()
        XCTAssertEqual(retry.progress.newChunks, 0, "the retry found every chunk stored")
        try repo.commitBackup("b", disks: [DiskLayout(name: "vda", size: UInt64(data.count))])
        XCTAssertEqual(try restored(repo, backup: "b", scratch: scratch), data)
    }

    func testFullBackupWithMissingRangeIsRejectedAndInvisible() throws {
        var rng = SeededBytes(seed: 8)
        let data = rng.bytes(4 * chunk)
        try repo.beginBackup("b")
        let writer = try repo.rangeWriter(backup: "b", disk: "vda", offset: 0, length: UInt64(2 * chunk))
        try data[0..<2 * chunk].withUnsafeBytes { buf in
            try writer.write(at: 0, UnsafeRawBufferPointer(rebasing: buf[0..<chunk]))
            try writer.write(at: UInt64(chunk), UnsafeRawBufferPointer(rebasing: buf[chunk...]))
        }
        try writer.finish()
        XCTAssertThrowsError(try repo.commitBackup("b", disks: [DiskLayout(name: "vda", size: UInt64(data.count))])) { error in
            XCTAssertEqual(error as? RepositoryError,
                           .incompleteDisk(backup: "b", disk: "vda", missingOffsets: [UInt64(2 * chunk), UInt64(3 * chunk)]))
        }
        XCTAssertEqual(try repo.listBackups().count, 0)
    }

    /// A full that read only a sparse image's allocated ranges names the rest as zero ranges:
    /// they restore as zeros; a range neither written nor named is still missing.
    func testZeroRangesFillTheUnwrittenRestOfAFull() throws {
        var rng = SeededBytes(seed: 9)
        let data = rng.bytes(2 * chunk)
        let size = UInt64(7 * chunk + 100)  // a short last chunk
        try repo.beginBackup("b")
        let writer = try repo.rangeWriter(backup: "b", disk: "vda", offset: UInt64(2 * chunk), length: UInt64(2 * chunk))
        try data.withUnsafeBytes { buf in
            try writer.write(at: UInt64(2 * chunk), UnsafeRawBufferPointer(rebasing: buf[0..<chunk]))
            try writer.write(at: UInt64(3 * chunk), UnsafeRawBufferPointer(rebasing: buf[chunk...]))
        }
        try writer.finish()

        let before = UInt64(0)..<UInt64(2 * chunk), after = UInt64(4 * chunk)..<size
        XCTAssertThrowsError(try repo.commitBackup("b", disks: [DiskLayout(name: "vda", size: size, zeroRanges: [before])])) { error in
            XCTAssertEqual(error as? RepositoryError,
                           .incompleteDisk(backup: "b", disk: "vda", missingOffsets: (4...7).map { UInt64($0 * chunk) }))
        }
        XCTAssertThrowsError(try repo.commitBackup("b", disks: [DiskLayout(name: "vda", size: size, zeroRanges: [before, UInt64(4 * chunk + 1)..<size])])) { error in
            guard case .misalignedChunk? = error as? RepositoryError else { return XCTFail("\(error)") }
        }
        XCTAssertEqual(try repo.listBackups().count, 0)

        let manifest = try repo.commitBackup("b", disks: [DiskLayout(name: "vda", size: size, zeroRanges: [before, after])])
        XCTAssertEqual(manifest.disks.first?.zeroChunks, 6)
        XCTAssertEqual(try restored(repo, backup: "b", scratch: scratch),
                       [UInt8](repeating: 0, count: 2 * chunk) + data + [UInt8](repeating: 0, count: Int(size) - 4 * chunk))
    }

    /// What a restore into a new target must write: the ranges holding a non-zero chunk.
    func testRangesWithDataNameTheRangesHoldingNonZeroChunks() throws {
        var rng = SeededBytes(seed: 10)
        var data = [UInt8](repeating: 0, count: 10 * chunk)
        data.replaceSubrange(chunk..<chunk + 10, with: rng.bytes(10))            // range 0 (chunks 0-1)
        data.replaceSubrange(7 * chunk..<8 * chunk, with: rng.bytes(chunk))      // range 6 (chunks 6-7)
        try backUp(repo, data, backup: "b", scratch: scratch)
        XCTAssertEqual(try repo.rangesWithData(backup: "b", disk: "vda", step: UInt64(2 * chunk)), [0, UInt64(6 * chunk)])
        XCTAssertEqual(try repo.rangesWithData(backup: "b", disk: "vda", step: UInt64(chunk)), [UInt64(chunk), UInt64(7 * chunk)])
        try backUp(repo, [UInt8](repeating: 0, count: 3 * chunk), backup: "empty", scratch: scratch)
        XCTAssertEqual(try repo.rangesWithData(backup: "empty", disk: "vda", step: UInt64(chunk)), [])
    }

    func testMisalignedWritesAreRejected() throws {
        try repo.beginBackup("b")
        let writer = try repo.rangeWriter(backup: "b", disk: "vda", offset: 0, length: UInt64(4 * chunk))
        let bytes = [UInt8](repeating: 1, count: chunk)
        XCTAssertThrowsError(try bytes.withUnsafeBytes { try writer.write(at: 100, $0) })
        XCTAssertThrowsError(try bytes.withUnsafeBytes { try writer.write(at: UInt64(4 * chunk), $0) })
        XCTAssertThrowsError(try repo.rangeWriter(backup: "never-begun", disk: "vda", offset: 0, length: 10)) { error in
            XCTAssertEqual(error as? RepositoryError, .backupNotBegun("never-begun"))
        }
    }
}
