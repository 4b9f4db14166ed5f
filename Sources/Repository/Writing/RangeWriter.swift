import Foundation

/// Stores the chunks of one range of one disk of a running backup, then records them.
///
/// The pipeline splits a disk into chunk-aligned ranges that different worker processes
/// (on different hosts) transfer; each range task uses one `RangeWriter`. Chunks may be
/// written in any order and from several threads at once. `finish` makes the range's
/// result durable as a small range record, named by the range, so a retried task simply
/// replaces its earlier record. Nothing is visible to restore until `commitBackup`.
///
/// New chunks are staged and published in batches (`RepositoryBackend.stage`/`publish`):
/// the disk is waited for once per batch, not once per chunk. A chunk is published, so
/// durable, before `finish` writes the record that refers to it; a crash before that loses
/// at most the unpublished batch, whose temporaries GC removes.
public final class RangeWriter: @unchecked Sendable {
    /// Stored bytes of staged chunks at which a write publishes the batch: large enough that
    /// the per-batch fsyncs cost little, small enough that a crash loses little work.
    public static let defaultBatchBytes = 64 << 20
    public let backup: String
    public let disk: String
    public let offset: UInt64
    public let length: UInt64
    private let repository: Repository
    private let lock = NSLock()
    private var entries: [Int: RangeEntry] = [:]
    private var idleCodecs: [ChunkCodec] = []
    private var finished = false
    private let batchBytes: Int
    private var staged: [StagedObject] = []
    private var stagedBytes = 0
    /// A failed publish loses chunks that entries already name: `finish` must then fail.
    private var publishError: (any Error)?

    /// `offset` must be chunk-aligned; the range should end on a chunk boundary or at the
    /// end of the disk. The backup must have been begun with `beginBackup`. `batchBytes` 0
    /// makes each chunk durable before its `write` returns.
    init(repository: Repository, backup: String, disk: String, offset: UInt64, length: UInt64,
         batchBytes: Int = RangeWriter.defaultBatchBytes) throws {
        try ObjectNames.validate(backup)
        try ObjectNames.validate(disk)
        guard offset % UInt64(repository.chunkSize) == 0 else {
            throw RepositoryError.misalignedChunk(offset: offset, length: Int(clamping: length))
        }
        guard try repository.backend.exists(ObjectNames.begunMarker(backup)) else {
            throw RepositoryError.backupNotBegun(backup)
        }
        self.repository = repository
        self.backup = backup
        self.disk = disk
        self.offset = offset
        self.length = length
        self.batchBytes = batchBytes
    }

    /// Stores the chunk at disk offset `chunkOffset`. It must be a whole chunk, except the
    /// last chunk of the range, which may be short when the range ends at the end of the disk.
    /// Thread-safe. Writing the same chunk again replaces the earlier write.
    public func write(at chunkOffset: UInt64, _ data: UnsafeRawBufferPointer) throws {
        let size = repository.chunkSize
        let end = offset + length
        guard chunkOffset % UInt64(size) == 0, data.count <= size,
              data.count == size || chunkOffset + UInt64(data.count) == end else {
            throw RepositoryError.misalignedChunk(offset: chunkOffset, length: data.count)
        }
        guard chunkOffset >= offset, chunkOffset + UInt64(data.count) <= end, !data.isEmpty else {
            throw RepositoryError.chunkOutsideRange(offset: chunkOffset)
        }
        let codec = takeCodec()
        defer { returnCodec(codec) }
        let stored = try repository.storeChunk(data, codec: codec, deferred: batchBytes > 0)
        let position = Int(chunkOffset / UInt64(size))
        let batch: [StagedObject]? = lock.withLock {
            precondition(!finished, "RangeWriter used after finish()")
            entries[position] = RangeEntry(position: position, entry: stored.entry, length: data.count, isNew: stored.isNew)
            guard let object = stored.staged else { return nil }
            staged.append(object)
            stagedBytes += Int(stored.entry.storedSize)
            guard stagedBytes >= batchBytes else { return nil }
            defer { staged = []; stagedBytes = 0 }
            return staged
        }
        if let batch { try publish(batch) }
    }

    /// Records `[zeroOffset, zeroOffset + zeroLength)` as zeros without reading it, for
    /// sources that know their holes (sparse files, thin volumes). Chunk-aligned like `write`.
    public func writeZeros(at zeroOffset: UInt64, length zeroLength: UInt64) throws {
        let size = UInt64(repository.chunkSize)
        let end = zeroOffset + zeroLength
        guard zeroOffset % size == 0, end % size == 0 || end == offset + length else {
            throw RepositoryError.misalignedChunk(offset: zeroOffset, length: Int(clamping: zeroLength))
        }
        guard zeroOffset >= offset, end <= offset + length else { throw RepositoryError.chunkOutsideRange(offset: zeroOffset) }
        var chunk = zeroOffset
        while chunk < end {
            let count = Int(min(size, end - chunk))
            record(RangeEntry(position: Int(chunk / size), entry: .zero, length: count, isNew: false))
            chunk += UInt64(count)
        }
    }

    /// Makes the range durable as its range record: first publishes the chunks still staged
    /// (durable once that returns), then writes the record, so a record never names a chunk
    /// that a crash could lose. Once this returns the range survives a crash of this process.
    /// Call it after every `write` has returned.
    public func finish() throws {
        let (record, batch, failure) = lock.withLock {
            finished = true
            defer { staged = []; stagedBytes = 0 }
            return (RangeRecord(chunkSize: repository.chunkSize, offset: offset, length: length,
                                entries: entries.values.sorted { $0.position < $1.position }), staged, publishError)
        }
        if let failure { throw failure }
        try publish(batch)
        let name = ObjectNames.rangeRecord(backup, disk, offset: offset, length: length)
        try repository.putObject(name, record.encoded())
    }

    /// Figures for what has been written so far.
    public var progress: RangeProgress {
        lock.withLock {
            var p = RangeProgress()
            for e in entries.values {
                p.chunks += 1
                p.bytes += UInt64(e.length)
                if e.entry.isZero { p.zeroChunks += 1 }
                if e.isNew {
                    p.newChunks += 1
                    p.newStoredBytes += UInt64(e.entry.storedSize)
                }
            }
            return p
        }
    }

    private func publish(_ batch: [StagedObject]) throws {
        do {
            try repository.backend.publish(batch)
        } catch {
            lock.withLock { if publishError == nil { publishError = error } }
            throw error
        }
    }

    private func record(_ entry: RangeEntry) {
        lock.withLock {
            precondition(!finished, "RangeWriter used after finish()")
            entries[entry.position] = entry
        }
    }

    /// Codecs hold a zstd context and two chunk-sized buffers: reuse them across writes,
    /// one per concurrently writing thread, so memory stays bounded by the thread count.
    private func takeCodec() -> ChunkCodec {
        lock.withLock { idleCodecs.popLast() } ?? repository.makeCodec()
    }

    private func returnCodec(_ codec: ChunkCodec) {
        lock.withLock { idleCodecs.append(codec) }
    }
}

/// What a range writer has stored.
public struct RangeProgress: Sendable, Equatable {
    public var chunks = 0
    public var bytes: UInt64 = 0
    public var zeroChunks = 0
    public var newChunks = 0
    public var newStoredBytes: UInt64 = 0
}
