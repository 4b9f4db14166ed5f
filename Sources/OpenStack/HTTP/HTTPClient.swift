import Foundation
import Logging

/// HTTP on libcurl for the OpenStack clients: blocking calls, meant for threads that may block
/// (workers call them through their own `runBlocking`), never for Swift's cooperative pool.
///
/// Connections are reused through a small pool of handles; servers that close the connection
/// after every answer (uwsgi) just cost a new one. Failed attempts that may be repeated (see
/// `HTTPRequest.retryable`) are retried with exponential backoff up to `RetryPolicy.maxAttempts`.
/// Log lines and errors name requests by method and redacted URL only, never header values.
public final class HTTPClient: Sendable {
    public let options: HTTPClientOptions
    private let logger: Logger
    private let pool: CurlHandlePool

    public init(options: HTTPClientOptions = HTTPClientOptions(), logger: Logger = Logger(label: "lifeboat.openstack.http")) {
        self.options = options
        self.logger = logger
        pool = CurlHandlePool(capacity: options.maxIdleHandles)
    }

    /// Sends `request` and returns the answer with its body in memory (up to
    /// `options.maxInMemoryBody`). A 4xx or 5xx answer throws `HTTPError.status`.
    @discardableResult
    public func send(_ request: HTTPRequest) throws -> HTTPResponse {
        try perform(request, sink: nil)
    }

    /// Sends `request` and hands a successful answer's body to `sink` as it arrives, in order,
    /// without keeping it; the returned response has an empty body. When this throws, the bytes
    /// the sink received are not the whole body and must be discarded (a transfer that already
    /// handed bytes over is never retried). An error the sink throws ends the transfer and is
    /// rethrown unchanged.
    @discardableResult
    public func send(_ request: HTTPRequest, streamingBodyTo sink: (UnsafeRawBufferPointer) throws -> Void) throws -> HTTPResponse {
        try withoutActuallyEscaping(sink) { sink in try perform(request, sink: sink) }
    }

    private func perform(_ request: HTTPRequest, sink: ((UnsafeRawBufferPointer) throws -> Void)?) throws -> HTTPResponse {
        let repeatable = request.retryable ?? request.method.isIdempotent
        let policy = options.retry
        var attempt = 1
        while true {
            let started = ContinuousClock.now
            do {
                let response = try pool.withHandle { handle in
                    try CurlTransfer(handle: handle, request: request, options: options, sink: sink).run()
                }
                logger.debug("\(request.redactedTarget) → \(response.status)", metadata: ["elapsed": "\(ContinuousClock.now - started)"])
                return response
            } catch let failure as CurlTransfer.Failure {
                switch failure {
                case .caller(let error):
                    logger.debug("\(request.redactedTarget) stopped by its body source or sink")
                    throw error
                case .http(let error, let again):
                    let mayRepeat = again == .always || (again == .ifRepeatable && repeatable)
                    guard mayRepeat, attempt < policy.maxAttempts else {
                        let tries = attempt > 1 ? " after \(attempt) attempts" : ""
                        logger.debug("\(request.redactedTarget) failed\(tries): \(error)")
                        throw error
                    }
                    let delay = policy.delay(after: attempt)
                    logger.notice("\(error); attempt \(attempt) of \(policy.maxAttempts), next in \(String(format: "%.2f", delay)) s")
                    Thread.sleep(forTimeInterval: delay)
                    attempt += 1
                }
            }
        }
    }
}
