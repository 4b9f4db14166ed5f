import CCurl
import Foundation

/// One attempt of one request on one handle: sets the handle up, runs `curl_easy_perform` on
/// the calling thread, and says whether a failure may be tried again.
struct CurlTransfer {
    /// Whether repeating a failed attempt is safe.
    enum Repeat: Equatable {
        /// Nothing reached the server (connection refused, unknown host): safe for any method.
        case always
        /// The server may have acted (5xx, a cut connection, a timeout): safe for requests
        /// that may be repeated.
        case ifRepeatable
        case never
    }

    enum Failure: Error {
        case http(HTTPError, Repeat)
        /// The caller's sink or body reader threw: handed back unchanged.
        case caller(any Error)
    }

    let handle: CurlHandle
    let request: HTTPRequest
    let options: HTTPClientOptions
    let sink: ((UnsafeRawBufferPointer) throws -> Void)?

    func run() throws(Failure) -> HTTPResponse {
        let method = request.method.rawValue
        let url = Redaction.url(request.url.absoluteString)
        let context = TransferContext(handle: handle.handle, body: bodyToSend, sink: sink,
                                      memoryLimit: sink == nil ? options.maxInMemoryBody : 16 * 1024)
        let unmanaged = Unmanaged.passRetained(context)
        defer { unmanaged.release() }
        var headerList: UnsafeMutablePointer<curl_slist>?
        defer { curl_slist_free_all(headerList) }

        let h = handle.handle
        curl_easy_reset(h)
        // Runs first: the handle forgets the pointers into this transfer (context, header list,
        // error buffer) before they are freed; its open connections stay for the next one.
        defer { curl_easy_reset(h) }
        var problems: [String] = []
        func set(_ result: CURLcode, _ what: String) {
            if result != CURLE_OK { problems.append("\(what): \(String(cString: curl_easy_strerror(result)))") }
        }
        set(lifeboat_curl_setopt_string(h, CURLOPT_URL, request.url.absoluteString), "URL")
        set(lifeboat_curl_setopt_long(h, CURLOPT_NOSIGNAL, 1), "NOSIGNAL")
        set(lifeboat_curl_setopt_long(h, CURLOPT_CONNECTTIMEOUT_MS, milliseconds(options.connectTimeout)), "connect timeout")
        set(lifeboat_curl_setopt_long(h, CURLOPT_LOW_SPEED_LIMIT, 1), "stall limit")
        set(lifeboat_curl_setopt_long(h, CURLOPT_LOW_SPEED_TIME, max(1, Int(options.stallTimeout.rounded(.up)))), "stall timeout")
        if let overall = overallTimeout {
            set(lifeboat_curl_setopt_long(h, CURLOPT_TIMEOUT_MS, milliseconds(overall)), "timeout")
        }
        set(lifeboat_curl_setopt_long(h, CURLOPT_SSL_VERIFYPEER, options.tls.verifyPeer ? 1 : 0), "verify peer")
        set(lifeboat_curl_setopt_long(h, CURLOPT_SSL_VERIFYHOST, options.tls.verifyPeer ? 2 : 0), "verify host")
        if let bundle = options.tls.caBundlePath {
            set(lifeboat_curl_setopt_string(h, CURLOPT_CAINFO, bundle), "CA bundle")
        }
        set(lifeboat_curl_setopt_string(h, CURLOPT_USERAGENT, options.userAgent), "user agent")
        set(lifeboat_curl_setopt_long(h, CURLOPT_TCP_KEEPALIVE, 1), "keepalive")
        set(lifeboat_curl_setopt_pointer(h, CURLOPT_ERRORBUFFER, context.errorBuffer), "error buffer")

        // "Expect:" stops libcurl from waiting for a 100 Continue that uwsgi never sends.
        for field in request.headers.fields + [("Expect", "")] {
            headerList = curl_slist_append(headerList, field.value.isEmpty ? "\(field.name):" : "\(field.name): \(field.value)")
        }
        set(lifeboat_curl_setopt_slist(h, CURLOPT_HTTPHEADER, headerList), "headers")

        let opaque = unmanaged.toOpaque()
        set(lifeboat_curl_set_write_function(h, { buffer, size, count, context in
            guard let context else { return 0 }
            let transfer = Unmanaged<TransferContext>.fromOpaque(context).takeUnretainedValue()
            return transfer.receive(UnsafeRawBufferPointer(start: buffer, count: size * count))
        }), "write callback")
        set(lifeboat_curl_setopt_pointer(h, CURLOPT_WRITEDATA, opaque), "write data")
        set(lifeboat_curl_set_header_function(h, { buffer, size, count, context in
            guard let context else { return 0 }
            let transfer = Unmanaged<TransferContext>.fromOpaque(context).takeUnretainedValue()
            transfer.header(UnsafeRawBufferPointer(start: buffer, count: size * count))
            return size * count
        }), "header callback")
        set(lifeboat_curl_setopt_pointer(h, CURLOPT_HEADERDATA, opaque), "header data")

        switch (request.method, bodyToSend) {
        case (.head, _):
            set(lifeboat_curl_setopt_long(h, CURLOPT_NOBODY, 1), "HEAD")
        case (.get, nil):
            set(lifeboat_curl_setopt_long(h, CURLOPT_HTTPGET, 1), "GET")
        case (_, nil):
            set(lifeboat_curl_setopt_string(h, CURLOPT_CUSTOMREQUEST, method), "method")
        case (_, let body?):
            set(lifeboat_curl_setopt_long(h, CURLOPT_UPLOAD, 1), "upload")
            if request.method != .put {
                set(lifeboat_curl_setopt_string(h, CURLOPT_CUSTOMREQUEST, method), "method")
            }
            if let length = body.length {
                set(lifeboat_curl_setopt_off(h, CURLOPT_INFILESIZE_LARGE, curl_off_t(length)), "body length")
            }
            set(lifeboat_curl_set_read_function(h, { buffer, size, count, context in
                guard let context, let buffer else { return LIFEBOAT_CURL_READFUNC_ABORT }
                let transfer = Unmanaged<TransferContext>.fromOpaque(context).takeUnretainedValue()
                return transfer.supply(into: UnsafeMutableRawBufferPointer(start: buffer, count: size * count))
            }), "read callback")
            set(lifeboat_curl_setopt_pointer(h, CURLOPT_READDATA, opaque), "read data")
            set(lifeboat_curl_set_seek_function(h, { context, offset, origin in
                guard let context else { return LIFEBOAT_CURL_SEEKFUNC_CANTSEEK }
                let transfer = Unmanaged<TransferContext>.fromOpaque(context).takeUnretainedValue()
                return transfer.rewind(offset: offset, origin: origin)
            }), "seek callback")
            set(lifeboat_curl_setopt_pointer(h, CURLOPT_SEEKDATA, opaque), "seek data")
        }
        guard problems.isEmpty else { throw .http(.curl(problems.joined(separator: "; ")), .never) }

        let code = curl_easy_perform(h)
        if let error = context.callerError { throw .caller(error) }
        if context.overflowed {
            throw .http(.responseTooLarge(method: method, url: url, limit: options.maxInMemoryBody), .never)
        }
        // Bytes a sink already holds cannot be taken back: such a transfer is never repeated.
        let handedOver = context.streamedBytes > 0
        guard code == CURLE_OK else {
            let (error, again) = classify(code, detail: context.errorDetail, method: method, url: url)
            throw .http(error, handedOver ? .never : again)
        }
        var status = 0
        _ = lifeboat_curl_getinfo_long(h, CURLINFO_RESPONSE_CODE, &status)
        if status >= 400 {
            let error = HTTPError.status(method: method, url: url, code: status, body: Redaction.excerpt(context.body))
            throw .http(error, options.retry.retryableStatuses.contains(status) && !handedOver ? .ifRepeatable : .never)
        }
        var connections = 0
        _ = lifeboat_curl_getinfo_long(h, CURLINFO_NUM_CONNECTS, &connections)
        return HTTPResponse(status: status, headers: context.headers, body: sink == nil ? context.body : Data(), newConnections: connections)
    }

    /// The body actually sent: methods that carry one get an empty one rather than none, so
    /// libcurl does not wait for a body from its read callback.
    private var bodyToSend: HTTPRequestBody? {
        if let body = request.body { return body }
        return [.post, .put, .patch].contains(request.method) ? .data(Data()) : nil
    }

    private var overallTimeout: Double? {
        switch request.timeout {
        case .clientDefault: options.requestTimeout
        case .unlimited: nil
        case .seconds(let seconds): seconds
        }
    }

    private func milliseconds(_ seconds: Double) -> Int { max(1, Int((seconds * 1000).rounded())) }

    private func classify(_ code: CURLcode, detail: String, method: String, url: String) -> (HTTPError, Repeat) {
        let reason = detail.isEmpty ? String(cString: curl_easy_strerror(code)) : detail
        switch code {
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY, CURLE_COULDNT_CONNECT:
            return (.connection(method: method, url: url, reason: reason), .always)
        case CURLE_SEND_ERROR, CURLE_RECV_ERROR, CURLE_GOT_NOTHING, CURLE_PARTIAL_FILE, CURLE_HTTP2, CURLE_HTTP2_STREAM:
            return (.connection(method: method, url: url, reason: reason), .ifRepeatable)
        case CURLE_OPERATION_TIMEDOUT:
            return (.timedOut(method: method, url: url, reason: reason), .ifRepeatable)
        case CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CONNECT_ERROR, CURLE_SSL_CACERT_BADFILE, CURLE_SSL_CERTPROBLEM,
             CURLE_SSL_CIPHER, CURLE_SSL_ENGINE_NOTFOUND, CURLE_SSL_ISSUER_ERROR, CURLE_SSL_PINNEDPUBKEYNOTMATCH,
             CURLE_SSL_INVALIDCERTSTATUS, CURLE_SSL_CRL_BADFILE:
            return (.tls(method: method, url: url, reason: reason), .never)
        default:
            return (.transfer(method: method, url: url, reason: reason), .never)
        }
    }
}

/// What libcurl's callbacks work on during one transfer; reached through their context pointer.
final class TransferContext {
    let handle: UnsafeMutableRawPointer
    let sink: ((UnsafeRawBufferPointer) throws -> Void)?
    let memoryLimit: Int
    private let source: HTTPRequestBody?
    private var reader: (any HTTPBodyReader)?

    private(set) var headers = HTTPHeaders()
    private(set) var body = Data()
    private(set) var streamedBytes: Int64 = 0
    private(set) var overflowed = false
    private(set) var callerError: (any Error)?
    /// libcurl's own words about a failure (CURLOPT_ERRORBUFFER): names host and port.
    let errorBuffer: UnsafeMutablePointer<CChar>

    init(handle: UnsafeMutableRawPointer, body: HTTPRequestBody?, sink: ((UnsafeRawBufferPointer) throws -> Void)?,
         memoryLimit: Int) {
        self.handle = handle
        self.source = body
        self.sink = sink
        self.memoryLimit = memoryLimit
        errorBuffer = .allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
    }

    deinit { errorBuffer.deallocate() }

    var errorDetail: String { String(cString: errorBuffer) }

    /// Response bytes: to the sink when the status is a success, else kept (error bodies are
    /// kept only up to `memoryLimit`, enough for the excerpt an error shows).
    func receive(_ bytes: UnsafeRawBufferPointer) -> Int {
        var status = 0
        _ = lifeboat_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        if let sink, (200..<300).contains(status) {
            do {
                try sink(bytes)
                streamedBytes += Int64(bytes.count)
                return bytes.count
            } catch {
                callerError = error
                return 0
            }
        }
        if body.count + bytes.count > memoryLimit {
            guard sink != nil else {
                overflowed = true
                return 0
            }
            body.append(contentsOf: bytes.prefix(max(0, memoryLimit - body.count)))
            return bytes.count
        }
        body.append(contentsOf: bytes)
        return bytes.count
    }

    /// One header line; a status line starts a new set (after a 100 Continue, say).
    func header(_ bytes: UnsafeRawBufferPointer) {
        let line = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if line.hasPrefix("HTTP/") {
            headers = HTTPHeaders()
        } else if let colon = line.firstIndex(of: ":") {
            headers.add(String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
    }

    /// Request body bytes for libcurl.
    func supply(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        do {
            if reader == nil { reader = try source?.openReader() }
            return try reader?.read(into: buffer) ?? 0
        } catch {
            callerError = error
            return LIFEBOAT_CURL_READFUNC_ABORT
        }
    }

    /// libcurl asks to send the body again (a reused connection the server had closed): the
    /// body is reopened from its start; any other position cannot be sought.
    func rewind(offset: curl_off_t, origin: Int32) -> Int32 {
        guard offset == 0, origin == SEEK_SET else { return LIFEBOAT_CURL_SEEKFUNC_CANTSEEK }
        reader = nil
        return LIFEBOAT_CURL_SEEKFUNC_OK
    }
}
