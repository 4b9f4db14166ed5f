import Foundation
import Glibc

/// Restoring one disk of one backup: read its index (a full view, no chain to merge) and
/// write every non-zero chunk at its offset. Zero chunks become holes.
extension Repository {
    /// Writes the disk as a raw sparse file at `path` (replacing it). Every chunk is checked
    /// against its id; a damaged or missing one stops the restore with
    /// `RepositoryError.damagedChunk` naming the chunk, backup, disk and offset, and the
    /// partial output is removed.
    public func restore(backup: String, disk: String, to path: String, threads: Int = 0) throws {
        let index = try index(backup: backup, disk: disk)
        let fd = try POSIX.open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        do {
            try write(index, positions: index.entries.indices, to: fd, path: path, backup: backup, disk: disk, threads: threads)
            POSIX.close(fd)
        } catch {
            POSIX.close(fd)
            unlink(path)
            throw error
        }
    }

    /// Writes the chunks of `[offset, offset + length)` of the disk into `path` (created at the
    /// disk's size if missing, never truncated): one restore task's range. Ranges may be
    /// written by several processes at once; a repeated range rewrites the same bytes.
    public func restoreRange(backup: String, disk: String, offset: UInt64, length: UInt64, to path: String, threads: Int = 0) throws {
        let index = try index(backup: backup, disk: disk)
        let size = UInt64(chunkSize)
        let first = Int(offset / size), end = min(index.entries.count, Int((offset + length + size - 1) / size))
        let fd = try POSIX.open(path, O_WRONLY | O_CREAT, 0o600)
        defer { POSIX.close(fd) }
        try write(index, positions: first..<max(first, end), to: fd, path: path, backup: backup, disk: disk, threads: threads)
    }

    /// Sizes the file to the disk (growing only), writes the non-zero chunks among `positions`
    /// (zero chunks stay holes), checks each against its id, and fsyncs.
    private func write(_ index: DiskIndex, positions range: Range<Int>, to fd: Int32, path: String, backup: String, disk: String,
                       threads: Int) throws {
        var status = stat()
        if fstat(fd, &status) == 0, UInt64(status.st_size) < index.diskSize, ftruncate(fd, off_t(index.diskSize)) != 0 {
            throw POSIX.error("ftruncate", path)
        }
        let positions = range.filter { !index.entries[$0].isZero }
        try Parallel.forEach(count: positions.count, threads: threads > 0 ? threads : Parallel.defaultThreads,
                             makeState: { self.makeCodec() }) { n, codec in
            let i = positions[n]
            let entry = index.entries[i]
            let plain: UnsafeRawBufferPointer
            do throws(ChunkProblem) {
                plain = try loadChunk(entry, length: index.length(of: i), codec: codec)
            } catch {
                throw RepositoryError.damagedChunk(DamagedChunk(chunk: entry.id, backup: backup, disk: disk,
                                                                offset: index.offset(of: i), problem: error))
            }
            try POSIX.pwriteAll(fd, plain, at: index.offset(of: i), path: path)
            POSIX.startWriteback(fd, offset: index.offset(of: i), length: plain.count)
            if n >= Self.writeBehindLag {
                let old = positions[n - Self.writeBehindLag]
                POSIX.writeBehind(fd, offset: index.offset(of: old), length: index.length(of: old))
            }
        }
        try POSIX.fsync(fd, path: path)
    }

    /// Chunks a restore writes before it waits for the writeback of an earlier one and drops
    /// its pages (`POSIX.writeBehind`). A restore writes a whole disk once: keeping it in the
    /// page cache only evicts useful pages, and on VMs whose free memory goes back to the host
    /// every fresh page costs a fault, which made page-cache growth most of a restore's time.
    /// The lag lets writeback run behind the writers instead of stalling them.
    static let writeBehindLag = 32

    /// Restores to a qcow2 image through `qemu-img convert` (from qemu-utils), via a
    /// temporary raw file beside `path`.
    public func restoreQcow2(backup: String, disk: String, to path: String, threads: Int = 0,
                             qemuImg: String = "/usr/bin/qemu-img") throws {
        let raw = path + ".raw-\(getpid())"
        defer { unlink(raw) }
        try restore(backup: backup, disk: disk, to: raw, threads: threads)
        try Self.convertToQcow2(raw: raw, to: path, qemuImg: qemuImg)
    }

    /// `qemu-img convert -f raw -O qcow2 raw path`: holes stay unallocated.
    public static func convertToQcow2(raw: String, to path: String, qemuImg: String = "/usr/bin/qemu-img") throws {
        guard FileManager.default.isExecutableFile(atPath: qemuImg) else {
            throw RepositoryError.externalToolFailed("\(qemuImg) not found: install qemu-utils to restore to qcow2")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: qemuImg)
        process.arguments = ["convert", "-f", "raw", "-O", "qcow2", raw, path]
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw RepositoryError.externalToolFailed("qemu-img convert exited with status \(process.terminationStatus)")
        }
    }

    /// Hands the non-zero chunks of the disk (or of `[offset, offset + length)`, chunk-aligned)
    /// to `deliver` in ascending order (zero chunks are
    /// skipped: the target is created sparse), decoding a window of chunks on `threads` threads
    /// while the previous window is delivered (two sets of buffers, codecs reused across
    /// windows): how a restore streams to a remote target.
    /// Damaged chunks fail as in `restore(to:)`. Returns the disk's size.
    @discardableResult
    public func streamDisk(backup: String, disk: String, offset: UInt64 = 0, length: UInt64 = .max, threads: Int = 0,
                           deliver: (UInt64, UnsafeRawBufferPointer) throws -> Void) throws -> UInt64 {
        let index = try index(backup: backup, disk: disk)
        let size = UInt64(chunkSize)
        let first = Int(min(offset / size, UInt64(index.entries.count)))
        let end = Int(min((offset.addingReportingOverflow(length).overflow ? .max : offset + length).quotientRoundingUp(size), UInt64(index.entries.count)))
        let positions = (first..<max(first, end)).filter { !index.entries[$0].isZero }
        let workers = threads > 0 ? threads : Parallel.defaultThreads
        let window = workers * 4
        let windows = stride(from: 0, to: positions.count, by: window).map { Array(positions[$0..<min($0 + window, positions.count)]) }
        // Two sets of buffers: one window is decoded into one set while the other is delivered.
        let buffers = (0..<2).map { _ in (0..<min(window, positions.count)).map { _ in ReadBuffer(size: chunkSize) } }
        let codecs = CodecPool { self.makeCodec() }
        @Sendable func decode(_ batch: [Int], into set: [ReadBuffer]) throws {
            try Parallel.forEach(count: batch.count, threads: workers, makeState: { codecs.lease() }) { n, lease in
                let i = batch[n]
                let entry = index.entries[i]
                do throws(ChunkProblem) {
                    try loadChunk(entry, length: index.length(of: i), codec: lease.codec, into: set[n].bytes)
                } catch {
                    throw RepositoryError.damagedChunk(DamagedChunk(chunk: entry.id, backup: backup, disk: disk,
                                                                    offset: index.offset(of: i), problem: error))
                }
            }
        }
        guard let firstWindow = windows.first else { return index.diskSize }
        try decode(firstWindow, into: buffers[0])
        for (k, batch) in windows.enumerated() {
            let next = k + 1 < windows.count ? BackgroundWork { try decode(windows[k + 1], into: buffers[(k + 1) % 2]) } : nil
            do {
                for (n, i) in batch.enumerated() {
                    try deliver(index.offset(of: i), UnsafeRawBufferPointer(rebasing: buffers[k % 2][n].bytes[0..<index.length(of: i)]))
                }
            } catch {
                try? next?.wait()  // no decoder may outlive the buffers
                throw error
            }
            try next?.wait()
        }
        return index.diskSize
    }

    /// The offsets of the `step`-byte ranges (a multiple of the chunk size) of the disk that
    /// hold a non-zero chunk: all a restore into something that starts as zeros (a new file or
    /// image) must write. A 1 TiB volume holding little data is then a few restore tasks.
    public func rangesWithData(backup: String, disk: String, step: UInt64) throws -> [UInt64] {
        let index = try index(backup: backup, disk: disk)
        var ranges: [UInt64] = []
        for (i, entry) in index.entries.enumerated() where !entry.isZero {
            let range = index.offset(of: i) / step * step
            if ranges.last != range { ranges.append(range) }
        }
        return ranges
    }

    /// The size of one disk of a committed backup.
    public func diskSize(backup: String, disk: String) throws -> UInt64 {
        try index(backup: backup, disk: disk).diskSize
    }
}

private extension UInt64 {
    func quotientRoundingUp(_ divisor: UInt64) -> UInt64 { self / divisor + (self % divisor == 0 ? 0 : 1) }
}

/// Codecs handed out to decoding threads and taken back when their lease ends: a restore's
/// windows reuse a few codecs (and their chunk-sized buffers) instead of making new ones each.
final class CodecPool: @unchecked Sendable {
    final class Lease {
        let codec: ChunkCodec
        private let pool: CodecPool
        init(_ codec: ChunkCodec, pool: CodecPool) { self.codec = codec; self.pool = pool }
        deinit { pool.give(codec) }
    }

    private let lock = NSLock()
    private var idle: [ChunkCodec] = []
    private let make: @Sendable () -> ChunkCodec

    init(make: @escaping @Sendable () -> ChunkCodec) { self.make = make }

    func lease() -> Lease {
        let codec = lock.withLock { idle.popLast() } ?? make()
        return Lease(codec, pool: self)
    }

    fileprivate func give(_ codec: ChunkCodec) { lock.withLock { idle.append(codec) } }
}

/// Work started on a thread of its own at once; `wait` returns when it is done (or throws its error).
final class BackgroundWork: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var failure: (any Error)?

    init(_ body: @escaping @Sendable () throws -> Void) {
        Thread.detachNewThread { [self] in
            do { try body() } catch { failure = error }
            done.signal()
        }
    }

    func wait() throws {
        done.wait()
        if let failure { throw failure }
    }
}
