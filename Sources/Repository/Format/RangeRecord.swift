/// One chunk a range writer stored (or found already stored).
struct RangeEntry: Equatable, Sendable {
    /// Chunk position on the disk (offset / chunkSize).
    var position: Int
    var entry: IndexEntry
    /// Plain length, so commit can check that only the disk's last chunk is short.
    var length: Int
    /// Whether this writer stored the chunk (vs. reused one): the backup's "new data" figure.
    var isNew: Bool
}

/// `staging/<backup>/<disk>/<offset>-<length>`: the durable result of one range task.
/// Commit merges these into the disk index; GC counts their chunks as referenced.
struct RangeRecord: Equatable, Sendable {
    let chunkSize: Int
    let offset: UInt64
    let length: UInt64
    var entries: [RangeEntry]

    /// Version 2 added each entry's `check`; version 1 records (from a worker of before) are
    /// still read.
    static let magic = "LBRR0002"
    static let magicWithoutChecks = "LBRR0001"
    private static let entrySize = 8 + ChunkID.byteCount + 4 + 8 + 4 + 1

    func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: 40 + entries.count * Self.entrySize)
        w.append(Self.magic)
        w.append(UInt32(chunkSize))
        w.append(offset)
        w.append(length)
        w.append(UInt64(entries.count))
        for e in entries {
            w.append(UInt64(e.position))
            w.append(e.entry.id)
            w.append(e.entry.storedSize)
            w.append(e.entry.check)
            w.append(UInt32(e.length))
            w.append(UInt8(e.isNew ? 1 : 0))
        }
        return w.bytes
    }

    static func decode(_ bytes: [UInt8], name: String) throws -> RangeRecord {
        var r = ByteReader(bytes, name: name)
        let withChecks = try r.expect(magic, or: magicWithoutChecks) == magic
        let chunkSize = Int(try r.read(UInt32.self))
        let offset = try r.read(UInt64.self)
        let length = try r.read(UInt64.self)
        let count = try r.check(count: try r.read(UInt64.self), entrySize: withChecks ? entrySize : entrySize - 8)
        var entries: [RangeEntry] = []
        entries.reserveCapacity(count)
        for _ in 0..<count {
            let position = Int(try r.read(UInt64.self))
            let id = try r.readID()
            let stored = try r.read(UInt32.self)
            let check = withChecks ? try r.read(UInt64.self) : 0
            let length = Int(try r.read(UInt32.self))
            let isNew = try r.read(UInt8.self) != 0
            entries.append(RangeEntry(position: position, entry: IndexEntry(id: id, storedSize: stored, check: check),
                                      length: length, isNew: isNew))
        }
        return RangeRecord(chunkSize: chunkSize, offset: offset, length: length, entries: entries)
    }
}
