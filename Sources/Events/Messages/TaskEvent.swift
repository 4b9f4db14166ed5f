import Foundation

/// What kind of job a task belongs to.
public enum Operation: String, Codable, Sendable, CaseIterable {
    case backup, restore, cancel
}

/// The identity of a job, carried by every task and result so that any worker can report on it
/// (and route the report) without looking anything up.
public struct JobReference: Codable, Sendable, Hashable {
    public var jobId: String
    public var requestId: String
    public var operation: Operation
    public var project: String
    /// The instance being backed up or restored, when known.
    public var instance: String?
    /// 0 (lowest) to 9: the request's. Tasks of jobs at 5 or above go to the urgent task queue,
    /// which workers take from alongside the backlog instead of behind it.
    public var priority: Int?

    public init(jobId: String, requestId: String, operation: Operation, project: String, instance: String?, priority: Int? = nil) {
        self.jobId = jobId
        self.requestId = requestId
        self.operation = operation
        self.project = project
        self.instance = instance
        self.priority = priority
    }

    /// Whether the job's tasks go to the urgent task queue.
    public var isUrgent: Bool { (priority ?? 0) >= Self.urgentPriority }

    /// The lowest urgent priority (as RabbitMQ 4's quorum queues split their two levels).
    public static let urgentPriority = 5

    enum CodingKeys: String, CodingKey, CaseIterable { case jobId, requestId, operation, project, instance, priority }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownFields(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        jobId = try c.identifier(.jobId)
        requestId = try c.identifier(.requestId)
        operation = try c.choice(Operation.self, .operation)
        project = try c.identifier(.project)
        instance = try c.optionalIdentifier(.instance)
        priority = try c.decodeIfPresent(Int.self, forKey: .priority)
        if let priority { try Validate.range(priority, 0...9, at: decoder.path(CodingKeys.priority)) }
    }
}

/// The steps a job is split into. Each is published as its own event so that it can be
/// retried on its own, by any worker.
public enum TaskKind: String, Codable, Sendable, CaseIterable {
    /// Freeze the source: a libvirt disk-only snapshot, an RBD snapshot, a Cinder snapshot.
    case snapshot
    /// Make the frozen data readable: a volume from the snapshot attached to the proxy VM.
    case attach
    /// Copy one bounded range of one disk into the repository.
    case transfer
    /// Commit the backup (index and manifest) once every range is in.
    case finalize
    /// Release what the job holds: merge overlays, drop old snapshots, detach and delete volumes.
    case cleanup
    /// Create what a restore writes into: a restore as a new instance's volumes in the target project.
    case provision
    /// Write one bounded range of one disk to the restore target.
    case restore
    /// Complete a restore: define the domain, create the server, report.
    case restoreFinalize = "restore-finalize"
}

/// A half-open byte range `[offset, offset + length)` of a disk.
public struct ByteRange: Codable, Sendable, Hashable {
    public var offset: UInt64
    public var length: UInt64

    public init(offset: UInt64, length: UInt64) {
        self.offset = offset
        self.length = length
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case offset, length }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownFields(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        offset = try c.decode(UInt64.self, forKey: .offset)
        length = try c.decode(UInt64.self, forKey: .length)
        guard length > 0 else { throw EventDecodingError.invalidValue(path: decoder.path(CodingKeys.length), reason: "must be positive") }
        guard offset.addingReportingOverflow(length).overflow == false else {
            throw EventDecodingError.invalidValue(path: decoder.path(CodingKeys.length), reason: "offset + length overflows")
        }
    }
}

/// One task of a job, as it travels on the tasks exchange.
///
/// `taskId` is deterministic (derived from the job, the kind, the disk and the range), so a
/// redelivered or duplicated event names the same task and its completed side effects are
/// not repeated.
public struct TaskEvent: LifeboatMessage, Hashable {
    public static let messageType = "task"
    public static let supportedVersions = 1...1

    /// The `type` field, written with every message so a reader knows what it holds.
    public let type = TaskEvent.messageType

    public var version: Int
    public var taskId: String
    public var job: JobReference
    public var kind: TaskKind
    public var disk: String?
    public var range: ByteRange?
    /// Strategy-specific inputs (snapshot names, source descriptions); small by construction.
    public var parameters: [String: JSONValue]?
    public var createdAt: Date

    public init(taskId: String, job: JobReference, kind: TaskKind, disk: String? = nil, range: ByteRange? = nil,
                parameters: [String: JSONValue]? = nil, createdAt: Date = Date()) {
        self.version = Self.supportedVersions.upperBound
        self.taskId = taskId
        self.job = job
        self.kind = kind
        self.disk = disk
        self.range = range
        self.parameters = parameters
        self.createdAt = createdAt
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case type, version, taskId, job, kind, disk, range, parameters, createdAt }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownFields(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        version = try c.decode(Int.self, forKey: .version)
        taskId = try c.identifier(.taskId, maxLength: 255, alsoAllowing: ".:")
        job = try c.decode(JobReference.self, forKey: .job)
        kind = try c.choice(TaskKind.self, .kind)
        disk = try c.optionalIdentifier(.disk)
        range = try c.decodeIfPresent(ByteRange.self, forKey: .range)
        parameters = try c.decodeIfPresent([String: JSONValue].self, forKey: .parameters)
        createdAt = try c.decode(Date.self, forKey: .createdAt)
    }
}
