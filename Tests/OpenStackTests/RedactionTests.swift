import Foundation
import OpenStack
import XCTest

/// No token, password or key in what people see: descriptions, errors, log lines.
final class RedactionTests: XCTestCase {
    func testTypesThatHoldSecretsPrintWithoutThem() {
        let password = "correct horse battery staple"
        let configuration = CloudConfiguration(authURL: "https://k:5000/v3", username: "d\\u", password: Secret(password), projectName: "p")
        for text in ["\(configuration)", String(reflecting: configuration), dumped(configuration), "\(Secret(password))",
                     String(reflecting: Secret(password))] {
            XCTAssertFalse(text.contains(password), text)
        }
        XCTAssertTrue("\(configuration)".contains("u in domain d, project p"), "\(configuration)")

        let request = HTTPRequest(.get, URL(string: "https://nova/v2.1/servers?token=abc123xyz")!,
                                  headers: ["X-Auth-Token": "gAAAAAtokenvalue", "X-Subject-Token": "gAAAAAsubject", "Accept": "application/json"])
        for text in ["\(request)", String(reflecting: request), dumped(request), "\(request.headers)", dumped(request.headers)] {
            XCTAssertFalse(text.contains("gAAAAA") || text.contains("abc123xyz"), text)
        }
        XCTAssertTrue("\(request)".contains("Accept: application/json"), "\(request)")

        let key = KeyPair(name: "k", publicKey: "ssh-ed25519 AAAA", privateKey: Secret("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----"))
        for text in ["\(key)", String(reflecting: key), dumped(key)] { XCTAssertFalse(text.contains("b3Blbn"), text) }
    }

    func testErrorTextsLoseEchoedSecrets() {
        let body = #"{"auth": {"identity": {"password": {"user": {"name": "alice", "password": "p@ss\"word"}}}}, "X-Auth-Token: gAAAAAleak", "private_key": "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----"}"#
        let error = HTTPError.status(method: "POST", url: Redaction.url("http://u:pw@h/v3/auth/tokens?temp_url_sig=f00&x=1"),
                                     code: 400, body: Redaction.excerpt(Data(body.utf8)))
        let text = "\(error)"
        for secret in ["p@ss", "gAAAAAleak", "MIIE", ":pw@", "f00"] { XCTAssertFalse(text.contains(secret), "\(secret) in \(text)") }
        XCTAssertTrue(text.contains("http://u:<redacted>@h/v3/auth/tokens?temp_url_sig=<redacted>&x=1"), text)
        XCTAssertTrue(text.contains(#""name": "alice""#), "the rest stays readable: \(text)")

        let scrubbed = HTTPError.transfer(method: "GET", url: "http://h/", reason: "server said: bad token t0k3n-value")
            .scrubbing([Secret("t0k3n-value")])
        XCTAssertFalse("\(scrubbed)".contains("t0k3n-value"), "\(scrubbed)")
    }

    func testARealSessionLogsNeitherTokenNorPassword() throws {
        try TestOpenStack.require()
        let log = CapturedLog()
        let configuration = try TestOpenStack.configuration(cloud: "lifeboat-carol")
        let session = KeystoneSession(configuration: configuration, http: HTTPClient(logger: log.logger), logger: log.logger)
        try session.authenticate()
        let token = try XCTUnwrap(session.heldToken)
        let nova = try NovaClient(session: session)
        XCTAssertThrowsError(try nova.server("no-such-server")) { error in
            XCTAssertFalse("\(error)".contains(token.revealed))
        }
        XCTAssertFalse(log.all.isEmpty, "the client logged its requests")
        XCTAssertFalse(log.text.contains(token.revealed), log.text)
        XCTAssertFalse(log.text.contains(configuration.password.revealed), log.text)
        XCTAssertFalse("\(session.configuration)".contains(configuration.password.revealed))
        try session.revoke()
    }

    private func dumped(_ value: some Any) -> String {
        var text = ""
        dump(value, to: &text)
        return text
    }
}
