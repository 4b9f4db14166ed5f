import Foundation

/// Space used by one backup, for `list` and `stats`.
public struct BackupUsage: Sendable, Equatable {
    public let id: String
    public let parent: String?
    public let createdAt: Date
    /// Guest-visible bytes of all its disks.
    public let logicalBytes: UInt64
    /// Bytes in non-zero chunks.
    public let dataBytes: UInt64
    /// Stored bytes of the distinct chunks it references.
    public let referencedStoredBytes: UInt64
    /// Stored bytes it added when it was taken.
    public let newStoredBytes: UInt64
    /// Stored bytes no other backup references: what removing it would free.
    public let exclusiveStoredBytes: UInt64
}

/// Repository-wide figures.
public struct RepositoryStats: Sendable, Equatable {
    public let backups: [BackupUsage]
    /// Distinct chunks referenced by committed backups, and their stored bytes.
    public let referencedChunks: Int
    public let referencedStoredBytes: UInt64
    /// Sum of all backups' logical sizes.
    public let logicalBytes: UInt64
    /// Every chunk object present, referenced or not (garbage included).
    public let chunkObjects: Int
    public let chunkObjectBytes: UInt64

    /// Logical bytes per stored byte: what deduplication, zero elimination and compression save.
    public var dedupRatio: Double {
        referencedStoredBytes == 0 ? 0 : Double(logicalBytes) / Double(referencedStoredBytes)
    }
}

extension Repository {
    /// Sizes and dedup figures for every committed backup and the repository as a whole.
    public func stats() throws -> RepositoryStats {
        var manifests: [String: BackupManifest] = [:]
        var chunksOf: [String: [ChunkID: UInt32]] = [:]
        var dataBytes: [String: UInt64] = [:]
        var users: [ChunkID: Int] = [:]
        try forEachCommittedIndex { manifest, index, _ in
            manifests[manifest.id] = manifest
            for (i, e) in index.entries.enumerated() where !e.isZero {
                dataBytes[manifest.id, default: 0] += UInt64(index.length(of: i))
                if chunksOf[manifest.id, default: [:]].updateValue(e.storedSize, forKey: e.id) == nil {
                    users[e.id, default: 0] += 1
                }
            }
        }
        let usage = manifests.values.sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }.map { m in
            let chunks = chunksOf[m.id] ?? [:]
            return BackupUsage(
                id: m.id, parent: m.parent, createdAt: m.createdAt, logicalBytes: m.logicalBytes,
                dataBytes: dataBytes[m.id] ?? 0,
                referencedStoredBytes: chunks.values.reduce(0) { $0 + UInt64($1) },
                newStoredBytes: m.disks.reduce(0) { $0 + $1.newStoredBytes },
                exclusiveStoredBytes: chunks.reduce(0) { $0 + (users[$1.key] == 1 ? UInt64($1.value) : 0) })
        }
        var all: [ChunkID: UInt32] = [:]
        for chunks in chunksOf.values { all.merge(chunks) { a, _ in a } }
        let objects = try backend.list(prefix: ObjectNames.chunks)
        return RepositoryStats(
            backups: usage, referencedChunks: all.count,
            referencedStoredBytes: all.values.reduce(0) { $0 + UInt64($1) },
            logicalBytes: usage.reduce(0) { $0 + $1.logicalBytes },
            chunkObjects: objects.count, chunkObjectBytes: objects.reduce(0) { $0 + UInt64($1.size) })
    }
}
