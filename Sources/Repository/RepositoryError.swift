import Glibc

/// Every failure the repository reports. Cases carry the names an operator needs to act
/// (backup, disk, offset, chunk id, object name) instead of a bare message.
public enum RepositoryError: Error, Equatable, CustomStringConvertible {
    case notARepository(String)
    case repositoryExists(String)
    case unsupportedFormat(Int)
    case passphraseRequired
    case wrongPassphrase
    case objectNotFound(String)
    case corruptObject(name: String, reason: String)
    case invalidName(String)
    case invalidChunkSize(Int)
    case backupExists(String)
    case backupNotFound(String)
    case diskNotFound(backup: String, disk: String)
    /// `beginBackup` was not called, or the backup was already committed or abandoned.
    case backupNotBegun(String)
    case parentUnavailable(String)
    case misalignedChunk(offset: UInt64, length: Int)
    case chunkOutsideRange(offset: UInt64)
    /// Commit found chunk positions no range record supplied and no parent could fill.
    case incompleteDisk(backup: String, disk: String, missingOffsets: [UInt64])
    case damagedChunk(DamagedChunk)
    /// A streaming source delivered other bytes than the pieces asked for (a stream cut short).
    case sourceShortRead(disk: String, offset: UInt64, expected: UInt64, received: UInt64)
    /// An incremental was streamed into a backup whose parent has no index of the same size
    /// for this disk: the strategy must fall back to a full.
    case incrementalWithoutParent(backup: String, disk: String)
    case emptyRetentionPolicy
    case externalToolFailed(String)
    case system(operation: String, path: String, errno: Int32)

    public var description: String {
        switch self {
        case .notARepository(let p): "\(p) is not a Lifeboat repository (no config)"
        case .repositoryExists(let p): "a repository already exists at \(p)"
        case .unsupportedFormat(let v): "repository format version \(v) is not supported"
        case .passphraseRequired: "the repository is encrypted: a passphrase is required"
        case .wrongPassphrase: "wrong passphrase: the repository key could not be unwrapped"
        case .objectNotFound(let n): "object \(n) not found"
        case .corruptObject(let n, let r): "object \(n) is corrupt: \(r)"
        case .invalidName(let n): "invalid name \"\(n)\": use letters, digits, '.', '_', '-' (not starting with '.')"
        case .invalidChunkSize(let s): "invalid chunk size \(s): must be a power of two from 64 KiB to 64 MiB"
        case .backupExists(let b): "backup \(b) already exists"
        case .backupNotFound(let b): "backup \(b) not found"
        case .diskNotFound(let b, let d): "backup \(b) has no disk \(d)"
        case .backupNotBegun(let b): "backup \(b) was not begun (or is already committed)"
        case .parentUnavailable(let p): "parent backup \(p) is not available (pruned or never committed)"
        case .misalignedChunk(let o, let l): "chunk write at offset \(o), length \(l) is not chunk-aligned"
        case .chunkOutsideRange(let o): "chunk at offset \(o) lies outside the writer's range"
        case .incompleteDisk(let b, let d, let m):
            "backup \(b) disk \(d): \(m.count) chunk(s) never written and no parent to take them from (first at offset \(m.first ?? 0))"
        case .damagedChunk(let d): d.description
        case .sourceShortRead(let d, let o, let e, let r):
            "disk \(d): the source delivered \(r) of \(e) bytes for the chunk at offset \(o) (stream cut short or misordered)"
        case .incrementalWithoutParent(let b, let d):
            "backup \(b) disk \(d): an incremental needs a parent backup holding this disk at the same size"
        case .emptyRetentionPolicy: "the retention policy keeps nothing: refusing to prune every backup"
        case .externalToolFailed(let m): m
        case .system(let op, let p, let e): "\(op) \(p): \(String(cString: strerror(e)))"
        }
    }
}

/// What is wrong with a chunk that verify or restore met.
public enum ChunkProblem: Error, Equatable, Sendable, CustomStringConvertible {
    case missing
    case unreadable(String)
    /// Decryption failed: the object was altered or belongs to another key.
    case authenticationFailed
    case hashMismatch
    /// The chunk matches its id, but not the checksum an index recorded for it (so restores of
    /// that backup fail): the index is wrong, not the chunk.
    case checksumMismatch
    case lengthMismatch(expected: Int, actual: Int)

    public var description: String {
        switch self {
        case .missing: "missing"
        case .unreadable(let r): "unreadable (\(r))"
        case .authenticationFailed: "authentication failed"
        case .hashMismatch: "content does not match its hash"
        case .checksumMismatch: "content does not match the checksum the backup recorded"
        case .lengthMismatch(let e, let a): "holds \(a) bytes, expected \(e)"
        }
    }
}

/// A damaged chunk and one place that uses it: enough to say which restore points are hurt.
public struct DamagedChunk: Equatable, Sendable, CustomStringConvertible {
    public let chunk: ChunkID
    public let backup: String
    public let disk: String
    public let offset: UInt64
    public let problem: ChunkProblem

    public var description: String {
        "damaged chunk \(chunk.hex) (\(problem)) in backup \(backup), disk \(disk), offset \(offset)"
    }
}
