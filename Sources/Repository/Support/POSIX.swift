import Glibc

/// Thin throwing wrappers over the POSIX calls the filesystem backend and the image I/O use.
/// Foundation's file APIs can't fsync a directory, use pread/pwrite, or create with O_EXCL,
/// all of which the atomic-visibility and parallel-range designs depend on.
enum POSIX {
    static func error(_ operation: String, _ path: String, _ code: Int32 = errno) -> RepositoryError {
        .system(operation: operation, path: path, errno: code)
    }

    static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0o644) throws -> Int32 {
        while true {
            let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            if errno != EINTR { throw error("open", path) }
        }
    }

    /// Writes all of `buffer` at the file's current position.
    static func writeAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, path: String) throws {
        var done = 0
        while done < buffer.count {
            let n = Glibc.write(fd, buffer.baseAddress! + done, buffer.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw error("write", path)
            }
            done += n
        }
    }

    /// Writes all of `buffer` at `offset`, so several threads can fill one file in any order.
    static func pwriteAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, at offset: UInt64, path: String) throws {
        var done = 0
        while done < buffer.count {
            let n = Glibc.pwrite(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw error("pwrite", path)
            }
            done += n
        }
    }

    /// Reads until `buffer` is full or end of file; returns the number of bytes read.
    static func preadFull(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, path: String) throws -> Int {
        var done = 0
        while done < buffer.count {
            let n = Glibc.pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw error("pread", path)
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    static func fsync(_ fd: Int32, path: String) throws {
        if Glibc.fsync(fd) != 0 { throw error("fsync", path) }
    }

    /// Asks the kernel to start writing the file's dirty pages now, without waiting, so a
    /// later fsync has little left to do. Only a hint: where unsupported it does nothing.
    static func startWriteback(_ fd: Int32, offset: UInt64 = 0, length: Int = 0) {
        _ = syncFileRange?(fd, Int64(offset), Int64(length), syncFileRangeWrite)
    }

    /// Waits until `[offset, offset + length)` is written back (starting it if needed), then
    /// drops those pages from the page cache. Only dirty pages are ever at risk of loss, and
    /// DONTNEED never drops those, so this is a hint that cannot lose data; it is not an fsync.
    static func writeBehind(_ fd: Int32, offset: UInt64, length: Int) {
        _ = syncFileRange?(fd, Int64(offset), Int64(length), syncFileRangeWaitBefore | syncFileRangeWrite | syncFileRangeWaitAfter)
        _ = posix_fadvise(fd, off_t(offset), off_t(length), POSIX_FADV_DONTNEED)
    }

    /// Drops the file's clean pages from the page cache (a hint; failures are ignored).
    static func dropCache(_ fd: Int32) {
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
    }

    /// sync_file_range(2) and lseek's SEEK_DATA/SEEK_HOLE are GNU extensions that the Glibc
    /// module does not export; looked up and spelled out here (Linux ABI values) rather than
    /// adding a C target for three names.
    private typealias SyncFileRange = @convention(c) (Int32, Int64, Int64, UInt32) -> Int32
    private static let syncFileRange: SyncFileRange? = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "sync_file_range")
        .map { unsafeBitCast($0, to: SyncFileRange.self) }
    private static let syncFileRangeWaitBefore: UInt32 = 1
    private static let syncFileRangeWrite: UInt32 = 2
    private static let syncFileRangeWaitAfter: UInt32 = 4
    static let seekData: Int32 = 3
    static let seekHole: Int32 = 4

    /// Makes a rename or unlink inside `directory` durable.
    static func fsyncDirectory(_ directory: String) throws {
        let fd = try open(directory, O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        try fsync(fd, path: directory)
    }

    static func close(_ fd: Int32) { _ = Glibc.close(fd) }

    /// Size of an open file.
    static func size(_ fd: Int32, path: String) throws -> UInt64 {
        var st = stat()
        if fstat(fd, &st) != 0 { throw error("fstat", path) }
        return UInt64(st.st_size)
    }

    /// Creates `path` and its missing parents.
    static func makeDirectories(_ path: String) throws {
        if mkdir(path, 0o755) == 0 || errno == EEXIST { return }
        guard errno == ENOENT else { throw error("mkdir", path) }
        let parent = parentDirectory(path)
        if parent != path { try makeDirectories(parent) }
        if mkdir(path, 0o755) != 0 && errno != EEXIST { throw error("mkdir", path) }
    }

    static func parentDirectory(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
}
