import AMQP
import Ceph
import Compression
import Foundation
import OpenStack
import SSH
import XCTest

/// Each C library links, loads, and its owning Swift type creates and frees its resource.
/// The deep tests of each live with its strategy (libvirt over SSH, Ceph RBD, OpenStack).
final class BindingsSmokeTests: XCTestCase {
    func testLibssh2LoadsAndReportsARefusedConnection() throws {
        XCTAssertTrue(SSHSession.libraryVersion.hasPrefix("1."), SSHSession.libraryVersion)
        // Port 1 on loopback: nothing listens there.
        let endpoint = SSHEndpoint(host: "127.0.0.1", port: 1, user: "nobody", authentication: .password("x"), knownHostsFile: "/nonexistent")
        XCTAssertThrowsError(try SSHSession(connectingTo: endpoint)) { error in
            guard case .connectFailed(_, 1, _)? = error as? SSHError else { return XCTFail("\(error)") }
        }
    }

    func testLibradosReportsAMissingConfigurationClearly() throws {
        XCTAssertEqual(RadosCluster.rbdVersion.major, 1)
        XCTAssertThrowsError(try RadosCluster(name: "nowhere", configurationFile: "/nonexistent/ceph.conf", user: "admin", keyring: nil)) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent/ceph.conf"), "\(error)")
        }
    }

    func testLibcurlFetchesThroughItsWriteCallback() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("lifeboat-curl-\(UUID().uuidString)")
        let content = Data((0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        try content.write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let handle = try CurlHandle()
        XCTAssertEqual(try handle.get(file.absoluteString), content)
        XCTAssertThrowsError(try handle.get("file:///nonexistent/lifeboat")) { error in
            XCTAssertTrue("\(error)".contains("nonexistent"), "\(error)")
        }
    }

    func testLibrabbitmqReportsARefusedConnection() {
        // Port 9 (discard) on loopback has no broker: a clear connect error, no hang.
        let settings = AMQPSettings(host: "127.0.0.1", port: 9, connectTimeoutSeconds: 2)
        XCTAssertThrowsError(try AMQPConnection(settings: settings)) { error in
            guard case AMQPError.connectFailed(let text) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(text.contains("127.0.0.1:9"), text)
        }
    }
}

final class ZstdSmokeTests: XCTestCase {
    func testZstdRoundTripAndRefusesACutFrame() throws {
        let text = Array(String(repeating: "lifeboat keeps every block once. ", count: 2000).utf8)
        let compressor = ZstdCompressor(level: 3)
        var compressed = [UInt8](repeating: 0, count: ZstdCompressor.bound(text.count))
        let size = try text.withUnsafeBytes { source in
            try compressed.withUnsafeMutableBytes { try compressor.compress(source, into: $0) }
        }
        XCTAssertLessThan(size, text.count / 10, "repetitive text compresses")
        var restored = [UInt8](repeating: 0, count: text.count)
        try compressed[..<size].withUnsafeBytes { source in
            try restored.withUnsafeMutableBytes { try ZstdDecompressor().decompress(source, into: $0, expectedSize: text.count) }
        }
        XCTAssertEqual(restored, text)
        // A cut frame is an error, not short data (bit rot is the repository's hashes' job).
        XCTAssertThrowsError(try compressed[..<(size - 8)].withUnsafeBytes { source in
            try restored.withUnsafeMutableBytes { try ZstdDecompressor().decompress(source, into: $0, expectedSize: text.count) }
        })
    }
}
