import Foundation

/// A request that failed at the HTTP level, saying what was asked (method and URL, secrets
/// taken out of the URL) and what happened. Status failures carry a trimmed, redacted excerpt
/// of the body, which is where OpenStack services explain themselves.
public enum HTTPError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The client could not be set up (libcurl failed to initialise, a bad option).
    case curl(String)
    /// No connection, or the connection broke: refused, unknown host, reset, closed mid-body.
    case connection(method: String, url: String, reason: String)
    /// Nothing (or too little) arrived in time: the connect, stall or overall timeout.
    case timedOut(method: String, url: String, reason: String)
    /// TLS failed: the certificate could not be verified, the CA bundle could not be read.
    case tls(method: String, url: String, reason: String)
    /// The server answered with a 4xx or 5xx status.
    case status(method: String, url: String, code: Int, body: String)
    /// An answer larger than the client keeps in memory (use a streamed response instead).
    case responseTooLarge(method: String, url: String, limit: Int)
    /// Any other libcurl failure (a malformed URL, an unsupported scheme, a missing file://).
    case transfer(method: String, url: String, reason: String)

    /// The HTTP status, when the server answered with an error status.
    public var statusCode: Int? {
        if case .status(_, _, let code, _) = self { return code }
        return nil
    }

    public var description: String {
        switch self {
        case .curl(let text):
            return "HTTP client: \(text)"
        case .connection(let method, let url, let reason):
            return "\(method) \(url): connection failed: \(reason)"
        case .timedOut(let method, let url, let reason):
            return "\(method) \(url): timed out: \(reason)"
        case .tls(let method, let url, let reason):
            return "\(method) \(url): TLS failed: \(reason)"
        case .status(let method, let url, let code, let body):
            let reason = HTTPError.reasonPhrases[code].map { " \($0)" } ?? ""
            return "\(method) \(url): \(code)\(reason)" + (body.isEmpty ? "" : ": \(body)")
        case .responseTooLarge(let method, let url, let limit):
            return "\(method) \(url): the response exceeds \(limit) bytes kept in memory"
        case .transfer(let method, let url, let reason):
            return "\(method) \(url): \(reason)"
        }
    }

    /// The phrases of the statuses OpenStack services send, for messages people read.
    static let reasonPhrases: [Int: String] = [
        400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
        406: "Not Acceptable", 409: "Conflict", 410: "Gone", 413: "Request Entity Too Large",
        415: "Unsupported Media Type", 416: "Range Not Satisfiable", 429: "Too Many Requests",
        500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
        504: "Gateway Timeout",
    ]
}

extension HTTPError {
    /// The same error with every occurrence of `secrets` removed from its text: a last guard
    /// for servers that echo a token or password back in an error body.
    public func scrubbing(_ secrets: [Secret]) -> HTTPError {
        func clean(_ text: String) -> String { Redaction.text(text, known: secrets) }
        switch self {
        case .curl(let text): return .curl(clean(text))
        case .connection(let method, let url, let reason): return .connection(method: method, url: clean(url), reason: clean(reason))
        case .timedOut(let method, let url, let reason): return .timedOut(method: method, url: clean(url), reason: clean(reason))
        case .tls(let method, let url, let reason): return .tls(method: method, url: clean(url), reason: clean(reason))
        case .status(let method, let url, let code, let body): return .status(method: method, url: clean(url), code: code, body: clean(body))
        case .responseTooLarge(let method, let url, let limit): return .responseTooLarge(method: method, url: clean(url), limit: limit)
        case .transfer(let method, let url, let reason): return .transfer(method: method, url: clean(url), reason: clean(reason))
        }
    }
}
