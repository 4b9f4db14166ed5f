import Foundation

/// Settings fixed when a repository is created.
public struct RepositoryOptions: Sendable {
    /// Bytes per chunk; a power of two from 64 KiB to 64 MiB. 1 MiB by default: measured
    /// (docs/bench-repository.md) to store much less than 4 MiB after small scattered
    /// rewrites, at no cost in backup or restore speed.
    public var chunkSize: Int
    /// zstd level for chunks. 1 by default: on the benchmark image it compressed text as well
    /// as level 3 (each chunk is its own frame, so level 3's larger search gains little) and
    /// made the full backup about 35 % faster (docs/bench-repository.md). Raise it for
    /// repositories where space matters more than backup speed.
    public var compressionLevel: Int32
    /// Encrypts chunks, indexes and manifests when set.
    public var passphrase: String?
    /// PBKDF2-HMAC-SHA-256 iterations (OWASP 2023 recommends 600 000).
    public var kdfIterations: Int

    public static let defaultChunkSize = 1 << 20

    public init(chunkSize: Int = RepositoryOptions.defaultChunkSize, compressionLevel: Int32 = 1,
                passphrase: String? = nil, kdfIterations: Int = 600_000) {
        self.chunkSize = chunkSize
        self.compressionLevel = compressionLevel
        self.passphrase = passphrase
        self.kdfIterations = kdfIterations
    }
}

/// An opened backup repository: deduplicating chunk store, per-disk indexes, manifests.
///
/// All operations are synchronous and blocking; the parallel ones (backup of a range,
/// restore, verify) run their own Dispatch worker threads. Call them from a thread of your
/// own, not from an async task on Swift's cooperative pool. The object is immutable and may
/// be shared between threads.
public final class Repository: Sendable {
    public let backend: any RepositoryBackend
    let config: RepositoryConfig
    let sealer: ObjectSealer

    public var chunkSize: Int { config.chunkSize }
    public var compressionLevel: Int32 { config.compressionLevel }
    public var isEncrypted: Bool { sealer.isEncrypted }
    public var repositoryID: String { config.id }

    private init(backend: any RepositoryBackend, config: RepositoryConfig, keys: KeySet?) {
        self.backend = backend
        self.config = config
        sealer = ObjectSealer(keys: keys)
    }

    /// Creates a repository in an empty backend.
    public static func create(backend: any RepositoryBackend, options: RepositoryOptions = .init()) throws -> Repository {
        let size = options.chunkSize
        guard size >= 1 << 16, size <= 1 << 26, size & (size - 1) == 0 else {
            throw RepositoryError.invalidChunkSize(size)
        }
        if try backend.exists(ObjectNames.config) {
            throw RepositoryError.repositoryExists("\(backend)")
        }
        var config = RepositoryConfig(format: RepositoryConfig.currentFormat, id: UUID().uuidString.lowercased(),
                                      chunkSize: size, compressionLevel: options.compressionLevel, encryption: nil)
        var keys: KeySet?
        if let passphrase = options.passphrase {
            let master = KeySet.randomMaster()
            config.encryption = try KeySet.wrap(master: master, passphrase: passphrase, iterations: options.kdfIterations)
            keys = KeySet(master: master)
        }
        try backend.put(ObjectNames.config, try JSONCoding.encode(config))
        return Repository(backend: backend, config: config, keys: keys)
    }

    /// Opens an existing repository; an encrypted one needs its passphrase.
    public static func open(backend: any RepositoryBackend, passphrase: String? = nil) throws -> Repository {
        let bytes: [UInt8]
        do {
            bytes = try backend.get(ObjectNames.config)
        } catch RepositoryError.objectNotFound {
            throw RepositoryError.notARepository("\(backend)")
        }
        let config = try JSONCoding.decode(RepositoryConfig.self, from: bytes, name: ObjectNames.config)
        guard config.format == RepositoryConfig.currentFormat else { throw RepositoryError.unsupportedFormat(config.format) }
        var keys: KeySet?
        if let encryption = config.encryption {
            guard let passphrase else { throw RepositoryError.passphraseRequired }
            keys = try KeySet.unwrap(encryption, passphrase: passphrase)
        }
        return Repository(backend: backend, config: config, keys: keys)
    }

    /// A repository in a local or NFS directory (created if missing).
    public static func create(path: String, options: RepositoryOptions = .init()) throws -> Repository {
        try POSIX.makeDirectories(path)
        return try create(backend: FileSystemBackend(root: path), options: options)
    }

    public static func open(path: String, passphrase: String? = nil) throws -> Repository {
        try open(backend: FileSystemBackend(root: path), passphrase: passphrase)
    }

    // MARK: - Sealed objects shared by the writer, readers and maintenance

    func makeCodec() -> ChunkCodec { ChunkCodec(chunkSize: chunkSize, level: compressionLevel) }

    func putObject(_ name: String, _ plain: [UInt8]) throws {
        try backend.put(name, try sealer.seal(plain, name: name))
    }

    func getObject(_ name: String) throws -> [UInt8] {
        try sealer.open(try backend.get(name), name: name)
    }

    func readIndex(backup: String, disk: String) throws -> DiskIndex {
        let name = ObjectNames.index(backup, disk)
        return try DiskIndex.decode(try getObject(name), name: name)
    }

    func readBegunMarker(_ backup: String) throws -> BegunMarker? {
        let name = ObjectNames.begunMarker(backup)
        do {
            return try JSONCoding.decode(BegunMarker.self, from: try getObject(name), name: name)
        } catch RepositoryError.objectNotFound {
            return nil
        }
    }
}
