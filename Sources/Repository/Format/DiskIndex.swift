/// One position of a disk index.
struct IndexEntry: Equatable, Sendable {
    /// `ChunkID.zeroMarker` for a chunk of zeros.
    var id: ChunkID
    /// Size of the stored object (0 for zeros): lets list and stats report stored bytes
    /// from indexes alone, without a stat per chunk.
    var storedSize: UInt32
    /// XXH3-64 of the plain chunk as the backup read it, which a restore checks each chunk
    /// against: ten times cheaper than re-hashing its SHA-256 id, which on a restore that
    /// competes with the OSD for two cores decided whether it kept up with `rbd import`.
    /// `verify` still re-hashes every chunk against its id, and checks this value too.
    /// 0 means unknown (an index from before this field, or the 2^-64 chance of a chunk whose
    /// checksum is 0): such a chunk is checked against its id.
    var check: UInt64

    init(id: ChunkID, storedSize: UInt32, check: UInt64 = 0) {
        self.id = id
        self.storedSize = storedSize
        self.check = check
    }

    static let zero = IndexEntry(id: .zeroMarker, storedSize: 0)
    var isZero: Bool { id.isZeroMarker }
}

/// `indexes/<backup>/<disk>`: the full view of a disk at one backup: chunk i covers bytes
/// [i * chunkSize, min((i + 1) * chunkSize, diskSize)). Restoring reads this one object.
struct DiskIndex: Equatable, Sendable {
    let chunkSize: Int
    let diskSize: UInt64
    var entries: [IndexEntry]

    /// Version 2 added each entry's `check`; version 1 indexes are still read (checks 0).
    static let magic = "LBIX0002"
    static let magicWithoutChecks = "LBIX0001"
    private static let entrySize = ChunkID.byteCount + 4 + 8

    static func chunkCount(diskSize: UInt64, chunkSize: Int) -> Int {
        Int((diskSize + UInt64(chunkSize) - 1) / UInt64(chunkSize))
    }

    /// Length of chunk `i`; only the last chunk of a disk may be short.
    static func chunkLength(at i: Int, diskSize: UInt64, chunkSize: Int) -> Int {
        Int(min(UInt64(chunkSize), diskSize - UInt64(i) * UInt64(chunkSize)))
    }

    func offset(of i: Int) -> UInt64 { UInt64(i) * UInt64(chunkSize) }
    func length(of i: Int) -> Int { Self.chunkLength(at: i, diskSize: diskSize, chunkSize: chunkSize) }

    func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: 32 + entries.count * Self.entrySize)
        w.append(Self.magic)
        w.append(UInt32(chunkSize))
        w.append(diskSize)
        w.append(UInt64(entries.count))
        for e in entries {
            w.append(e.id)
            w.append(e.storedSize)
            w.append(e.check)
        }
        return w.bytes
    }

    static func decode(_ bytes: [UInt8], name: String) throws -> DiskIndex {
        var r = ByteReader(bytes, name: name)
        let withChecks = try r.expect(magic, or: magicWithoutChecks) == magic
        let chunkSize = Int(try r.read(UInt32.self))
        let diskSize = try r.read(UInt64.self)
        let count = try r.check(count: try r.read(UInt64.self), entrySize: withChecks ? entrySize : entrySize - 8)
        guard chunkSize > 0, count == chunkCount(diskSize: diskSize, chunkSize: chunkSize) else {
            throw r.corrupt("entry count does not match disk size")
        }
        var entries: [IndexEntry] = []
        entries.reserveCapacity(count)
        for _ in 0..<count {
            entries.append(IndexEntry(id: try r.readID(), storedSize: try r.read(UInt32.self),
                                      check: withChecks ? try r.read(UInt64.self) : 0))
        }
        return DiskIndex(chunkSize: chunkSize, diskSize: diskSize, entries: entries)
    }
}
