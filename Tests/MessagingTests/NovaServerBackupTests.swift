import Events
import Libvirt
import Foundation
import Publisher
import Repository
@testable import Workers
import XCTest

/// A real Nova server (its root disk a qcow2 file on the compute host, made by nova-compute's
/// libvirt driver) with a real Cinder volume attached (an RBD image on the tests' Ceph): one
/// job backs up both, the file over SSH and the volume through librbd, full then incremental.
final class NovaServerBackupTests: XCTestCase {
    func testAServerWithAnAttachedRBDVolumeIsOneJob() async throws {
        try TestOpenStack.require()
        try TestCephCluster.require()
        let environment = ProcessInfo.processInfo.environment
        guard let host = environment["LIFEBOAT_TEST_OS_COMPUTE_HOST"].flatMap(Int.init) else {
            throw TestEnvironmentMissing("LIFEBOAT_TEST_OS_COMPUTE_HOST is not set")
        }
        try await LifeboatQueues.reset()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lifeboat-nova-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }

        let suffix = UUID().uuidString.prefix(6).lowercased()
        let server = try await TestOpenStack.createServer("lb-vol-\(suffix)")
        guard let shown = try await TestOpenStack.cli("lifeboat-admin", ["server", "show", server]) as? [String: Any],
              let domain = shown["OS-EXT-SRV-ATTR:instance_name"] as? String else { throw TestEnvironmentMissing("server show printed no instance name") }
        guard let created = try await TestOpenStack.cli("lifeboat-admin", ["volume", "create", "--size", "1", "lb-vol-\(suffix)"]) as? [String: Any],
              let volume = created["id"] as? String else { throw TestEnvironmentMissing("volume create printed no id") }
        let image = "volume-\(volume)"
        defer {
            Task {
                await TestOpenStack.deleteServer(server)
                _ = try? await TestCephCluster.rbd(["snap", "purge", "\(TestCephCluster.pool)/\(image)"])
                _ = try? await runProcess("/usr/bin/openstack", ["--os-cloud", "lifeboat-admin", "volume", "delete", volume])
            }
        }
        try await TestOpenStack.waitFor(volume: volume, status: "available")
        _ = try await runProcess("/usr/bin/openstack", ["--os-cloud", "lifeboat-admin", "server", "add", "volume", server, volume])
        try await TestOpenStack.waitFor(volume: volume, status: "in-use")
        // The guest's writes to the volume (QEMU hands its exclusive lock over for them).
        try await TestCephCluster.edit(image, ["random:0:3M:21", "fill:600M:2M:0x42"])

        let hypervisors = try TestHypervisors.directoryFile(in: directory, hosts: [host], extra: ["cephCluster": "ceph-test"])
        let repositoryPath = directory.appendingPathComponent("repository").path
        _ = try Repository.create(path: repositoryPath)
        let worker = try RunningWorker(repository: repositoryPath, rangeBytes: 64 << 20, hypervisors: hypervisors,
                                       cephClusters: try TestCephCluster.clusterFile(in: directory))
        let publisher = LifeboatPublisher(settings: try TestBroker.settings())
        var expected: [String: [String: String]] = [:]
        for step in 0..<2 {
            let id = "nova-\(suffix)-b\(step)"
            try await publisher.send(BackupRequest(requestId: id, project: "p1", instance: server, mode: .incremental,
                                                   source: .libvirt(host: "hv\(host)", domain: domain, disks: nil)))
            let outcome = try await LifeboatQueues.results(of: id, until: .succeeded, seconds: 240)
            let text = LifeboatQueues.summary(outcome)
            XCTAssertEqual(outcome.last?.status, .succeeded, text)
            XCTAssertEqual(outcome.first { $0.status == .started }?.details?["parent"], step == 0 ? "none" : "nova-\(suffix)-b0", text)
            // What each disk held at the snapshot: the frozen file below the new overlay, the RBD snapshot.
            let disks = try await TestOpenStack.domainDisks(host: host, domain: domain)
            guard let fileDisk = disks.first(where: { !$0.value.hasPrefix("rbd:") }), let rbdDisk = disks.first(where: { $0.value.hasPrefix("rbd:") }) else {
                return XCTFail("the domain should have a file disk and an RBD disk: \(disks)")
            }
            let frozen = try await TestOpenStack.backingFile(host: host, overlay: fileDisk.value)
            expected[id] = [fileDisk.key: try await TestOpenStack.guestView(host: host, file: frozen),
                            rbdDisk.key: try await TestCephCluster.exportDigest("\(TestCephCluster.pool)/\(image)@lifeboat-\(id)")]
            let snapshots = try await TestCephCluster.snapshots(image)
            XCTAssertEqual(snapshots.filter { $0.hasPrefix("lifeboat-") }, ["lifeboat-\(id)"], "one kept snapshot of the volume")
            if step == 0 { try await TestCephCluster.edit(image, ["random:1M:512K:22", "random:900M:1M:23"]) }
        }
        await publisher.shutdown()
        await worker.stop()
        let repository = try Repository.open(path: repositoryPath)
        for (backup, disks) in expected {
            for (disk, digest) in disks {
                let file = directory.appendingPathComponent("\(backup)-\(disk).img").path
                try repository.restore(backup: backup, disk: disk, to: file)
                XCTAssertEqual(try sha256(of: file), digest, "\(backup) \(disk)")
                try? FileManager.default.removeItem(atPath: file)
            }
        }
        _ = try? await runProcess("/usr/bin/openstack", ["--os-cloud", "lifeboat-admin", "server", "remove", "volume", server, volume])
    }
}

extension TestOpenStack {
    /// Waits (up to two minutes) until a Cinder volume has `status`.
    static func waitFor(volume: String, status: String) async throws {
        for _ in 0..<120 {
            if let shown = try await cli("lifeboat-admin", ["volume", "show", volume]) as? [String: Any], shown["status"] as? String == status { return }
            try await Task.sleep(for: .seconds(1))
        }
        throw TestEnvironmentMissing("volume \(volume) did not become \(status)")
    }

    /// The domain's disks on compute host `host`: target → file path, or "rbd:pool/image".
    static func domainDisks(host: Int, domain: String) async throws -> [String: String] {
        let description = try DomainDescription(xml: try await TestHypervisors.run(["virsh", "\(host)", "dumpxml", domain]))
        var disks: [String: String] = [:]
        for disk in description.disks {
            switch disk.backing {
            case .file(let path): disks[disk.target] = path
            case .rbd(let name): disks[disk.target] = "rbd:\(name)"
            case .other: continue
            }
        }
        return disks
    }

    /// The file below `overlay` in its chain (inside the host).
    static func backingFile(host: Int, overlay: String) async throws -> String {
        let info = try await TestHypervisors.run(["exec", "\(host)", "qemu-img", "info", "-U", "--output", "json", overlay])
        guard let object = try JSONSerialization.jsonObject(with: Data(info.utf8)) as? [String: Any],
              let backing = object["full-backing-filename"] as? String ?? object["backing-filename"] as? String else {
            throw TestEnvironmentMissing("\(overlay) has no backing file")
        }
        return backing
    }

    /// SHA-256 of a file's guest view on host `host` (qemu-img convert there, read from here).
    static func guestView(host: Int, file: String) async throws -> String {
        let view = "view-\(UUID().uuidString.prefix(6)).raw"
        try await TestHypervisors.run(["exec", "\(host)", "qemu-img", "convert", "-U", "-O", "raw", file, "/var/lib/libvirt/images/\(view)"])
        let path = "\(TestHypervisors.images(host))/\(view)"
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try sha256(of: path)
    }
}
