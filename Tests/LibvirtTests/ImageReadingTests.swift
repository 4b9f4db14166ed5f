import Foundation
import XCTest
@testable import Libvirt
import Repository

/// The image reader on real qcow2 chains made by qemu-img and written by qemu-io, through a
/// local shell (the same commands the SSH path runs): the guest-visible content is read
/// exactly, holes and zero clusters are never read, and an overlay's own clusters are exactly
/// the writes made into it.
final class ImageReadingTests: XCTestCase {
    var directory: String!
    var repository: Repository!
    let shell = LocalShell()

    override func setUpWithError() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/qemu-img"), FileManager.default.isExecutableFile(atPath: "/usr/bin/qemu-io") else {
            throw XCTSkip("qemu-utils is not installed")
        }
        directory = NSTemporaryDirectory() + "lifeboat-image-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        repository = try Repository.create(path: directory + "/repo", options: RepositoryOptions(chunkSize: 256 << 10))
    }

    override func tearDown() {
        if let directory { try? FileManager.default.removeItem(atPath: directory) }
    }

    private func sh(_ command: String) throws {
        let result = try shell.run(command)
        XCTAssertEqual(result.status, 0, "\(command): \(result.stderr)")
    }

    /// Backs up `path` (streamed like over SSH), restores it and returns the restored bytes
    /// and the bytes that crossed the "network".
    private func backUp(_ path: String, id: String, parent: String? = nil, selection: RemoteImageSource.Selection,
                        fastPath: Bool = false) throws -> (Data, UInt64) {
        let chain = try Hypervisor(name: "local", shell: shell).chain(of: path)
        let source = RemoteImageSource(shell: shell, host: "local", chain: chain, selection: selection, fastPathAddress: fastPath ? "127.0.0.1" : nil)
        try repository.beginBackup(id, parent: parent)
        let half = chain.virtualSize / 2 / UInt64(repository.chunkSize) * UInt64(repository.chunkSize)
        for range in [(0, half), (half, chain.virtualSize - half)] {
            try repository.backupRange(streaming: source, extents: selection == .allData ? .dataElsewhereZero : .changesSinceParent,
                                       backup: id, disk: "vda", offset: range.0, length: range.1, threads: 2)
        }
        try repository.commitBackup(id, disks: [DiskLayout(name: "vda", size: chain.virtualSize)], metadata: Data())
        let out = directory + "/\(id).raw"
        try repository.restore(backup: id, disk: "vda", to: out)
        return (try Data(contentsOf: URL(fileURLWithPath: out)), source.bytesTransferred)
    }

    /// The guest-visible content of an image, as qemu-img itself converts it.
    private func guestView(_ path: String) throws -> Data {
        let out = directory + "/view-\(UUID().uuidString).raw"
        try sh("qemu-img convert -U -O raw '\(path)' '\(out)'")
        return try Data(contentsOf: URL(fileURLWithPath: out))
    }

    func testQcow2OverRawBackingChainReadsAsTheGuestSeesIt() throws {
        let base = directory + "/base.raw", disk = directory + "/disk.qcow2"
        try sh("head -c 5242880 /dev/urandom > \(base) && truncate -s 24M \(base)")
        try sh("qemu-img create -q -f qcow2 -F raw -b \(base) \(disk)")
        try sh("qemu-io -f qcow2 -c 'write -P 0xab 3M 192k' -c 'write -z 4M 1M' -c 'write -P 0x11 20M 64k' \(disk) > /dev/null")

        let (restored, transferred) = try backUp(disk, id: "full", selection: .allData)
        XCTAssertEqual(restored, try guestView(disk))
        XCTAssertEqual(transferred, (4 << 20) + (64 << 10), "only data is read: 5 MiB of base less the 1 MiB zeroed, plus 64 KiB")
    }

    func testOverlayTopLayerIsExactlyTheChangesAndTheIncrementalRestoresIdentically() throws {
        let disk = directory + "/disk.qcow2", overlay = directory + "/disk.lifeboat-full.qcow2"
        try sh("qemu-img create -q -f qcow2 \(disk) 16M && qemu-io -f qcow2 -c 'write -P 0x5a 0 6M' \(disk) > /dev/null")
        _ = try backUp(disk, id: "full", selection: .allData)

        // What a snapshot does: a new overlay over the frozen disk, then guest writes into it.
        try sh("qemu-img create -q -f qcow2 -F qcow2 -b \(disk) \(overlay)")
        try sh("qemu-io -f qcow2 -c 'write -P 0xc3 1M 64k' -c 'write -P 0x77 5M 2M' -c 'write -z 256k 64k' \(overlay) > /dev/null")

        let (restored, transferred) = try backUp(overlay, id: "incr", parent: "full", selection: .topLayer)
        XCTAssertEqual(restored, try guestView(overlay))
        XCTAssertEqual(transferred, (64 << 10) + (2 << 20), "only the overlay's own data clusters cross; zeros do not")
    }

    func testRestoreWritesSparseRawAndQcow2FilesThatMatchTheBackup() throws {
        let disk = directory + "/disk.qcow2"
        try sh("qemu-img create -q -f qcow2 \(disk) 40M && qemu-io -f qcow2 -c 'write -P 0x21 1M 3M' -c 'write -P 0x9e 39M 1M' \(disk) > /dev/null")
        let (expected, _) = try backUp(disk, id: "b", selection: .allData)
        for format in ["raw", "qcow2"] {
            let target = directory + "/restored/vda.\(format)"
            let size = try repository.diskSize(backup: "b", disk: "vda")
            // An earlier restore job to the same file failed half way, leaving bytes where the
            // backup has zeros: a new job must not build on its partial file.
            let failed = try RemoteImageWriter(shell: shell, host: "local", path: target, format: format, size: size, job: "r0")
            try failed.prepare()
            try [UInt8](repeating: 0xff, count: 1 << 20).withUnsafeBytes { try failed.write(at: 20 << 20, $0) }
            try failed.flush()
            // Two range tasks, the second first, each with a writer of its own.
            var sent: UInt64 = 0
            for (offset, length) in [(size / 2, size - size / 2), (UInt64(0), size / 2)] {
                let writer = try RemoteImageWriter(shell: shell, host: "local", path: target, format: format, size: size, job: "r1")
                try writer.prepare()
                try repository.streamDisk(backup: "b", disk: "vda", offset: offset, length: length, threads: 2) { try writer.write(at: $0, $1) }
                try writer.flush()
                try writer.markDone(offset: offset)
                sent += writer.bytesTransferred
                XCTAssertFalse(try writer.isComplete())
            }
            let writer = try RemoteImageWriter(shell: shell, host: "local", path: target, format: format, size: size, job: "r1")
            XCTAssertEqual(try writer.rangesDone(), 2)
            try writer.complete()
            try writer.complete()  // a repeated finalize changes nothing
            XCTAssertEqual(sent, 4 << 20, "only non-zero chunks are sent")
            XCTAssertEqual(try guestView(target), expected, format)
            XCTAssertFalse(FileManager.default.fileExists(atPath: target + ".lifeboat-partial-r1"))
            let info = try Hypervisor(name: "local", shell: shell).chain(of: target)
            XCTAssertEqual(info.layers.map(\.format), [format])
        }
    }

    func testTheFastDataPathDeliversTheSameBytesOverTCP() throws {
        let disk = directory + "/disk.qcow2"
        try sh("qemu-img create -q -f qcow2 \(disk) 32M && qemu-io -f qcow2 -c 'write -P 0x61 2M 5M' -c 'write -P 0x62 31M 1M' \(disk) > /dev/null")
        let (restored, transferred) = try backUp(disk, id: "tcp", selection: .allData, fastPath: true)
        XCTAssertEqual(restored, try guestView(disk))
        XCTAssertEqual(transferred, 6 << 20)
    }

    func testTheFastDataPathRefusesAConnectionWithoutTheToken() throws {
        let listener = try DataListener(address: "127.0.0.1")
        let intruder = try shell.open("bash -c 'exec 3<>/dev/tcp/127.0.0.1/\(listener.port); printf %s not-the-token-but-32-characters! >&3'")
        XCTAssertThrowsError(try listener.receive(timeoutSeconds: 5) { _ in XCTFail("no byte may be delivered") }) { error in
            XCTAssertTrue("\(error)".contains("token"), "\(error)")
        }
        _ = try intruder.finish()
    }

    func testCompressedClustersAreRefusedClearly() throws {
        let plain = directory + "/plain.raw", packed = directory + "/packed.qcow2"
        try sh("yes lifeboat | head -c 1048576 > \(plain) && qemu-img convert -c -f raw -O qcow2 \(plain) \(packed)")
        XCTAssertThrowsError(try backUp(packed, id: "c", selection: .allData)) { error in
            XCTAssertTrue("\(error)".contains("compressed"), "\(error)")
        }
    }

    func testReadScriptQuotesPathsAndMergesContiguousReads() {
        let chain = ImageChain(layers: [.init(path: "/images/it's here.qcow2", format: "qcow2"), .init(path: "/base.raw", format: "raw")],
                               virtualSize: 1 << 30)
        let source = RemoteImageSource(shell: shell, host: "h", chain: chain, selection: .allData)
        let script = source.readScript([
            .file(at: 0, count: 4096, layer: 0, fileOffset: 65536), .zeros(at: 4096, count: 4096),
            .file(at: 8192, count: 4096, layer: 0, fileOffset: 69632), .file(at: 12288, count: 10, layer: 1, fileOffset: 12288),
        ])
        XCTAssertEqual(script, """
            set -e
            dd 'if=/images/it'\\''s here.qcow2' bs=1M skip=65536 count=8192 iflag=skip_bytes,count_bytes status=none
            dd if=/base.raw bs=1M skip=12288 count=10 iflag=skip_bytes,count_bytes status=none

            """)
    }
}
