/// Little-endian encoding for the binary objects (indexes, range records). They hold one
/// fixed-size entry per chunk, so a compact binary form keeps a 1 TiB disk's index a few MB.
struct ByteWriter {
    private(set) var bytes: [UInt8] = []

    init(capacity: Int) { bytes.reserveCapacity(capacity) }

    mutating func append(_ magic: String) { bytes.append(contentsOf: magic.utf8) }
    mutating func append<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }
    mutating func append(_ id: ChunkID) {
        let start = bytes.count
        bytes.append(contentsOf: repeatElement(0, count: ChunkID.byteCount))
        bytes.withUnsafeMutableBytes { id.write(to: $0.baseAddress! + start) }
    }
}

/// Reads what `ByteWriter` wrote; any short read is a corrupt object named by `name`.
struct ByteReader {
    private let bytes: [UInt8]
    private var position = 0
    let name: String

    init(_ bytes: [UInt8], name: String) {
        self.bytes = bytes
        self.name = name
    }

    var isAtEnd: Bool { position == bytes.count }

    mutating func expect(_ magic: String) throws {
        try expect(magic, or: magic)
    }

    /// One of two magics (a format's current version and the older one it still reads);
    /// returns the one found.
    @discardableResult
    mutating func expect(_ current: String, or older: String) throws -> String {
        for magic in [current, older] {
            let m = Array(magic.utf8)
            if bytes.count >= position + m.count, Array(bytes[position..<position + m.count]) == m {
                position += m.count
                return magic
            }
        }
        throw corrupt("bad magic, expected \(current)")
    }

    mutating func read<T: FixedWidthInteger>(_: T.Type) throws -> T {
        let size = MemoryLayout<T>.size
        guard bytes.count >= position + size else { throw corrupt("truncated") }
        let v = bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: position, as: T.self)) }
        position += size
        return v
    }

    mutating func readID() throws -> ChunkID {
        guard bytes.count >= position + ChunkID.byteCount else { throw corrupt("truncated") }
        let id = bytes.withUnsafeBytes { ChunkID(UnsafeRawBufferPointer(rebasing: $0[position...])) }
        position += ChunkID.byteCount
        return id
    }

    /// Checks a count read from the object against the bytes actually left, so a corrupt
    /// count cannot make the decoder allocate gigabytes.
    func check(count: UInt64, entrySize: Int) throws -> Int {
        guard count <= UInt64((bytes.count - position) / entrySize) else { throw corrupt("entry count \(count) too large") }
        return Int(count)
    }

    func corrupt(_ reason: String) -> RepositoryError { .corruptObject(name: name, reason: reason) }
}
