import AMQP
import Events
import Foundation
import Publisher
import XCTest

/// Clients nobody here wrote: Debian's amqp-tools (rabbitmq-c's command-line tools).
final class InteropTests: XCTestCase {
    override func setUp() async throws {
        try await LifeboatQueues.reset()
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/amqp-publish") else {
            throw XCTSkip("amqp-tools is not installed (scripts/test.sh installs it)")
        }
    }

    /// amqp-tools wants the default vhost as no path at all.
    private var toolURL: String {
        get throws { try TestBroker.url.hasSuffix("/") ? String(try TestBroker.url.dropLast()) : try TestBroker.url }
    }

    func testARequestFromAmqpPublishIsConsumedAndItsResultIsReadByAmqpConsume() async throws {
        let worker = try RunningWorker()
        let jobId = "interop-\(UUID().uuidString.prefix(8).lowercased())"
        // A monitor's queue, bound before the request goes out.
        let monitor = TestBroker.uniqueName("monitor")
        try await BrokerChores.declare(Topology(queues: [QueueSpec(name: monitor, durable: false)],
                                                bindings: [BindingSpec(queue: monitor, exchange: LifeboatTopology.Exchange.results,
                                                                       routingKey: "*.*.\(jobId).*")]))
        let request = """
            {"type": "backup.request", "version": 1, "requestId": "\(jobId)", "project": "tenant-1",
             "instance": "985e08bd-379b-46fa-aa9f-efecd5cf6741", "mode": "incremental",
             "source": {"kind": "libvirt", "host": "hv1", "domain": "instance-00000001"}}
            """
        let published = try await runProcess("/usr/bin/amqp-publish", [
            "--url=\(try toolURL)", "--exchange=\(LifeboatTopology.Exchange.requests)", "--routing-key=request.backup",
            "--content-type=application/json", "--persistent",
        ], stdin: Data(request.utf8))
        XCTAssertEqual(published, 0)

        var output = Data()
        let consumed = try await runProcess("/usr/bin/timeout", [
            "30", "/usr/bin/amqp-consume", "--url=\(try toolURL)", "--queue=\(monitor)", "--count=1", "/bin/cat",
        ], output: &output)
        await worker.stop()
        XCTAssertEqual(consumed, 0, "amqp-consume read one result")
        let result = try MessageCodec.decode(JobResult.self, from: output)
        XCTAssertEqual(result.status, .accepted)
        XCTAssertEqual(result.job?.jobId, jobId)
        XCTAssertEqual(result.job?.project, "tenant-1")
        XCTAssertEqual(result.job?.instance, "985e08bd-379b-46fa-aa9f-efecd5cf6741")
        try await BrokerChores.delete([monitor])
    }

    func testTheCommandLineSendsAndFollowsWithJSONOutput() async throws {
        let worker = try RunningWorker()
        let lifeboat = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("lifeboat").path
        guard FileManager.default.isExecutableFile(atPath: lifeboat) else {
            await worker.stop()
            return XCTFail("the lifeboat command is not built at \(lifeboat)")
        }
        setenv("LIFEBOAT_AMQP_URL", try TestBroker.url, 1)
        var output = Data()
        let status = try await runProcess(lifeboat, [
            "backup", "--project", "cli-project", "--instance", "cli-vm", "--mode", "full", "--request-id", "cli-job",
            "--file", "vda=/var/lib/images/vm.img:qcow2", "--follow", "--until", "accepted", "--json", "--timeout", "30",
        ], output: &output)
        var invalid = Data()
        let refused = try await runProcess(lifeboat, ["backup", "--project", "p", "--instance", "i", "--file", "vda=relative.img"],
                                           output: &invalid)
        await worker.stop()
        XCTAssertEqual(status, 0)
        let lines = String(decoding: output, as: UTF8.self).split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "one JSON line per result: \(lines)")
        let result = try MessageCodec.decode(JobResult.self, from: Data((lines.first ?? "").utf8))
        XCTAssertEqual(result.status, .accepted)
        XCTAssertEqual(result.job?.jobId, "cli-job")
        XCTAssertEqual(result.job?.instance, "cli-vm")
        XCTAssertNotEqual(refused, 0, "an invalid request is refused before it is sent")
    }
}
