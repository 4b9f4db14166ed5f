import Foundation

/// An HTTP method, and whether repeating it is harmless (which decides retries).
public struct HTTPMethod: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue.uppercased() }

    public static let get = HTTPMethod(rawValue: "GET")
    public static let head = HTTPMethod(rawValue: "HEAD")
    public static let put = HTTPMethod(rawValue: "PUT")
    public static let post = HTTPMethod(rawValue: "POST")
    public static let delete = HTTPMethod(rawValue: "DELETE")
    public static let patch = HTTPMethod(rawValue: "PATCH")

    /// RFC 9110's idempotent methods: sending one twice has the effect of sending it once.
    public var isIdempotent: Bool { ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"].contains(rawValue) }
    public var description: String { rawValue }
}

/// How long a whole exchange may take, beyond the client's connect and stall timeouts.
public enum OverallTimeout: Sendable, Equatable {
    /// The client's `requestTimeout`.
    case clientDefault
    /// No limit: for transfers of images, whose length says nothing useful about time; the
    /// stall timeout still ends a transfer that stops moving.
    case unlimited
    case seconds(Double)
}

/// One request to send. Headers and URL print redacted (also through `dump`); the body never prints.
public struct HTTPRequest: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var method: HTTPMethod
    public var url: URL
    public var headers: HTTPHeaders
    public var body: HTTPRequestBody?
    /// Whether the client may send this again after a 5xx, a timeout or a broken connection.
    /// `nil` follows the method (idempotent methods only): a POST is retried only when nothing
    /// reached the server (connection refused), unless its sender knows repeating it is harmless
    /// (Keystone's token request, for one).
    public var retryable: Bool?
    public var timeout: OverallTimeout

    public init(_ method: HTTPMethod, _ url: URL, headers: HTTPHeaders = [:], body: HTTPRequestBody? = nil,
                retryable: Bool? = nil, timeout: OverallTimeout = .clientDefault) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.retryable = retryable
        self.timeout = timeout
    }

    /// A request carrying `value` as JSON.
    public static func json(_ method: HTTPMethod, _ url: URL, _ value: some Encodable, headers: HTTPHeaders = [:]) throws -> HTTPRequest {
        var headers = headers
        headers["Content-Type"] = "application/json"
        if headers["Accept"] == nil { headers["Accept"] = "application/json" }
        return HTTPRequest(method, url, headers: headers, body: .data(try JSONEncoder().encode(value)))
    }

    /// The method and URL with secrets taken out: what errors and log lines name.
    public var redactedTarget: String { "\(method) \(Redaction.url(url.absoluteString))" }
    public var description: String { "\(redactedTarget) [\(headers)]" }
    public var debugDescription: String { "HTTPRequest(\(description))" }
    public var customMirror: Mirror {
        Mirror(self, children: ["method": method.rawValue, "url": Redaction.url(url.absoluteString), "headers": headers,
                                "body": body.map { $0.length.map { "\($0) bytes" } ?? "stream" } ?? "none"],
               displayStyle: .struct)
    }
}

/// What a request sends: bytes in memory, or a stream read as libcurl asks for it (an image
/// upload never sits in memory). A stream is opened anew for every attempt, so a retry or a
/// rewind after a dropped connection sends it from the start.
public enum HTTPRequestBody: Sendable {
    case data(Data)
    /// `length` nil sends the body chunked.
    case stream(length: Int64?, open: @Sendable () throws -> any HTTPBodyReader)

    /// The file at `path`, streamed; its length is sent as Content-Length.
    public static func file(_ path: String) throws -> HTTPRequestBody {
        let size: Int64
        do {
            let attributes = try FileManager.default.attributesOfItem(atPath: path)
            size = (attributes[.size] as? NSNumber)?.int64Value ?? 0
        } catch {
            throw OpenStackError.localFile(path: path, reason: "cannot read the file to send: \(error.localizedDescription)")
        }
        return .stream(length: size) { try FileBodyReader(path: path) }
    }

    var length: Int64? {
        switch self {
        case .data(let data): Int64(data.count)
        case .stream(let length, _): length
        }
    }

    func openReader() throws -> any HTTPBodyReader {
        switch self {
        case .data(let data): DataBodyReader(data)
        case .stream(_, let open): try open()
        }
    }
}

/// Gives a request body to libcurl piece by piece, on the thread that sends the request.
public protocol HTTPBodyReader: AnyObject {
    /// Fills the start of `buffer`; returns how many bytes it wrote, 0 at the end.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int
}

final class DataBodyReader: HTTPBodyReader {
    private let data: Data
    private var offset = 0

    init(_ data: Data) { self.data = data }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let count = min(buffer.count, data.count - offset)
        guard count > 0 else { return 0 }
        data.withUnsafeBytes { source in
            buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[offset..<offset + count]))
        }
        offset += count
        return count
    }
}

/// A file read with plain `read(2)`: no buffering beyond libcurl's own buffer.
public final class FileBodyReader: HTTPBodyReader {
    private let descriptor: Int32
    private let path: String

    public init(path: String) throws {
        descriptor = open(path, O_RDONLY | O_CLOEXEC)
        self.path = path
        guard descriptor >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    }

    deinit { close(descriptor) }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while true {
            let count = Foundation.read(descriptor, buffer.baseAddress, buffer.count)
            if count >= 0 { return count }
            if errno != EINTR { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        }
    }
}
