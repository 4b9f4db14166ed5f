import Foundation

/// The description of one committed backup. Writing it (atomically, last) is what makes the
/// backup visible; every disk's index is already durable by then.
public struct BackupManifest: Codable, Sendable, Equatable {
    public let id: String
    /// The backup this one was taken as an incremental of; nil for a full.
    public let parent: String?
    public let createdAt: Date
    /// The caller's instance metadata, stored opaquely (typically JSON).
    public let metadata: Data
    public let disks: [DiskSummary]

    /// Sum of the disks' sizes: what a restore writes.
    public var logicalBytes: UInt64 { disks.reduce(0) { $0 + $1.size } }
}

/// Figures for one disk of a backup, fixed at commit.
public struct DiskSummary: Codable, Sendable, Equatable {
    public let name: String
    /// Guest-visible size in bytes.
    public let size: UInt64
    public let chunkCount: Int
    /// Chunks that were all zeros: not stored, restored as holes.
    public let zeroChunks: Int
    /// Stored (compressed, encrypted) bytes of the chunks this disk references.
    public let referencedStoredBytes: UInt64
    /// Chunks this backup had to store because the repository did not have them yet.
    public let newChunks: Int
    public let newStoredBytes: UInt64
}

/// `staging/<backup>/begun`: written by `beginBackup`, so range writers can check the backup
/// is running and GC keeps the parent's chunks while an incremental takes its index.
struct BegunMarker: Codable, Sendable {
    var parent: String?
    var startedAt: Date
}

enum JSONCoding {
    static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .secondsSince1970
        encoder.outputFormatting = [.sortedKeys]
        return Array(try encoder.encode(value))
    }

    static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8], name: String) throws -> T {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .secondsSince1970
        do {
            return try decoder.decode(type, from: Data(bytes))
        } catch {
            throw RepositoryError.corruptObject(name: name, reason: "\(error)")
        }
    }
}
