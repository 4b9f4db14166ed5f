import Foundation

/// A disk read front to back, in pieces the repository names in ascending order: the shape of
/// a source behind a network stream or a pipeline of reads, where random reads from many
/// threads would each cost a round trip. Hashing, compressing and storing run on other threads.
public protocol SequentialBlockSource {
    /// The guest-visible size in bytes.
    var size: UInt64 { get }

    /// The parts of `[offset, offset + length)` to read: ascending, disjoint, inside the range.
    /// What they mean for the rest depends on the backup (`StreamedExtents`).
    func extents(offset: UInt64, length: UInt64) throws -> [Range<UInt64>]
}

/// A sequential source that hands its bytes over in its own buffers (a file on a hypervisor
/// read over SSH, a local file).
public protocol StreamingBlockSource: SequentialBlockSource {
    /// Reads `pieces` (ascending, disjoint, each inside one extent) and calls `deliver` with
    /// their bytes in order: every byte once, in as many calls as the source likes, a call never
    /// spanning two pieces. The buffer is only valid during the call.
    func stream(_ pieces: [Range<UInt64>], into deliver: (UInt64, UnsafeRawBufferPointer) throws -> Void) throws
}

/// A sequential source that reads straight into memory the repository names (librbd's
/// scattered reads): the chunk buffers fill without a copy through a read buffer (a copy of
/// every byte, 4 % of the worker's CPU in a profile of an RBD full).
public protocol PlacingBlockSource: SequentialBlockSource {
    /// Reads at once, and the most bytes one read spans: with the chunk size, they bound the
    /// chunk buffers the repository must have ready.
    var readsInFlight: Int { get }
    var readSpan: UInt64 { get }

    /// Reads `pieces` (ascending, disjoint, each inside one extent): before a piece's read
    /// starts, `place` gives the memory its bytes go to (exactly its length); once they are
    /// there, `arrived` is called with it. Both are called in the pieces' order, from the
    /// calling thread.
    func read(_ pieces: [Range<UInt64>], place: (Range<UInt64>) throws -> UnsafeMutableRawBufferPointer,
              arrived: (Range<UInt64>) throws -> Void) throws
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
        try backupRange(source, extents: meaning, backup: backup, disk: disk, offset: offset, length: length, threads: threads,
                        heldChunks: 1) { pieces, assembler in
            try source.stream(pieces) { at, bytes in
                let part = at..<(at + UInt64(bytes.count))
                try assembler.place(part).copyMemory(from: bytes)
                try assembler.arrived(part)
            }
        }
    }

    /// `backupRange(streaming:…)` for a source that reads into the chunk buffers themselves.
    @discardableResult
    public func backupRange(placing source: some PlacingBlockSource, extents meaning: StreamedExtents,
                            backup: String, disk: String, offset: UInt64, length: UInt64, threads: Int = 0) throws -> RangeProgress {
        // The chunks the reads in flight touch, and the one being completed.
        let held = 1 + source.readsInFlight * Int(source.readSpan / UInt64(chunkSize) + 2)
        return try backupRange(source, extents: meaning, backup: backup, disk: disk, offset: offset, length: length, threads: threads,
                               heldChunks: held) { pieces, assembler in
            try source.read(pieces, place: assembler.place, arrived: assembler.arrived)
        }
    }

    /// Reads the pieces of `source` inside the range through `read`, which hands them to the
    /// assembler, holding at most `heldChunks` chunk buffers while it does.
    private func backupRange(_ source: some SequentialBlockSource, extents meaning: StreamedExtents, backup: String, disk: String,
                             offset: UInt64, length: UInt64, threads: Int, heldChunks: Int,
                             read: ([Range<UInt64>], ChunkAssembler) throws -> Void) throws -> RangeProgress {
        let writer = try rangeWriter(backup: backup, disk: disk, offset: offset, length: length)
        let size = UInt64(chunkSize)
        let end = offset + length
        let extents = try source.extents(offset: offset, length: length).compactMap { extent -> Range<UInt64>? in
            let clipped = max(extent.lowerBound, offset)..<min(extent.upperBound, end)
            return clipped.isEmpty ? nil : clipped
        }
        let pieces = Self.pieces(of: extents, chunkSize: size)
        let parentIndex: DiskIndex?
        if case .changesSinceParent = meaning {
            parentIndex = try streamingParentIndex(backup: backup, disk: disk, diskSize: source.size)
        } else {
            parentIndex = nil
            try writeZeroChunks(writer, outside: pieces, offset: offset, length: length)
        }

        let storers = threads > 0 ? threads : Parallel.defaultThreads
        let conveyor = ChunkConveyor(threads: storers, buffers: 2 * storers + heldChunks, chunkSize: chunkSize) { chunkOffset, bytes in
            try writer.write(at: chunkOffset, bytes)
        }
        let codec = makeCodec()
        let assembler = ChunkAssembler(disk: disk, pieces: pieces, chunkSize: size, end: end, conveyor: conveyor) { buffer, chunkOffset, count in
            try self.fillBase(buffer, chunkOffset: chunkOffset, count: count, parent: parentIndex, codec: codec, backup: backup, disk: disk)
        }
        do {
            try read(pieces, assembler)
            try assembler.finish()
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
        let entry = parent.entries[position]
        do throws(ChunkProblem) {
            try loadChunk(entry, length: count, codec: codec, into: target)
        } catch {
            throw RepositoryError.damagedChunk(DamagedChunk(chunk: entry.id, backup: backup, disk: disk, offset: chunkOffset, problem: error))
        }
    }
}

/// Assembles chunks from the pieces a source reads, on the source's thread: a chunk's buffer is
/// taken (and its base filled, when pieces cover it only in part) when its first piece is
/// placed, and the chunk goes to the storers once every byte of its pieces has arrived.
/// Pieces are placed, and arrive, in order.
final class ChunkAssembler {
    private struct Assembly {
        let buffer: ReadBuffer
        let expected: UInt64
        var received: UInt64 = 0
    }

    private let disk: String
    private let pieces: [Range<UInt64>]
    private let chunkSize: UInt64
    private let end: UInt64
    private let conveyor: ChunkConveyor
    private let fillBase: (ReadBuffer, UInt64, Int) throws -> Void
    private var assemblies: [UInt64: Assembly] = [:]
    /// Index into `pieces` of the first piece of the next chunk to open.
    private var next = 0

    init(disk: String, pieces: [Range<UInt64>], chunkSize: UInt64, end: UInt64, conveyor: ChunkConveyor,
         fillBase: @escaping (ReadBuffer, UInt64, Int) throws -> Void) {
        self.disk = disk
        self.pieces = pieces
        self.chunkSize = chunkSize
        self.end = end
        self.conveyor = conveyor
        self.fillBase = fillBase
    }

    /// Where the bytes of `part` (inside one piece) go.
    func place(_ part: Range<UInt64>) throws -> UnsafeMutableRawBufferPointer {
        let chunkOffset = part.lowerBound - part.lowerBound % chunkSize
        guard part.upperBound <= chunkOffset + chunkSize else { throw unexpected(part) }
        let assembly = try assemblies[chunkOffset] ?? open(chunkOffset, for: part)
        let start = Int(part.lowerBound - chunkOffset)
        return UnsafeMutableRawBufferPointer(rebasing: assembly.buffer.bytes[start..<(start + part.count)])
    }

    /// The bytes of `part` are in place.
    func arrived(_ part: Range<UInt64>) throws {
        let chunkOffset = part.lowerBound - part.lowerBound % chunkSize
        guard var assembly = assemblies[chunkOffset], assembly.received + UInt64(part.count) <= assembly.expected else {
            throw unexpected(part)
        }
        assembly.received += UInt64(part.count)
        if assembly.received == assembly.expected {
            assemblies[chunkOffset] = nil
            conveyor.submit(assembly.buffer, offset: chunkOffset, count: Int(min(chunkSize, end - chunkOffset)))
        } else {
            assemblies[chunkOffset] = assembly
        }
    }

    /// Throws unless every piece arrived.
    func finish() throws {
        if let (offset, assembly) = assemblies.min(by: { $0.key < $1.key }) {
            throw RepositoryError.sourceShortRead(disk: disk, offset: offset, expected: assembly.expected, received: assembly.received)
        }
        if next < pieces.count {
            throw RepositoryError.sourceShortRead(disk: disk, offset: pieces[next].lowerBound, expected: UInt64(pieces[next].count), received: 0)
        }
    }

    /// Takes a buffer for the chunk at `chunkOffset`, which must be the next chunk the pieces touch.
    private func open(_ chunkOffset: UInt64, for part: Range<UInt64>) throws -> Assembly {
        guard next < pieces.count, pieces[next].lowerBound >= chunkOffset, pieces[next].lowerBound < chunkOffset + chunkSize else {
            throw unexpected(part)
        }
        var expected: UInt64 = 0
        while next < pieces.count, pieces[next].lowerBound < chunkOffset + chunkSize {
            expected += UInt64(pieces[next].count)
            next += 1
        }
        let buffer = try conveyor.takeBuffer()
        let count = Int(min(chunkSize, end - chunkOffset))
        if expected < UInt64(count) { try fillBase(buffer, chunkOffset, count) }
        let assembly = Assembly(buffer: buffer, expected: expected)
        assemblies[chunkOffset] = assembly
        return assembly
    }

    /// A source handing over bytes that are not the next of the pieces asked for.
    private func unexpected(_ part: Range<UInt64>) -> RepositoryError {
        RepositoryError.sourceShortRead(disk: disk, offset: part.lowerBound, expected: UInt64(part.count), received: chunkSize + 1)
    }
}

/// Hands filled chunk buffers from the one thread that streams to the threads that hash,
/// compress and store them, through a bounded set of buffers: the stream waits when the
/// storers fall behind, so memory stays at about two buffers per storer and those the source holds.
final class ChunkConveyor: @unchecked Sendable {
    private let condition = NSCondition()
    private var free: [ReadBuffer] = []
    /// Buffers not allocated yet: made when first needed, so a source that holds few costs little.
    private var unmade: Int
    private let chunkSize: Int
    private var queue: [(buffer: ReadBuffer, offset: UInt64, count: Int)] = []
    private var closed = false
    private var firstError: (any Error)?
    private var running: Int

    /// The storers are threads of their own, not Dispatch's: the stream itself usually runs on
    /// a Dispatch thread, and Dispatch keeps about one busy thread per core, which left a
    /// stream with a single storer (measured: half the throughput over SSH).
    init(threads: Int, buffers: Int, chunkSize: Int, store: @escaping @Sendable (UInt64, UnsafeRawBufferPointer) throws -> Void) {
        unmade = buffers
        self.chunkSize = chunkSize
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
        while free.isEmpty && unmade == 0 && firstError == nil { condition.wait() }
        if let firstError { throw firstError }
        if free.isEmpty {
            unmade -= 1
            return ReadBuffer(size: chunkSize)
        }
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
