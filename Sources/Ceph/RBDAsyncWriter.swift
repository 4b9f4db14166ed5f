import CRBD
import Foundation

/// Writes into an RBD image with librbd aio writes, several in flight, from any number of
/// threads: what a restore needs to approach `rbd import`, which keeps many writes in flight
/// while one synchronous `rbd_write` per chunk would wait a full OSD round trip each.
///
/// `write` copies the bytes into one of `inFlight` buffers (waiting for a free one) and returns;
/// `append` does the same for bytes handed over in ascending order by one thread, gathering
/// adjacent pieces into one write per buffer (an RBD object with 4 MiB buffers: one OSD op
/// instead of four for 1 MiB chunks); `finish` waits for every write, flushes, and throws the
/// first error any of them met.
public final class RBDAsyncWriter: @unchecked Sendable {
    public let image: RBDImage
    private let condition = NSCondition()
    private var free: [UnsafeMutableRawBufferPointer]
    private var pending = 0
    private var firstError: CephError?
    private let bufferSize: Int

    public init(image: RBDImage, inFlight: Int = 16, bufferSize: Int = 1 << 20) {
        self.image = image
        self.bufferSize = bufferSize
        free = (0..<max(1, inFlight)).map { _ in UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 4096) }
    }

    deinit {
        // finish() waited for every write; nothing can still point into the buffers.
        free.forEach { $0.deallocate() }
    }

    /// One write in flight: its buffer and the writer to hand it back to.
    private final class Operation {
        let writer: RBDAsyncWriter
        let buffer: UnsafeMutableRawBufferPointer
        let offset: UInt64
        init(writer: RBDAsyncWriter, buffer: UnsafeMutableRawBufferPointer, offset: UInt64) {
            self.writer = writer
            self.buffer = buffer
            self.offset = offset
        }
    }

    /// What `append` has gathered and not yet written (only touched by the appending thread).
    private var gathering: (offset: UInt64, buffer: UnsafeMutableRawBufferPointer, count: Int)?

    /// Adds `bytes` at `offset` to the write being gathered, or starts a new one when they do
    /// not follow it or would cross a `bufferSize` boundary. One thread, ascending offsets.
    public func append(at offset: UInt64, _ bytes: UnsafeRawBufferPointer) throws(CephError) {
        let unit = UInt64(bufferSize)
        if let current = gathering, current.offset + UInt64(current.count) == offset,
           offset / unit == current.offset / unit, current.count + bytes.count <= bufferSize {
            UnsafeMutableRawBufferPointer(rebasing: current.buffer[current.count...]).copyMemory(from: bytes)
            gathering?.count += bytes.count
            return
        }
        try submitGathered()
        guard bytes.count <= bufferSize, offset % unit + UInt64(bytes.count) <= unit else {
            return try write(at: offset, bytes)
        }
        let buffer = try takeBuffer()
        UnsafeMutableRawBufferPointer(rebasing: buffer[0..<bytes.count]).copyMemory(from: bytes)
        gathering = (offset, buffer, bytes.count)
    }

    private func submitGathered() throws(CephError) {
        guard let current = gathering else { return }
        gathering = nil
        try submit(current.buffer, offset: current.offset, count: current.count)
    }

    /// Queues a write of `bytes` (at most `bufferSize`) at `offset`.
    public func write(at offset: UInt64, _ bytes: UnsafeRawBufferPointer) throws(CephError) {
        precondition(bytes.count <= bufferSize, "a write larger than the writer's buffers")
        let buffer = try takeBuffer()
        buffer.copyMemory(from: bytes)
        try submit(buffer, offset: offset, count: bytes.count)
    }

    /// A free buffer, counted as pending until its write completes; waits for one.
    private func takeBuffer() throws(CephError) -> UnsafeMutableRawBufferPointer {
        condition.lock()
        while free.isEmpty && firstError == nil { condition.wait() }
        if let firstError {
            condition.unlock()
            throw firstError
        }
        let buffer = free.removeLast()
        pending += 1
        condition.unlock()
        return buffer
    }

    /// Starts the aio write of `count` bytes of `buffer`; its completion gives the buffer back.
    private func submit(_ buffer: UnsafeMutableRawBufferPointer, offset: UInt64, count: Int) throws(CephError) {
        let operation = Unmanaged.passRetained(Operation(writer: self, buffer: buffer, offset: offset))
        var completion: rbd_completion_t?
        var result = rbd_aio_create_completion(operation.toOpaque(), { completion, context in
            let operation = Unmanaged<Operation>.fromOpaque(context!).takeRetainedValue()
            let written = rbd_aio_get_return_value(completion)
            rbd_aio_release(completion)
            operation.writer.completed(operation.buffer,
                                       error: written < 0 ? CephError("writing \(operation.writer.image.spec) at \(operation.offset)", code: Int32(written)) : nil)
        }, &completion)
        if result >= 0 {
            // As `rbd import` writes: a restored image's data need not stay in the OSD's cache.
            result = rbd_aio_write2(image.image, offset, count, buffer.baseAddress!.assumingMemoryBound(to: CChar.self), completion,
                                    Int32(LIBRADOS_OP_FLAG_FADVISE_NOCACHE))
            if result < 0 { rbd_aio_release(completion) }
        }
        if result < 0 {
            operation.release()
            completed(buffer, error: CephError("writing \(image.spec) at \(offset)", code: result))
            throw CephError("writing \(image.spec) at \(offset)", code: result)
        }
    }

    /// Waits for every queued write, flushes the image, and throws the first failure.
    public func finish() throws(CephError) {
        let unsent = Result { () throws(CephError) in try submitGathered() }
        condition.lock()
        while pending > 0 { condition.wait() }
        let failure = firstError
        condition.unlock()
        if let failure { throw failure }
        try unsent.get()
        try image.flush()
    }

    private func completed(_ buffer: UnsafeMutableRawBufferPointer, error: CephError?) {
        condition.lock()
        free.append(buffer)
        pending -= 1
        if let error, firstError == nil { firstError = error }
        condition.broadcast()
        condition.unlock()
    }
}
