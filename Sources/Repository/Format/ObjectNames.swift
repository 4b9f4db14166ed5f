/// Where each kind of object lives in the backend's flat namespace. Kept in one place so
/// the writer, GC and verify can never disagree about a path.
///
///     config                              repository settings and wrapped keys
///     chunks/<2 hex>/<64 hex>             chunk objects, content-addressed
///     backups/<backup>                    manifest: its presence makes a backup visible
///     indexes/<backup>/<disk>             per-disk index of chunk ids (a full view)
///     staging/<backup>/begun              marker of a running backup (names its parent)
///     staging/<backup>/<disk>/<off>-<len> range records of a running backup
///     pruned/<backup>                     tombstone: manifest removed, index kept for the grace period
///     trash/<chunk object name>           a chunk GC is about to delete
enum ObjectNames {
    static let config = "config"
    static let chunks = "chunks/"
    static let backups = "backups/"
    static let indexes = "indexes/"
    static let staging = "staging/"
    static let pruned = "pruned/"
    static let trash = "trash/"

    static func chunk(_ id: ChunkID) -> String {
        let hex = id.hex
        return "chunks/\(hex.prefix(2))/\(hex)"
    }

    static func manifest(_ backup: String) -> String { backups + backup }
    static func index(_ backup: String, _ disk: String) -> String { "\(indexes)\(backup)/\(disk)" }
    static func indexes(of backup: String) -> String { "\(indexes)\(backup)/" }
    static func stagingRoot(_ backup: String) -> String { "\(staging)\(backup)/" }
    static func begunMarker(_ backup: String) -> String { "\(staging)\(backup)/begun" }
    static func rangeRecords(_ backup: String, _ disk: String) -> String { "\(staging)\(backup)/\(disk)/" }

    /// Named by range so a retried range task overwrites its earlier record instead of adding one.
    static func rangeRecord(_ backup: String, _ disk: String, offset: UInt64, length: UInt64) -> String {
        rangeRecords(backup, disk) + hex16(offset) + "-" + hex16(length)
    }

    static func tombstone(_ backup: String) -> String { pruned + backup }

    /// The last path component of `name`.
    static func leaf(_ name: String) -> String {
        name.lastIndex(of: "/").map { String(name[name.index(after: $0)...]) } ?? name
    }

    /// Backup and disk names become path components, so only a safe alphabet is allowed.
    static func validate(_ name: String) throws {
        let ok = !name.isEmpty && name.utf8.count <= 128 && !name.hasPrefix(".") && name != "begun"
            && name.utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
                    || c == UInt8(ascii: ".") || c == UInt8(ascii: "_") || c == UInt8(ascii: "-")
            }
        if !ok { throw RepositoryError.invalidName(name) }
    }

    private static func hex16(_ v: UInt64) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }
}
