import Ceph
import Foundation
import XCTest

/// The single-node Ceph `scripts/ceph.sh` runs, and the CLI and librbd writes the tests check
/// Lifeboat against (`rbd export`, `rbd diff`, python3-rbd writes at exact offsets).
enum TestCeph {
    static let environment = ProcessInfo.processInfo.environment
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static var conf: String { environment["LIFEBOAT_TEST_CEPH_CONF"] ?? "" }
    static var keyring: String { environment["LIFEBOAT_TEST_CEPH_KEYRING"] ?? "" }
    static var user: String { environment["LIFEBOAT_TEST_CEPH_USER"] ?? "lifeboat" }
    static var adminKeyring: String { environment["LIFEBOAT_TEST_CEPH_ADMIN_KEYRING"] ?? "" }
    static var pool: String { environment["LIFEBOAT_TEST_CEPH_POOL"] ?? "volumes" }

    /// Skips (or, under scripts/test.sh, fails) without the test cluster.
    static func require() throws {
        guard !conf.isEmpty else {
            let message = "needs Ceph: run through scripts/test.sh, which starts it with scripts/ceph.sh"
            if environment["LIFEBOAT_STRICT_TESTS"] != nil { XCTFail(message) }
            throw XCTSkip(message)
        }
    }

    /// Lifeboat's own connection, as the lifeboat user.
    static func connect() throws -> RadosCluster {
        try RadosCluster(name: "test", configurationFile: conf, user: user, keyring: keyring)
    }

    static func uniqueImage(_ stem: String) -> String { "\(stem)-\(UUID().uuidString.prefix(8).lowercased())" }

    /// `scripts/lib/rbd-edit.py` operations on `image`, as the admin (a guest writing).
    static func edit(_ image: String, _ operations: String...) throws {
        try run("/usr/bin/python3", [root.appendingPathComponent("scripts/lib/rbd-edit.py").path, conf, "admin", adminKeyring, pool, image]
                + operations)
    }

    /// The rbd CLI as the admin; its standard output.
    @discardableResult
    static func rbd(_ arguments: String...) throws -> Data {
        try run("/usr/bin/rbd", ["-c", conf, "--id", "admin", "--keyring", adminKeyring] + arguments)
    }

    /// SHA-256 of `rbd export SPEC -` (the whole image, holes as zeros).
    static func exportDigest(_ spec: String) throws -> String {
        let output = try run("/bin/sh", ["-c", "rbd -c \"$1\" --id admin --keyring \"$2\" --no-progress export \"$3\" - | sha256sum", "sh",
                                         conf, adminKeyring, spec])
        return String(decoding: output, as: UTF8.self).split(separator: " ").first.map(String.init) ?? ""
    }

    /// `rbd diff [--from-snap FROM] SPEC` as (offset, length, exists) triples.
    static func diff(_ spec: String, from: String?) throws -> [RBDExtent] {
        let output = try from.map { try rbd("diff", "--format", "json", "--from-snap", $0, spec) } ?? rbd("diff", "--format", "json", spec)
        guard let rows = try JSONSerialization.jsonObject(with: output) as? [[String: Any]] else {
            throw CephTestFailure("rbd diff \(spec) printed no JSON")
        }
        return rows.map { row in
            let offset = (row["offset"] as? NSNumber)?.uint64Value ?? 0, length = (row["length"] as? NSNumber)?.uint64Value ?? 0
            return RBDExtent(range: offset..<(offset + length), exists: (row["exists"] as? String) == "true")
        }
    }

    static func remove(_ image: String) {
        _ = try? rbd("snap", "purge", "\(pool)/\(image)")
        _ = try? rbd("rm", "\(pool)/\(image)")
    }

    @discardableResult
    static func run(_ executable: String, _ arguments: [String]) throws -> Data {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let problems = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw CephTestFailure("\(executable) \(arguments.joined(separator: " ")) exited \(process.terminationStatus): \(String(decoding: problems, as: UTF8.self))")
        }
        return data
    }
}

struct CephTestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
