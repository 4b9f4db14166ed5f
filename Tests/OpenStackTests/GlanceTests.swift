import Crypto
import Foundation
import OpenStack
import Synchronization
import XCTest

/// Glance against the project's OpenStack (streamed upload and download of a 20 MiB image, a
/// download cut mid-stream by a relay in front of it), and a stand-in Glance for the exact
/// shape of a cut answer and for bytes that do not match their digest.
final class GlanceTests: XCTestCase {
    var directory: URL!

    override func setUp() {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("lifeboat-glance-\(UUID().uuidString.prefix(8))")
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(at: directory)
    }

    private func sha256(_ path: String) throws -> String {
        var hash = SHA256()
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty { hash.update(data: chunk) }
        return hash.finalize().map { String(format: "%02x", $0) }.joined()
    }

    func testTwentyMebibytesUpAndDownStreamed() throws {
        let glance = try GlanceClient(session: try TestOpenStack.session(cloud: "lifeboat-bob"))
        let source = directory.appendingPathComponent("source.raw").path
        XCTAssertTrue(FileManager.default.createFile(atPath: source, contents: nil))
        let writer = try FileHandle(forWritingTo: URL(fileURLWithPath: source))
        var generator = SystemRandomNumberGenerator()
        var words = [UInt64](repeating: 0, count: (1 << 20) / 8)
        for _ in 0..<20 {
            for index in words.indices { words[index] = generator.next() }
            writer.write(words.withUnsafeBytes { Data($0) })
        }
        try writer.close()

        let image = try glance.createImage(ImageCreateRequest(name: TestOpenStack.name("image"), properties: ["lifeboat_test": "yes"]))
        defer { _ = try? glance.deleteImage(image.id) }
        XCTAssertEqual(image.status, "queued")
        XCTAssertEqual(image.properties["lifeboat_test"], "yes")
        try glance.uploadImageData(image.id, fromFile: source)
        let active = try glance.waitForImage(image.id, timeout: 60)
        XCTAssertEqual(active.size, 20 << 20)
        XCTAssertEqual(active.hashAlgorithm, "sha512")

        let target = directory.appendingPathComponent("downloaded.raw").path
        let download = try glance.downloadImage(image.id, toFile: target)
        XCTAssertEqual(download.bytes, 20 << 20)
        XCTAssertEqual(download.verifiedWith, "sha512")
        XCTAssertEqual(try sha256(target), try sha256(source))

        var streamed = SHA256()
        var count = 0
        try glance.downloadImage(image.id) { bytes in
            streamed.update(bufferPointer: bytes)
            count += bytes.count
        }
        XCTAssertEqual(count, 20 << 20)
        XCTAssertEqual(streamed.finalize().map { String(format: "%02x", $0) }.joined(), try sha256(source))

        XCTAssertTrue(try glance.images(name: image.name).contains { $0.id == image.id })
        XCTAssertTrue(try glance.deleteImage(image.id))
        XCTAssertThrowsError(try glance.image(image.id)) { error in XCTAssertEqual((error as? HTTPError)?.statusCode, 404) }
    }

    /// The real Glance, its answer cut after 1 MiB by a relay in front of it (the fault the
    /// service cannot be made to show): the download fails saying so, no file or partial copy
    /// is left, and the same download straight from Glance then succeeds, verified.
    func testARealDownloadCutMidStreamFailsAndLeavesNoFile() throws {
        let session = try TestOpenStack.session(cloud: "lifeboat-bob")
        let glance = try GlanceClient(session: session)
        let data = Data((0..<(8 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 7) })
        let source = directory.appendingPathComponent("source.raw").path
        XCTAssertTrue(FileManager.default.createFile(atPath: source, contents: data))
        let image = try glance.createImage(ImageCreateRequest(name: TestOpenStack.name("cut")))
        defer { _ = try? glance.deleteImage(image.id) }
        try glance.uploadImageData(image.id, fromFile: source)
        _ = try glance.waitForImage(image.id, timeout: 60)

        let endpoint = try session.endpoint(for: "image")
        let proxy = try CuttingProxy(upstreamPort: try XCTUnwrap(endpoint.port), cutAfter: 1 << 20)
        defer { proxy.stop() }
        var options = HTTPClientOptions()
        options.retry = RetryPolicy(maxAttempts: 3, initialDelay: 0.01, maxDelay: 0.05)
        let throughProxy = try GlanceClient(session: KeystoneSession(configuration: session.configuration, http: HTTPClient(options: options)),
                                            endpoint: URL(string: "http://127.0.0.1:\(proxy.port)")!)
        let target = directory.appendingPathComponent("downloaded.raw").path
        XCTAssertThrowsError(try throughProxy.downloadImage(image.id, toFile: target)) { error in
            guard case .connection(let method, _, _) = error as? HTTPError else { return XCTFail("\(error)") }
            XCTAssertEqual(method, "GET")
        }
        XCTAssertGreaterThanOrEqual(proxy.cutCount, 1)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["source.raw"], "neither the file nor its partial copy remain")

        let download = try glance.downloadImage(image.id, toFile: target)
        XCTAssertEqual(download.bytes, Int64(data.count))
        XCTAssertEqual(download.verifiedWith, "sha512")
        XCTAssertEqual(try sha256(target), try sha256(source))
    }

    func testAQueuedImageHasNothingToDownload() throws {
        let glance = try GlanceClient(session: try TestOpenStack.session(cloud: "lifeboat-bob"))
        let image = try glance.createImage(ImageCreateRequest(name: TestOpenStack.name("empty")))
        defer { _ = try? glance.deleteImage(image.id) }
        XCTAssertThrowsError(try glance.downloadImage(image.id) { _ in XCTFail("no bytes expected") }) { error in
            guard case .unavailable(_, _, "queued", _) = error as? OpenStackError else { return XCTFail("\(error)") }
        }
    }

    // MARK: Stand-in Glance

    /// A stand-in Keystone and Glance in one: `/v2/images/img` describes an image of `size`
    /// bytes with `digest`, and `/file` answers with `reply`.
    private func standIn(size: Int, digest: String, file reply: StandInServer.Reply) throws -> (StandInServer, GlanceClient) {
        let holder = URLHolder()
        let server = try StandInServer { request in
            switch request.path {
            case "/v3/auth/tokens": return StandInKeystone.token(catalogURL: holder.url)
            case "/v2/images/img":
                return .json(200, #"{"id": "img", "name": "cut", "status": "active", "size": \#(size), "os_hash_algo": "sha512", "os_hash_value": "\#(digest)", "disk_format": "raw", "container_format": "bare", "tags": []}"#)
            case "/v2/images/img/file": return reply
            default: return .json(404, "{}")
            }
        }
        holder.url = server.url
        var options = HTTPClientOptions()
        options.retry = RetryPolicy(maxAttempts: 3, initialDelay: 0.01, maxDelay: 0.05)
        let session = KeystoneSession(configuration: StandInKeystone.configuration(server), http: HTTPClient(options: options))
        return (server, try GlanceClient(session: session))
    }

    func testADownloadCutMidStreamFailsAndLeavesNoFile() throws {
        let data = Data(repeating: 0x5a, count: 4 << 20)
        let digest = SHA512.hash(data: data).map { String(format: "%02x", $0) }.joined()
        let (server, glance) = try standIn(size: data.count, digest: digest,
                                           file: .cut(status: 200, declaredLength: data.count, body: data.prefix(1 << 20)))
        defer { server.stop() }

        let target = directory.appendingPathComponent("image.raw").path
        XCTAssertThrowsError(try glance.downloadImage("img", toFile: target)) { error in
            guard case .connection(let method, let url, let reason) = error as? HTTPError else { return XCTFail("\(error)") }
            XCTAssertEqual(method, "GET")
            XCTAssertEqual(url, "\(server.url)/v2/images/img/file")
            XCTAssertTrue(reason.contains("bytes remaining"), reason)
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), [], "neither the file nor its partial copy remain")
        XCTAssertEqual(server.requests.filter { $0.path.hasSuffix("/file") }.count, 1, "bytes already handed over: not retried")

        var received = 0
        XCTAssertThrowsError(try glance.downloadImage("img") { received += $0.count })
        XCTAssertEqual(received, 1 << 20, "the sink saw the partial bytes, and the throw tells it to drop them")
    }

    func testBytesThatDoNotMatchTheirDigestAreRejected() throws {
        let data = Data(repeating: 0x11, count: 100_000)
        let (server, glance) = try standIn(size: data.count, digest: String(repeating: "0", count: 128), file: .respond(status: 200, body: data))
        defer { server.stop() }
        let target = directory.appendingPathComponent("image.raw").path
        XCTAssertThrowsError(try glance.downloadImage("img", toFile: target)) { error in
            guard case .checksumMismatch(_, "sha512", _, let actual) = error as? OpenStackError else { return XCTFail("\(error)") }
            XCTAssertEqual(actual, SHA512.hash(data: data).map { String(format: "%02x", $0) }.joined())
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), [])
    }
}

/// The stand-in's own URL, known only once it listens, for the catalog it hands out.
private final class URLHolder: Sendable {
    private let value = Mutex("")
    var url: String {
        get { value.withLock { $0 } }
        set { value.withLock { $0 = newValue } }
    }
}
