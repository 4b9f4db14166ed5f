import Crypto

/// PBKDF2-HMAC-SHA-256 (RFC 8018) built on swift-crypto's `Crypto` product, which the
/// Repository target depends on; swift-crypto's own PBKDF2 lives in `_CryptoExtras`, an
/// underscored product this target does not link. Checked against RFC 7914's test vectors.
enum PBKDF2 {
    static func deriveKey(password: [UInt8], salt: [UInt8], iterations: Int, length: Int) -> [UInt8] {
        precondition(iterations >= 1 && length >= 1)
        let key = SymmetricKey(data: password)
        var output: [UInt8] = []
        output.reserveCapacity(length)
        var block: UInt32 = 1
        while output.count < length {
            var first = HMAC<SHA256>(key: key)
            first.update(data: salt)
            first.update(data: withUnsafeBytes(of: block.bigEndian) { Array($0) })
            var u = Array(first.finalize())
            var t = u
            for _ in 1..<iterations {
                u = Array(HMAC<SHA256>.authenticationCode(for: u, using: key))
                for i in 0..<t.count { t[i] ^= u[i] }
            }
            output.append(contentsOf: t.prefix(length - output.count))
            block += 1
        }
        return output
    }
}
