import Crypto
import Foundation

/// The digest Glance recorded for an image's data, computed again over the bytes as they
/// stream past: the multihash (`os_hash_algo`/`os_hash_value`, sha512 by default) when Glance
/// has one, else the legacy MD5 `checksum`.
struct ImageDigest {
    private enum Hasher {
        case sha256(SHA256), sha384(SHA384), sha512(SHA512), md5(Insecure.MD5)
    }

    let algorithm: String
    let expected: String
    private var hasher: Hasher

    /// Nil when Glance recorded no digest this client can compute.
    init?(for image: Image) {
        if let algorithm = image.hashAlgorithm?.lowercased(), let value = image.hashValue, !value.isEmpty,
           let hasher = Self.hasher(algorithm) {
            self.algorithm = algorithm
            expected = value.lowercased()
            self.hasher = hasher
        } else if let checksum = image.checksum, !checksum.isEmpty {
            algorithm = "md5"
            expected = checksum.lowercased()
            hasher = .md5(Insecure.MD5())
        } else {
            return nil
        }
    }

    private static func hasher(_ algorithm: String) -> Hasher? {
        switch algorithm {
        case "sha256": .sha256(SHA256())
        case "sha384": .sha384(SHA384())
        case "sha512": .sha512(SHA512())
        case "md5": .md5(Insecure.MD5())
        default: nil
        }
    }

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        switch hasher {
        case .sha256(var h): h.update(bufferPointer: bytes); hasher = .sha256(h)
        case .sha384(var h): h.update(bufferPointer: bytes); hasher = .sha384(h)
        case .sha512(var h): h.update(bufferPointer: bytes); hasher = .sha512(h)
        case .md5(var h): h.update(bufferPointer: bytes); hasher = .md5(h)
        }
    }

    /// The hex digest of everything passed to `update`.
    func finish() -> String {
        let bytes: [UInt8] = switch hasher {
        case .sha256(let h): Array(h.finalize())
        case .sha384(let h): Array(h.finalize())
        case .sha512(let h): Array(h.finalize())
        case .md5(let h): Array(h.finalize())
        }
        return bytes.map { String(format: "%02x", $0) }.joined()
    }
}
