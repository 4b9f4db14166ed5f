import Foundation

/// `config`: fixed at creation. Chunk size and keys never change for a repository, because
/// chunk ids and index positions depend on them.
struct RepositoryConfig: Codable, Sendable {
    static let currentFormat = 1

    var format: Int
    var id: String
    var chunkSize: Int
    var compressionLevel: Int32
    var encryption: EncryptionParameters?
}

/// How the master key is wrapped: PBKDF2-HMAC-SHA-256 of the passphrase, AES-GCM.
struct EncryptionParameters: Codable, Sendable {
    static let pbkdf2 = "pbkdf2-hmac-sha256"

    var kdf: String
    var iterations: Int
    var salt: Data
    var wrappedKey: Data
}
