import Foundation

/// Where a job (or a message that never became one) stands.
public enum ResultStatus: String, Codable, Sendable, CaseIterable {
    /// The request was read and its job planned.
    case accepted
    /// A worker began the job's first task.
    case started
    /// Periodic figures while data moves.
    case progress
    case succeeded
    /// Failed with a reason, after bounded retries; cleanup has run or is scheduled.
    case failed
    /// The message could not be read or is not allowed; it went to the dead-letter queue.
    case rejected
    case cancelled
}

/// Bytes moved so far, and what that predicts.
public struct Progress: Codable, Sendable, Hashable {
    public var bytesDone: UInt64
    public var bytesTotal: UInt64
    public var bytesPerSecond: Double?
    public var etaSeconds: Double?

    public init(bytesDone: UInt64, bytesTotal: UInt64, bytesPerSecond: Double? = nil, etaSeconds: Double? = nil) {
        self.bytesDone = bytesDone
        self.bytesTotal = bytesTotal
        self.bytesPerSecond = bytesPerSecond
        self.etaSeconds = etaSeconds
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case bytesDone, bytesTotal, bytesPerSecond, etaSeconds }

    /// A rate or ETA that is not a finite number (nothing moved yet) is left out, not written
    /// as something JSON cannot hold.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(bytesDone, forKey: .bytesDone)
        try c.encode(bytesTotal, forKey: .bytesTotal)
        try c.encodeIfPresent(bytesPerSecond.flatMap { $0.isFinite ? $0 : nil }, forKey: .bytesPerSecond)
        try c.encodeIfPresent(etaSeconds.flatMap { $0.isFinite ? $0 : nil }, forKey: .etaSeconds)
    }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownFields(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        bytesDone = try c.decode(UInt64.self, forKey: .bytesDone)
        bytesTotal = try c.decode(UInt64.self, forKey: .bytesTotal)
        bytesPerSecond = try c.decodeIfPresent(Double.self, forKey: .bytesPerSecond)
        etaSeconds = try c.decodeIfPresent(Double.self, forKey: .etaSeconds)
    }
}

/// The task a result is about, when it is about one.
public struct TaskSummary: Codable, Sendable, Hashable {
    public var taskId: String
    public var kind: TaskKind
    public var disk: String?
    public var attempt: Int?

    public init(taskId: String, kind: TaskKind, disk: String? = nil, attempt: Int? = nil) {
        self.taskId = taskId
        self.kind = kind
        self.disk = disk
        self.attempt = attempt
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case taskId, kind, disk, attempt }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownFields(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        taskId = try c.identifier(.taskId, maxLength: 255, alsoAllowing: ".:")
        kind = try c.choice(TaskKind.self, .kind)
        disk = try c.optionalIdentifier(.disk)
        attempt = try c.decodeIfPresent(Int.self, forKey: .attempt)
    }
}

/// Where a message that was refused went, and how to find it there.
public struct RejectedMessage: Codable, Sendable, Hashable {
    /// The AMQP `message_id` of the refused delivery, when its sender set one.
    public var messageId: String?
    public var exchange: String
    public var routingKey: String
    /// The queue it was read from.
    public var queue: String
    /// The dead-letter queue it now sits in, unchanged, with the reason in its headers.
    public var deadLetterQueue: String

    public init(messageId: String?, exchange: String, routingKey: String, queue: String, deadLetterQueue: String) {
        self.messageId = messageId
        self.exchange = exchange
        self.routingKey = routingKey
        self.queue = queue
        self.deadLetterQueue = deadLetterQueue
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case messageId, exchange, routingKey, queue, deadLetterQueue }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownFields(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        messageId = try c.decodeIfPresent(String.self, forKey: .messageId)
        exchange = try c.decode(String.self, forKey: .exchange)
        routingKey = try c.decode(String.self, forKey: .routingKey)
        queue = try c.decode(String.self, forKey: .queue)
        deadLetterQueue = try c.decode(String.self, forKey: .deadLetterQueue)
    }
}

/// One state change or progress report, as monitors read it from the results exchange.
public struct JobResult: LifeboatMessage, Hashable {
    public static let messageType = "result"
    public static let supportedVersions = 1...1

    /// The `type` field, written with every message so a reader knows what it holds.
    public let type = JobResult.messageType

    public var version: Int
    /// Unique per result, so a monitor can drop a duplicate.
    public var resultId: String
    /// The job, when the message became one; absent for a message rejected before that.
    public var job: JobReference?
    public var status: ResultStatus
    public var at: Date
    public var reason: String?
    public var task: TaskSummary?
    public var progress: Progress?
    public var backupId: String?
    public var rejected: RejectedMessage?
    /// Facts worth a monitor's attention, e.g. `{"fallback": "full"}` when an incremental could not be made.
    public var details: [String: String]?

    public init(resultId: String = UUID().uuidString.lowercased(), job: JobReference?, status: ResultStatus, at: Date = Date(),
                reason: String? = nil, task: TaskSummary? = nil, progress: Progress? = nil, backupId: String? = nil,
                rejected: RejectedMessage? = nil, details: [String: String]? = nil) {
        self.version = Self.supportedVersions.upperBound
        self.resultId = resultId
        self.job = job
        self.status = status
        self.at = at
        self.reason = reason
        self.task = task
        self.progress = progress
        self.backupId = backupId
        self.rejected = rejected
        self.details = details
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case type, version, resultId, job, status, at, reason, task, progress, backupId, rejected, details
    }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownFields(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        version = try c.decode(Int.self, forKey: .version)
        resultId = try c.identifier(.resultId)
        job = try c.decodeIfPresent(JobReference.self, forKey: .job)
        status = try c.choice(ResultStatus.self, .status)
        at = try c.decode(Date.self, forKey: .at)
        reason = try c.decodeIfPresent(String.self, forKey: .reason)
        task = try c.decodeIfPresent(TaskSummary.self, forKey: .task)
        progress = try c.decodeIfPresent(Progress.self, forKey: .progress)
        backupId = try c.optionalIdentifier(.backupId)
        rejected = try c.decodeIfPresent(RejectedMessage.self, forKey: .rejected)
        details = try c.decodeIfPresent([String: String].self, forKey: .details)
        if (status == .failed || status == .rejected) && reason == nil {
            throw EventDecodingError.missingField(path: "reason")
        }
    }

    /// `project.instance.job.status`: a monitor binds `p1.#` for a project, `*.i1.#` for an
    /// instance, `*.*.j1.*` for a job, `#.failed` for every failure. Unknown parts are `_`.
    public var routingKey: String {
        func word(_ value: String?) -> String {
            guard let value, !value.isEmpty else { return "_" }
            return value.replacingOccurrences(of: ".", with: "_")
        }
        return [word(job?.project), word(job?.instance), word(job?.jobId), status.rawValue].joined(separator: ".")
    }
}
