import Compression
import Crypto
import CXXHash
import Foundation

/// Turns chunk content into a stored object and back, with the per-thread state that makes
/// that fast: a reused zstd context and buffers sized for one chunk. One per worker thread.
///
/// Stored object = sealed([encoding: u8][plain length: u32 LE][payload]), where encoding 0 is
/// raw (incompressible data) and 1 is a zstd frame. Sealing is AES-256-GCM with the chunk id
/// as associated data when the repository is encrypted, identity otherwise.
final class ChunkCodec {
    static let headerSize = 5
    private static let raw: UInt8 = 0
    private static let zstd: UInt8 = 1

    let chunkSize: Int
    private let compressor: ZstdCompressor
    private let decompressor = ZstdDecompressor()
    /// Header plus the worst-case compressed chunk.
    private let encodeBuffer: UnsafeMutableRawBufferPointer
    /// One plain chunk: decode target.
    let plainBuffer: UnsafeMutableRawBufferPointer
    /// One stored object as read from the backend (reused: reading allocates nothing).
    let objectBuffer: UnsafeMutableRawBufferPointer

    init(chunkSize: Int, level: Int32) {
        self.chunkSize = chunkSize
        compressor = ZstdCompressor(level: level)
        let objectBound = Self.headerSize + max(ZstdCompressor.bound(chunkSize), chunkSize)
        encodeBuffer = .allocate(byteCount: objectBound, alignment: 64)
        plainBuffer = .allocate(byteCount: chunkSize, alignment: 64)
        objectBuffer = .allocate(byteCount: objectBound + ObjectSealer.overhead, alignment: 4096)
    }

    deinit {
        encodeBuffer.deallocate()
        plainBuffer.deallocate()
        objectBuffer.deallocate()
    }

    /// True when every byte is zero. Checks 16 bytes, then compares the buffer with itself
    /// shifted by 16: memcmp runs at memory speed and needs no zero buffer.
    static func isZero(_ data: UnsafeRawBufferPointer) -> Bool {
        guard let base = data.baseAddress else { return true }
        let head = min(16, data.count)
        for i in 0..<head where data[i] != 0 { return false }
        return data.count <= 16 || memcmp(base, base + 16, data.count - 16) == 0
    }

    static func id(of data: UnsafeRawBufferPointer, sealer: ObjectSealer) -> ChunkID {
        if let keys = sealer.keys {
            return ChunkID(digest: HMAC<SHA256>.authenticationCode(for: data, using: keys.idKey))
        }
        return ChunkID(digest: SHA256.hash(data: data))
    }

    /// The fast checksum an index entry records (`IndexEntry.check`): XXH3-64 of the plain chunk.
    static func check(of data: UnsafeRawBufferPointer) -> UInt64 {
        XXH3_64bits(data.baseAddress, data.count)
    }

    /// What is wrong with `plain` as the chunk expected, if anything: checked by the checksum
    /// the backup recorded when there is one (restores), else by re-hashing it into its id
    /// (`verify`, old indexes). Only when the checksum differs is the id re-hashed too, to tell
    /// a damaged chunk from a wrong record.
    static func problem(with plain: UnsafeRawBufferPointer, id: ChunkID, check expected: UInt64,
                        sealer: ObjectSealer) -> ChunkProblem? {
        if expected != 0, check(of: plain) == expected { return nil }
        let intact = Self.id(of: plain, sealer: sealer) == id
        return intact ? (expected != 0 ? .checksumMismatch : nil) : .hashMismatch
    }

    /// Builds the stored object for `data` and passes it to `body` (valid only during the call).
    func encode<R>(_ data: UnsafeRawBufferPointer, id: ChunkID, sealer: ObjectSealer,
                   _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        encodeBuffer.storeBytes(of: UInt32(data.count).littleEndian, toByteOffset: 1, as: UInt32.self)
        let payload = UnsafeMutableRawBufferPointer(rebasing: encodeBuffer[Self.headerSize...])
        // Incompressible data (already compressed or encrypted files, random) is common in disk
        // images, and zstd spends more time failing on it than hashing costs: a 64 KiB sample
        // that does not shrink means the chunk is stored raw without trying the rest.
        var compressed = data.count
        if data.count < 4 * Self.sampleBytes || worthCompressing(UnsafeRawBufferPointer(rebasing: data[0..<Self.sampleBytes]), scratch: payload) {
            compressed = try compressor.compress(data, into: payload)
        }
        let length: Int
        // Keep the zstd frame only when it saves more than ~1.5 %; otherwise store raw so
        // restore skips decompression of incompressible data.
        if compressed < data.count - data.count / 64 {
            encodeBuffer[0] = Self.zstd
            length = compressed
        } else {
            encodeBuffer[0] = Self.raw
            payload.copyMemory(from: data)
            length = data.count
        }
        let container = UnsafeRawBufferPointer(rebasing: encodeBuffer[0..<Self.headerSize + length])
        if sealer.isEncrypted {
            let sealed = try sealer.seal(container, context: id.bytes)
            return try sealed.withUnsafeBytes(body)
        }
        return try body(container)
    }

    private static let sampleBytes = 64 << 10

    /// Whether `sample` shrinks by more than ~1.5 % (the bar a whole chunk must pass).
    private func worthCompressing(_ sample: UnsafeRawBufferPointer, scratch: UnsafeMutableRawBufferPointer) -> Bool {
        guard let size = try? compressor.compress(sample, into: scratch) else { return true }
        return size < sample.count - sample.count / 64
    }

    /// Decodes a stored object into the start of `target`, checking it is exactly the chunk `id`
    /// of `length` bytes (by `check` when not 0, see `problem(with:)`): one copy (or one
    /// decompression) from the object to the target, and the hash over the result.
    func decode(_ object: UnsafeRawBufferPointer, id: ChunkID, check: UInt64, length: Int, sealer: ObjectSealer,
                into target: UnsafeMutableRawBufferPointer) throws(ChunkProblem) {
        guard length <= chunkSize, length <= target.count else { throw .unreadable("chunk longer than the chunk size") }
        let plain = UnsafeMutableRawBufferPointer(rebasing: target[0..<length])
        let problem: ChunkProblem?
        if sealer.isEncrypted {
            let container: [UInt8]
            do {
                container = try sealer.open(Array(object), context: id.bytes)
            } catch {
                throw .authenticationFailed
            }
            problem = container.withUnsafeBytes { decodeContainer($0, length: length, into: plain) }
        } else {
            problem = decodeContainer(object, length: length, into: plain)
        }
        if let problem = problem ?? Self.problem(with: UnsafeRawBufferPointer(plain), id: id, check: check, sealer: sealer) {
            throw problem
        }
    }

    /// Checks a raw chunk whose header and payload were read apart (the payload straight into
    /// place): the header must say raw and `plain.count` bytes, the bytes must be chunk `id`.
    func checkRaw(header: UnsafeRawBufferPointer, plain: UnsafeRawBufferPointer, id: ChunkID, check: UInt64,
                  sealer: ObjectSealer) throws(ChunkProblem) {
        guard header.count == Self.headerSize, header[0] == Self.raw else { throw .unreadable("not a raw chunk") }
        let stated = Int(UInt32(littleEndian: header.loadUnaligned(fromByteOffset: 1, as: UInt32.self)))
        guard stated == plain.count else { throw .lengthMismatch(expected: plain.count, actual: stated) }
        if let problem = Self.problem(with: plain, id: id, check: check, sealer: sealer) { throw problem }
    }

    /// `[encoding][plain length][payload]` into `plain` (exactly the stated length).
    private func decodeContainer(_ bytes: UnsafeRawBufferPointer, length: Int, into plain: UnsafeMutableRawBufferPointer) -> ChunkProblem? {
        guard bytes.count >= Self.headerSize else { return .unreadable("object of \(bytes.count) bytes") }
        let stated = Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 1, as: UInt32.self)))
        guard stated == length else { return .lengthMismatch(expected: length, actual: stated) }
        let payload = UnsafeRawBufferPointer(rebasing: bytes[Self.headerSize...])
        switch bytes[0] {
        case Self.raw:
            guard payload.count == length else { return .lengthMismatch(expected: length, actual: payload.count) }
            plain.copyMemory(from: payload)
        case Self.zstd:
            do {
                try decompressor.decompress(payload, into: plain, expectedSize: length)
            } catch {
                return .unreadable("\(error)")
            }
        default:
            return .unreadable("unknown encoding \(bytes[0])")
        }
        return nil
    }
}
