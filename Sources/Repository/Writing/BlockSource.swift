import Foundation
import Glibc

/// What a backup reads: a disk's guest-visible bytes, and where its data is.
///
/// The seam the strategies plug into. `LocalImageSource` reads an image file or block device
/// on this host; a file read over SSH, an RBD image through librbd and a volume attached to a
/// proxy VM are further implementations. The repository asks for the data extents first, so a
/// source that knows its allocation (SEEK_DATA, `rbd diff`, qemu's block status, a dirty
/// bitmap) is never asked to read a hole, and a source that does not know reads everything.
public protocol BlockSource: Sendable {
    /// The guest-visible size in bytes.
    var size: UInt64 { get }

    /// The parts of `[offset, offset + length)` that may hold data: ascending, disjoint, inside
    /// the range. Everything else reads as zeros. When unsure, return the whole range.
    func dataExtents(offset: UInt64, length: UInt64) throws -> [Range<UInt64>]

    /// Fills `buffer` with the bytes at `offset`, all of them (a short read is an error).
    /// Called from several threads at once.
    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws
}

/// An image file or block device on this host, read with `pread` and mapped with
/// SEEK_DATA/SEEK_HOLE (a block device reports everything as data, which is correct).
public final class LocalImageSource: BlockSource {
    public let path: String
    public let size: UInt64
    private let descriptor: Int32

    public init(path: String) throws {
        self.path = path
        descriptor = try POSIX.open(path, O_RDONLY)
        let end = lseek(descriptor, 0, SEEK_END)  // st_size is 0 for a block device; its end is not
        guard end >= 0 else {
            let error = POSIX.error("lseek", path)
            POSIX.close(descriptor)
            throw error
        }
        size = UInt64(end)
    }

    deinit {
        POSIX.close(descriptor)
    }

    public func dataExtents(offset: UInt64, length: UInt64) throws -> [Range<UInt64>] {
        let end = offset + length
        var extents: [Range<UInt64>] = []
        var position = offset
        while position < end {
            let start = lseek(descriptor, off_t(position), POSIX.seekData)
            if start < 0 {
                if errno != ENXIO { extents.append(position..<end) }  // ENXIO: only a hole from here on
                break
            }
            guard UInt64(start) < end else { break }
            var stop = lseek(descriptor, start, POSIX.seekHole)
            if stop < 0 { stop = off_t(end) }
            extents.append(UInt64(start)..<min(UInt64(stop), end))
            position = UInt64(stop)
        }
        return extents
    }

    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        let got = try POSIX.preadFull(descriptor, buffer, at: offset, path: path)
        guard got == buffer.count else { throw RepositoryError.system(operation: "read (image shrank)", path: path, errno: EIO) }
    }
}

/// A local image streams too: its extents are its data extents, read front to back. What the
/// tests use to check the streaming path against the same file's random-access backup.
extension LocalImageSource: StreamingBlockSource {
    public func extents(offset: UInt64, length: UInt64) throws -> [Range<UInt64>] {
        try dataExtents(offset: offset, length: length)
    }

    public func stream(_ pieces: [Range<UInt64>], into deliver: (UInt64, UnsafeRawBufferPointer) throws -> Void) throws {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { buffer.deallocate() }
        for piece in pieces {
            var at = piece.lowerBound
            while at < piece.upperBound {
                let part = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<Int(min(UInt64(buffer.count), piece.upperBound - at))])
                try read(at: at, into: part)
                try deliver(at, UnsafeRawBufferPointer(part))
                at += UInt64(part.count)
            }
        }
    }
}
