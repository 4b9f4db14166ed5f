import CCurl
import Foundation

/// libcurl's process-wide state, set up once before the first handle.
enum CurlLibrary {
    static let initialised: Bool = curl_global_init(Int(CURL_GLOBAL_DEFAULT)) == CURLE_OK
}

public enum HTTPError: Error, Sendable, Equatable, CustomStringConvertible {
    case curl(String)

    public var description: String {
        switch self {
        case .curl(let text): "HTTP: \(text)"
        }
    }
}

/// One libcurl easy handle, the owner of the C resource: cleaned up when this goes away.
///
/// A handle keeps its connections alive between requests, so the OpenStack clients reuse one
/// per thread. Not `Sendable`: libcurl handles must not be shared between threads. Keystone,
/// Nova, Glance, Cinder and Neutron clients grow on it with the OpenStack issue.
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

    /// Fetches `url` into memory and returns the body, with TLS verification on.
    public func get(_ url: String, timeoutSeconds: Int = 30) throws(HTTPError) -> Data {
        let sink = BodySink()
        let unmanaged = Unmanaged.passRetained(sink)
        defer { unmanaged.release() }
        _ = lifeboat_curl_setopt_string(handle, CURLOPT_URL, url)
        _ = lifeboat_curl_setopt_long(handle, CURLOPT_TIMEOUT, timeoutSeconds)
        _ = lifeboat_curl_setopt_long(handle, CURLOPT_SSL_VERIFYPEER, 1)
        _ = lifeboat_curl_setopt_long(handle, CURLOPT_SSL_VERIFYHOST, 2)
        _ = lifeboat_curl_setopt_long(handle, CURLOPT_NOSIGNAL, 1)
        let write: curl_write_callback = { buffer, size, count, context in
            guard let buffer, let context else { return 0 }
            let sink = Unmanaged<BodySink>.fromOpaque(context).takeUnretainedValue()
            sink.data.append(UnsafeRawPointer(buffer).assumingMemoryBound(to: UInt8.self), count: size * count)
            return size * count
        }
        _ = lifeboat_curl_setopt_pointer(handle, CURLOPT_WRITEFUNCTION, unsafeBitCast(write, to: UnsafeMutableRawPointer.self))
        _ = lifeboat_curl_setopt_pointer(handle, CURLOPT_WRITEDATA, unmanaged.toOpaque())
        let code = curl_easy_perform(handle)
        guard code == CURLE_OK else { throw .curl("\(url): \(String(cString: curl_easy_strerror(code)))") }
        return sink.data
    }

    /// The libcurl this process runs with, e.g. "7.88.1".
    public static var libraryVersion: String { String(cString: curl_version_info(CURLVERSION_TENTH).pointee.version) }
}

private final class BodySink {
    var data = Data()
}
