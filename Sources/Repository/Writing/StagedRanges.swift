import Foundation

/// A range of a disk that a begun backup has durably written (its range record exists).
public struct StagedRange: Sendable, Hashable {
    public let disk: String
    public let offset: UInt64
    public let length: UInt64
}

extension Repository {
    /// The ranges of begun backup `id` whose records are written: a pipeline's way to know,
    /// from the repository itself, when every range of every disk is in and the backup can
    /// be committed. Idempotent retried ranges appear once (records are named by range).
    public func stagedRanges(backup id: String) throws -> [StagedRange] {
        try ObjectNames.validate(id)
        let root = ObjectNames.stagingRoot(id)
        return try backend.list(prefix: root).compactMap { object in
            let parts = object.name.dropFirst(root.count).split(separator: "/")
            guard parts.count == 2 else { return nil }
            let range = parts[1].split(separator: "-")
            guard range.count == 2, let offset = UInt64(range[0], radix: 16), let length = UInt64(range[1], radix: 16) else { return nil }
            return StagedRange(disk: String(parts[0]), offset: offset, length: length)
        }
    }

    /// Whether backup `id` is begun and neither committed nor abandoned (cancelled, failed).
    public func isBegun(_ id: String) throws -> Bool {
        try ObjectNames.validate(id)
        return try backend.exists(ObjectNames.begunMarker(id))
    }

    /// Whether backup `id` is committed (its manifest exists).
    public func isCommitted(_ id: String) throws -> Bool {
        try ObjectNames.validate(id)
        return try backend.exists(ObjectNames.manifest(id))
    }
}
