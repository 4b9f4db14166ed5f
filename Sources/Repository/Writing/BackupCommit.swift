import Foundation

/// A disk as the commit needs it: its name and guest-visible size.
public struct DiskLayout: Sendable, Equatable {
    public let name: String
    public let size: UInt64
    /// Ranges the backup knows hold only zeros and wrote no range records for (a full that read
    /// only a sparse image's allocated ranges): the commit records zero chunks there. Each must
    /// start on a chunk boundary and end on one or at the disk's end.
    public let zeroRanges: [Range<UInt64>]

    public init(name: String, size: UInt64, zeroRanges: [Range<UInt64>] = []) {
        self.name = name
        self.size = size
        self.zeroRanges = zeroRanges
    }
}

/// The backup life cycle: begin, write ranges (any process, any order), commit or abandon.
extension Repository {
    /// Starts backup `id`, optionally as an incremental of committed backup `parent`.
    /// Writes the staging marker that range writers require and that makes GC keep the
    /// parent's chunks until the commit takes its index.
    public func beginBackup(_ id: String, parent: String? = nil, startedAt: Date = Date()) throws {
        try ObjectNames.validate(id)
        if try backend.exists(ObjectNames.manifest(id)) { throw RepositoryError.backupExists(id) }
        if let parent {
            try ObjectNames.validate(parent)
            guard try backend.exists(ObjectNames.manifest(parent)) else { throw RepositoryError.parentUnavailable(parent) }
        }
        try putObject(ObjectNames.begunMarker(id), try JSONCoding.encode(BegunMarker(parent: parent, startedAt: startedAt)))
        // Checked again now that the marker protects it: a prune between the two checks
        // would otherwise leave GC free to drop the parent's index.
        if let parent, try !backend.exists(ObjectNames.manifest(parent)) {
            try abandonBackup(id)
            throw RepositoryError.parentUnavailable(parent)
        }
    }

    /// A writer for one range of one disk of a begun backup. `batchBytes` sets how many stored
    /// bytes of new chunks it stages before publishing them (see `RangeWriter`); 0 makes every
    /// chunk durable and visible before its `write` returns.
    public func rangeWriter(backup: String, disk: String, offset: UInt64, length: UInt64,
                            batchBytes: Int = RangeWriter.defaultBatchBytes) throws -> RangeWriter {
        try RangeWriter(repository: self, backup: backup, disk: disk, offset: offset, length: length, batchBytes: batchBytes)
    }

    /// Assembles every disk's index from the range records (and, for an incremental, the
    /// parent's index wherever no range was written), then writes the manifest, which makes
    /// the backup visible in one atomic step. Indexes are durable before the manifest names them.
    @discardableResult
    public func commitBackup(_ id: String, disks: [DiskLayout], metadata: Data = Data(),
                             createdAt: Date = Date()) throws -> BackupManifest {
        try ObjectNames.validate(id)
        guard let marker = try readBegunMarker(id) else { throw RepositoryError.backupNotBegun(id) }
        if try backend.exists(ObjectNames.manifest(id)) { throw RepositoryError.backupExists(id) }
        var summaries: [DiskSummary] = []
        for disk in disks {
            try ObjectNames.validate(disk.name)
            let inherited = try marker.parent.flatMap { try parentIndex(backup: $0, disk: disk.name) }
            let merged = try mergeRanges(backup: id, disk: disk, parent: inherited)
            try putObject(ObjectNames.index(id, disk.name), merged.index.encoded())
            summaries.append(merged.summary)
        }
        let manifest = BackupManifest(id: id, parent: marker.parent, createdAt: createdAt, metadata: metadata, disks: summaries)
        try putObject(ObjectNames.manifest(id), try JSONCoding.encode(manifest))
        try? abandonBackup(id) // staging is no longer needed; a leftover is removed by GC later
        return manifest
    }

    /// Removes a backup's staging (marker and range records). Its chunks stay until GC
    /// finds them unreferenced and older than the grace period; a rerun reuses them.
    public func abandonBackup(_ id: String) throws {
        try ObjectNames.validate(id)
        let objects = try backend.list(prefix: ObjectNames.stagingRoot(id))
        // Records first, marker last: a range writer that starts meanwhile still fails its check.
        for object in objects where object.name != ObjectNames.begunMarker(id) {
            try backend.delete(object.name)
        }
        try backend.delete(ObjectNames.begunMarker(id))
    }

    /// The parent's index of `disk`, or nil when the parent had no such disk (a new disk
    /// must then be written in full). A vanished parent index is an error, never silently a full.
    private func parentIndex(backup parent: String, disk: String) throws -> DiskIndex? {
        do {
            return try readIndex(backup: parent, disk: disk)
        } catch RepositoryError.objectNotFound {
            // The parent has other disks' indexes: this disk is new and must be written in full.
            guard try !backend.list(prefix: ObjectNames.indexes(of: parent)).isEmpty else {
                throw RepositoryError.parentUnavailable(parent)
            }
            return nil
        }
    }

    private func mergeRanges(backup: String, disk: DiskLayout, parent: DiskIndex?) throws -> (index: DiskIndex, summary: DiskSummary) {
        let count = DiskIndex.chunkCount(diskSize: disk.size, chunkSize: chunkSize)
        var slots = [IndexEntry?](repeating: nil, count: count)
        var newChunks: [ChunkID: UInt32] = [:]
        let records = try backend.list(prefix: ObjectNames.rangeRecords(backup, disk.name)).map(\.name).sorted()
        for name in records {
            let record = try RangeRecord.decode(try getObject(name), name: name)
            guard record.chunkSize == chunkSize else { throw RepositoryError.corruptObject(name: name, reason: "chunk size differs") }
            for e in record.entries {
                guard e.position < count,
                      e.length == DiskIndex.chunkLength(at: e.position, diskSize: disk.size, chunkSize: chunkSize) else {
                    throw RepositoryError.misalignedChunk(offset: UInt64(e.position) * UInt64(chunkSize), length: e.length)
                }
                slots[e.position] = e.entry
                if e.isNew { newChunks[e.entry.id] = e.entry.storedSize }
            }
        }
        let chunk = UInt64(chunkSize)
        for zeros in disk.zeroRanges {
            guard zeros.lowerBound % chunk == 0, zeros.upperBound % chunk == 0 || zeros.upperBound == disk.size,
                  zeros.upperBound <= disk.size else {
                throw RepositoryError.misalignedChunk(offset: zeros.lowerBound, length: zeros.count)
            }
            for i in Int(zeros.lowerBound / chunk)..<Int((zeros.upperBound + chunk - 1) / chunk) where slots[i] == nil {
                slots[i] = .zero
            }
        }
        var missing: [UInt64] = []
        for i in 0..<count where slots[i] == nil {
            if let parent, parent.chunkSize == chunkSize, i < parent.entries.count,
               parent.length(of: i) == DiskIndex.chunkLength(at: i, diskSize: disk.size, chunkSize: chunkSize) {
                slots[i] = parent.entries[i]
            } else {
                missing.append(UInt64(i) * UInt64(chunkSize))
            }
        }
        guard missing.isEmpty else { throw RepositoryError.incompleteDisk(backup: backup, disk: disk.name, missingOffsets: missing) }
        let entries = slots.map { $0! }
        var referenced: [ChunkID: UInt32] = [:]
        for e in entries where !e.isZero { referenced[e.id] = e.storedSize }
        let summary = DiskSummary(
            name: disk.name, size: disk.size, chunkCount: count,
            zeroChunks: entries.count { $0.isZero },
            referencedStoredBytes: referenced.values.reduce(0) { $0 + UInt64($1) },
            newChunks: newChunks.count,
            newStoredBytes: newChunks.values.reduce(0) { $0 + UInt64($1) })
        return (DiskIndex(chunkSize: chunkSize, diskSize: disk.size, entries: entries), summary)
    }
}
