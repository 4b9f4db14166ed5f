import Foundation
import Glibc

/// Backing up from a file or block device: what a range task does with a local image, and
/// what the benchmark and the repository tool use.
extension Repository {
    /// Reads `[offset, offset + length)` of `source` chunk by chunk on `threads` threads (each
    /// reads, hashes, compresses and stores its own chunks), then finishes the range. Chunks
    /// wholly outside the source's data extents are recorded as zeros unread; a chunk only
    /// partly data is read like any other. Memory: about three chunk-sized buffers per thread.
    @discardableResult
    public func backupRange(from source: some BlockSource, backup: String, disk: String, offset: UInt64, length: UInt64,
                            threads: Int = 0) throws -> RangeProgress {
        let writer = try rangeWriter(backup: backup, disk: disk, offset: offset, length: length)
        let size = UInt64(chunkSize)
        let chunks = Int((length + size - 1) / size)
        let data = Self.dataChunks(try source.dataExtents(offset: offset, length: length), offset: offset, length: length, chunkSize: size)
        var run = 0 // consecutive hole chunks, each run recorded with one call
        while run < chunks {
            guard !data[run] else { run += 1; continue }
            var end = run
            while end < chunks && !data[end] { end += 1 }
            let start = offset + UInt64(run) * size
            try writer.writeZeros(at: start, length: min(offset + UInt64(end) * size, offset + length) - start)
            run = end
        }
        let toRead = (0..<chunks).filter { data[$0] }
        try Parallel.forEach(count: toRead.count, threads: threads > 0 ? threads : Parallel.defaultThreads,
                             makeState: { ReadBuffer(size: chunkSize) }) { item, buffer in
            let chunkOffset = offset + UInt64(toRead[item]) * size
            let want = Int(min(size, offset + length - chunkOffset))
            let bytes = UnsafeMutableRawBufferPointer(rebasing: buffer.bytes[0..<want])
            try source.read(at: chunkOffset, into: bytes)
            try writer.write(at: chunkOffset, UnsafeRawBufferPointer(bytes))
        }
        try writer.finish()
        return writer.progress
    }

    /// The same for an image file or block device on this host.
    @discardableResult
    public func backupRange(of path: String, backup: String, disk: String, offset: UInt64, length: UInt64,
                            threads: Int = 0) throws -> RangeProgress {
        try backupRange(from: try LocalImageSource(path: path), backup: backup, disk: disk, offset: offset, length: length, threads: threads)
    }

    /// For each chunk of the range, whether any of it is inside a data extent (false: wholly a
    /// hole, so all zeros without reading).
    static func dataChunks(_ extents: [Range<UInt64>], offset: UInt64, length: UInt64, chunkSize: UInt64) -> [Bool] {
        var data = [Bool](repeating: false, count: Int((length + chunkSize - 1) / chunkSize))
        for extent in extents {
            let from = max(extent.lowerBound, offset), to = min(extent.upperBound, offset + length)
            guard to > from else { continue }
            for i in Int((from - offset) / chunkSize)...Int((to - 1 - offset) / chunkSize) { data[i] = true }
        }
        return data
    }

    /// A whole single-disk backup of a local image: begin, one range, commit.
    @discardableResult
    public func backupImage(path: String, backup: String, disk: String, parent: String? = nil,
                            metadata: Data = Data(), threads: Int = 0) throws -> BackupManifest {
        let source = try LocalImageSource(path: path)
        let size = source.size
        try beginBackup(backup, parent: parent)
        do {
            try backupRange(from: source, backup: backup, disk: disk, offset: 0, length: size, threads: threads)
            return try commitBackup(backup, disks: [DiskLayout(name: disk, size: size)], metadata: metadata)
        } catch {
            try? abandonBackup(backup)
            throw error
        }
    }
}

/// A chunk-sized buffer, used by one thread at a time (handed over, never shared).
final class ReadBuffer: @unchecked Sendable {
    let bytes: UnsafeMutableRawBufferPointer

    init(size: Int) { bytes = .allocate(byteCount: size, alignment: 4096) }
    deinit { bytes.deallocate() }
}
