import Foundation

/// An answer: status, headers, and the body when it was kept in memory (empty when it was
/// streamed to a sink).
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: Data
    /// Connections opened for this exchange: 0 when an open one was reused, 1 when the server
    /// had closed the last one (uwsgi's `Connection: close`) or none was open.
    public var newConnections: Int

    public init(status: Int, headers: HTTPHeaders, body: Data, newConnections: Int = 0) {
        self.status = status
        self.headers = headers
        self.body = body
        self.newConnections = newConnections
    }
}
