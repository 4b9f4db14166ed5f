import Crypto
import Foundation
import XCTest
@testable import Repository

final class EncryptionTests: XCTestCase {
    let chunk = 64 * 1024
    var scratch: ScratchDirectory!

    override func setUp() { scratch = ScratchDirectory() }
    override func tearDown() { scratch = nil }

    private func create(_ passphrase: String) throws -> Repository {
        try Repository.create(path: scratch.file("repo"),
                              options: RepositoryOptions(chunkSize: chunk, passphrase: passphrase, kdfIterations: 1000))
    }

    func testEncryptedRoundTripHidesContentAndNames() throws {
        let repo = try create("correct horse")
        let text = textBytes(3 * chunk, seed: 21)
        var rng = SeededBytes(seed: 22)
        let data = text + [UInt8](repeating: 0, count: 2 * chunk) + rng.bytes(chunk + 17)
        try backUp(repo, data, backup: "b1", scratch: scratch)

        let reopened = try Repository.open(path: scratch.file("repo"), passphrase: "correct horse")
        XCTAssertTrue(reopened.isEncrypted)
        XCTAssertEqual(try restored(reopened, backup: "b1", scratch: scratch), data)
        XCTAssertTrue(try reopened.verify().isHealthy)

        // Names are keyed: the plain SHA-256 of a chunk does not appear.
        let plainName = ChunkID(digest: SHA256.hash(data: text[0..<chunk])).hex
        let files = try chunkFiles(scratch.file("repo"))
        XCTAssertEqual(files.count, 5)
        XCTAssertFalse(files.contains { $0.hasSuffix(plainName) })
        // Content is sealed: the text's words appear in no object, manifests included.
        let needle = Array("lifeboat".utf8)
        for path in files + [scratch.file("repo/backups/b1"), scratch.file("repo/indexes/b1/vda")] {
            let bytes = try readFile(path)
            XCTAssertFalse(bytes.indices.dropLast(needle.count).contains { Array(bytes[$0..<$0 + needle.count]) == needle }, path)
        }
    }

    func testWrongOrMissingPassphraseIsAClearError() throws {
        _ = try create("right")
        XCTAssertThrowsError(try Repository.open(path: scratch.file("repo"), passphrase: "wrong")) { error in
            XCTAssertEqual(error as? RepositoryError, .wrongPassphrase)
        }
        XCTAssertThrowsError(try Repository.open(path: scratch.file("repo"))) { error in
            XCTAssertEqual(error as? RepositoryError, .passphraseRequired)
        }
    }

    func testTamperedEncryptedChunkFailsAuthentication() throws {
        let repo = try create("pw")
        try backUp(repo, textBytes(chunk, seed: 23), backup: "b", scratch: scratch)
        let path = try chunkFiles(scratch.file("repo"))[0]
        var bytes = try readFile(path)
        bytes[bytes.count - 20] ^= 4
        try writeFile(path, bytes)
        XCTAssertEqual(try repo.verify().damaged.map(\.problem), [.authenticationFailed])
    }

    /// RFC 7914 section 11 test vectors for PBKDF2-HMAC-SHA-256.
    func testPBKDF2MatchesRFC7914() {
        let one = PBKDF2.deriveKey(password: Array("passwd".utf8), salt: Array("salt".utf8), iterations: 1, length: 64)
        XCTAssertEqual(hex(one), "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783")
        let many = PBKDF2.deriveKey(password: Array("Password".utf8), salt: Array("NaCl".utf8), iterations: 80000, length: 64)
        XCTAssertEqual(hex(many), "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d")
    }

    private func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
}
