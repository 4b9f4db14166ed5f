import Crypto
import Foundation
import OpenStack
import Synchronization
import XCTest

/// The HTTP layer against stand-in servers (StandInServer) for the faults real services do not
/// show on demand: 5xx, silence, oversize answers, a refused connection, TLS certificates.
final class HTTPClientTests: XCTestCase {
    private func client(_ log: CapturedLog, attempts: Int = 3, configure: (inout HTTPClientOptions) -> Void = { _ in }) -> HTTPClient {
        var options = HTTPClientOptions()
        options.retry = RetryPolicy(maxAttempts: attempts, initialDelay: 0.01, maxDelay: 0.05)
        configure(&options)
        return HTTPClient(options: options, logger: log.logger)
    }

    func testIdempotentRequestIsRetriedAfter503AndSucceeds() throws {
        let calls = Mutex(0)
        let server = try StandInServer { _ in
            calls.withLock { $0 += 1; return $0 } <= 2 ? .json(503, #"{"error": "busy"}"#) : .json(200, #"{"ok": true}"#)
        }
        defer { server.stop() }
        let log = CapturedLog()
        let response = try client(log).send(HTTPRequest(.get, URL(string: "\(server.url)/thing")!))
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(String(decoding: response.body, as: UTF8.self), #"{"ok": true}"#)
        XCTAssertEqual(server.requests.count, 3, "two 503s, then the answer; each on a new connection (Connection: close)")
        XCTAssertTrue(log.text.contains("attempt 1 of 3") && log.text.contains("attempt 2 of 3"), log.text)
    }

    func testRetriesAreBoundedAndTheErrorSaysWhatFailed() throws {
        let server = try StandInServer { _ in .json(500, #"{"error": {"message": "database is locked", "password": "hunter2"}}"#) }
        defer { server.stop() }
        let log = CapturedLog()
        XCTAssertThrowsError(try client(log, attempts: 4).send(HTTPRequest(.get, URL(string: "\(server.url)/v2/things?token=abc123&limit=5")!))) { error in
            XCTAssertEqual((error as? HTTPError)?.statusCode, 500)
            let text = "\(error)"
            XCTAssertTrue(text.hasPrefix("GET \(server.url)/v2/things?token=<redacted>&limit=5: 500 Internal Server Error"), text)
            XCTAssertTrue(text.contains("database is locked"), text)
            XCTAssertFalse(text.contains("hunter2") || text.contains("abc123"), text)
        }
        XCTAssertEqual(server.requests.count, 4)
        XCTAssertFalse(log.text.contains("hunter2") || log.text.contains("abc123"), log.text)
    }

    func testPostIsNotRetriedAfterAServerError() throws {
        let server = try StandInServer { _ in .json(503, "{}") }
        defer { server.stop() }
        let request = try HTTPRequest.json(.post, URL(string: "\(server.url)/servers")!, ["name": "x"])
        XCTAssertThrowsError(try client(CapturedLog()).send(request)) { error in
            XCTAssertEqual((error as? HTTPError)?.statusCode, 503)
        }
        XCTAssertEqual(server.requests.count, 1, "a POST may have acted: never repeated blindly")
        XCTAssertEqual(server.requests.first?.body, Data(#"{"name":"x"}"#.utf8))
    }

    func testRefusedConnectionIsRetriedEvenForPostAndNamesTheTarget() throws {
        let server = try StandInServer { _ in .json(200, "{}") }
        let url = URL(string: "\(server.url)/v3/auth/tokens")!
        server.stop()
        let log = CapturedLog()
        XCTAssertThrowsError(try client(log).send(try HTTPRequest.json(.post, url, ["a": 1]))) { error in
            guard case .connection(let method, let target, _) = error as? HTTPError else { return XCTFail("\(error)") }
            XCTAssertEqual(method, "POST")
            XCTAssertEqual(target, url.absoluteString)
        }
        XCTAssertTrue(log.text.contains("attempt 2 of 3"), "nothing reached a server, so even a POST is tried again: \(log.text)")
    }

    func testStalledTransferTimesOut() throws {
        let server = try StandInServer { _ in .stall(status: 200, declaredLength: 1000) }
        defer { server.stop() }
        let http = client(CapturedLog(), attempts: 1) { $0.stallTimeout = 1 }
        XCTAssertThrowsError(try http.send(HTTPRequest(.get, URL(string: "\(server.url)/slow")!, timeout: .unlimited))) { error in
            guard case .timedOut(let method, _, _) = error as? HTTPError else { return XCTFail("\(error)") }
            XCTAssertEqual(method, "GET")
        }
    }

    func testOversizeAnswerInMemoryIsRefusedButStreams() throws {
        let payload = Data((0..<50_000).map { UInt8(truncatingIfNeeded: $0) })
        let server = try StandInServer { _ in .respond(status: 200, body: payload) }
        defer { server.stop() }
        let http = client(CapturedLog(), attempts: 1) { $0.maxInMemoryBody = 10_000 }
        let url = URL(string: "\(server.url)/big")!
        XCTAssertThrowsError(try http.send(HTTPRequest(.get, url))) { error in
            guard case .responseTooLarge = error as? HTTPError else { return XCTFail("\(error)") }
        }
        var streamed = Data()
        let response = try http.send(HTTPRequest(.get, url)) { streamed.append(contentsOf: $0) }
        XCTAssertEqual(streamed, payload)
        XCTAssertTrue(response.body.isEmpty)
    }

    func testStreamedUploadFromAFileAndASinkThatThrowsEndsTheTransfer() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("lifeboat-upload-\(UUID().uuidString.prefix(8))")
        let content = Data((0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        try content.write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let server = try StandInServer { request in
            .json(200, #"{"sha256": "\#(SHA256.hash(data: request.body).map { String(format: "%02x", $0) }.joined())", "length": \#(request.body.count)}"#)
        }
        defer { server.stop() }
        let http = client(CapturedLog())
        var request = HTTPRequest(.put, URL(string: "\(server.url)/v2/images/x/file")!, headers: ["Content-Type": "application/octet-stream"])
        request.body = try .file(file.path)
        let answer = try JSONSerialization.jsonObject(with: try http.send(request).body) as? [String: Any]
        XCTAssertEqual(answer?["length"] as? Int, content.count)
        XCTAssertEqual(answer?["sha256"] as? String, SHA256.hash(data: content).map { String(format: "%02x", $0) }.joined())
        XCTAssertEqual(server.requests.first?.headers["content-length"], "\(content.count)")
        XCTAssertNil(server.requests.first?.headers["expect"], "no 100-continue handshake (uwsgi never answers one)")

        struct SinkFull: Error {}
        XCTAssertThrowsError(try http.send(HTTPRequest(.get, URL(string: "\(server.url)/x")!)) { _ in throw SinkFull() }) { error in
            XCTAssertTrue(error is SinkFull, "the sink's own error comes back unchanged: \(error)")
        }
    }

    func testCertificateVerificationWithACABundleAndTheInsecureSwitch() throws {
        let server = try TLSStandIn()
        defer { server.stop() }
        let url = URL(string: "https://127.0.0.1:\(server.port)/")!
        XCTAssertThrowsError(try client(CapturedLog(), attempts: 1).send(HTTPRequest(.get, url))) { error in
            guard case .tls = error as? HTTPError else { return XCTFail("an unknown CA must fail verification: \(error)") }
        }
        let trusted = client(CapturedLog()) { $0.tls = TLSOptions(caBundlePath: server.certificate) }
        XCTAssertEqual(String(decoding: try trusted.send(HTTPRequest(.get, url)).body, as: UTF8.self), "tls ok")
        let insecure = client(CapturedLog()) { $0.tls = TLSOptions(verifyPeer: false) }
        XCTAssertEqual(try insecure.send(HTTPRequest(.get, url)).status, 200)
    }
}

/// A stand-in HTTPS server (the services here speak plain HTTP, so certificate checks cannot be
/// exercised against them): /usr/bin/python3's http.server behind a self-signed certificate
/// for 127.0.0.1 made with openssl, answering every GET with "tls ok".
final class TLSStandIn {
    let port: Int
    let certificate: String
    private let process: Process
    private let directory: URL

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("lifeboat-tls-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        certificate = directory.appendingPathComponent("cert.pem").path
        let key = directory.appendingPathComponent("key.pem").path
        let openssl = Process()
        openssl.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        openssl.arguments = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", certificate, "-days", "1",
                             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
        openssl.standardOutput = FileHandle.nullDevice
        openssl.standardError = FileHandle.nullDevice
        try openssl.run()
        openssl.waitUntilExit()
        guard openssl.terminationStatus == 0 else { throw TestEnvironmentMissing("openssl req failed") }
        let script = """
            import http.server, ssl, sys
            class H(http.server.BaseHTTPRequestHandler):
                def do_GET(self):
                    self.send_response(200); self.send_header("Content-Length", "6"); self.end_headers(); self.wfile.write(b"tls ok")
                def log_message(self, *a): pass
            s = http.server.HTTPServer(("127.0.0.1", 0), H)
            c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain(sys.argv[1], sys.argv[2])
            s.socket = c.wrap_socket(s.socket, server_side=True)
            print(s.server_address[1], flush=True)
            s.serve_forever()
            """
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", script, certificate, key]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let line = String(decoding: output.fileHandleForReading.availableData, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let port = Int(line) else {
            process.terminate()
            throw TestEnvironmentMissing("the TLS stand-in did not start: \(line)")
        }
        self.port = port
    }

    func stop() {
        process.terminate()
        process.waitUntilExit()
        try? FileManager.default.removeItem(at: directory)
    }
}
