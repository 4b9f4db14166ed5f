import Foundation

extension Repository {
    /// Applies `policy` to the committed backups and removes the manifests of those it does
    /// not keep: they disappear from `listBackups` at once. Their indexes stay behind a
    /// tombstone until garbage collection's grace period has passed (an incremental begun
    /// from one may still be taking its index); their chunks go with GC.
    @discardableResult
    public func prune(policy: RetentionPolicy, now: Date = Date(), calendar: Calendar = RetentionPolicy.utcCalendar,
                      dryRun: Bool = false) throws -> RetentionDecision {
        guard !policy.keepsNothing else { throw RepositoryError.emptyRetentionPolicy }
        let candidates = try listBackups().map { RetentionCandidate(id: $0.id, createdAt: $0.createdAt) }
        let decision = policy.apply(to: candidates, now: now, calendar: calendar)
        if !dryRun {
            for id in decision.remove { try removeBackup(id) }
        }
        return decision
    }

    /// Removes one backup's manifest (tombstone first, so GC keeps its index for the grace period).
    public func removeBackup(_ id: String) throws {
        try ObjectNames.validate(id)
        guard try backend.exists(ObjectNames.manifest(id)) else { throw RepositoryError.backupNotFound(id) }
        try backend.put(ObjectNames.tombstone(id), [UInt8]())
        try backend.delete(ObjectNames.manifest(id))
    }
}
