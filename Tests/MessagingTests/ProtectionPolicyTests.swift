import Events
import Foundation
import Publisher
@testable import Workers
import XCTest

/// The OpenStack `scripts/openstack.sh` runs: real Keystone, Nova (nova-compute inside a
/// hypervisor stand-in), Glance, Cinder, Neutron, publishing their notifications on the
/// tests' broker. The tests drive it with the `openstack` CLI as its users would.
enum TestOpenStack {
    static let environment = ProcessInfo.processInfo.environment

    static func require() throws {
        guard environment["LIFEBOAT_TEST_OPENSTACK"] != nil else {
            let message = "needs OpenStack: run through scripts/test.sh, which starts it with scripts/openstack.sh"
            if environment["LIFEBOAT_STRICT_TESTS"] != nil { throw TestEnvironmentMissing(message) }
            throw XCTSkip(message)
        }
    }

    /// `openstack --os-cloud CLOUD ARGS -f json`, decoded.
    static func cli(_ cloud: String, _ arguments: [String]) async throws -> Any {
        var output = Data()
        let status = try await runProcess("/usr/bin/openstack", ["--os-cloud", cloud] + arguments + ["-f", "json"], output: &output)
        guard status == 0 else { throw TestEnvironmentMissing("openstack \(arguments.joined(separator: " ")) exited \(status)") }
        return try JSONSerialization.jsonObject(with: output)
    }

    /// A server booted from the blank image with no network (microversion 2.37), ACTIVE; its id.
    /// Waits for nova-compute first: it reports through the broker, so after a test restarted
    /// the broker Nova's scheduler counts it down for up to a minute ("No valid host").
    /// Bounded: a server the test cloud leaves in BUILD (its SQLite databases can lose a lock
    /// race) is deleted and made once more, instead of waiting forever as `--wait` would.
    /// `bootVolume`: boot from that volume instead of the image.
    static func createServer(_ name: String, cloud: String = "lifeboat-admin", properties: [String: String] = [:],
                             extra: [String] = [], bootVolume: String? = nil) async throws -> String {
        let boot = bootVolume.map { ["--volume", $0] } ?? ["--image", environment["LIFEBOAT_TEST_OS_IMAGE"] ?? "lifeboat-blank"]
        let arguments = ["--os-compute-api-version", "2.37", "server", "create", "--flavor", environment["LIFEBOAT_TEST_OS_FLAVOR"] ?? "m1.tiny"]
            + boot + ["--nic", "none"]
            + properties.sorted { $0.key < $1.key }.flatMap { ["--property", "\($0.key)=\($0.value)"] } + extra + [name]
        var last = "none"
        for _ in 0..<2 {
            try await waitForCompute()
            guard let server = try await cli(cloud, arguments) as? [String: Any], let id = server["id"] as? String else {
                throw TestEnvironmentMissing("server create printed no id")
            }
            for _ in 0..<90 {
                last = (try? await cli(cloud, ["server", "show", id]) as? [String: Any])?["status"] as? String ?? "unknown"
                if last == "ACTIVE" { return id }
                if last == "ERROR" { break }
                try await Task.sleep(for: .seconds(2))
            }
            _ = try? await runProcess("/usr/bin/openstack", ["--os-cloud", cloud, "server", "delete", id])
        }
        throw TestEnvironmentMissing("server \(name) did not become ACTIVE in two tries (last status \(last)): see Nova's logs")
    }

    /// Until Nova's compute service on the test host is up (at most three minutes).
    static func waitForCompute() async throws {
        for _ in 0..<90 {
            if let services = try? await cli("lifeboat-admin", ["compute", "service", "list", "--service", "nova-compute"]) as? [[String: Any]],
               services.contains(where: { ($0["State"] as? String) == "up" && ($0["Status"] as? String) == "enabled" }) {
                return
            }
            try await Task.sleep(for: .seconds(2))
        }
        throw TestEnvironmentMissing("nova-compute did not report as up within three minutes")
    }

    /// A hypervisor list holding the compute host, its entry named after the host as an
    /// operator names it, its RBD disks in the test cluster.
    static func computeHostFile(in directory: URL) throws -> String {
        guard let host = environment["LIFEBOAT_TEST_OS_COMPUTE_HOST"].flatMap(Int.init), let name = environment["LIFEBOAT_TEST_OS_COMPUTE_NAME"] else {
            throw TestEnvironmentMissing("needs scripts/openstack.sh env (the compute host)")
        }
        let file = try TestHypervisors.directoryFile(in: directory, hosts: [host], extra: ["cephCluster": "ceph-test"])
        let entries = try String(contentsOfFile: file, encoding: .utf8).replacingOccurrences(of: "\"hv\(host)\"", with: "\"\(name)\"")
        try entries.write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }

    static func deleteServer(_ id: String, cloud: String = "lifeboat-admin") async {
        _ = try? await runProcess("/usr/bin/timeout", ["300", "/usr/bin/openstack", "--os-cloud", cloud, "server", "delete", "--wait", id])
    }

    /// The server, then its volumes once Nova has let go of them.
    static func deleteServer(_ id: String, andVolumes volumes: [String]) async {
        await deleteServer(id)
        for volume in volumes {
            try? await waitFor(volume: volume, status: "available")
            _ = try? await runProcess("/usr/bin/openstack", ["--os-cloud", "lifeboat-admin", "volume", "delete", volume])
        }
    }
}

/// What a test made in the test cloud, removed — and waited for — when the test ends. A `defer`
/// can only start an asynchronous deletion, which then runs on into the next tests, and Nova's
/// notifications of it with them.
final class Leftovers {
    private var removals: [() async -> Void] = []

    func add(_ removal: @escaping () async -> Void) { removals.append(removal) }

    /// Runs `body`, then removes what it registered (newest first), whether it threw or not.
    static func removing(_ body: (Leftovers) async throws -> Void) async throws {
        let leftovers = Leftovers()
        do {
            try await body(leftovers)
        } catch {
            await leftovers.removeAll()
            throw error
        }
        await leftovers.removeAll()
    }

    private func removeAll() async {
        for removal in removals.reversed() { await removal() }
        removals.removeAll()
    }
}

/// Notification-driven protection against real Nova: a server created with the policy's
/// metadata gets its first backup requested by Lifeboat itself; one without is left alone.
final class ProtectionPolicyTests: XCTestCase {
    func testACreatedServerWithThePolicyMetadataGetsItsFirstBackupRequested() async throws {
        try TestOpenStack.require()
        try await LifeboatQueues.reset()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lifeboat-policy-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let policies = directory.appendingPathComponent("policies.json")
        try Data(#"{"policies": [{"name": "gold", "metadataKey": "lifeboat-policy", "metadataValue": "gold", "mode": "incremental"}]}"#.utf8)
            .write(to: policies)
        // No repository: the worker accepts the requests it is sent and plans nothing, which is
        // all this test looks at (what the policy asks for, not the backup itself).
        let worker = try RunningWorker(policies: policies.path)
        let suffix = UUID().uuidString.prefix(6).lowercased()
        let plain = try await TestOpenStack.createServer("lb-plain-\(suffix)")
        let protected = try await TestOpenStack.createServer("lb-gold-\(suffix)", properties: ["lifeboat-policy": "gold"])
        defer { Task { await TestOpenStack.deleteServer(plain); await TestOpenStack.deleteServer(protected) } }

        let results = try LifeboatQueues.results(try await consume(LifeboatTopology.Queue.results, seconds: 120) { deliveries in
            deliveries.contains { (try? MessageCodec.decode(JobResult.self, from: $0.body))?.job?.jobId == "gold-\(protected)-first" }
        })
        await worker.stop()
        let accepted = results.first { $0.job?.jobId == "gold-\(protected)-first" }
        XCTAssertEqual(accepted?.status, .accepted, "\(results)")
        XCTAssertEqual(accepted?.job?.instance, protected)
        XCTAssertEqual(accepted?.job?.operation, .backup)
        XCTAssertFalse(results.contains { $0.job?.instance == plain }, "a server without the policy's metadata is left alone")
    }
}
