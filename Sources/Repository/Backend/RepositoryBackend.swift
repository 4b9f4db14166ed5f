import Foundation

/// One stored object as a listing reports it.
public struct ObjectInfo: Sendable, Equatable {
    public let name: String
    public let size: Int
    /// Last write or `touch`: garbage collection's grace period is measured from it.
    public let modified: Date

    public init(name: String, size: Int, modified: Date) {
        self.name = name
        self.size = size
        self.modified = modified
    }
}

/// Named-object storage under a repository. The filesystem (local or NFS) implements it now;
/// an S3-compatible store must fit later without touching callers, so the contract is only
/// what both can give: whole-object atomic puts, gets, listings by prefix, deletes, and an
/// mtime that can be refreshed.
///
/// Names are `/`-separated paths (see `ObjectNames`). Every method may be called from many
/// threads and processes at once.
public protocol RepositoryBackend: Sendable {
    /// Stores `data` under `name` atomically and durably: a reader sees either no object or
    /// all of it, and once `put` returns the object survives a crash. Replaces an existing object.
    func put(_ name: String, _ data: UnsafeRawBufferPointer) throws

    /// The whole object; throws `RepositoryError.objectNotFound` when absent.
    func get(_ name: String) throws -> [UInt8]

    /// The whole object into the start of `buffer` (reused by the caller: no allocation per
    /// object); returns its length. Throws `objectNotFound` when absent, `corruptObject` when
    /// it does not fit.
    func get(_ name: String, into buffer: UnsafeMutableRawBufferPointer) throws -> Int

    /// An object of exactly `head.count + body.count` bytes split into the two buffers, for a
    /// caller that knows its layout (a raw chunk: its payload lands where it is wanted, without
    /// a copy). Returns false, with the buffers' contents undefined, when the object has another
    /// size; throws `objectNotFound` when absent.
    func get(_ name: String, into head: UnsafeMutableRawBufferPointer, _ body: UnsafeMutableRawBufferPointer) throws -> Bool
    /// Size and mtime of one object, or nil when absent.
    func info(_ name: String) throws -> ObjectInfo?

    /// Every object whose name starts with `prefix` (which ends with "/"), in no particular order.
    func list(prefix: String) throws -> [ObjectInfo]

    /// Removes the object; absent objects are not an error (deletes are retried and raced).
    func delete(_ name: String) throws

    /// Sets the object's mtime to now and returns its info, or nil when the object is absent.
    /// Chunk writers touch chunks they reuse so GC's grace period protects them.
    func touch(_ name: String) throws -> ObjectInfo?

    /// Atomically renames `source` to `destination` (replacing it). Returns false when
    /// `source` is absent. GC moves a chunk aside before deleting it to close its race with writers.
    func move(_ source: String, to destination: String) throws -> Bool

    /// Removes leftovers of interrupted puts older than `date`; returns how many.
    func removeTemporaries(olderThan date: Date) throws -> Int

    /// First half of a deferred put: writes `data` somewhere invisible under `name` and
    /// returns at once, durable or not. Nothing is visible until `publish` takes it; an
    /// object never published is a leftover that `removeTemporaries` deletes.
    ///
    /// Exists for writers of many objects that need them durable only together (a range's
    /// chunks before its range record): waiting for the disk once per batch instead of once
    /// per object. The default implementation is a plain durable `put`.
    func stage(_ name: String, _ data: UnsafeRawBufferPointer) throws -> StagedObject

    /// Second half: makes every staged object durable, then visible under its name, then
    /// the names durable, so that an object is never visible under its name (where writers
    /// would deduplicate against it) before its content survives a crash. When it returns,
    /// each object is as if `put`. Each staged object must be published at most once.
    func publish(_ objects: [StagedObject]) throws
}

/// An object written by `RepositoryBackend.stage` and not yet published.
public struct StagedObject: Sendable {
    public let name: String
    /// Where the backend keeps it until published; nil when it is already stored under `name`.
    public let location: String?

    public init(name: String, location: String?) {
        self.name = name
        self.location = location
    }
}

extension RepositoryBackend {
    public func exists(_ name: String) throws -> Bool { try info(name) != nil }

    public func put(_ name: String, _ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try put(name, $0) }
    }

    /// Backends without a cheaper way read the whole object and copy it.
    public func get(_ name: String, into head: UnsafeMutableRawBufferPointer, _ body: UnsafeMutableRawBufferPointer) throws -> Bool {
        let bytes = try get(name)
        guard bytes.count == head.count + body.count else { return false }
        bytes.withUnsafeBytes { all in
            head.copyMemory(from: UnsafeRawBufferPointer(rebasing: all[0..<head.count]))
            body.copyMemory(from: UnsafeRawBufferPointer(rebasing: all[head.count...]))
        }
        return true
    }

    /// Backends without a cheaper way store at once: publishing is then a no-op.
    public func stage(_ name: String, _ data: UnsafeRawBufferPointer) throws -> StagedObject {
        try put(name, data)
        return StagedObject(name: name, location: nil)
    }

    public func publish(_ objects: [StagedObject]) throws {}
}

extension RepositoryBackend {
    /// `get` and a copy, for backends that cannot read into a given buffer.
    public func get(_ name: String, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let object = try get(name)
        guard object.count <= buffer.count else {
            throw RepositoryError.corruptObject(name: name, reason: "\(object.count) bytes, more than any object of its kind")
        }
        object.withUnsafeBytes { buffer.copyMemory(from: $0) }
        return object.count
    }
}
