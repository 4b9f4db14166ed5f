import Foundation
import Glibc

/// A repository in a directory, on a local filesystem or an NFS export.
///
/// Atomic put = write a uniquely named temporary in the destination directory, fsync it,
/// rename it over the name, fsync the directory. rename(2) is atomic on local filesystems and
/// on NFS, so concurrent writers of the same content-addressed name need no lock: the last
/// rename wins and every version is identical.
public struct FileSystemBackend: RepositoryBackend {
    public let root: String
    /// Temporaries start with this; listings skip them.
    static let temporaryPrefix = ".tmp-"

    public init(root: String) {
        self.root = root.hasSuffix("/") && root.count > 1 ? String(root.dropLast()) : root
    }

    private func path(_ name: String) -> String { root + "/" + name }

    public func put(_ name: String, _ data: UnsafeRawBufferPointer) throws {
        let final = path(name)
        let temporary = try writeTemporary(for: final, data, sync: true)
        if rename(temporary, final) != 0 {
            let error = POSIX.error("rename", final)
            unlink(temporary)
            throw error
        }
        try POSIX.fsyncDirectory(POSIX.parentDirectory(final))
    }

    /// Writes the temporary under its unique name beside `final` and starts its writeback,
    /// without waiting for it: `publish` fsyncs it later, by then mostly written.
    public func stage(_ name: String, _ data: UnsafeRawBufferPointer) throws -> StagedObject {
        StagedObject(name: name, location: try writeTemporary(for: path(name), data, sync: false))
    }

    /// fsync every temporary (one journal commit covers most of them, and their writeback
    /// was started when staged), then rename each over its name, then fsync each directory
    /// once. The staged files' pages are dropped from the page cache once durable: chunks are
    /// write-once and rarely read soon, so caching them would only evict more useful pages
    /// (and on VMs whose free memory goes back to the host, fresh pages cost a fault each).
    /// Only after the first step may a name appear: a crash may lose a rename, never
    /// leave a named object with missing content that a writer would then deduplicate against.
    public func publish(_ objects: [StagedObject]) throws {
        let staged = objects.compactMap { object in object.location.map { (temporary: $0, final: path(object.name)) } }
        do {
            for object in staged {
                let fd = try POSIX.open(object.temporary, O_RDONLY)
                defer { POSIX.close(fd) }
                try POSIX.fsync(fd, path: object.temporary)
                POSIX.dropCache(fd)
            }
            var directories = Set<String>()
            for object in staged {
                if rename(object.temporary, object.final) != 0 { throw POSIX.error("rename", object.final) }
                directories.insert(POSIX.parentDirectory(object.final))
            }
            for directory in directories { try POSIX.fsyncDirectory(directory) }
        } catch {
            for object in staged { unlink(object.temporary) } // the renamed ones are gone already: harmless
            throw error
        }
    }

    /// A new uniquely named temporary in `final`'s directory (created if missing) holding
    /// `data`: fsynced when `sync`, else with its writeback started.
    private func writeTemporary(for final: String, _ data: UnsafeRawBufferPointer, sync: Bool) throws -> String {
        let directory = POSIX.parentDirectory(final)
        let temporary = directory + "/" + Self.temporaryPrefix + ObjectNames.leaf(final) + "-" + Self.uniqueSuffix()
        let fd: Int32
        do {
            fd = try POSIX.open(temporary, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        } catch RepositoryError.system(_, _, ENOENT) {
            try POSIX.makeDirectories(directory)
            fd = try POSIX.open(temporary, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        }
        defer { POSIX.close(fd) }
        do {
            try POSIX.writeAll(fd, data, path: temporary)
            if sync {
                try POSIX.fsync(fd, path: temporary)
            } else {
                POSIX.startWriteback(fd)
            }
        } catch {
            unlink(temporary)
            throw error
        }
        return temporary
    }

    public func get(_ name: String) throws -> [UInt8] {
        try reading(name) { fd, size, path in
            var bytes = [UInt8](repeating: 0, count: size)
            let n = try bytes.withUnsafeMutableBytes { try POSIX.preadFull(fd, $0, at: 0, path: path) }
            if n < size { bytes.removeLast(size - n) }
            return bytes
        }
    }

    public func get(_ name: String, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        try reading(name) { fd, size, path in
            guard size <= buffer.count else {
                throw RepositoryError.corruptObject(name: name, reason: "\(size) bytes, more than any object of its kind")
            }
            return try POSIX.preadFull(fd, UnsafeMutableRawBufferPointer(rebasing: buffer[0..<size]), at: 0, path: path)
        }
    }

    public func get(_ name: String, into head: UnsafeMutableRawBufferPointer, _ body: UnsafeMutableRawBufferPointer) throws -> Bool {
        try reading(name) { fd, size, path in
            guard size == head.count + body.count else { return false }
            return try POSIX.preadFull(fd, head, at: 0, path: path) == head.count
                && POSIX.preadFull(fd, body, at: UInt64(head.count), path: path) == body.count
        }
    }

    /// Opens object `name` for `body` with its size; absent → `objectNotFound`.
    private func reading<T>(_ name: String, _ body: (Int32, Int, String) throws -> T) throws -> T {
        let p = path(name)
        let fd: Int32
        do {
            fd = try POSIX.open(p, O_RDONLY)
        } catch RepositoryError.system(_, _, ENOENT) {
            throw RepositoryError.objectNotFound(name)
        }
        defer { POSIX.close(fd) }
        return try body(fd, Int(try POSIX.size(fd, path: p)), p)
    }

    public func info(_ name: String) throws -> ObjectInfo? {
        var st = stat()
        if stat(path(name), &st) != 0 {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw POSIX.error("stat", path(name))
        }
        return Self.info(name, st)
    }

    public func list(prefix: String) throws -> [ObjectInfo] {
        var out: [ObjectInfo] = []
        try walk(directory: path(String(prefix.dropLast())), name: String(prefix.dropLast()), into: &out)
        return out
    }

    public func delete(_ name: String) throws {
        if unlink(path(name)) != 0 && errno != ENOENT { throw POSIX.error("unlink", path(name)) }
    }

    public func touch(_ name: String) throws -> ObjectInfo? {
        if utimensat(AT_FDCWD, path(name), nil, 0) != 0 {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw POSIX.error("utimensat", path(name))
        }
        return try info(name)
    }

    public func move(_ source: String, to destination: String) throws -> Bool {
        let target = path(destination)
        if rename(path(source), target) == 0 { return true }
        if errno == ENOENT {
            if (try info(source)) == nil { return false }
            try POSIX.makeDirectories(POSIX.parentDirectory(target))
            if rename(path(source), target) == 0 { return true }
            if errno == ENOENT { return false }
        }
        throw POSIX.error("rename", path(source))
    }

    public func removeTemporaries(olderThan date: Date) throws -> Int {
        var removed = 0
        try walkAll(directory: root) { dir, entry, st in
            guard entry.hasPrefix(Self.temporaryPrefix), Self.modified(st) < date else { return }
            if unlink(dir + "/" + entry) == 0 { removed += 1 }
        }
        return removed
    }

    // MARK: - Walking directories

    private func walk(directory: String, name: String, into out: inout [ObjectInfo]) throws {
        try walkAll(directory: directory) { dir, entry, st in
            guard !entry.hasPrefix(Self.temporaryPrefix) else { return }
            let relative = name + String(dir.dropFirst(directory.count)) + "/" + entry
            out.append(Self.info(relative, st))
        }
    }

    /// Calls `visit` for every regular file below `directory` (absent directory: no calls).
    private func walkAll(directory: String, _ visit: (String, String, stat) throws -> Void) throws {
        guard let dir = opendir(directory) else {
            if errno == ENOENT || errno == ENOTDIR { return }
            throw POSIX.error("opendir", directory)
        }
        defer { closedir(dir) }
        let fd = dirfd(dir)
        while let entry = readdir(dir) {
            let entryName = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if entryName == "." || entryName == ".." { continue }
            var st = stat()
            guard fstatat(fd, entryName, &st, AT_SYMLINK_NOFOLLOW) == 0 else { continue } // raced with a delete
            if (st.st_mode & S_IFMT) == S_IFDIR {
                try walkAll(directory: directory + "/" + entryName, visit)
            } else if (st.st_mode & S_IFMT) == S_IFREG {
                try visit(directory, entryName, st)
            }
        }
    }

    private static func info(_ name: String, _ st: stat) -> ObjectInfo {
        ObjectInfo(name: name, size: Int(st.st_size), modified: modified(st))
    }

    private static func modified(_ st: stat) -> Date {
        Date(timeIntervalSince1970: Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9)
    }

    private static func uniqueSuffix() -> String {
        String(UInt64.random(in: 0...UInt64.max), radix: 36) + "-\(getpid())"
    }
}
