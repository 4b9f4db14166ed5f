import Foundation
import SSH
import XCTest

/// Logging in to the real sshd with each kind of credential, and being refused clearly.
final class AuthenticationTests: XCTestCase {
    func testEd25519Key() throws {
        let server = try TestServer.current()
        let session = try SSHSession(connectingTo: server.endpoint())
        XCTAssertEqual(session.hostKeyFingerprint, try server.hostKey("ed25519").fingerprint)
        XCTAssertFalse(session.hostKeyAddedOnFirstUse)
        let result = try session.run("id -un").check("id -un")
        XCTAssertEqual(String(decoding: result.stdout, as: UTF8.self), "root\n")
    }

    /// libssh2 1.10 signs with SHA-1 "ssh-rsa" only; the test sshd accepts it (see sshd.sh).
    func testRSAKey() throws {
        let server = try TestServer.current()
        let session = try SSHSession(connectingTo: server.endpoint(authentication: .publicKey(privateKeyFile: server.key("id_rsa"), passphrase: nil)))
        XCTAssertEqual(try session.run("echo rsa").stdout, Data("rsa\n".utf8))
    }

    func testPassphraseProtectedKey() throws {
        let server = try TestServer.current()
        let file = server.key("id_ed25519_protected")
        let session = try SSHSession(connectingTo: server.endpoint(authentication: .publicKey(privateKeyFile: file, passphrase: try server.passphrase)))
        XCTAssertEqual(try session.run("echo protected").status, 0)

        let error = sshError { try SSHSession(connectingTo: server.endpoint(authentication: .publicKey(privateKeyFile: file, passphrase: "not-the-passphrase"))) }
        guard case .authenticationFailed(let user, _, let reason)? = error else { return XCTFail("\(String(describing: error))") }
        XCTAssertEqual(user, "root")
        XCTAssertTrue(reason.contains(file), reason)
        XCTAssertFalse("\(error!)".contains("not-the-passphrase"))
    }

    func testPasswordForAnUnprivilegedUser() throws {
        let server = try TestServer.current()
        let endpoint = server.endpoint(user: server.passwordUser, authentication: .password(try server.password))
        let session = try SSHSession(connectingTo: endpoint)
        XCTAssertEqual(String(decoding: try session.run("id -un").stdout, as: UTF8.self), server.passwordUser + "\n")
    }

    func testWrongPasswordIsRefusedNamingTheOfferedMethods() throws {
        let server = try TestServer.current()
        let secret = "wrong-\(UUID().uuidString)"
        let error = sshError { try SSHSession(connectingTo: server.endpoint(user: server.passwordUser, authentication: .password(secret))) }
        guard case .authenticationFailed(let user, let host, let reason)? = error else { return XCTFail("\(String(describing: error))") }
        XCTAssertEqual(user, server.passwordUser)
        XCTAssertEqual(host, "[\(server.host)]:\(server.port)")
        XCTAssertTrue(reason.contains("publickey,password"), reason)
        XCTAssertFalse("\(error!)".contains(secret))
    }

    func testMissingKeyFileIsRefusedWithItsName() throws {
        let server = try TestServer.current()
        let error = sshError { try SSHSession(connectingTo: server.endpoint(authentication: .publicKey(privateKeyFile: "/nonexistent/id_ed25519", passphrase: nil))) }
        guard case .authenticationFailed(_, _, let reason)? = error else { return XCTFail("\(String(describing: error))") }
        XCTAssertTrue(reason.contains("/nonexistent/id_ed25519"), reason)
    }

    func testSecretsAreNeverPrinted() {
        let endpoint = SSHEndpoint(host: "h", user: "u", authentication: .password("hunter2-secret"), knownHostsFile: "/k")
        let keyed = SSHAuthentication.publicKey(privateKeyFile: "/k/id", passphrase: "passphrase-secret")
        var dumped = ""
        dump(endpoint, to: &dumped)
        dump(keyed, to: &dumped)
        for text in ["\(endpoint)", String(reflecting: endpoint), "\(keyed)", String(reflecting: keyed), dumped] {
            XCTAssertFalse(text.contains("hunter2-secret"), text)
            XCTAssertFalse(text.contains("passphrase-secret"), text)
        }
        XCTAssertTrue("\(keyed)".contains("/k/id"))
    }
}
