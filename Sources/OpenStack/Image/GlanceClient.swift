import Foundation

/// Glance's image API (v2): image records, and image data streamed both ways without being
/// held in memory. Downloads are checked against the digest Glance recorded.
public struct GlanceClient: Sendable {
    let api: ServiceConnection

    /// Finds Glance in the catalog, or uses `endpoint` (its root, e.g. `http://host:9292`).
    public init(session: KeystoneSession, interface: String? = nil, region: String? = nil, endpoint: URL? = nil) throws {
        var base = try endpoint ?? session.endpoint(for: "image", interface: interface, region: region)
        if base.path.hasSuffix("/v2") || base.path.hasSuffix("/v2/") { base = base.deletingLastPathComponent() }
        api = ServiceConnection(session: session, service: "Glance", base: base)
    }

    public func image(_ id: String) throws -> Image {
        try api.get("/v2/images/\(QueryString.segment(id))", as: Image.self)
    }

    /// Images visible to the session, every page; `name` filters by exact name.
    public func images(name: String? = nil, filters: [String: String] = [:]) throws -> [Image] {
        struct Page: Decodable {
            let images: [Image]
            let next: String?
        }
        var query: [(String, String?)] = filters.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        if let name { query.append(("name", name)) }
        var url = try api.url("/v2/images", query)
        var images: [Image] = []
        while true {
            let page = try api.send(HTTPRequest(.get, url, headers: api.headers), as: Page.self)
            images += page.images
            guard let next = page.next, !page.images.isEmpty else { return images }
            url = try api.follow(next)
        }
    }

    /// Creates an image record (status `queued`), to upload data into.
    public func createImage(_ request: ImageCreateRequest) throws -> Image {
        try api.send(try api.request(.post, "/v2/images", json: request), as: Image.self)
    }

    /// Uploads the file at `path` as the image's data, streamed (Content-Length from the file).
    public func uploadImageData(_ id: String, fromFile path: String) throws {
        try uploadImageData(id, body: try .file(path))
    }

    /// Uploads `body` as the image's data. Not retried after the data started to flow: Glance
    /// does not take a second upload into an image whose first one failed part-way.
    public func uploadImageData(_ id: String, body: HTTPRequestBody) throws {
        var request = try api.request(.put, "/v2/images/\(QueryString.segment(id))/file")
        request.headers["Content-Type"] = "application/octet-stream"
        request.body = body
        request.retryable = false
        request.timeout = .unlimited
        try api.send(request)
    }

    /// Streams the image's data to `sink`, checking its size and digest as it goes. When this
    /// throws (a cut transfer, a digest mismatch, the sink's own error), what the sink received
    /// is not the image and must be discarded; `downloadImage(_:toFile:)` does that for files.
    @discardableResult
    public func downloadImage(_ id: String, into sink: (UnsafeRawBufferPointer) throws -> Void) throws -> ImageDownload {
        let image = try image(id)
        guard image.status == "active" else {
            throw OpenStackError.unavailable(kind: "image", id: id, status: image.status, reason: "only an active image has data to download")
        }
        var digest = ImageDigest(for: image)
        var received: Int64 = 0
        var request = try api.request(.get, "/v2/images/\(QueryString.segment(id))/file")
        request.headers["Accept"] = "application/octet-stream"
        request.timeout = .unlimited
        try api.session.send(request) { bytes in
            digest?.update(bytes)
            received += Int64(bytes.count)
            try sink(bytes)
        }
        if let size = image.size, size != received {
            throw OpenStackError.checksumMismatch(what: "image \(id)", algorithm: "size", expected: "\(size) bytes", actual: "\(received) bytes")
        }
        if let digest {
            let actual = digest.finish()
            guard actual == digest.expected else {
                throw OpenStackError.checksumMismatch(what: "image \(id)", algorithm: digest.algorithm, expected: digest.expected, actual: actual)
            }
        }
        return ImageDownload(image: image, bytes: received, verifiedWith: digest?.algorithm)
    }

    /// Downloads the image into a file at `path`, which appears only when the whole image has
    /// arrived and matched its digest: the data goes to a hidden file beside it first, renamed
    /// into place at the end and removed on any failure.
    @discardableResult
    public func downloadImage(_ id: String, toFile path: String) throws -> ImageDownload {
        let partial = PartialFile.path(for: path)
        let descriptor = open(partial, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw OpenStackError.localFile(path: partial, reason: "cannot create it: \(String(cString: strerror(errno)))")
        }
        var closed = false
        defer { if !closed { close(descriptor) } }
        do {
            let result = try downloadImage(id) { bytes in try PartialFile.write(bytes, to: descriptor, path: partial) }
            guard fsync(descriptor) == 0 else { throw PartialFile.failure("fsync", partial) }
            closed = true
            guard close(descriptor) == 0 else { throw PartialFile.failure("close", partial) }
            guard rename(partial, path) == 0 else { throw PartialFile.failure("rename to \(path)", partial) }
            return result
        } catch {
            unlink(partial)
            throw error
        }
    }

    /// Deletes an image; false when it was gone already.
    @discardableResult
    public func deleteImage(_ id: String) throws -> Bool {
        try api.delete("/v2/images/\(QueryString.segment(id))")
    }

    /// Waits until the image is `status` (active by default); fails on `killed`.
    @discardableResult
    public func waitForImage(_ id: String, status: String = "active", timeout: Double = 300) throws -> Image {
        try StatusWait.until(kind: "image", id: id, wanted: [status], failing: ["killed", "deleted"], timeout: timeout) {
            let image = try image(id)
            return .init(value: image, status: image.status)
        }
    }
}

/// What a finished download delivered.
public struct ImageDownload: Sendable, Equatable {
    public var image: Image
    public var bytes: Int64
    /// The digest algorithm the data was checked with (nil when Glance recorded none).
    public var verifiedWith: String?
}

/// A download's file while it is incomplete: hidden beside its final name.
enum PartialFile {
    static func path(for path: String) -> String {
        let url = URL(fileURLWithPath: path)
        return url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).partial-\(UUID().uuidString.prefix(8))").path
    }

    static func write(_ bytes: UnsafeRawBufferPointer, to descriptor: Int32, path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let written = Foundation.write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                throw failure("write", path)
            }
            offset += written
        }
    }

    static func failure(_ what: String, _ path: String) -> OpenStackError {
        .localFile(path: path, reason: "\(what) failed: \(String(cString: strerror(errno)))")
    }
}
