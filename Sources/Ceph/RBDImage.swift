import CRBD
import Foundation

/// A snapshot of an RBD image, as `rbd snap ls` lists it.
public struct RBDSnapshot: Sendable, Equatable {
    public var id: UInt64
    public var name: String
    /// The image's size when the snapshot was taken.
    public var size: UInt64
}

/// A changed (or, from no snapshot, allocated) extent as `rbd diff` reports it. `exists` false:
/// the extent was discarded and now reads as zeros.
public struct RBDExtent: Sendable, Equatable {
    public var range: Range<UInt64>
    public var exists: Bool

    public init(range: Range<UInt64>, exists: Bool) {
        self.range = range
        self.exists = exists
    }
}

/// An open RBD image (librbd), at its head or at a snapshot; closed when this goes away.
///
/// librbd serialises what needs it inside, so one open image serves reads and writes from
/// several threads. Calls block: call them from blocking threads.
public final class RBDImage: @unchecked Sendable {
    let image: rbd_image_t
    public let pool: RadosPool
    public let name: String
    public let snapshot: String?

    /// Opens `name` in `pool`, at `snapshot` when given. Read-only opens take no exclusive lock,
    /// so a running VM that holds the image keeps writing undisturbed.
    public init(pool: RadosPool, name: String, snapshot: String? = nil, readOnly: Bool) throws(CephError) {
        var handle: rbd_image_t?
        let spec = "\(pool.name)/\(name)\(snapshot.map { "@\($0)" } ?? "")"
        if readOnly {
            try check(rbd_open_read_only(pool.io, name, &handle, snapshot), "opening \(spec)")
        } else {
            try check(rbd_open(pool.io, name, &handle, snapshot), "opening \(spec)")
        }
        guard let handle else { throw CephError("opening \(spec)", code: -ENOMEM) }
        image = handle
        self.pool = pool
        self.name = name
        self.snapshot = snapshot
    }

    deinit {
        rbd_close(image)
    }

    /// "pool/image" or "pool/image@snapshot", as the rbd CLI writes it.
    public var spec: String { "\(pool.name)/\(name)\(snapshot.map { "@\($0)" } ?? "")" }

    /// The size at the opened snapshot (or the head's).
    public func size() throws(CephError) -> UInt64 {
        var size: UInt64 = 0
        try check(rbd_get_size(image, &size), "sizing \(spec)")
        return size
    }

    public func resize(to size: UInt64) throws(CephError) {
        try check(rbd_resize(image, size), "resizing \(spec)")
    }

    // MARK: Snapshots

    public func snapshots() throws(CephError) -> [RBDSnapshot] {
        var capacity: Int32 = 16
        while true {
            var infos = [rbd_snap_info_t](repeating: rbd_snap_info_t(), count: Int(capacity))
            let count = rbd_snap_list(image, &infos, &capacity)
            if count == -ERANGE { continue }
            try check(count, "listing the snapshots of \(spec)")
            defer { rbd_snap_list_end(&infos) }
            return infos.prefix(Int(count)).map { RBDSnapshot(id: $0.id, name: String(cString: $0.name), size: $0.size) }
        }
    }

    /// Takes a snapshot. Where another client watches the image (QEMU, rbd-nbd, krbd), librbd
    /// first notifies it to quiesce (rbd-nbd and krbd can freeze file systems on it); where
    /// this handle is the only watcher there is nobody to notify, and the notification, which
    /// costs about a second, is skipped.
    public func createSnapshot(_ snapshot: String) throws(CephError) {
        let flags = try watcherCount() <= 1 ? UInt32(RBD_SNAP_CREATE_SKIP_QUIESCE) : 0
        try check(rbd_snap_create2(image, snapshot, flags, { _, _, _ in 0 }, nil), "creating snapshot \(pool.name)/\(name)@\(snapshot)")
    }

    /// How many clients watch the image (an image open for writing watches it).
    public func watcherCount() throws(CephError) -> Int {
        var capacity = 8
        while true {
            var watchers = [rbd_image_watcher_t](repeating: rbd_image_watcher_t(), count: capacity)
            var count = capacity
            let result = rbd_watchers_list(image, &watchers, &count)
            if result == -ERANGE {
                capacity = count
                continue
            }
            try check(result, "listing the watchers of \(pool.name)/\(name)")
            rbd_watchers_list_cleanup(&watchers, count)
            return count
        }
    }

    public func removeSnapshot(_ snapshot: String) throws(CephError) {
        try check(rbd_snap_remove(image, snapshot), "removing snapshot \(pool.name)/\(name)@\(snapshot)")
    }

    /// Removes `snapshot` if it exists; whether it did.
    @discardableResult
    public func removeSnapshotIfPresent(_ snapshot: String) throws(CephError) -> Bool {
        let result = rbd_snap_remove(image, snapshot)
        if result == -ENOENT { return false }
        try check(result, "removing snapshot \(pool.name)/\(name)@\(snapshot)")
        return true
    }

    // MARK: Changed extents

    /// What changed in `[offset, offset + length)` between snapshot `from` and the opened
    /// snapshot (or head), or with `from` nil, what is allocated. `wholeObject` reports whole
    /// objects and, with the fast-diff feature, answers from the object map without touching
    /// the data: the cheap first pass over a big image. Extents come back in ascending order.
    public func changedExtents(since from: String?, offset: UInt64, length: UInt64, wholeObject: Bool = false) throws(CephError) -> [RBDExtent] {
        final class Collector { var extents: [RBDExtent] = [] }
        let collector = Collector()
        let result = withExtendedLifetime(collector) {
            rbd_diff_iterate2(image, from, offset, length, 1, wholeObject ? 1 : 0, { at, length, exists, context in
                let collector = Unmanaged<Collector>.fromOpaque(context!).takeUnretainedValue()
                collector.extents.append(RBDExtent(range: at..<(at + UInt64(length)), exists: exists != 0))
                return 0
            }, Unmanaged.passUnretained(collector).toOpaque())
        }
        try check(result, "listing the changes of \(spec)\(from.map { " since \($0)" } ?? "")")
        return collector.extents.sorted { $0.range.lowerBound < $1.range.lowerBound }
    }

    // MARK: Data

    /// Reads exactly `buffer.count` bytes at `offset` (beyond the end is an error).
    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(CephError) {
        let got = rbd_read(image, offset, buffer.count, buffer.baseAddress?.assumingMemoryBound(to: CChar.self))
        try check(got, "reading \(spec) at \(offset)")
        guard got == buffer.count else { throw CephError("reading \(spec) at \(offset) (short read)", code: -EIO) }
    }

    /// Writes `bytes` at `offset`; durable once `flush` returns.
    public func write(at offset: UInt64, _ bytes: UnsafeRawBufferPointer) throws(CephError) {
        let written = rbd_write(image, offset, bytes.count, bytes.baseAddress?.assumingMemoryBound(to: CChar.self))
        try check(written, "writing \(spec) at \(offset)")
        guard written == bytes.count else { throw CephError("writing \(spec) at \(offset) (short write)", code: -EIO) }
    }

    /// Makes `[offset, offset + length)` read as zeros, freeing the space where it can.
    public func discard(at offset: UInt64, length: UInt64) throws(CephError) {
        try check(rbd_discard(image, offset, length), "discarding \(spec) at \(offset)")
    }

    public func flush() throws(CephError) {
        try check(rbd_flush(image), "flushing \(spec)")
    }

    // MARK: Metadata (image key/value pairs, `rbd image-meta`)

    public func metadata(_ key: String) throws(CephError) -> String? {
        var size = 256
        while true {
            var buffer = [CChar](repeating: 0, count: size)
            let result = rbd_metadata_get(image, key, &buffer, &size)
            if result == -ERANGE { continue }
            if result == -ENOENT { return nil }
            try check(result, "reading metadata \(key) of \(spec)")
            return cString(buffer)
        }
    }

    public func setMetadata(_ key: String, _ value: String) throws(CephError) {
        try check(rbd_metadata_set(image, key, value), "setting metadata \(key) of \(spec)")
    }

    public func removeMetadata(_ key: String) throws(CephError) {
        let result = rbd_metadata_remove(image, key)
        if result == -ENOENT { return }
        try check(result, "removing metadata \(key) of \(spec)")
    }

    /// Metadata keys starting with `prefix`, in order.
    public func metadataKeys(prefix: String) throws(CephError) -> [String] {
        var keys: [String] = []
        var after = prefix  // librbd lists the keys after `start`
        while true {
            var keysSize = 64 * 1024, valuesSize = 64 * 1024
            var keyBuffer = [CChar](repeating: 0, count: keysSize), valueBuffer = [CChar](repeating: 0, count: valuesSize)
            try check(rbd_metadata_list(image, after, 512, &keyBuffer, &keysSize, &valueBuffer, &valuesSize), "listing metadata of \(spec)")
            let batch = keyBuffer.withUnsafeBufferPointer { pointer -> [String] in
                var names: [String] = []
                var at = 0
                while at < keysSize, pointer[at] != 0 {
                    let key = String(cString: pointer.baseAddress! + at)
                    names.append(key)
                    at += key.utf8.count + 1
                }
                return names
            }
            keys += batch.prefix { $0.hasPrefix(prefix) }
            guard batch.count == 512, let last = batch.last, last.hasPrefix(prefix) else { return keys }
            after = last
        }
    }
}
