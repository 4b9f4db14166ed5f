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
}
