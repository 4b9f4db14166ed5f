import Foundation
import Logging
import Synchronization

/// A logged-in identity for the OpenStack clients: password authentication scoped to a
/// project (Keystone v3), the token kept with its expiry and catalog, and every request sent
/// with it. Thread-safe: one session serves all threads of a worker.
///
/// A token is renewed before use once it is within `renewalMargin` of its expiry, and once
/// more when a service answers 401 (a token revoked early), so a long-running worker never
/// sees an expired token. Only one thread logs in at a time; the others wait for its token.
/// Tokens and the password are never logged and never part of an error.
public final class KeystoneSession: Sendable {
    public let configuration: CloudConfiguration
    public let http: HTTPClient
    /// Seconds before expiry at which a token is renewed instead of used.
    public let renewalMargin: Double
    private let logger: Logger
    private let held = Mutex<HeldToken?>(nil)
    /// Serialises logins, so that many threads finding the token stale log in once.
    private let loggingIn = Mutex<Void>(())

    struct HeldToken: Sendable {
        let token: Secret
        let details: TokenDetails
    }

    /// - Parameters:
    ///   - http: the client to use; by default one with the configuration's TLS settings.
    ///   - renewalMargin: renew this long before expiry (Keystone's tokens last an hour by default).
    public init(configuration: CloudConfiguration, http: HTTPClient? = nil, renewalMargin: Double = 300,
                logger: Logger = Logger(label: "lifeboat.openstack")) {
        self.configuration = configuration
        var options = HTTPClientOptions()
        options.tls = configuration.tls
        self.http = http ?? HTTPClient(options: options, logger: logger)
        self.renewalMargin = renewalMargin
        self.logger = logger
    }

    /// The current token's details (user, project, roles, expiry, catalog), logging in first
    /// when no valid token is held.
    @discardableResult
    public func authenticate() throws -> TokenDetails { try validToken(replacing: nil).details }

    /// Where `serviceType` answers, on the configured interface and region unless given.
    public func endpoint(for serviceType: String, interface: String? = nil, region: String? = nil) throws -> URL {
        let catalog = try validToken(replacing: nil).details.catalog ?? ServiceCatalog(services: [])
        return try catalog.endpoint(for: serviceType, interface: interface ?? configuration.interface,
                                    region: region ?? configuration.regionName)
    }

    /// Sends `request` with the token (answer in memory), renewing the token once on a 401.
    @discardableResult
    public func send(_ request: HTTPRequest) throws -> HTTPResponse {
        try authorized(request) { try http.send($0) }
    }

    /// Sends `request` with the token and streams a successful answer's body to `sink` (see
    /// `HTTPClient.send(_:streamingBodyTo:)`).
    @discardableResult
    public func send(_ request: HTTPRequest, streamingBodyTo sink: (UnsafeRawBufferPointer) throws -> Void) throws -> HTTPResponse {
        try authorized(request) { try http.send($0, streamingBodyTo: sink) }
    }

    /// The same user's session scoped to another project (by id), sharing this session's HTTP
    /// client: what acting in a restore's target project takes. Keystone refuses it (401) when
    /// the user has no role there.
    public func scoped(toProject projectID: String) -> KeystoneSession {
        var configuration = self.configuration
        configuration.projectID = projectID
        configuration.projectName = nil
        configuration.projectDomainID = nil
        configuration.projectDomainName = nil
        return KeystoneSession(configuration: configuration, http: http, renewalMargin: renewalMargin, logger: logger)
    }

    /// Revokes the held token (logging out), e.g. when a worker stops.
    public func revoke() throws {
        guard let current = held.withLock({ $0 }) else { return }
        var request = HTTPRequest(.delete, try configuration.identityURL.appendingPathComponent("auth/tokens"))
        request.headers["X-Auth-Token"] = current.token.revealed
        request.headers["X-Subject-Token"] = current.token.revealed
        held.withLock { if $0?.token == current.token { $0 = nil } }
        do { _ = try http.send(request) } catch let error as HTTPError { throw error.scrubbing([current.token]) }
    }

    /// The token held now, for tests that revoke it behind the session's back.
    package var heldToken: Secret? { held.withLock { $0?.token } }

    // MARK: Tokens

    private func authorized(_ request: HTTPRequest, _ perform: (HTTPRequest) throws -> HTTPResponse) throws -> HTTPResponse {
        var current = try validToken(replacing: nil)
        var request = request
        request.headers["X-Auth-Token"] = current.token.revealed
        do {
            return try perform(request)
        } catch let error as HTTPError where error.statusCode == 401 {
            logger.notice("\(request.redactedTarget) refused the token (401); authenticating again")
            current = try validToken(replacing: current.token)
            request.headers["X-Auth-Token"] = current.token.revealed
            do { return try perform(request) } catch let error as HTTPError {
                throw error.scrubbing([current.token, configuration.password])
            }
        } catch let error as HTTPError {
            throw error.scrubbing([current.token, configuration.password])
        }
    }

    /// A token that is not `stale` and not about to expire: the held one, or a new one.
    private func validToken(replacing stale: Secret?) throws -> HeldToken {
        func usable(_ token: HeldToken?) -> HeldToken? {
            guard let token, token.token != stale, token.details.expiresAt.timeIntervalSinceNow > renewalMargin else { return nil }
            return token
        }
        if let token = usable(held.withLock({ $0 })) { return token }
        return try loggingIn.withLock { _ in
            if let token = usable(held.withLock({ $0 })) { return token }
            let fresh = try requestToken()
            held.withLock { $0 = fresh }
            return fresh
        }
    }

    /// `POST /v3/auth/tokens` with the password method, scoped to the configured project.
    private func requestToken() throws -> HeldToken {
        let identity = try configuration.identityURL
        let authURL = identity.absoluteString
        let principal = configuration.principal
        var request = try HTTPRequest.json(.post, identity.appendingPathComponent("auth/tokens"), PasswordAuthentication(configuration))
        // Asking for a token changes nothing on the server: safe to repeat after a 5xx.
        request.retryable = true
        let response: HTTPResponse
        do {
            response = try http.send(request)
        } catch let error as HTTPError {
            let clean = error.scrubbing([configuration.password])
            if case .status(_, _, 401, let body) = clean {
                throw OpenStackError.credentialsRefused(authURL: authURL, user: principal, message: KeystoneMessage.extract(body))
            }
            throw OpenStackError.authenticationFailed(authURL: authURL, user: principal, reason: clean.description)
        }
        guard let token = response.headers["X-Subject-Token"], !token.isEmpty else {
            throw OpenStackError.authenticationFailed(authURL: authURL, user: principal,
                                                      reason: "the answer (\(response.status)) carries no X-Subject-Token header")
        }
        struct Envelope: Decodable { let token: TokenDetails }
        let details: TokenDetails
        do { details = try JSONDecoder().decode(Envelope.self, from: response.body).token } catch {
            throw OpenStackError.authenticationFailed(authURL: authURL, user: principal,
                                                      reason: "the answer is not a Keystone token (\(DecodingProblem.describe(error)))")
        }
        logger.debug("authenticated \(principal) at \(authURL), token expires \(KeystoneTime.format(details.expiresAt))")
        return HeldToken(token: Secret(token), details: details)
    }
}

/// Keystone's own explanation in an error body (`{"error": {"message": …}}`), or the excerpt.
enum KeystoneMessage {
    static func extract(_ body: String) -> String {
        struct Envelope: Decodable {
            struct Inner: Decodable { let message: String? }
            let error: Inner?
        }
        if let envelope = try? JSONDecoder().decode(Envelope.self, from: Data(body.utf8)), let message = envelope.error?.message {
            return message
        }
        return body.isEmpty ? "no explanation given" : body
    }
}
