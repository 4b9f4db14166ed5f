import Foundation

/// A password or key: its text never appears in a description, a log line or a result.
public struct Secret: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    public let value: String
    public init(_ value: String) { self.value = value }
    public var description: String { "<redacted>" }
    public var debugDescription: String { "<redacted>" }

    /// Reads a secret from a file (trailing newline dropped), the way container platforms mount them.
    public static func fromFile(_ path: String) throws -> Secret {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        return Secret(String(text.trimmingSuffix(while: \.isNewline)))
    }
}

extension StringProtocol {
    func trimmingSuffix(while predicate: (Character) -> Bool) -> SubSequence {
        var end = endIndex
        while end > startIndex, predicate(self[index(before: end)]) { end = index(before: end) }
        return self[startIndex..<end]
    }
}

/// How to reach the broker.
public struct AMQPSettings: Sendable, CustomStringConvertible {
    public struct TLS: Sendable {
        /// The CA bundle the broker's certificate must chain to. Verification is always on
        /// unless `verifyPeer` is explicitly turned off (for a lab, never for a cloud).
        public var caCertificatePath: String
        public var clientCertificatePath: String?
        public var clientKeyPath: String?
        public var verifyPeer: Bool
        public var verifyHostname: Bool

        public init(caCertificatePath: String, clientCertificatePath: String? = nil, clientKeyPath: String? = nil,
                    verifyPeer: Bool = true, verifyHostname: Bool = true) {
            self.caCertificatePath = caCertificatePath
            self.clientCertificatePath = clientCertificatePath
            self.clientKeyPath = clientKeyPath
            self.verifyPeer = verifyPeer
            self.verifyHostname = verifyHostname
        }
    }

    public var host: String
    public var port: Int
    public var virtualHost: String
    public var username: String
    public var password: Secret
    public var tls: TLS?
    /// Seconds; both sides close a connection that is silent for twice this long.
    public var heartbeatSeconds: Int
    /// Seconds for TCP connect, TLS handshake and login together.
    public var connectTimeoutSeconds: Double
    /// Shown in the management UI, so an operator can tell the workers' connections apart.
    public var connectionName: String

    public init(host: String = "127.0.0.1", port: Int? = nil, virtualHost: String = "/", username: String = "guest",
                password: Secret = Secret("guest"), tls: TLS? = nil, heartbeatSeconds: Int = 30,
                connectTimeoutSeconds: Double = 10, connectionName: String = "lifeboat") {
        self.host = host
        self.port = port ?? (tls == nil ? 5672 : 5671)
        self.virtualHost = virtualHost
        self.username = username
        self.password = password
        self.tls = tls
        self.heartbeatSeconds = heartbeatSeconds
        self.connectTimeoutSeconds = connectTimeoutSeconds
        self.connectionName = connectionName
    }

    /// Reads `amqp://user:password@host:port/vhost` or `amqps://...` (the vhost percent-encoded,
    /// so `%2F` is `/`). A password given separately (from a file) wins over one in the URL, so
    /// the URL can live in plain configuration.
    public init(url: String, password: Secret? = nil, tls: TLS? = nil) throws {
        guard let components = URLComponents(string: url), let scheme = components.scheme,
              scheme == "amqp" || scheme == "amqps", let host = components.host, !host.isEmpty else {
            throw AMQPError.invalidSettings("\"\(AMQPSettings.redacting(url))\" is not an amqp:// or amqps:// URL")
        }
        var tls = tls
        if scheme == "amqps" && tls == nil {
            tls = TLS(caCertificatePath: "/etc/ssl/certs/ca-certificates.crt")
        }
        if scheme == "amqp" && tls != nil {
            throw AMQPError.invalidSettings("TLS options were given for a plain amqp:// URL; use amqps://")
        }
        let path = components.percentEncodedPath
        let vhost = path.isEmpty || path == "/" ? "/" : (String(path.dropFirst()).removingPercentEncoding ?? "/")
        self.init(host: host, port: components.port, virtualHost: vhost,
                  username: components.user?.removingPercentEncoding ?? "guest",
                  password: password ?? Secret(components.password?.removingPercentEncoding ?? "guest"), tls: tls)
    }

    public var description: String {
        "\(tls == nil ? "amqp" : "amqps")://\(username)@\(host):\(port)/\(virtualHost == "/" ? "%2F" : virtualHost)"
    }

    /// A URL as it may be logged: without its password.
    public static func redacting(_ url: String) -> String {
        guard var components = URLComponents(string: url), components.password != nil else { return url }
        components.password = "<redacted>"
        return components.string ?? "<unreadable URL>"
    }
}
