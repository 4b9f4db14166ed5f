import Foundation
import SSH
import XCTest

/// known_hosts checks against the real sshd, which has an ed25519 and an RSA host key.
final class HostKeyTests: XCTestCase {
    func testUnknownHostIsRefusedWithoutTrustOnFirstUse() throws {
        let server = try TestServer.current()
        let file = try temporaryDirectory(self) + "/known_hosts"
        let error = sshError { try SSHSession(connectingTo: server.endpoint(knownHosts: file)) }
        guard case .hostKeyUnknown(let host, let port, let fingerprint, let knownHosts)? = error else { return XCTFail("\(String(describing: error))") }
        XCTAssertEqual(host, server.host)
        XCTAssertEqual(port, server.port)
        XCTAssertEqual(fingerprint, try server.hostKey("ed25519").fingerprint)
        XCTAssertEqual(knownHosts, file)
        XCTAssertFalse(FileManager.default.fileExists(atPath: file), "nothing may be written without trust on first use")
    }

    func testTrustOnFirstUseAppendsOneLineThatOpenSSHAccepts() throws {
        let server = try TestServer.current()
        let file = try temporaryDirectory(self) + "/known_hosts"
        try "# hosts met before\nother.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl".write(toFile: file, atomically: true, encoding: .utf8)

        let first = try SSHSession(connectingTo: server.endpoint(knownHosts: file, trustOnFirstUse: true))
        XCTAssertTrue(first.hostKeyAddedOnFirstUse)
        XCTAssertEqual(first.hostKeyFingerprint, try server.hostKey("ed25519").fingerprint)
        let lines = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 3)
        XCTAssertEqual(String(lines[2]), try server.hostKey("ed25519").line)

        let second = try SSHSession(connectingTo: server.endpoint(knownHosts: file, trustOnFirstUse: true))
        XCTAssertFalse(second.hostKeyAddedOnFirstUse)
        XCTAssertEqual(try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n").count, 3)

        // OpenSSH's own client trusts what was written.
        let ssh = try runLocal("/usr/bin/ssh", [
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=\(file)",
            "-o", "HostKeyAlgorithms=ssh-ed25519", "-i", server.key("id_ed25519"), "-p", "\(server.port)",
            "root@\(server.host)", "true",
        ])
        XCTAssertEqual(ssh.status, 0)
    }

    /// Worker processes meeting a new host at the same time: one line between them.
    func testConcurrentTrustOnFirstUseWritesOneLine() throws {
        let server = try TestServer.current()
        let file = try temporaryDirectory(self) + "/known_hosts"
        let endpoint = server.endpoint(knownHosts: file, trustOnFirstUse: true)
        let added = Counter()
        DispatchQueue.concurrentPerform(iterations: 6) { _ in
            do {
                if try SSHSession(connectingTo: endpoint).hostKeyAddedOnFirstUse { added.increment() }
            } catch {
                XCTFail("\(error)")
            }
        }
        XCTAssertEqual(try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n").count, 1)
        XCTAssertEqual(added.value, 1)
    }

    func testChangedKeyIsRefusedBeforeAuthentication() throws {
        let server = try TestServer.current()
        let file = try temporaryDirectory(self) + "/known_hosts"
        // Another ed25519 key recorded for this host and port: the client's own public key will do.
        let otherKey = try String(contentsOfFile: server.key("id_ed25519.pub"), encoding: .utf8).split(separator: " ")[1]
        try "[\(server.host)]:\(server.port) ssh-ed25519 \(otherKey)\n".write(toFile: file, atomically: true, encoding: .utf8)
        let before = try server.loggedAuthentications()

        for trust in [false, true] {
            let endpoint = server.endpoint(user: server.passwordUser, authentication: .password(try server.password), knownHosts: file, trustOnFirstUse: trust)
            let error = sshError { try SSHSession(connectingTo: endpoint) }
            guard case .hostKeyChanged(_, _, let fingerprint, _)? = error else { return XCTFail("\(String(describing: error))") }
            XCTAssertEqual(fingerprint, try server.hostKey("ed25519").fingerprint)
            let message = "\(error!)"
            XCTAssertTrue(message.contains("REFUSED") && message.contains("CHANGED") && message.contains("man-in-the-middle"), message)
        }
        XCTAssertEqual(try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n").count, 1, "a changed key is never appended")
        usleep(200_000)  // sshd's log line for a connection may trail its close
        XCTAssertEqual(try server.loggedAuthentications(), before, "no authentication was attempted")
    }

    /// known_hosts knows the host only by a key type the server does not offer: the key the
    /// server does show is not "new", it is a change.
    func testKeyOfAnUnrecordedTypeIsAChange() throws {
        let server = try TestServer.current()
        let directory = try temporaryDirectory(self)
        XCTAssertEqual(try runLocal("/usr/bin/ssh-keygen", ["-q", "-t", "ecdsa", "-N", "", "-f", directory + "/ecdsa"]).status, 0)
        let ecdsa = try String(contentsOfFile: directory + "/ecdsa.pub", encoding: .utf8).split(separator: " ")
        let file = directory + "/known_hosts"
        try "[\(server.host)]:\(server.port) \(ecdsa[0]) \(ecdsa[1])\n".write(toFile: file, atomically: true, encoding: .utf8)
        let error = sshError { try SSHSession(connectingTo: server.endpoint(knownHosts: file, trustOnFirstUse: true)) }
        guard case .hostKeyChanged? = error else { return XCTFail("\(String(describing: error))") }
    }

    /// The server has ed25519 and RSA keys; known_hosts only the RSA one. The session must ask
    /// for RSA (not look "changed" because ed25519 is libssh2's favourite).
    func testTheKnownKeyTypeIsPreferred() throws {
        let server = try TestServer.current()
        let file = try temporaryDirectory(self) + "/known_hosts"
        let rsa = try server.hostKey("rsa")
        try (rsa.line + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        let session = try SSHSession(connectingTo: server.endpoint(knownHosts: file))
        XCTAssertEqual(session.hostKeyFingerprint, rsa.fingerprint)
    }

    func testHashedEntriesMatch() throws {
        let server = try TestServer.current()
        let file = try temporaryDirectory(self) + "/known_hosts"
        try (server.hostKey("ed25519").line + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        XCTAssertEqual(try runLocal("/usr/bin/ssh-keygen", ["-H", "-f", file]).status, 0)
        XCTAssertTrue(try String(contentsOfFile: file, encoding: .utf8).hasPrefix("|1|"))
        let session = try SSHSession(connectingTo: server.endpoint(knownHosts: file))
        XCTAssertFalse(session.hostKeyAddedOnFirstUse)
    }

    /// Lines libssh2 cannot parse (a CA marker, an unknown key type) do not hide later hosts.
    func testUnparsableLinesAreSkipped() throws {
        let server = try TestServer.current()
        let file = try temporaryDirectory(self) + "/known_hosts"
        let text = """
            @cert-authority *.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl
            sk.example sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIA==
            \(try server.hostKey("ed25519").line)

            """
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        XCTAssertNoThrow(try SSHSession(connectingTo: server.endpoint(knownHosts: file)))
    }

    func testClosedPortFailsQuickly() throws {
        // A port that was free a moment ago: bind one, note it, let it go.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let port = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw -> Int in
                _ = bind(fd, raw, length)
                _ = getsockname(fd, raw, &length)
                return Int(UInt16(bigEndian: pointer.pointee.sin_port))
            }
        }
        close(fd)
        let endpoint = SSHEndpoint(host: "127.0.0.1", port: port, user: "root", authentication: .password("x"), knownHostsFile: "/nonexistent")
        let started = Date()
        let error = sshError { try SSHSession(connectingTo: endpoint) }
        guard case .connectFailed(let host, let failedPort, let reason)? = error else { return XCTFail("\(String(describing: error))") }
        XCTAssertEqual(host, "127.0.0.1")
        XCTAssertEqual(failedPort, port)
        XCTAssertTrue(reason.contains("refused"), reason)
        XCTAssertLessThan(Date().timeIntervalSince(started), 2)
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() { lock.withLock { count += 1 } }
    var value: Int { lock.withLock { count } }
}
