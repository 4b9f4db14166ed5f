import Crypto
import Events
import Foundation
import Publisher
import Repository
@testable import Workers
import XCTest

/// The hypervisors `scripts/hypervisor.sh` runs: each a network namespace with its own
/// libvirtd, QEMU and sshd, reached over real SSH with verified host keys.
enum TestHypervisors {
    static let environment = ProcessInfo.processInfo.environment
    static let control = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("scripts/hypervisor.sh").path

    /// Hypervisor numbers that are up; skips (or, under scripts/test.sh, fails) without two.
    static func require(_ count: Int = 2) throws -> [Int] {
        let running = (environment["LIFEBOAT_TEST_HYPERVISORS"] ?? "").split(separator: " ").compactMap { Int($0) }
        guard running.count >= count else {
            let message = "needs \(count) hypervisors: run through scripts/test.sh, which starts them with scripts/hypervisor.sh"
            if environment["LIFEBOAT_STRICT_TESTS"] != nil { throw TestEnvironmentMissing(message) }
            throw XCTSkip(message)
        }
        return running
    }

    static func address(_ n: Int) -> String { environment["LIFEBOAT_TEST_HV\(n)_ADDRESS"] ?? "" }
    /// Host N's /var/lib/libvirt/images, as seen from the tests' namespace.
    static func images(_ n: Int) -> String { environment["LIFEBOAT_TEST_HV\(n)_IMAGES"] ?? "" }

    /// A hypervisor list for the worker naming hosts `hv1`, `hv2`, …
    static func directoryFile(in directory: URL, hosts: [Int], knownHosts: String? = nil, operationTimeout: Double = 20,
                              connectTimeout: Double = 5, changedBlocks: String = "overlay", dataPath: String = "ssh",
                              extra: [String: String] = [:], guests: [[String: Any]] = []) throws -> String {
        let entries = hosts.map { n -> [String: Any] in
            var entry: [String: Any] = extra
            entry.merge(["name": "hv\(n)", "address": address(n), "user": "root", "privateKeyFile": environment["LIFEBOAT_TEST_SSH_KEY"] ?? "",
                         "knownHostsFile": knownHosts ?? environment["LIFEBOAT_TEST_KNOWN_HOSTS"] ?? "",
                         "changedBlocks": changedBlocks, "dataPath": dataPath,
                         "operationTimeoutSeconds": operationTimeout, "connectTimeoutSeconds": connectTimeout]) { _, new in new }
            return entry
        }
        let path = directory.appendingPathComponent("hypervisors-\(UUID().uuidString.prefix(6)).json").path
        try JSONSerialization.data(withJSONObject: ["hypervisors": entries, "guests": guests]).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// A running domain whose 1 GiB qcow2 disk holds 384 MiB of data: a transfer of several
    /// 64 MiB ranges, long enough to be cut.
    static func busyDomain(on host: Int) async throws -> String {
        let domain = "lb-fault-\(UUID().uuidString.prefix(6).lowercased())"
        let disk = try await run(["vm", "\(host)", domain, "qcow2", "1024", "--no-start"])
            .trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").last.map(String.init) ?? ""
        let status = try await runProcess("/usr/bin/qemu-io", ["-f", "qcow2", "-c", "write -P 0x77 0 384M", disk])
        XCTAssertEqual(status, 0, "filling \(disk)")
        try await run(["virsh", "\(host)", "start", domain])
        return domain
    }

    /// Lifeboat overlays of `domain` in host `n`'s image directory.
    static func overlays(_ domain: String, on n: Int) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: images(n)).filter { $0.hasPrefix(domain) && $0.contains(".lifeboat-") }
    }

    /// `scripts/hypervisor.sh ARGS`, its output.
    @discardableResult
    static func run(_ arguments: [String]) async throws -> String {
        var output = Data()
        let status = try await runProcess(control, arguments, output: &output)
        let text = String(decoding: output, as: UTF8.self)
        guard status == 0 else { throw TestEnvironmentMissing("hypervisor.sh \(arguments.joined(separator: " ")) exited \(status): \(text)") }
        return text
    }
}

struct TestEnvironmentMissing: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A disk as the guest should see it: the same writes applied to a local file.
struct DiskModel {
    let path: String

    init(path: String, size: Int) throws {
        self.path = path
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.truncate(atOffset: UInt64(size))
        try handle.close()
    }

    func write(_ byte: UInt8, at offset: Int, count: Int) throws {
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.seek(toOffset: UInt64(offset))
        handle.write(Data(repeating: byte, count: count))
        try handle.close()
    }

    func digest() throws -> String { try sha256(of: path) }
}

func sha256(of path: String) throws -> String {
    let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
    defer { try? handle.close() }
    var hasher = SHA256()
    while let data = try handle.read(upToCount: 8 << 20), !data.isEmpty { hasher.update(data: data) }
    return hasher.finalize().map { String(format: "%02x", $0) }.joined()
}

/// The guest view of an image on hypervisor `host` (a file name in its images directory),
/// converted to raw by qemu-img there (shared lock: it may be in use; backing paths resolve
/// only inside the host), read from here.
func guestViewDigest(host: Int, image: String) async throws -> String {
    let view = "view-\(UUID().uuidString.prefix(6)).raw"
    try await TestHypervisors.run(["exec", "\(host)", "qemu-img", "convert", "-U", "-O", "raw",
                                   "/var/lib/libvirt/images/\(image)", "/var/lib/libvirt/images/\(view)"])
    let path = "\(TestHypervisors.images(host))/\(view)"
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try sha256(of: path)
}

/// The libvirt strategy end to end: a running VM on a real hypervisor, backed up over SSH
/// (full, then incrementals with guest writes between), every restore point checked, and the
/// last one defined and started on the other hypervisor.
final class LibvirtPipelineTests: XCTestCase {
    var directory: URL!

    override func setUp() async throws {
        try await LifeboatQueues.reset()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("lifeboat-libvirt-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDown() async throws {
        if let directory { try? FileManager.default.removeItem(at: directory) }
    }



    func testQcow2FullAndTwoIncrementals() async throws { try await fullAndIncrementals(format: "qcow2") }

    func testRawFullAndTwoIncrementals() async throws { try await fullAndIncrementals(format: "raw") }

    /// Dirty bitmaps instead of overlays: no overlay is ever left, one checkpoint is.
    func testQcow2FullAndTwoIncrementalsFromDirtyBitmaps() async throws { try await fullAndIncrementals(format: "qcow2", bitmaps: true) }

    /// The unencrypted data path (trusted networks): the hypervisor connects back to the worker.
    func testRawFullAndTwoIncrementalsOverTheFastDataPath() async throws { try await fullAndIncrementals(format: "raw", dataPath: "tcp") }

    /// A shut-off domain needs no snapshot: its files are read as they are, nothing is left
    /// behind; the operator's pre/post snapshot commands run around a running domain's
    /// snapshot, on the hypervisor and inside the guest over SSH.
    func testAShutOffDomainIsReadAsItIsAndHooksRunAroundASnapshot() async throws {
        let hosts = try TestHypervisors.require(1)
        let off = "lb-off-\(UUID().uuidString.prefix(6).lowercased())"
        let disk = try await TestHypervisors.run(["vm", "\(hosts[0])", off, "qcow2", "64", "--no-start"])
            .trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").last.map(String.init) ?? ""
        let filled = try await runProcess("/usr/bin/qemu-io", ["-f", "qcow2", "-c", "write -P 0x5e 1M 3M", disk])
        XCTAssertEqual(filled, 0)
        let running = "lb-hook-\(UUID().uuidString.prefix(6).lowercased())"
        try await TestHypervisors.run(["vm", "\(hosts[0])", running, "qcow2", "64"])
        // Hooks run on the hypervisor; its /tmp is this machine's, so the test reads their trace.
        let trace = directory.appendingPathComponent("hooks.log").path
        // The guest's own commands run inside it over SSH: the tests' loopback sshd stands in
        // for the guest's (the test VMs have no OS).
        let env = ProcessInfo.processInfo.environment
        guard let sshdPort = env["LIFEBOAT_TEST_SSHD_PORT"].flatMap(Int.init), let sshdDir = env["LIFEBOAT_TEST_SSHD_DIR"],
              let keys = env["LIFEBOAT_TEST_SSH_KEYS"] else { throw TestEnvironmentMissing("needs scripts/sshd.sh (run through scripts/test.sh)") }
        let guest: [String: Any] = ["name": running, "address": "127.0.0.1", "port": sshdPort, "user": "root",
                                    "privateKeyFile": "\(keys)/id_ed25519", "knownHostsFile": "\(sshdDir)/known_hosts",
                                    "preSnapshotCommand": "echo \"guest-pre $LIFEBOAT_DOMAIN\" >> \(trace)",
                                    "postSnapshotCommand": "echo \"guest-post $LIFEBOAT_DOMAIN\" >> \(trace)"]
        let hypervisors = try TestHypervisors.directoryFile(in: directory, hosts: [hosts[0]], extra: [
            "preSnapshotCommand": "echo \"pre $LIFEBOAT_DOMAIN\" >> \(trace)", "postSnapshotCommand": "echo \"post $LIFEBOAT_DOMAIN\" >> \(trace)"],
                                                            guests: [guest])
        let repositoryPath = directory.appendingPathComponent("repository").path
        _ = try Repository.create(path: repositoryPath)
        let worker = try RunningWorker(repository: repositoryPath, files: directory.path, rangeBytes: 16 << 20, hypervisors: hypervisors)
        let publisher = LifeboatPublisher(settings: try TestBroker.settings())
        for domain in [off, running] {
            try await publisher.send(BackupRequest(requestId: "\(domain)-b", project: "p1", instance: domain, mode: .incremental,
                                                   source: .libvirt(host: "hv\(hosts[0])", domain: domain, disks: nil)))
            let outcome = try await LifeboatQueues.results(of: "\(domain)-b", until: .succeeded)
            XCTAssertEqual(outcome.last?.status, .succeeded, LifeboatQueues.summary(outcome))
            XCTAssertEqual(outcome.first { $0.status == .started }?.details?["consistency"], domain == off ? "shut-off" : "crash-consistent")
        }
        await publisher.shutdown()
        await worker.stop()
        XCTAssertEqual(try TestHypervisors.overlays(off, on: hosts[0]), [], "no snapshot of a shut-off domain")
        let restored = directory.appendingPathComponent("off.raw").path
        try Repository.open(path: repositoryPath).restore(backup: "\(off)-b", disk: "vda", to: restored)
        let view = try await guestViewDigest(host: hosts[0], image: "\(off)-vda.qcow2")
        XCTAssertEqual(try sha256(of: restored), view)
        XCTAssertEqual(try String(contentsOfFile: trace, encoding: .utf8),
                       "pre \(running)\nguest-pre \(running)\nguest-post \(running)\npost \(running)\n",
                       "the hypervisor's and the guest's hooks ran once each, around the one snapshot (none for the shut-off domain)")
        try await TestHypervisors.run(["virsh", "\(hosts[0])", "destroy", running])
    }

    private func fullAndIncrementals(format: String, bitmaps: Bool = false, dataPath: String = "ssh") async throws {
        let hosts = try TestHypervisors.require(2)
        let domain = "lb-\(format)-\(UUID().uuidString.prefix(6).lowercased())"
        let size = 64 << 20
        try await TestHypervisors.run(["vm", "\(hosts[0])", domain, format, "64"])
        let model = try DiskModel(path: directory.appendingPathComponent("model.raw").path, size: size)
        func guestWrite(_ byte: UInt8, at offset: Int, count: Int) async throws {
            try await TestHypervisors.run(["guest-write", "\(hosts[0])", domain, "\(offset)", "\(count)", String(format: "0x%02x", byte)])
            try model.write(byte, at: offset, count: count)
        }
        try await guestWrite(0x11, at: 0, count: 1 << 20)
        try await guestWrite(0x22, at: 10 << 20, count: 3 << 20)

        let repositoryPath = directory.appendingPathComponent("repository").path
        _ = try Repository.create(path: repositoryPath)
        let hypervisors = try TestHypervisors.directoryFile(in: directory, hosts: hosts, changedBlocks: bitmaps ? "bitmap" : "overlay",
                                                            dataPath: dataPath)
        let worker = try RunningWorker(repository: repositoryPath, files: directory.path, rangeBytes: 16 << 20, hypervisors: hypervisors)
        let publisher = LifeboatPublisher(settings: try TestBroker.settings())
        var expected: [String: String] = [:]
        let source = BackupSource.libvirt(host: "hv\(hosts[0])", domain: domain, disks: nil)

        for (n, job) in ["\(domain)-b1", "\(domain)-b2", "\(domain)-b3"].enumerated() {
            if n == 1 {
                try await guestWrite(0x33, at: 5 << 20, count: 64 << 10)
                try await guestWrite(0x44, at: 30 << 20, count: 1 << 20)
            } else if n == 2 {
                try await guestWrite(0x55, at: 0, count: 128 << 10)
                try await guestWrite(0x66, at: (64 << 20) - (64 << 10), count: 64 << 10)
            }
            expected[job] = try model.digest()
            try await publisher.send(BackupRequest(requestId: job, project: "p1", instance: domain, mode: .incremental, source: source))
            let outcome = try await LifeboatQueues.results(of: job, until: .succeeded)
            XCTAssertEqual(outcome.last?.status, .succeeded, LifeboatQueues.summary(outcome))
            let started = outcome.first { $0.status == .started }
            XCTAssertEqual(started?.details?["consistency"], "crash-consistent", "no guest agent in the test VM")
            if n == 0 {
                XCTAssertEqual(started?.details?["parent"], "none")
                XCTAssertNotNil(started?.details?["fallback"], "a first backup is a full and says why")
            } else {
                XCTAssertEqual(started?.details?["parent"], "\(domain)-b\(n)", LifeboatQueues.summary(outcome))
                let stored = UInt64(outcome.last?.details?["newStoredBytes"] ?? "") ?? .max
                XCTAssertLessThanOrEqual(stored, 4 << 20, "an incremental stores about what changed")
            }
            XCTAssertEqual(started?.details?["changedBlocks"], bitmaps ? "bitmap" : "overlay")
            if bitmaps {
                // No overlay and no scratch copy is left; one checkpoint is, the next incremental's start.
                XCTAssertEqual(try TestHypervisors.overlays(domain, on: hosts[0]), [])
                let checkpoints = try await TestHypervisors.run(["virsh", "\(hosts[0])", "checkpoint-list", "--name", domain])
                XCTAssertEqual(checkpoints.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty },
                               ["lifeboat-\(job)"])
            } else {
                // Exactly one Lifeboat overlay remains: the one the next incremental reads.
                XCTAssertEqual(try TestHypervisors.overlays(domain, on: hosts[0]), ["\(domain)-vda.\(format).lifeboat-\(job).qcow2"])
            }
        }
        // The model is right: the live guest view equals it.
        let active = bitmaps ? "\(domain)-vda.\(format)" : "\(domain)-vda.\(format).lifeboat-\(domain)-b3.qcow2"
        let liveDigest = try await guestViewDigest(host: hosts[0], image: active)
        XCTAssertEqual(liveDigest, try model.digest())

        for (job, digest) in expected.sorted(by: { $0.key < $1.key }) {
            let target = directory.appendingPathComponent("restore-\(job)").path
            try await publisher.send(RestoreRequest(requestId: "r-\(job)", project: "p1", backupId: job,
                                                    target: .files(directory: target, format: .raw), requestedBy: Principal(userId: "u1")))
            let restored = try await LifeboatQueues.results(of: "r-\(job)", until: .succeeded)
            XCTAssertEqual(restored.last?.status, .succeeded, LifeboatQueues.summary(restored))
            XCTAssertEqual(try sha256(of: "\(target)/vda.img"), digest, "\(job) restores the guest view at its snapshot")
        }

        // The last point as a new domain on the other hypervisor, started.
        let copy = "\(domain)-copy"
        try await publisher.send(RestoreRequest(requestId: "r-\(copy)", project: "p1", backupId: "\(domain)-b3",
                                                target: .libvirt(host: "hv\(hosts[1])", name: copy, storageDirectory: nil, start: true),
                                                requestedBy: Principal(userId: "u1")))
        let defined = try await LifeboatQueues.results(of: "r-\(copy)", until: .succeeded)
        XCTAssertEqual(defined.last?.status, .succeeded, LifeboatQueues.summary(defined))
        let state = try await TestHypervisors.run(["virsh", "\(hosts[1])", "domstate", copy])
        XCTAssertEqual(state.trimmingCharacters(in: .whitespacesAndNewlines), "running")
        let restoredDigest = try await guestViewDigest(host: hosts[1], image: "\(copy)-vda.\(format)")
        XCTAssertEqual(restoredDigest, expected["\(domain)-b3"])

        await publisher.shutdown()
        await worker.stop()
        try await TestHypervisors.run(["virsh", "\(hosts[1])", "destroy", copy])
        try await TestHypervisors.run(["virsh", "\(hosts[0])", "destroy", domain])
    }
}
