import Crypto

/// PBKDF2-HMAC-SHA-256 (RFC 8018) built on swift-crypto's `Crypto` product, which the
/// Repository target depends on; swift-crypto's own PBKDF2 lives in `_CryptoExtras`, an
/// underscored product this target does not link. Checked against RFC 7914's test vectors.
///
/// HMAC is computed from SHA-256 states pre-loaded with the padded key (copied per
/// iteration), which is what makes 600 000 iterations take a fraction of a second.
enum PBKDF2 {
    static func deriveKey(password: [UInt8], salt: [UInt8], iterations: Int, length: Int) -> [UInt8] {
        precondition(iterations >= 1 && length >= 1)
        var key = password.count > 64 ? Array(SHA256.hash(data: password)) : password
        key += [UInt8](repeating: 0, count: 64 - key.count)
        var inner = SHA256()
        inner.update(data: key.map { $0 ^ 0x36 })
        var outer = SHA256()
        outer.update(data: key.map { $0 ^ 0x5C })

        func prf(_ message: UnsafeRawBufferPointer) -> SHA256.Digest {
            var i = inner
            i.update(bufferPointer: message)
            let innerDigest = i.finalize()
            var o = outer
            innerDigest.withUnsafeBytes { o.update(bufferPointer: $0) }
            return o.finalize()
        }

        var output: [UInt8] = []
        output.reserveCapacity(length)
        var block: UInt32 = 1
        while output.count < length {
            var u = (salt + withUnsafeBytes(of: block.bigEndian) { Array($0) }).withUnsafeBytes { prf($0) }
            var t = Array(u)
            for _ in 1..<iterations {
                u = u.withUnsafeBytes { prf($0) }
                u.withUnsafeBytes { bytes in
                    for i in 0..<t.count { t[i] ^= bytes[i] }
                }
            }
            output.append(contentsOf: t.prefix(length - output.count))
            block += 1
        }
        return output
    }
}
