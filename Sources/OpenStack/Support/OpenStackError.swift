import Foundation

/// What went wrong above HTTP: credentials, the catalog, an answer that makes no sense, a
/// resource that did not reach the state asked for. Transport and status failures are
/// `HTTPError`s. Every description names the thing and never a secret.
public enum OpenStackError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The configuration is incomplete or contradicts itself (no auth URL, no cloud selected…).
    case configuration(String)
    /// Keystone refused the credentials (401): a wrong password, an unknown user or project, a
    /// disabled account. Not retried: trying again would only lock the account.
    case credentialsRefused(authURL: String, user: String, message: String)
    /// Keystone could not be asked, or its answer could not be used, for another reason.
    case authenticationFailed(authURL: String, user: String, reason: String)
    /// The catalog has no endpoint for this service, interface and region.
    case endpointNotFound(serviceType: String, interface: String, region: String?)
    /// A service's answer is not what its API defines (not JSON, a field missing).
    case invalidResponse(service: String, url: String, reason: String)
    /// The service does not offer the API microversion an operation needs.
    case microversionUnsupported(service: String, needed: String, available: String)
    /// A resource reached a failure state (`error`, `ERROR`) while it was waited for.
    case resourceFailed(kind: String, id: String, status: String, reason: String?)
    /// A resource is in a state that does not allow the operation (an image with no data yet).
    case unavailable(kind: String, id: String, status: String, reason: String)
    /// A resource did not reach the wanted state in time.
    case waitTimedOut(kind: String, id: String, wanted: String, lastStatus: String, seconds: Double)
    /// Downloaded bytes do not match the digest the service recorded for them.
    case checksumMismatch(what: String, algorithm: String, expected: String, actual: String)
    /// A local file of a download could not be written.
    case localFile(path: String, reason: String)
    /// Something the service was asked for is absent from its answer (a name that matches nothing).
    case notFound(kind: String, name: String)

    public var description: String {
        switch self {
        case .configuration(let text):
            "OpenStack configuration: \(text)"
        case .credentialsRefused(let url, let user, let message):
            "Keystone at \(url) refused the credentials of \(user): \(message)"
        case .authenticationFailed(let url, let user, let reason):
            "cannot authenticate \(user) with Keystone at \(url): \(reason)"
        case .endpointNotFound(let type, let interface, let region):
            "the service catalog has no \(interface) endpoint for \(type)\(region.map { " in region \($0)" } ?? "")"
        case .invalidResponse(let service, let url, let reason):
            "\(service) answered \(url) with something unusable: \(reason)"
        case .microversionUnsupported(let service, let needed, let available):
            "\(service) API microversion \(needed) is needed; the service offers \(available)"
        case .resourceFailed(let kind, let id, let status, let reason):
            "\(kind) \(id) went to status \(status)\(reason.map { ": \($0)" } ?? "")"
        case .unavailable(let kind, let id, let status, let reason):
            "\(kind) \(id) is \(status): \(reason)"
        case .waitTimedOut(let kind, let id, let wanted, let last, let seconds):
            "\(kind) \(id) did not become \(wanted) within \(Int(seconds)) s (last status \(last))"
        case .checksumMismatch(let what, let algorithm, let expected, let actual):
            "\(what): \(algorithm) of the received bytes is \(actual), the service recorded \(expected)"
        case .localFile(let path, let reason):
            "\(path): \(reason)"
        case .notFound(let kind, let name):
            "no \(kind) named \(name)"
        }
    }
}
