import Foundation
import Glibc

/// Backing up from a file or block device: what a range task does with a local image, and
/// what the benchmark and the repository tool use.
extension Repository {
    /// Reads `[offset, offset + length)` of the image at `path` chunk by chunk on `threads`
    /// threads (each reads, hashes, compresses and stores its own chunks), then finishes the
    /// range. Chunks wholly inside holes of a sparse image are recorded as zeros unread
    /// (`dataChunks`); a chunk only partly a hole is read like any other.
    /// Memory: about three chunk-sized buffers per thread.
    @discardableResult
    public func backupRange(of path: String, backup: String, disk: String, offset: UInt64, length: UInt64,
                            threads: Int = 0) throws -> RangeProgress {
        let writer = try rangeWriter(backup: backup, disk: disk, offset: offset, length: length)
        let fd = try POSIX.open(path, O_RDONLY)
        defer { POSIX.close(fd) }
        let size = UInt64(chunkSize)
        let chunks = Int((length + size - 1) / size)
        let data = try Self.dataChunks(fd, path: path, offset: offset, length: length, chunkSize: size)
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
            let got = try POSIX.preadFull(fd, UnsafeMutableRawBufferPointer(rebasing: buffer.bytes[0..<want]),
                                          at: chunkOffset, path: path)
            guard got == want else { throw RepositoryError.system(operation: "read (image shrank)", path: path, errno: EIO) }
            try writer.write(at: chunkOffset, UnsafeRawBufferPointer(rebasing: buffer.bytes[0..<want]))
        }
        try writer.finish()
        return writer.progress
    }

    /// For each chunk of the range, whether any of it holds data (false: wholly a hole, so
    /// all zeros without reading). Asks the filesystem with SEEK_DATA/SEEK_HOLE; where those
    /// are unsupported (or the source is a block device, which reports all data) every chunk
    /// counts as data, and zero chunks are still found by reading them.
    static func dataChunks(_ fd: Int32, path: String, offset: UInt64, length: UInt64, chunkSize: UInt64) throws -> [Bool] {
        let count = Int((length + chunkSize - 1) / chunkSize)
        let end = offset + length
        var data = [Bool](repeating: false, count: count)
        func mark(_ from: UInt64, _ to: UInt64) { // [from, to) holds data
            guard to > from else { return }
            let first = Int((from - offset) / chunkSize)
            let last = Int((to - 1 - offset) / chunkSize)
            for i in first...last { data[i] = true }
        }
        var position = offset
        while position < end {
            let start = lseek(fd, off_t(position), POSIX.seekData)
            if start < 0 {
                if errno == ENXIO { break } // only a hole from here to the end of the file
                mark(position, end)         // no hole information: read everything
                break
            }
            guard UInt64(start) < end else { break }
            var stop = lseek(fd, start, POSIX.seekHole)
            if stop < 0 { stop = off_t(end) }
            mark(UInt64(start), min(UInt64(stop), end))
            position = UInt64(stop)
        }
        return data
    }

    /// A whole single-disk backup of a local image: begin, one range, commit.
    @discardableResult
    public func backupImage(path: String, backup: String, disk: String, parent: String? = nil,
                            metadata: Data = Data(), threads: Int = 0) throws -> BackupManifest {
        let fd = try POSIX.open(path, O_RDONLY)
        let size = try imageSize(fd, path: path)
        POSIX.close(fd)
        try beginBackup(backup, parent: parent)
        do {
            try backupRange(of: path, backup: backup, disk: disk, offset: 0, length: size, threads: threads)
            return try commitBackup(backup, disks: [DiskLayout(name: disk, size: size)], metadata: metadata)
        } catch {
            try? abandonBackup(backup)
            throw error
        }
    }

    /// Size of a regular file, or of a block device (whose st_size is 0).
    private func imageSize(_ fd: Int32, path: String) throws -> UInt64 {
        let end = lseek(fd, 0, SEEK_END)
        if end < 0 { throw POSIX.error("lseek", path) }
        return UInt64(end)
    }
}

/// A chunk-sized read buffer owned by one worker thread.
final class ReadBuffer {
    let bytes: UnsafeMutableRawBufferPointer

    init(size: Int) { bytes = .allocate(byteCount: size, alignment: 4096) }
    deinit { bytes.deallocate() }
}
