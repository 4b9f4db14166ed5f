import Foundation
import Glibc
import XCTest
@testable import Repository

/// The streaming path (sources read front to back, like a file over SSH): a full reads only
/// data extents and equals the random-access backup; an incremental reads only the changed
/// bytes, takes the rest of a partly changed chunk from the parent, and restores identically.
final class StreamingBackupTests: XCTestCase {
    let chunk = 64 * 1024
    var scratch: ScratchDirectory!
    var repo: Repository!

    override func setUpWithError() throws {
        scratch = ScratchDirectory()
        repo = try Repository.create(path: scratch.file("repo"), options: RepositoryOptions(chunkSize: chunk))
    }

    override func tearDown() { scratch = nil }

    /// A real image file that reports given extents as its changes and counts what it streams.
    final class ChangedExtents: StreamingBlockSource {
        let image: LocalImageSource
        let changed: [Range<UInt64>]
        var streamedBytes: UInt64 = 0
        var size: UInt64 { image.size }

        init(_ path: String, changed: [Range<UInt64>]) throws {
            image = try LocalImageSource(path: path)
            self.changed = changed
        }

        func extents(offset: UInt64, length: UInt64) throws -> [Range<UInt64>] {
            changed.compactMap { let r = max($0.lowerBound, offset)..<min($0.upperBound, offset + length); return r.isEmpty ? nil : r }
        }

        func stream(_ pieces: [Range<UInt64>], into deliver: (UInt64, UnsafeRawBufferPointer) throws -> Void) throws {
            try image.stream(pieces) { at, bytes in
                streamedBytes += UInt64(bytes.count)
                try deliver(at, bytes)
            }
        }
    }

    private func image(_ bytes: [UInt8], holesFrom: Int? = nil) throws -> String {
        let path = scratch.file("disk-\(UUID().uuidString).img")
        // Past `holesFrom` (all zeros) a real hole, so the full path sees one.
        try writeFile(path, Array(bytes[0..<(holesFrom ?? bytes.count)]))
        XCTAssertEqual(truncate(path, off_t(bytes.count)), 0)
        return path
    }

    func testFullStreamEqualsRandomAccessBackupAndRestores() throws {
        var rng = SeededBytes(seed: 7)
        var bytes = rng.bytes(40 * chunk + 1000)
        for i in 20 * chunk..<bytes.count { bytes[i] = 0 }
        let path = try image(bytes, holesFrom: 20 * chunk)
        let size = UInt64(bytes.count)

        try repo.beginBackup("streamed")
        // Two ranges, as two transfer tasks would write them.
        try repo.backupRange(streaming: try LocalImageSource(path: path), extents: .dataElsewhereZero, backup: "streamed",
                             disk: "vda", offset: 0, length: UInt64(16 * chunk), threads: 3)
        try repo.backupRange(streaming: try LocalImageSource(path: path), extents: .dataElsewhereZero, backup: "streamed",
                             disk: "vda", offset: UInt64(16 * chunk), length: size - UInt64(16 * chunk), threads: 2)
        let streamed = try repo.commitBackup("streamed", disks: [DiskLayout(name: "vda", size: size)], metadata: Data())
        let direct = try repo.backupImage(path: path, backup: "direct", disk: "vda")

        XCTAssertEqual(try repo.readIndex(backup: "streamed", disk: "vda"), try repo.readIndex(backup: "direct", disk: "vda"))
        XCTAssertEqual(streamed.disks[0].zeroChunks, direct.disks[0].zeroChunks)
        let out = scratch.file("out")
        try repo.restore(backup: "streamed", disk: "vda", to: out)
        XCTAssertEqual(try readFile(out), bytes)
    }

    func testIncrementalReadsOnlyChangedBytesAndPatchesParentChunks() throws {
        var rng = SeededBytes(seed: 11)
        var bytes = rng.bytes(32 * chunk)
        let base = try image(bytes)
        try repo.backupImage(path: base, backup: "full", disk: "vda")

        // Changes: inside one chunk, across a chunk boundary, a whole chunk, zeros, the disk's end.
        let changes: [(offset: Int, count: Int, zero: Bool)] = [
            (3 * chunk + 100, 4096, false),
            (7 * chunk - 3000, 6000, false),
            (12 * chunk, chunk, false),
            (20 * chunk + 512, 2048, true),
            (32 * chunk - 10, 10, false),
        ]
        for change in changes {
            let fresh = change.zero ? [UInt8](repeating: 0, count: change.count) : rng.bytes(change.count)
            bytes.replaceSubrange(change.offset..<change.offset + change.count, with: fresh)
        }
        let path = try image(bytes)
        let source = try ChangedExtents(path, changed: changes.map { UInt64($0.offset)..<UInt64($0.offset + $0.count) })

        try repo.beginBackup("incr", parent: "full")
        try repo.backupRange(streaming: source, extents: .changesSinceParent, backup: "incr", disk: "vda",
                             offset: 0, length: UInt64(bytes.count), threads: 2)
        let manifest = try repo.commitBackup("incr", disks: [DiskLayout(name: "vda", size: UInt64(bytes.count))], metadata: Data())

        XCTAssertEqual(source.streamedBytes, UInt64(changes.reduce(0) { $0 + $1.count }), "only changed bytes are read")
        XCTAssertEqual(manifest.disks[0].newChunks, 6, "chunks 3, 6, 7, 12, 20 and 31 changed")
        let out = scratch.file("out")
        try repo.restore(backup: "incr", disk: "vda", to: out)
        XCTAssertEqual(try readFile(out), bytes)
        try repo.restore(backup: "full", disk: "vda", to: out)
        XCTAssertEqual(try readFile(out), try readFile(base), "the parent is untouched")
    }

    func testIncrementalWithoutParentIsRefused() throws {
        var rng = SeededBytes(seed: 3)
        let path = try image(rng.bytes(4 * chunk))
        try repo.beginBackup("orphan")
        XCTAssertThrowsError(try repo.backupRange(streaming: try ChangedExtents(path, changed: [0..<10]), extents: .changesSinceParent,
                                                  backup: "orphan", disk: "vda", offset: 0, length: UInt64(4 * chunk))) { error in
            XCTAssertEqual(error as? RepositoryError, .incrementalWithoutParent(backup: "orphan", disk: "vda"))
        }
    }

    func testPiecesAreCutAtChunkBoundaries() {
        XCTAssertEqual(Repository.pieces(of: [10..<300, 300..<310, 400..<450], chunkSize: 100),
                       [10..<100, 100..<200, 200..<300, 300..<310, 400..<450])
    }
}
