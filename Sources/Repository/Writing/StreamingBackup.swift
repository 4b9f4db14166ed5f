import Foundation

/// A disk read front to back: the shape of a source behind a network stream (a file on a
/// hypervisor read over SSH), where random reads from many threads would each cost a round
/// trip. The repository names the pieces it wants, in ascending order, and the source hands
/// their bytes back in that order; hashing, compressing and storing run on other threads.
public protocol StreamingBlockSource {
    /// The guest-visible size in bytes.
    var size: UInt64 { get }

    /// The parts of `[offset, offset + length)` to read: ascending, disjoint, inside the range.
    /// What they mean for the rest depends on the backup (`StreamedExtents`).
    func extents(offset: UInt64, length: UInt64) throws -> [Range<UInt64>]

    /// Reads `pieces` (ascending, disjoint, each inside one extent) and calls `deliver` with
    /// their bytes in order: every byte once, in as many calls as the source likes, a call never
    /// spanning two pieces. The buffer is only valid during the call.
    func stream(_ pieces: [Range<UInt64>], into deliver: (UInt64, UnsafeRawBufferPointer) throws -> Void) throws
}

/// What a streaming source's extents say about the bytes outside them.
public enum StreamedExtents: Sendable {
    /// Outside the extents the disk reads as zeros: a full backup of an allocation map.
    case dataElsewhereZero
    /// Outside the extents nothing changed since the backup's parent: an incremental from
    /// an overlay's own clusters, a dirty bitmap or `rbd diff`. Chunks the extents do not
    /// touch are inherited at commit; a chunk they touch in part starts from the parent's
    /// chunk, so only changed bytes cross the network (read amplification stays near 1).
    case changesSinceParent
}

extension Repository {
    /// Backs up `[offset, offset + length)` of `source`, reading only its extents. The calling
    /// thread runs the stream; `threads` others store the chunks (the pipeline holds about
    /// two chunk buffers per thread). The range must be chunk-aligned like any range.
    @discardableResult
    public func backupRange(streaming source: some StreamingBlockSource, extents meaning: StreamedExtents,
                            backup: String, disk: String, offset: UInt64, length: UInt64, threads: Int = 0) throws -> RangeProgress {
        let writer = try rangeWriter(backup: backup, disk: disk, offset: offset, length: length)
        let size = UInt64(chunkSize)
        let end = offset + length
        let extents = try source.extents(offset: offset, length: length).compactMap { extent -> Range<UInt64>? in
            let clipped = max(extent.lowerBound, offset)..<min(extent.upperBound, end)
            return clipped.isEmpty ? nil : clipped
        }
        let pieces = Self.pieces(of: extents, chunkSize: size)
        var parentIndex: DiskIndex?
        if case .changesSinceParent = meaning {
            parentIndex = try streamingParentIndex(backup: backup, disk: disk, diskSize: source.size)
        } else {
            try writeZeroChunks(writer, outside: pieces, offset: offset, length: length)
        }

        let conveyor = ChunkConveyor(threads: threads > 0 ? threads : Parallel.defaultThreads, chunkSize: chunkSize) { chunkOffset, bytes in
            try writer.write(at: chunkOffset, bytes)
        }
        let codec = makeCodec()
        var current: (offset: UInt64, buffer: ReadBuffer, expected: UInt64, received: UInt64)?
        var next = 0 // index into pieces of the next piece to start
        do {
            func submitCurrent() throws {
                guard let chunk = current else { return }
                guard chunk.received == chunk.expected else {
                    throw RepositoryError.sourceShortRead(disk: disk, offset: chunk.offset, expected: chunk.expected, received: chunk.received)
                }
                let count = Int(min(size, end - chunk.offset))
                conveyor.submit(chunk.buffer, offset: chunk.offset, count: count)
                current = nil
            }
            try source.stream(pieces) { at, bytes in
                let chunkOffset = at - at % size
                if current?.offset != chunkOffset {
                    try submitCurrent()
                    let buffer = try conveyor.takeBuffer()
                    let count = Int(min(size, end - chunkOffset))
                    var expected: UInt64 = 0
                    while next < pieces.count, pieces[next].lowerBound < chunkOffset + size {
                        expected += UInt64(pieces[next].count)
                        next += 1
                    }
                    if expected < UInt64(count) {
                        try fillBase(buffer, chunkOffset: chunkOffset, count: count, parent: parentIndex, codec: codec,
                                     backup: backup, disk: disk)
                    }
                    current = (chunkOffset, buffer, expected, 0)
                }
                guard let chunk = current, at + UInt64(bytes.count) <= chunkOffset + size else {
                    throw RepositoryError.sourceShortRead(disk: disk, offset: chunkOffset, expected: size, received: size + 1)
                }
                UnsafeMutableRawBufferPointer(rebasing: chunk.buffer.bytes[Int(at - chunkOffset)...]).copyMemory(from: bytes)
                current?.received += UInt64(bytes.count)
            }
            try submitCurrent()
            if next < pieces.count {
                throw RepositoryError.sourceShortRead(disk: disk, offset: pieces[next].lowerBound, expected: UInt64(pieces[next].count), received: 0)
            }
            try conveyor.finish()
        } catch {
            try? conveyor.finish()
            throw error
        }
        try writer.finish()
        return writer.progress
    }

    /// `extents` cut at chunk boundaries, so each piece belongs to one chunk.
    static func pieces(of extents: [Range<UInt64>], chunkSize: UInt64) -> [Range<UInt64>] {
        var pieces: [Range<UInt64>] = []
        for extent in extents {
            var start = extent.lowerBound
            while start < extent.upperBound {
                let stop = min(extent.upperBound, (start / chunkSize + 1) * chunkSize)
                if let last = pieces.last, last.upperBound == start, last.lowerBound / chunkSize == start / chunkSize {
                    pieces[pieces.count - 1] = last.lowerBound..<stop  // adjacent extents in one chunk
                } else {
                    pieces.append(start..<stop)
                }
                start = stop
            }
        }
        return pieces
    }

    /// Records as zeros every chunk of the range that no piece touches.
    private func writeZeroChunks(_ writer: RangeWriter, outside pieces: [Range<UInt64>], offset: UInt64, length: UInt64) throws {
        let size = UInt64(chunkSize)
        let data = Self.dataChunks(pieces, offset: offset, length: length, chunkSize: size)
        var run = 0
        while run < data.count {
            guard !data[run] else { run += 1; continue }
            var stop = run
            while stop < data.count && !data[stop] { stop += 1 }
            let start = offset + UInt64(run) * size
            try writer.writeZeros(at: start, length: min(offset + UInt64(stop) * size, offset + length) - start)
            run = stop
        }
    }

    /// The parent's index of `disk`, which an incremental's partly changed chunks start from.
    private func streamingParentIndex(backup: String, disk: String, diskSize: UInt64) throws -> DiskIndex {
        guard let parent = try readBegunMarker(backup)?.parent else {
            throw RepositoryError.incrementalWithoutParent(backup: backup, disk: disk)
        }
        let index = try readIndex(backup: parent, disk: disk)
        guard index.diskSize == diskSize, index.chunkSize == chunkSize else {
            throw RepositoryError.incrementalWithoutParent(backup: backup, disk: disk)
        }
        return index
    }

    /// Fills a chunk buffer with what lies under its changed pieces: the parent's chunk for an
    /// incremental, zeros for a full.
    private func fillBase(_ buffer: ReadBuffer, chunkOffset: UInt64, count: Int, parent: DiskIndex?, codec: ChunkCodec,
                          backup: String, disk: String) throws {
        let target = UnsafeMutableRawBufferPointer(rebasing: buffer.bytes[0..<count])
        let position = Int(chunkOffset / UInt64(chunkSize))
        guard let parent, !parent.entries[position].isZero else {
            target.initializeMemory(as: UInt8.self, repeating: 0)
            return
        }
        let id = parent.entries[position].id
        do throws(ChunkProblem) {
            try loadChunk(id, length: count, codec: codec, into: target)
        } catch {
            throw RepositoryError.damagedChunk(DamagedChunk(chunk: id, backup: backup, disk: disk, offset: chunkOffset, problem: error))
        }
    }
}

/// Hands filled chunk buffers from the one thread that streams to the threads that hash,
/// compress and store them, through a bounded set of buffers: the stream waits when the
/// storers fall behind, so memory stays at about two buffers per storer.
final class ChunkConveyor: @unchecked Sendable {
    private let condition = NSCondition()
    private var free: [ReadBuffer]
    private var queue: [(buffer: ReadBuffer, offset: UInt64, count: Int)] = []
    private var closed = false
    private var firstError: (any Error)?
    private var running: Int

    /// The storers are threads of their own, not Dispatch's: the stream itself usually runs on
    /// a Dispatch thread, and Dispatch keeps about one busy thread per core, which left a
    /// stream with a single storer (measured: half the throughput over SSH).
    init(threads: Int, chunkSize: Int, store: @escaping @Sendable (UInt64, UnsafeRawBufferPointer) throws -> Void) {
        free = (0..<threads * 2).map { _ in ReadBuffer(size: chunkSize) }
        running = threads
        for _ in 0..<threads {
            Thread.detachNewThread { [self] in
                defer { stopped() }
                while let job = take() {
                    do {
                        try store(job.offset, UnsafeRawBufferPointer(rebasing: job.buffer.bytes[0..<job.count]))
                    } catch {
                        fail(error)
                    }
                    give(job.buffer)
                }
            }
        }
    }

    /// A free buffer; waits while all are in use. Throws a storer's error, so the stream stops.
    func takeBuffer() throws -> ReadBuffer {
        condition.lock()
        defer { condition.unlock() }
        while free.isEmpty && firstError == nil { condition.wait() }
        if let firstError { throw firstError }
        return free.removeLast()
    }

    func submit(_ buffer: ReadBuffer, offset: UInt64, count: Int) {
        condition.lock()
        queue.append((buffer, offset, count))
        condition.broadcast()
        condition.unlock()
    }

    /// Waits until every submitted chunk is stored; throws the first storer error.
    func finish() throws {
        condition.lock()
        closed = true
        condition.broadcast()
        while running > 0 { condition.wait() }
        condition.unlock()
        if let firstError { throw firstError }
    }

    private func stopped() {
        condition.lock()
        running -= 1
        condition.broadcast()
        condition.unlock()
    }

    private func take() -> (buffer: ReadBuffer, offset: UInt64, count: Int)? {
        condition.lock()
        defer { condition.unlock() }
        while queue.isEmpty && !closed { condition.wait() }
        guard !queue.isEmpty else { return nil }
        return queue.removeFirst()
    }

    private func give(_ buffer: ReadBuffer) {
        condition.lock()
        free.append(buffer)
        condition.broadcast()
        condition.unlock()
    }

    private func fail(_ error: any Error) {
        condition.lock()
        if firstError == nil { firstError = error }
        condition.broadcast()
        condition.unlock()
    }
}
