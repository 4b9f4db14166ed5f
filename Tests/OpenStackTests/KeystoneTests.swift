import Foundation
import OpenStack
import Synchronization
import XCTest

/// Keystone v3 against the project's OpenStack, plus a stand-in Keystone for the 500s and
/// garbage the real one does not answer.
final class KeystoneTests: XCTestCase {
    private func aliceConfiguration(username: String = "lifeboat-domain2\\alice", password: Secret? = nil) throws -> CloudConfiguration {
        CloudConfiguration(authURL: try XCTUnwrap(TestOpenStack.environment["OS_AUTH_URL"]), username: username,
                           password: try password ?? TestOpenStack.password("ALICE"), projectName: try TestOpenStack.value("ALICE_PROJECT"))
    }

    func testAliceLogsInWithTheDomainBackslashUserNameForm() throws {
        try TestOpenStack.require()
        let session = KeystoneSession(configuration: try aliceConfiguration())
        let details = try session.authenticate()
        XCTAssertEqual(details.user.id, try TestOpenStack.value("ALICE_USER_ID"))
        XCTAssertEqual(details.user.domain?.name, try TestOpenStack.value("DOMAIN2"))
        XCTAssertEqual(details.project?.id, try TestOpenStack.value("ALICE_PROJECT_ID"))
        XCTAssertEqual(details.project?.domain?.name, try TestOpenStack.value("DOMAIN2"), "the project is looked up in the user's domain")
        XCTAssertGreaterThan(details.expiresAt, Date())
        try session.revoke()
    }

    func testAliceLogsInThroughCloudsYAMLAndFindsEveryService() throws {
        let session = try TestOpenStack.session(cloud: "lifeboat-alice")
        let details = try session.authenticate()
        XCTAssertEqual(details.user.id, try TestOpenStack.value("ALICE_USER_ID"))
        XCTAssertEqual(details.project?.id, try TestOpenStack.value("ALICE_PROJECT_ID"))
        let base = Int(try TestOpenStack.value("PORT_BASE"))!
        let expected = ["image": base + 1, "placement": base + 2, "compute": base + 3, "volumev3": base + 4, "network": base + 5]
        for (type, port) in expected {
            XCTAssertEqual(try session.endpoint(for: type).port, port, type)
            XCTAssertEqual(try session.endpoint(for: type, interface: "internal", region: "RegionOne").port, port, type)
        }
        XCTAssertTrue(try session.endpoint(for: "volumev3").path.hasSuffix(try TestOpenStack.value("ALICE_PROJECT_ID")))
        XCTAssertThrowsError(try session.endpoint(for: "compute", region: "Atlantis")) { error in
            XCTAssertEqual(error as? OpenStackError, .endpointNotFound(serviceType: "compute", interface: "public", region: "Atlantis"))
        }
    }

    func testARevokedTokenIsRenewedOnTheNextCall() throws {
        try TestOpenStack.require()
        let admin = try TestOpenStack.admin()
        let session = KeystoneSession(configuration: try TestOpenStack.configuration(cloud: "lifeboat-alice"))
        try session.authenticate()
        let revoked = try XCTUnwrap(session.heldToken)
        let identity = try session.configuration.identityURL
        try admin.send(HTTPRequest(.delete, identity.appendingPathComponent("auth/tokens"), headers: ["X-Subject-Token": revoked.revealed]))

        let projects = try session.send(HTTPRequest(.get, identity.appendingPathComponent("auth/projects"), headers: ["Accept": "application/json"]))
        XCTAssertEqual(projects.status, 200)
        XCTAssertTrue(String(decoding: projects.body, as: UTF8.self).contains(try TestOpenStack.value("ALICE_PROJECT_ID")))
        XCTAssertNotEqual(session.heldToken, revoked, "the 401 made the session log in again")
        try session.revoke()
    }

    func testATokenCloseToExpiryIsRenewedBeforeUse() throws {
        try TestOpenStack.require()
        let configuration = try TestOpenStack.configuration(cloud: "lifeboat-bob")
        // Keystone's tokens here live 12 h: a margin of a day makes every token "about to expire".
        let eager = KeystoneSession(configuration: configuration, renewalMargin: 86_400)
        try eager.authenticate()
        let first = eager.heldToken
        try eager.authenticate()
        XCTAssertNotEqual(eager.heldToken, first)

        let normal = KeystoneSession(configuration: configuration)
        try normal.authenticate()
        let kept = normal.heldToken
        try normal.authenticate()
        XCTAssertEqual(normal.heldToken, kept, "a token far from expiry is reused")
        try eager.revoke()
        try normal.revoke()
    }

    /// Tokens of the second Keystone (`lifeboat-bob-short`) expire after
    /// `LIFEBOAT_TEST_OS_SHORT_TOKEN_SECONDS`: really expired tokens, refused by Nova.
    func testAnExpiredTokenIsRenewedBeforeUseOrWhenNovaRefusesIt() throws {
        try TestOpenStack.require()
        let lifetime = try XCTUnwrap(Double(try TestOpenStack.value("SHORT_TOKEN_SECONDS")))
        let configuration = try TestOpenStack.configuration(cloud: "lifeboat-bob-short")

        // A client whose clock runs an hour behind trusts its token past the expiry: Nova says
        // 401, and the session logs in again and repeats the call.
        let log = CapturedLog()
        let skewed = KeystoneSession(configuration: configuration, renewalMargin: -3600, logger: log.logger)
        let nova = try NovaClient(session: skewed)
        let first = try skewed.authenticate()
        XCTAssertLessThanOrEqual(first.expiresAt.timeIntervalSinceNow, lifetime + 1, "a short-lived token")
        _ = try nova.servers()
        let expired = try XCTUnwrap(skewed.heldToken)
        Thread.sleep(until: first.expiresAt.addingTimeInterval(2))
        XCTAssertNoThrow(try nova.servers(), "the expired token refused, renewed, the call repeated")
        XCTAssertNotEqual(skewed.heldToken, expired)
        XCTAssertTrue(log.text.contains("refused the token (401)"), log.text)

        // The normal case: a token about to expire (within the margin) is renewed before use.
        let quiet = CapturedLog()
        let session = KeystoneSession(configuration: configuration, renewalMargin: lifetime / 2, logger: quiet.logger)
        let token = try session.authenticate()
        let client = try NovaClient(session: session)
        _ = try client.servers()
        let held = session.heldToken
        Thread.sleep(until: token.expiresAt.addingTimeInterval(-lifetime / 2 + 1))
        XCTAssertNoThrow(try client.servers())
        XCTAssertNotEqual(session.heldToken, held, "renewed within the margin")
        XCTAssertFalse(quiet.text.contains("401"), "no call was refused: \(quiet.text)")
        try session.revoke()
    }

    func testAWrongPasswordIsRefusedOnceWithAClearError() throws {
        try TestOpenStack.require()
        let log = CapturedLog()
        let wrong = "not-alices-password-\(UUID().uuidString.prefix(6))"
        let session = KeystoneSession(configuration: try aliceConfiguration(password: Secret(wrong)), logger: log.logger)
        XCTAssertThrowsError(try session.authenticate()) { error in
            guard case .credentialsRefused(_, let user, let message) = error as? OpenStackError else { return XCTFail("\(error)") }
            XCTAssertEqual(user, "alice in domain lifeboat-domain2, project alice-project")
            XCTAssertTrue(message.contains("requires authentication"), message)
            XCTAssertFalse("\(error)".contains(wrong))
        }
        XCTAssertFalse(log.text.contains("attempt"), "a 401 is not retried: \(log.text)")
        XCTAssertFalse(log.text.contains(wrong))
    }

    func testMembershipDecidesWhoMayRestoreIntoAProject() throws {
        let admin = try TestOpenStack.admin()
        let bob = try TestOpenStack.value("BOB_USER_ID")
        XCTAssertTrue(try admin.isMember(user: bob, ofProject: try TestOpenStack.value("DEMO_PROJECT_ID")))
        XCTAssertTrue(try admin.isMember(user: bob, ofProject: try TestOpenStack.value("RESTORE_PROJECT_ID")))
        XCTAssertFalse(try admin.isMember(user: try TestOpenStack.value("CAROL_USER_ID"), ofProject: try TestOpenStack.value("RESTORE_PROJECT_ID")))
        XCTAssertFalse(try admin.isMember(user: try TestOpenStack.value("ALICE_USER_ID"), ofProject: try TestOpenStack.value("DEMO_PROJECT_ID")))
        XCTAssertTrue(try admin.roles(ofUser: try TestOpenStack.value("CAROL_USER_ID"), onProject: try TestOpenStack.value("DEMO_PROJECT_ID"))
            .contains("member"))
    }

    // MARK: Stand-in Keystone

    private func standInSession(_ server: StandInServer, log: CapturedLog, attempts: Int = 3) -> KeystoneSession {
        var options = HTTPClientOptions()
        options.retry = RetryPolicy(maxAttempts: attempts, initialDelay: 0.01, maxDelay: 0.05)
        return KeystoneSession(configuration: StandInKeystone.configuration(server), http: HTTPClient(options: options, logger: log.logger),
                               logger: log.logger)
    }

    func testKeystoneAnswering500IsRetriedABoundedNumberOfTimesThenFailsClearly() throws {
        let server = try StandInServer { _ in .json(500, #"{"error": {"code": 500, "message": "An unexpected error prevented the server from fulfilling your request."}}"#) }
        defer { server.stop() }
        let log = CapturedLog()
        XCTAssertThrowsError(try standInSession(server, log: log).authenticate()) { error in
            guard case .authenticationFailed(let url, _, let reason) = error as? OpenStackError else { return XCTFail("\(error)") }
            XCTAssertEqual(url, "\(server.url)/v3")
            XCTAssertTrue(reason.contains("500 Internal Server Error") && reason.contains("unexpected error"), reason)
            XCTAssertFalse("\(error)".contains("stand-in-password"))
        }
        XCTAssertEqual(server.requests.count, 3)
        XCTAssertTrue(server.requests.allSatisfy { $0.method == "POST" && $0.path == "/v3/auth/tokens" })
        XCTAssertFalse(log.text.contains("stand-in-password"), log.text)
    }

    func testKeystoneAnsweringGarbageFailsClearly() throws {
        let html = try StandInServer { _ in .respond(status: 201, headers: ["X-Subject-Token": "t0ken-abcdef"], body: Data("<html>proxy error</html>".utf8)) }
        defer { html.stop() }
        XCTAssertThrowsError(try standInSession(html, log: CapturedLog()).authenticate()) { error in
            guard case .authenticationFailed(_, _, let reason) = error as? OpenStackError else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("not a Keystone token (not JSON)"), reason)
            XCTAssertFalse("\(error)".contains("t0ken-abcdef"))
        }
        XCTAssertEqual(html.requests.count, 1, "garbage is not worth asking for again")

        let headless = try StandInServer { _ in .json(201, #"{"token": {}}"#) }
        defer { headless.stop() }
        XCTAssertThrowsError(try standInSession(headless, log: CapturedLog()).authenticate()) { error in
            XCTAssertTrue("\(error)".contains("no X-Subject-Token"), "\(error)")
        }

        let partial = try StandInServer { _ in .json(201, #"{"token": {"user": {"id": "u"}}}"#, headers: ["X-Subject-Token": "t"]) }
        defer { partial.stop() }
        XCTAssertThrowsError(try standInSession(partial, log: CapturedLog()).authenticate()) { error in
            XCTAssertTrue("\(error)".contains("token.expires_at is missing"), "\(error)")
        }
    }

    func testManyThreadsShareOneLoginAndA401RenewsOnce() throws {
        let refuseNext = Mutex(false)
        let server = try StandInServer { request in
            if request.path == "/v3/auth/tokens" { return StandInKeystone.token(catalogURL: "http://127.0.0.1:1") }
            return refuseNext.withLock { refuse in
                defer { refuse = false }
                return refuse ? .json(401, #"{"error": {"message": "The request you have made requires authentication."}}"#) : .json(200, "{}")
            }
        }
        defer { server.stop() }
        let session = standInSession(server, log: CapturedLog())
        let url = URL(string: "\(server.url)/anything")!
        let failures = Mutex(0)
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            do { try session.send(HTTPRequest(.get, url)) } catch { failures.withLock { $0 += 1 } }
        }
        XCTAssertEqual(failures.withLock { $0 }, 0)
        XCTAssertEqual(server.requests.filter { $0.path == "/v3/auth/tokens" }.count, 1, "eight threads, one login")
        XCTAssertTrue(server.requests.filter { $0.path == "/anything" }.allSatisfy { $0.headers["x-auth-token"] == "stand-in-token-0123456789" })

        refuseNext.withLock { $0 = true }
        XCTAssertEqual(try session.send(HTTPRequest(.get, url)).status, 200)
        XCTAssertEqual(server.requests.filter { $0.path == "/v3/auth/tokens" }.count, 2, "the 401 cost one more login")
    }
}
