import Crypto
import Foundation
import SSH
import XCTest

/// The sshd the tests talk to: the real OpenSSH server that `scripts/sshd.sh` starts on
/// loopback (`scripts/test.sh` does it, and exports these variables).
struct TestServer {
    let host: String
    let port: Int
    /// The server's directory: host keys, known_hosts, password, log.
    let directory: String
    /// The unprivileged user that logs in with a password.
    let passwordUser: String
    /// The client keys: id_ed25519, id_rsa, id_ed25519_protected (+ passphrase).
    let keys: String

    static func current() throws -> TestServer {
        let environment = ProcessInfo.processInfo.environment
        guard let port = environment["LIFEBOAT_TEST_SSHD_PORT"].flatMap(Int.init),
              let directory = environment["LIFEBOAT_TEST_SSHD_DIR"],
              let keys = environment["LIFEBOAT_TEST_SSH_KEYS"]
        else {
            // scripts/test.sh sets LIFEBOAT_STRICT_TESTS: there a missing sshd is a failure.
            if environment["LIFEBOAT_STRICT_TESTS"] != nil {
                throw SSHError.library("LIFEBOAT_TEST_SSHD_PORT, _DIR or LIFEBOAT_TEST_SSH_KEYS is not set")
            }
            throw XCTSkip("the test sshd is not configured: run the tests through scripts/test.sh, or `eval \"$(scripts/sshd.sh env)\"` after `scripts/sshd.sh start`")
        }
        return TestServer(
            host: environment["LIFEBOAT_TEST_SSHD_HOST"] ?? "127.0.0.1", port: port, directory: directory,
            passwordUser: environment["LIFEBOAT_TEST_SSHD_USER"] ?? "lifeboat-test", keys: keys)
    }

    var knownHosts: String { directory + "/known_hosts" }
    var password: String { get throws { try contents(directory + "/password") } }
    var passphrase: String { get throws { try contents(keys + "/passphrase") } }
    func key(_ name: String) -> String { keys + "/" + name }

    func endpoint(
        user: String = "root", authentication: SSHAuthentication? = nil, knownHosts: String? = nil,
        trustOnFirstUse: Bool = false, operationTimeout: Double = 30, keepalive: Int = 15
    ) -> SSHEndpoint {
        SSHEndpoint(
            host: host, port: port, user: user,
            authentication: authentication ?? .publicKey(privateKeyFile: key("id_ed25519"), passphrase: nil),
            knownHostsFile: knownHosts ?? self.knownHosts, trustOnFirstUse: trustOnFirstUse,
            connectTimeoutSeconds: 5, operationTimeoutSeconds: operationTimeout, keepaliveSeconds: keepalive)
    }

    /// The known_hosts line OpenSSH would write for one of the server's host keys
    /// ("ed25519", "rsa"), and that key's SHA-256 fingerprint.
    func hostKey(_ type: String) throws -> (line: String, fingerprint: String) {
        let fields = try contents("\(directory)/ssh_host_\(type)_key.pub").split(separator: " ")
        let blob = try XCTUnwrap(Data(base64Encoded: String(fields[1])))
        let digest = Data(SHA256.hash(data: blob)).base64EncodedString().replacingOccurrences(of: "=", with: "")
        return ("[\(host)]:\(port) \(fields[0]) \(fields[1])", "SHA256:" + digest)
    }

    /// How many authentications (accepted or failed) the server has logged so far.
    func loggedAuthentications() throws -> Int {
        try contents(directory + "/sshd.log").split(separator: "\n")
            .filter { $0.contains("Accepted ") || $0.contains("Failed ") }.count
    }

    private func contents(_ path: String) throws -> String {
        try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// A fresh directory for one test's files, removed at the end of the test.
func temporaryDirectory(_ test: XCTestCase) throws -> String {
    let path = NSTemporaryDirectory() + "lifeboat-ssh-" + UUID().uuidString.prefix(8)
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
    return path
}

/// Runs a local program (ssh-keygen, OpenSSH's ssh) and returns its status and stdout.
@discardableResult
func runLocal(_ path: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    let output = Pipe()
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Catches the `SSHError` that `body` throws, failing the test if it throws nothing or
/// something else.
func sshError<T>(_ body: () throws -> T, file: StaticString = #filePath, line: UInt = #line) -> SSHError? {
    do {
        _ = try body()
        XCTFail("no error was thrown", file: file, line: line)
    } catch let error as SSHError {
        return error
    } catch {
        XCTFail("not an SSHError: \(error)", file: file, line: line)
    }
    return nil
}
