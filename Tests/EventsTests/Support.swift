import Events
import Foundation
import XCTest

/// The repository's root, found from this file (`Tests/EventsTests/Support.swift`).
let repositoryRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// A fixed time with an exact binary fraction, so that a round trip through milliseconds is exact.
let sampleTime = Date(timeIntervalSince1970: 1_767_225_600.25)

func body(_ json: String) -> Data { Data(json.utf8) }

/// Asserts that decoding fails with exactly `expected`, and that its text names `words`.
func assertRejects(
    _ expected: EventDecodingError, mentioning words: [String] = [], file: StaticString = #filePath, line: UInt = #line,
    _ decode: () throws(EventDecodingError) -> Void
) {
    do {
        try decode()
        XCTFail("decoding succeeded; expected \(expected)", file: file, line: line)
    } catch {
        XCTAssertEqual(error, expected, file: file, line: line)
        for word in words {
            XCTAssert(error.description.contains(word), "\"\(error.description)\" does not mention \(word)", file: file, line: line)
        }
    }
}

/// The five Lifeboat message kinds, each with its schema and the decoder the intake or a monitor uses.
enum MessageKind: String, CaseIterable, Sendable {
    case backup, restore, cancel, task, result

    var schemaFile: String {
        switch self {
        case .backup: "backup-request.v1.json"
        case .restore: "restore-request.v1.json"
        case .cancel: "cancel-request.v1.json"
        case .task: "task.v1.json"
        case .result: "result.v1.json"
        }
    }

    func decode(_ data: Data) throws(EventDecodingError) {
        switch self {
        case .backup, .restore, .cancel: _ = try InboundRequest.decode(data)
        case .task: _ = try MessageCodec.decode(TaskEvent.self, from: data)
        case .result: _ = try MessageCodec.decode(JobResult.self, from: data)
        }
    }
}

/// One of each shape every message can take: each source and target kind, optional fields
/// present and absent.
enum Samples {
    static let principal = Principal(userId: "cbf1f769b8984208b5e64c942043549a", userDomain: "Default")

    static let sources: [BackupSource] = [
        .files(disks: [LocalDisk(name: "vda", path: "/var/lib/nova/instances/i1/disk", format: .qcow2),
                       LocalDisk(name: "vdb", path: "/srv/images/data.img", format: .raw)]),
        .libvirt(host: "compute-1.example.org", domain: "instance-0000002a", disks: ["vda", "vdb"]),
        .libvirt(host: "compute-1", domain: "instance-0000002a", disks: nil),
        .rbd(cluster: "ceph-a", disks: [RBDDisk(name: "vda", pool: "vms", image: "985e08bd_disk")]),
        .cinder(disks: [CinderDisk(name: "vda", volume: "2f0b1b7e-5c1e-4f0e-9f59-0d8e6b0f3a11")]),
    ]

    static let backups: [BackupRequest] = [
        BackupRequest(requestId: "req-1", project: "p1", instance: "985e08bd-379b-46fa-aa9f-efecd5cf6741", mode: .full),
    ] + sources.map { source in
        BackupRequest(requestId: "req-2", project: "20ca93c983a14f19b78393cb78f279e2", instance: "i1", mode: .incremental,
                      source: source, policy: "gold", priority: 9, labels: ["owner": "team a", "ticket": ""],
                      requestedBy: principal)
    }

    static let targets: [RestoreTarget] = [
        .files(directory: "/srv/restore", format: .raw),
        .libvirt(host: "compute-2", name: "restored-vm1", storageDirectory: "/var/lib/libvirt/images", start: true),
        .libvirt(host: "compute-2", name: nil, storageDirectory: nil, start: false),
        .rbd(cluster: "ceph-b", pool: "vms", imagePrefix: "restored-", overwrite: true),
        .rbd(cluster: "ceph-b", pool: "vms", imagePrefix: nil, overwrite: false),
        .instance(project: "p2", name: "vm1 (restored)", flavor: "m1.small", networks: ["private", "public"], keypair: "ops", disksAs: .images),
        .instance(project: "p2", name: nil, flavor: nil, networks: nil, keypair: nil),
    ]

    static let restores: [RestoreRequest] = targets.map { target in
        RestoreRequest(requestId: "req-3", project: "p1", backupId: "b-20260101", target: target, disks: ["vda"], requestedBy: principal)
    } + [RestoreRequest(requestId: "req-4", project: "p1", backupId: "b1", target: targets[0], requestedBy: Principal(userId: "u1"))]

    static let cancels: [CancelRequest] = [
        CancelRequest(requestId: "req-5", jobId: "j1", project: "p1"),
        CancelRequest(requestId: "req-6", jobId: "j1", project: "p1", requestedBy: principal),
    ]

    static let job = JobReference(jobId: "j1", requestId: "req-2", operation: .backup, project: "p1", instance: "i1")

    static let tasks: [TaskEvent] = [
        TaskEvent(taskId: "j1:transfer:vda:0", job: job, kind: .transfer, disk: "vda",
                  range: ByteRange(offset: 0, length: 64 << 20),
                  parameters: ["snapshot": .string("lifeboat-j1"), "chunk": .int(4_194_304), "ratio": .double(0.5),
                               "sparse": .bool(true), "previous": .null,
                               "extents": .array([.object(["offset": .int(0), "length": .int(-1)])])],
                  createdAt: sampleTime),
        TaskEvent(taskId: "j2.restore-finalize",
                  job: JobReference(jobId: "j2", requestId: "r2", operation: .restore, project: "p1", instance: nil),
                  kind: .restoreFinalize, createdAt: sampleTime),
    ] + TaskKind.allCases.map { TaskEvent(taskId: "j1.\($0.rawValue)", job: job, kind: $0, createdAt: sampleTime) }

    static let results: [JobResult] = ResultStatus.allCases.map { status in
        JobResult(resultId: "r-\(status.rawValue)", job: job, status: status, at: sampleTime,
                  reason: status == .failed || status == .rejected ? "snapshot failed: pool full" : nil)
    } + [
        JobResult(resultId: "r-full", job: job, status: .progress, at: sampleTime, reason: "moving",
                  task: TaskSummary(taskId: "j1:transfer:vda:0", kind: .transfer, disk: "vda", attempt: 2),
                  progress: Progress(bytesDone: 1 << 30, bytesTotal: UInt64.max, bytesPerSecond: 1.5e8, etaSeconds: 12.5),
                  backupId: "b1", details: ["fallback": "full"]),
        JobResult(resultId: "r-rejected", job: nil, status: .rejected, at: sampleTime, reason: "unknown field \"modee\"",
                  rejected: RejectedMessage(messageId: nil, exchange: "lifeboat.requests", routingKey: "backup.p1",
                                            queue: "lifeboat.intake", deadLetterQueue: "lifeboat.intake.dead")),
    ]

    /// Every sample, encoded, with its kind.
    static func encoded() -> [(kind: MessageKind, data: Data)] {
        backups.map { (MessageKind.backup, MessageCodec.encode($0)) }
            + restores.map { (MessageKind.restore, MessageCodec.encode($0)) }
            + cancels.map { (MessageKind.cancel, MessageCodec.encode($0)) }
            + tasks.map { (MessageKind.task, MessageCodec.encode($0)) }
            + results.map { (MessageKind.result, MessageCodec.encode($0)) }
    }
}
