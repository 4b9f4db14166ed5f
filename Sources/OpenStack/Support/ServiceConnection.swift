import Foundation

/// One OpenStack service's API as the typed clients use it: paths under the service's base URL,
/// JSON in and out through the session (token, retries, renewal), extra headers such as the
/// negotiated microversion, and answers that do not decode reported as `invalidResponse`.
struct ServiceConnection: Sendable {
    let session: KeystoneSession
    /// The service's name for messages: "Nova", "Glance"…
    let service: String
    let base: URL
    var headers: HTTPHeaders = ["Accept": "application/json"]

    /// `path` (starting with "/") under the base URL, with a query.
    func url(_ path: String, _ query: [(String, String?)] = []) throws -> URL {
        var text = base.absoluteString
        while text.hasSuffix("/") { text.removeLast() }
        guard let url = URL(string: text + path) else {
            throw OpenStackError.configuration("cannot build a \(service) URL for \(path)")
        }
        return try QueryString.url(url, query)
    }

    func request(_ method: HTTPMethod, _ path: String, _ query: [(String, String?)] = []) throws -> HTTPRequest {
        HTTPRequest(method, try url(path, query), headers: headers)
    }

    func request(_ method: HTTPMethod, _ path: String, _ query: [(String, String?)] = [], json body: some Encodable) throws -> HTTPRequest {
        try HTTPRequest.json(method, try url(path, query), body, headers: headers)
    }

    /// GET `path` and decode the answer.
    func get<T: Decodable>(_ path: String, _ query: [(String, String?)] = [], as type: T.Type) throws -> T {
        try send(try request(.get, path, query), as: type)
    }

    func send<T: Decodable>(_ request: HTTPRequest, as type: T.Type) throws -> T {
        try decode(type, from: try session.send(request), for: request.url)
    }

    @discardableResult
    func send(_ request: HTTPRequest) throws -> HTTPResponse { try session.send(request) }

    /// DELETE `path`; an answer of 404 means it is gone already, which is what was wanted.
    /// Returns whether there was something to delete.
    @discardableResult
    func delete(_ path: String, _ query: [(String, String?)] = []) throws -> Bool {
        do {
            try session.send(try request(.delete, path, query))
            return true
        } catch let error as HTTPError where error.statusCode == 404 {
            return false
        }
    }

    func decode<T: Decodable>(_ type: T.Type, from response: HTTPResponse, for url: URL) throws -> T {
        do { return try JSONDecoder().decode(type, from: response.body) } catch {
            throw OpenStackError.invalidResponse(service: service, url: Redaction.url(url.absoluteString),
                                                 reason: DecodingProblem.describe(error))
        }
    }

    /// The absolute URL of a `next` link: services give it absolute (Nova, Cinder) or as a
    /// path under their base URL (Glance's `/v2/images?marker=…`).
    func follow(_ link: String) throws -> URL {
        if let url = URL(string: link), url.scheme != nil { return url }
        var text = base.absoluteString
        while text.hasSuffix("/") { text.removeLast() }
        guard let url = URL(string: text + (link.hasPrefix("/") ? link : "/" + link)) else {
            throw OpenStackError.invalidResponse(service: service, url: Redaction.url(base.absoluteString), reason: "bad next link")
        }
        return url
    }
}

/// `{"rel": "next", "href": …}` in the `*_links` of a paginated list.
struct Link: Decodable, Sendable {
    let rel: String
    let href: String
}
