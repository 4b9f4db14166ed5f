import Crypto
import Foundation

/// The repository's secrets: a data key for AES-256-GCM and an id key for naming chunks by
/// HMAC. Both come from one random master key stored in `config`, sealed by a key derived
/// from the passphrase, so changing the passphrase never re-encrypts data.
///
/// `@unchecked Sendable`: swift-crypto 3.12 does not mark `SymmetricKey` Sendable, but it is
/// an immutable value (copy-on-write storage that is never mutated after creation).
struct KeySet: @unchecked Sendable {
    let dataKey: SymmetricKey
    let idKey: SymmetricKey

    static let masterKeyLength = 64

    init(master: [UInt8]) {
        precondition(master.count == Self.masterKeyLength)
        dataKey = SymmetricKey(data: master[0..<32])
        idKey = SymmetricKey(data: master[32..<64])
    }

    static func randomMaster() -> [UInt8] {
        var rng = SystemRandomNumberGenerator()
        return (0..<masterKeyLength).map { _ in UInt8.random(in: 0...255, using: &rng) }
    }

    /// Seals `master` under the passphrase; returns the parameters to store in `config`.
    static func wrap(master: [UInt8], passphrase: String, iterations: Int) throws -> EncryptionParameters {
        var rng = SystemRandomNumberGenerator()
        let salt = (0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let wrapping = wrappingKey(passphrase: passphrase, salt: salt, iterations: iterations)
        let sealed = try AES.GCM.seal(master, using: wrapping, authenticating: Array(Self.wrapLabel.utf8))
        return EncryptionParameters(kdf: EncryptionParameters.pbkdf2, iterations: iterations,
                                    salt: Data(salt), wrappedKey: sealed.combined!)
    }

    /// Unwraps the master key; a failed authentication means the passphrase is wrong.
    static func unwrap(_ parameters: EncryptionParameters, passphrase: String) throws -> KeySet {
        guard parameters.kdf == EncryptionParameters.pbkdf2 else {
            throw RepositoryError.corruptObject(name: ObjectNames.config, reason: "unknown KDF \(parameters.kdf)")
        }
        let wrapping = wrappingKey(passphrase: passphrase, salt: Array(parameters.salt), iterations: parameters.iterations)
        do {
            let box = try AES.GCM.SealedBox(combined: parameters.wrappedKey)
            let master = try AES.GCM.open(box, using: wrapping, authenticating: Array(Self.wrapLabel.utf8))
            guard master.count == masterKeyLength else { throw RepositoryError.wrongPassphrase }
            return KeySet(master: Array(master))
        } catch {
            throw RepositoryError.wrongPassphrase
        }
    }

    private static let wrapLabel = "lifeboat repository master key v1"

    private static func wrappingKey(passphrase: String, salt: [UInt8], iterations: Int) -> SymmetricKey {
        SymmetricKey(data: PBKDF2.deriveKey(password: Array(passphrase.utf8), salt: salt,
                                            iterations: iterations, length: 32))
    }
}
