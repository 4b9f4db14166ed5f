import Foundation

/// How an `HTTPClient` connects and how patient it is.
public struct HTTPClientOptions: Sendable, Equatable {
    /// Seconds to establish a connection (TCP and TLS).
    public var connectTimeout: Double = 10
    /// Seconds a transfer may move less than one byte per second before it is given up: what
    /// ends a transfer whose peer went silent, however long the transfer itself may take.
    public var stallTimeout: Double = 60
    /// Seconds a whole exchange may take unless the request says otherwise (`nil`: no limit).
    public var requestTimeout: Double? = 300
    /// Certificate verification (on unless switched off).
    public var tls = TLSOptions()
    public var retry = RetryPolicy()
    /// The largest answer kept in memory; larger ones must be streamed to a sink.
    public var maxInMemoryBody = 64 * 1024 * 1024
    /// Idle libcurl handles kept (with their open connections) for the next requests.
    public var maxIdleHandles = 8
    public var userAgent = "lifeboat-openstack"

    public init() {}
}

/// Server certificate checks.
public struct TLSOptions: Sendable, Equatable {
    /// A PEM file of the CAs to trust instead of the system's (OS_CACERT, clouds.yaml `cacert`).
    public var caBundlePath: String?
    /// `false` switches off certificate and host-name verification (OS_INSECURE, clouds.yaml
    /// `verify: false`): for test clouds only.
    public var verifyPeer = true

    public init(caBundlePath: String? = nil, verifyPeer: Bool = true) {
        self.caBundlePath = caBundlePath
        self.verifyPeer = verifyPeer
    }
}

/// Bounded retries with exponential backoff, for requests that may be repeated.
public struct RetryPolicy: Sendable, Equatable {
    /// Tries in all, the first included (1 = no retry).
    public var maxAttempts: Int
    /// Wait before the second try; each further wait doubles, up to `maxDelay`.
    public var initialDelay: Double
    public var maxDelay: Double
    /// Statuses that mean "try again later" rather than "this request is wrong".
    public var retryableStatuses: Set<Int>

    public init(maxAttempts: Int = 4, initialDelay: Double = 0.5, maxDelay: Double = 8,
                retryableStatuses: Set<Int> = [429, 500, 502, 503, 504]) {
        self.maxAttempts = max(1, maxAttempts)
        self.initialDelay = initialDelay
        self.maxDelay = maxDelay
        self.retryableStatuses = retryableStatuses
    }

    public static let none = RetryPolicy(maxAttempts: 1)

    /// The wait after failed attempt `attempt` (1-based), with ±20 % jitter so that many
    /// workers failing together do not come back together.
    func delay(after attempt: Int) -> Double {
        let base = min(maxDelay, initialDelay * pow(2, Double(attempt - 1)))
        return base * Double.random(in: 0.8...1.2)
    }
}
