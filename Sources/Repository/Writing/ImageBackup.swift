import Foundation
import Glibc

/// Backing up from a file or block device: what a range task does with a local image, and
/// what the benchmark and the repository tool use.
extension Repository {
    /// Reads `[offset, offset + length)` of the image at `path` chunk by chunk on `threads`
    /// threads (each reads, hashes, compresses and stores its own chunks), then finishes the
    /// range. Memory: about three chunk-sized buffers per thread.
    @discardableResult
    public func backupRange(of path: String, backup: String, disk: String, offset: UInt64, length: UInt64,
                            threads: Int = 0) throws -> RangeProgress {
        let writer = try rangeWriter(backup: backup, disk: disk, offset: offset, length: length)
        let fd = try POSIX.open(path, O_RDONLY)
        defer { POSIX.close(fd) }
        let size = UInt64(chunkSize)
        let chunks = Int((length + size - 1) / size)
        try Parallel.forEach(count: chunks, threads: threads > 0 ? threads : Parallel.defaultThreads,
                             makeState: { ReadBuffer(size: chunkSize) }) { i, buffer in
            let chunkOffset = offset + UInt64(i) * size
            let want = Int(min(size, offset + length - chunkOffset))
            let got = try POSIX.preadFull(fd, UnsafeMutableRawBufferPointer(rebasing: buffer.bytes[0..<want]),
                                          at: chunkOffset, path: path)
            guard got == want else { throw RepositoryError.system(operation: "read (image shrank)", path: path, errno: EIO) }
            try writer.write(at: chunkOffset, UnsafeRawBufferPointer(rebasing: buffer.bytes[0..<want]))
        }
        try writer.finish()
        return writer.progress
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
