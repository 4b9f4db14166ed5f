import Foundation

/// What `collectGarbage` did (or, with `dryRun`, would do).
public struct GarbageCollectionReport: Sendable, Equatable {
    public var referencedChunks = 0
    public var deletedChunks = 0
    public var deletedBytes: UInt64 = 0
    /// Unreferenced chunks kept because they are younger than the grace period
    /// (possibly written by a running backup that has not recorded them yet).
    public var youngUnreferencedChunks = 0
    /// Pruned backups whose indexes were removed.
    public var removedIndexes: [String] = []
    /// Crashed backups whose staging was removed.
    public var removedStaging: [String] = []
    public var removedTemporaries = 0
}

extension Repository {
    /// Deletes chunks no backup can need, safely while backups are running, without a lock.
    ///
    /// A chunk is deleted only if (1) no committed manifest, no recently pruned backup and no
    /// staging record or running incremental's parent references it, and (2) its mtime is
    /// older than `gracePeriod`. Writers touch a chunk whenever they reuse it and store new
    /// ones fresh, so a chunk a running backup uses but has not yet recorded is always young,
    /// provided no range task runs longer than the grace period (default 24 h, as in PBS).
    /// References are read staging first, then manifests, then tombstones: a commit or prune
    /// racing with the scan moves references only into a place still to be read.
    /// A doomed chunk is first moved to trash/, re-checked, and only then deleted, so a writer
    /// touching it at that moment either keeps it (the re-check sees the new mtime) or finds
    /// it gone and stores it again.
    @discardableResult
    public func collectGarbage(gracePeriod: TimeInterval = 24 * 3600, staleStagingAge: TimeInterval = 7 * 24 * 3600,
                               now: Date = Date(), dryRun: Bool = false) throws -> GarbageCollectionReport {
        var report = GarbageCollectionReport()
        let cutoff = now.addingTimeInterval(-gracePeriod)
        if !dryRun { try restoreTrash() }

        var referenced = Set<ChunkID>()
        let activeParents = try scanStaging(into: &referenced, staleBefore: now.addingTimeInterval(-staleStagingAge),
                                            dryRun: dryRun, report: &report)
        try forEachCommittedIndex { _, index, _ in referenced.formUnion(index.entries.lazy.map(\.id)) }
        var expiredTombstones: [String] = []
        for tombstone in try backend.list(prefix: ObjectNames.pruned) {
            let backup = ObjectNames.leaf(tombstone.name)
            if tombstone.modified < cutoff && !activeParents.contains(backup) {
                expiredTombstones.append(backup)
            } else {
                try addIndexes(of: backup, to: &referenced)
            }
        }
        referenced.remove(.zeroMarker)
        report.referencedChunks = referenced.count

        for chunk in try backend.list(prefix: ObjectNames.chunks) {
            guard let id = ChunkID(hex: ObjectNames.leaf(chunk.name)), !referenced.contains(id) else { continue }
            guard chunk.modified < cutoff else {
                report.youngUnreferencedChunks += 1
                continue
            }
            if try dryRun || deleteIfStillOld(chunk.name, cutoff: cutoff) {
                report.deletedChunks += 1
                report.deletedBytes += UInt64(chunk.size)
            }
        }
        for backup in expiredTombstones {
            if !dryRun {
                for object in try backend.list(prefix: ObjectNames.indexes(of: backup)) { try backend.delete(object.name) }
                try backend.delete(ObjectNames.tombstone(backup))
            }
            report.removedIndexes.append(backup)
        }
        if !dryRun { report.removedTemporaries = try backend.removeTemporaries(olderThan: cutoff) }
        return report
    }

    /// Adds the chunks of running backups (range records, and their parents' indexes) to
    /// `referenced`, after removing the staging of backups idle since `staleBefore` (crashed
    /// and never retried). Returns the parents of running incrementals.
    private func scanStaging(into referenced: inout Set<ChunkID>, staleBefore: Date, dryRun: Bool,
                             report: inout GarbageCollectionReport) throws -> Set<String> {
        var byBackup: [String: [ObjectInfo]] = [:]
        for object in try backend.list(prefix: ObjectNames.staging) {
            let backup = object.name.dropFirst(ObjectNames.staging.count).split(separator: "/").first.map(String.init) ?? ""
            byBackup[backup, default: []].append(object)
        }
        var parents = Set<String>()
        for (backup, objects) in byBackup {
            if objects.allSatisfy({ $0.modified < staleBefore }) {
                if !dryRun { try abandonBackup(backup) }
                report.removedStaging.append(backup)
                continue
            }
            for object in objects {
                do {
                    if object.name == ObjectNames.begunMarker(backup) {
                        if let parent = try readBegunMarker(backup)?.parent {
                            parents.insert(parent)
                            try addIndexes(of: parent, to: &referenced)
                        }
                    } else {
                        let record = try RangeRecord.decode(try getObject(object.name), name: object.name)
                        referenced.formUnion(record.entries.lazy.map(\.entry.id))
                    }
                } catch RepositoryError.objectNotFound {
                    continue // committed or abandoned meanwhile: the manifest scan that follows covers it
                }
            }
        }
        return parents
    }

    private func addIndexes(of backup: String, to referenced: inout Set<ChunkID>) throws {
        for object in try backend.list(prefix: ObjectNames.indexes(of: backup)) {
            do {
                let index = try DiskIndex.decode(try getObject(object.name), name: object.name)
                referenced.formUnion(index.entries.lazy.map(\.id))
            } catch RepositoryError.objectNotFound {
                continue
            }
        }
    }

    /// Moves the chunk to trash, re-checks its mtime there, then deletes it or puts it back.
    private func deleteIfStillOld(_ name: String, cutoff: Date) throws -> Bool {
        let trashName = ObjectNames.trash + name
        guard try backend.move(name, to: trashName) else { return false }
        if let moved = try backend.info(trashName), moved.modified < cutoff {
            try backend.delete(trashName)
            return true
        }
        _ = try backend.move(trashName, to: name)
        return false
    }

    /// Puts back chunks an interrupted GC left in trash, so this run decides about them afresh.
    private func restoreTrash() throws {
        for object in try backend.list(prefix: ObjectNames.trash) {
            _ = try backend.move(object.name, to: String(object.name.dropFirst(ObjectNames.trash.count)))
        }
    }
}
