import CCurl
import Foundation

/// libcurl's process-wide state, set up once before the first handle.
enum CurlLibrary {
    static let initialised: Bool = curl_global_init(Int(CURL_GLOBAL_DEFAULT)) == CURLE_OK
}

/// One libcurl easy handle, the owner of the C resource: cleaned up when this goes away.
///
/// A handle keeps its connections alive between requests (a server that closes them, like
/// uwsgi, just costs a new connection), so `HTTPClient` keeps a few in a pool. Not `Sendable`:
/// libcurl handles must not be used by two threads at once.
public final class CurlHandle {
    let handle: UnsafeMutableRawPointer

    public init() throws(HTTPError) {
        guard CurlLibrary.initialised else { throw .curl("curl_global_init failed") }
        guard let handle = curl_easy_init() else { throw .curl("cannot create a handle") }
        self.handle = handle
    }

    deinit {
        curl_easy_cleanup(handle)
    }

    /// Fetches `url` into memory and returns the body, with TLS verification on; an error
    /// status is an error.
    public func get(_ url: String, timeoutSeconds: Int = 30) throws(HTTPError) -> Data {
        guard let target = URL(string: url) else { throw .transfer(method: "GET", url: Redaction.url(url), reason: "not a URL") }
        var options = HTTPClientOptions()
        options.requestTimeout = Double(timeoutSeconds)
        do {
            return try CurlTransfer(handle: self, request: HTTPRequest(.get, target), options: options, sink: nil).run().body
        } catch {
            switch error {
            case .http(let error, _): throw error
            case .caller(let error): throw .transfer(method: "GET", url: Redaction.url(url), reason: "\(error)")
            }
        }
    }

    /// The libcurl this process runs with, e.g. "7.88.1".
    public static var libraryVersion: String { String(cString: curl_version_info(CURLVERSION_TENTH).pointee.version) }
}
