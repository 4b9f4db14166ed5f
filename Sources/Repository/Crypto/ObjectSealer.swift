import Crypto
import Foundation

/// Encrypts whole objects (chunks, indexes, manifests, records) with AES-256-GCM, or passes
/// them through for a plain repository. The associated data is the object's identity (chunk
/// id or object name), so an object moved to another name fails authentication instead of
/// being silently read as something else.
struct ObjectSealer: Sendable {
    let keys: KeySet?

    var isEncrypted: Bool { keys != nil }

    /// Overhead of sealing: nonce and tag.
    static let overhead = 12 + 16

    func seal(_ plain: UnsafeRawBufferPointer, context: [UInt8]) throws -> [UInt8] {
        guard let keys else { return Array(plain) }
        let box = try AES.GCM.seal(plain, using: keys.dataKey, authenticating: context)
        return Array(box.combined!)
    }

    func seal(_ plain: [UInt8], name: String) throws -> [UInt8] {
        try plain.withUnsafeBytes { try seal($0, context: Array(name.utf8)) }
    }

    /// Opens a sealed object; throws `authenticationFailed`-style errors as `CryptoKitError`.
    func open(_ sealed: [UInt8], context: [UInt8]) throws -> [UInt8] {
        guard let keys else { return sealed }
        let box = try AES.GCM.SealedBox(combined: sealed)
        return Array(try AES.GCM.open(box, using: keys.dataKey, authenticating: context))
    }

    /// Opens a non-chunk object, reporting failure as a corrupt object named by `name`.
    func open(_ sealed: [UInt8], name: String) throws -> [UInt8] {
        do {
            return try open(sealed, context: Array(name.utf8))
        } catch {
            throw RepositoryError.corruptObject(name: name, reason: "authentication failed")
        }
    }
}
