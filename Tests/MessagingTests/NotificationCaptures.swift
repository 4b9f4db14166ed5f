import Foundation
import XCTest

/// The real Nova/Cinder/Glance notifications captured from a Zed cloud, in `../shared/data/notifications`
/// beside the repository (or `$LIFEBOAT_SHARED_DIR/data/notifications`).
struct Capture {
    var name: String
    var body: Data
    var exchange: String
    var routingKey: String

    static func all() throws -> [Capture] {
        let environment = ProcessInfo.processInfo.environment
        let shared = environment["LIFEBOAT_SHARED_DIR"].map { URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../../shared").standardized
        let directory = shared.appendingPathComponent("data/notifications")
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory.path) else {
            throw XCTSkip("no notification captures at \(directory.path)")
        }
        return try names.filter { $0.hasSuffix(".json") && !$0.hasSuffix(".meta.json") }.sorted().map { name in
            let body = try Data(contentsOf: directory.appendingPathComponent(name))
            let metaName = name.replacingOccurrences(of: ".json", with: ".meta.json")
            let meta = try JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent(metaName))) as? [String: Any]
            return Capture(name: name, body: body, exchange: meta?["exchange"] as? String ?? "nova",
                           routingKey: meta?["routing_key"] as? String ?? "notifications.info")
        }
    }
}
