import Events
import XCTest

/// Results are routed by `project.instance.job.status`, so monitors can bind by any of them.
final class RoutingKeyTests: XCTestCase {
    private func key(project: String = "p1", instance: String? = "i1", job: String = "j1", _ status: ResultStatus = .started) -> String {
        JobResult(job: JobReference(jobId: job, requestId: "r1", operation: .backup, project: project, instance: instance), status: status).routingKey
    }

    func testProjectInstanceJobStatus() {
        XCTAssertEqual(key(.failed), "p1.i1.j1.failed")
        for status in ResultStatus.allCases {
            XCTAssertEqual(key(project: "20ca93c983a14f19b78393cb78f279e2", status), "20ca93c983a14f19b78393cb78f279e2.i1.j1.\(status.rawValue)")
        }
    }

    func testUnknownPartsAreUnderscores() {
        XCTAssertEqual(key(instance: nil, .accepted), "p1._.j1.accepted")
        XCTAssertEqual(key(instance: "", .accepted), "p1._.j1.accepted")
        XCTAssertEqual(JobResult(job: nil, status: .rejected, reason: "not JSON").routingKey, "_._._.rejected")
    }

    /// A dot would split a word in two and break every binding; ids made in code need not be validated.
    func testDotsInIdsAreReplaced() {
        XCTAssertEqual(key(project: "acme.prod", instance: "vm.1", job: "j.1.2", .succeeded), "acme_prod.vm_1.j_1_2.succeeded")
        XCTAssertEqual(key(project: "acme.prod").split(separator: ".").count, 4)
    }
}
