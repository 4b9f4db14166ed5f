/// Chunk objects in and out of the backend: the only place that names, dedups, encodes,
/// stores, fetches and checks chunks.
extension Repository {
    /// Stores one chunk unless it is all zeros or already present, and returns its index entry.
    /// With `deferred`, a new chunk is only staged (`RepositoryBackend.stage`) and returned as
    /// `staged`: the caller must publish it before anything durable refers to it.
    ///
    /// No lock: the object name is the content's id, so racing writers store identical bytes
    /// and the backend's atomic put makes the last rename harmless. A chunk already present
    /// is touched, so that garbage collection's grace period counts from this reuse (see
    /// `collectGarbage`); if it vanished between checks, it is simply stored again.
    func storeChunk(_ data: UnsafeRawBufferPointer, codec: ChunkCodec,
                    deferred: Bool = false) throws -> (entry: IndexEntry, isNew: Bool, staged: StagedObject?) {
        if ChunkCodec.isZero(data) { return (.zero, false, nil) }
        let id = ChunkCodec.id(of: data, sealer: sealer)
        let check = ChunkCodec.check(of: data)
        let name = ObjectNames.chunk(id)
        if let existing = try backend.touch(name) {
            return (IndexEntry(id: id, storedSize: UInt32(existing.size), check: check), false, nil)
        }
        var staged: StagedObject?
        let stored = try codec.encode(data, id: id, sealer: sealer) { object in
            if deferred {
                staged = try backend.stage(name, object)
            } else {
                try backend.put(name, object)
            }
            return object.count
        }
        return (IndexEntry(id: id, storedSize: UInt32(stored), check: check), true, staged)
    }

    /// Fetches and checks the chunk of index entry `entry`, of `length` plain bytes, into
    /// `target` (the codec's plain buffer when nil), through the codec's object buffer: no
    /// allocation, one copy. With the entry's `storedSize` saying the chunk is stored raw
    /// (incompressible data, unencrypted), not even that: its header is read apart and its
    /// bytes straight into the target. Checked against the entry's `check` when it has one,
    /// else against its id; `verify` passes an entry without (`IndexEntry(id:storedSize: 0)`)
    /// to re-hash the chunk.
    @discardableResult
    func loadChunk(_ entry: IndexEntry, length: Int, codec: ChunkCodec,
                   into target: UnsafeMutableRawBufferPointer? = nil) throws(ChunkProblem) -> UnsafeRawBufferPointer {
        let id = entry.id
        let destination = target ?? codec.plainBuffer
        let plain = UnsafeMutableRawBufferPointer(rebasing: destination[0..<length])
        if !sealer.isEncrypted, Int(entry.storedSize) == ChunkCodec.headerSize + length, length <= codec.chunkSize {
            let header = UnsafeMutableRawBufferPointer(rebasing: codec.objectBuffer[0..<ChunkCodec.headerSize])
            let whole: Bool
            do {
                whole = try backend.get(ObjectNames.chunk(id), into: header, plain)
            } catch RepositoryError.objectNotFound {
                throw .missing
            } catch {
                throw .unreadable("\(error)")
            }
            if whole {
                try codec.checkRaw(header: UnsafeRawBufferPointer(header), plain: UnsafeRawBufferPointer(plain), id: id,
                                   check: entry.check, sealer: sealer)
                return UnsafeRawBufferPointer(plain)
            }
            // Not the size the index says: the general path reads it whole and names the problem.
        }
        let count: Int
        do {
            count = try backend.get(ObjectNames.chunk(id), into: codec.objectBuffer)
        } catch RepositoryError.objectNotFound {
            throw .missing
        } catch {
            throw .unreadable("\(error)")
        }
        try codec.decode(UnsafeRawBufferPointer(rebasing: codec.objectBuffer[0..<count]), id: id, check: entry.check, length: length,
                         sealer: sealer, into: destination)
        return UnsafeRawBufferPointer(plain)
    }
}
