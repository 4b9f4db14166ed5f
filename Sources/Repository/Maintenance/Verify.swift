import Foundation

/// The outcome of `verify`.
public struct VerifyReport: Sendable {
    public let backupsChecked: Int
    /// Distinct chunks the committed backups reference.
    public let referencedChunks: Int
    /// Distinct chunks actually re-read (all, or the sample).
    public let checkedChunks: Int
    /// Every use of every damaged chunk: backup, disk and offset.
    public let damaged: [DamagedChunk]

    public var isHealthy: Bool { damaged.isEmpty }
    /// Backups that cannot be fully restored.
    public var damagedBackups: [String] { Array(Set(damaged.map(\.backup))).sorted() }
}

extension Repository {
    /// Re-reads and re-hashes the chunks of every committed backup (or a random
    /// `sampleFraction` of them) and names each backup, disk and offset a damaged chunk hurts.
    /// Each chunk is checked against its SHA-256 id, and against the checksum every index that
    /// uses it recorded (what restores check). Manifests and indexes are all read; an
    /// unreadable one throws.
    public func verify(sampleFraction: Double = 1.0, threads: Int = 0) throws -> VerifyReport {
        var uses: [ChunkID: [ChunkUse]] = [:]
        var backups = Set<String>()
        try forEachCommittedIndex { manifest, index, disk in
            backups.insert(manifest.id)
            for (i, e) in index.entries.enumerated() where !e.isZero {
                uses[e.id, default: []].append(ChunkUse(backup: manifest.id, disk: disk, offset: index.offset(of: i),
                                                        length: index.length(of: i), check: e.check))
            }
        }
        var ids = Array(uses.keys)
        if sampleFraction < 1 {
            ids.shuffle()
            ids = Array(ids.prefix(Int((Double(ids.count) * max(0, sampleFraction)).rounded(.up))))
        }
        let damage = Locked<[DamagedChunk]>([])
        let toCheck = ids.map { ($0, uses[$0]!) }
        try Parallel.forEach(count: toCheck.count, threads: threads > 0 ? threads : Parallel.defaultThreads,
                             makeState: { self.makeCodec() }) { n, codec in
            let (id, chunkUses) = toCheck[n]
            do throws(ChunkProblem) {
                // No check in the entry: the chunk is re-hashed into its id.
                let plain = try loadChunk(IndexEntry(id: id, storedSize: 0), length: chunkUses[0].length, codec: codec)
                let check = ChunkCodec.check(of: plain)
                let wrong = chunkUses.filter { $0.check != 0 && $0.check != check }
                if !wrong.isEmpty { damage.withLock { $0 += wrong.map { $0.damaged(id, .checksumMismatch) } } }
            } catch {
                damage.withLock { $0 += chunkUses.map { $0.damaged(id, error) } }
            }
        }
        let damaged = damage.withLock { $0 }.sorted { ($0.backup, $0.disk, $0.offset) < ($1.backup, $1.disk, $1.offset) }
        return VerifyReport(backupsChecked: backups.count, referencedChunks: uses.count,
                            checkedChunks: ids.count, damaged: damaged)
    }
}

/// Where an index uses a chunk, and the checksum it recorded for it.
private struct ChunkUse {
    let backup: String
    let disk: String
    let offset: UInt64
    let length: Int
    let check: UInt64

    func damaged(_ chunk: ChunkID, _ problem: ChunkProblem) -> DamagedChunk {
        DamagedChunk(chunk: chunk, backup: backup, disk: disk, offset: offset, problem: problem)
    }
}
