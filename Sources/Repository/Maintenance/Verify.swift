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
    /// Manifests and indexes are all read; an unreadable one throws.
    public func verify(sampleFraction: Double = 1.0, threads: Int = 0) throws -> VerifyReport {
        var uses: [ChunkID: [(backup: String, disk: String, offset: UInt64, length: Int)]] = [:]
        var backups = Set<String>()
        try forEachCommittedIndex { manifest, index, disk in
            backups.insert(manifest.id)
            for (i, e) in index.entries.enumerated() where !e.isZero {
                uses[e.id, default: []].append((manifest.id, disk, index.offset(of: i), index.length(of: i)))
            }
        }
        var ids = Array(uses.keys)
        if sampleFraction < 1 {
            ids.shuffle()
            ids = Array(ids.prefix(Int((Double(ids.count) * max(0, sampleFraction)).rounded(.up))))
        }
        let problems = Locked<[ChunkID: ChunkProblem]>([:])
        let toCheck = ids.map { ($0, uses[$0]![0].length) }
        try Parallel.forEach(count: toCheck.count, threads: threads > 0 ? threads : Parallel.defaultThreads,
                             makeState: { self.makeCodec() }) { n, codec in
            let (id, length) = toCheck[n]
            do throws(ChunkProblem) {
                _ = try loadChunk(id, length: length, codec: codec)
            } catch {
                problems.withLock { $0[id] = error }
            }
        }
        let damaged = problems.withLock { $0 }.flatMap { id, problem in
            uses[id]!.map { DamagedChunk(chunk: id, backup: $0.backup, disk: $0.disk, offset: $0.offset, problem: problem) }
        }.sorted { ($0.backup, $0.disk, $0.offset) < ($1.backup, $1.disk, $1.offset) }
        return VerifyReport(backupsChecked: backups.count, referencedChunks: uses.count,
                            checkedChunks: ids.count, damaged: damaged)
    }
}
