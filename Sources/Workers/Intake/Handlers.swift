import AMQP
import Events
import Publisher

/// Turns an accepted request into the messages that start its job (the `accepted` result and
/// the first task events). The intake publishes them with confirms and only then acknowledges
/// the request, so a crash in between replays the request, never loses it.
public protocol RequestHandler: Sendable {
    func plan(_ request: InboundRequest) async throws -> [OutgoingMessage]
}

/// Reacts to an instance notification (protection policies live behind this seam).
public protocol NotificationHandler: Sendable {
    func handle(_ event: InstanceEvent, notification: OsloNotification) async throws -> [OutgoingMessage]
}

/// A request that is well-formed but will not be carried out (not allowed, names nothing that
/// exists). It is dead-lettered and reported like a malformed one, with this reason.
public struct RequestRefused: Error, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

extension InboundRequest {
    /// The job a request starts. The job id is the request id, so sending a request twice
    /// names one job.
    public var job: JobReference {
        switch self {
        case .backup(let r):
            JobReference(jobId: r.requestId, requestId: r.requestId, operation: .backup, project: r.project, instance: r.instance,
                         priority: r.priority)
        case .restore(let r):
            JobReference(jobId: r.requestId, requestId: r.requestId, operation: .restore, project: r.project, instance: nil,
                         priority: r.priority ?? RestoreRequest.defaultPriority)
        case .cancel(let r):
            JobReference(jobId: r.jobId, requestId: r.requestId, operation: .cancel, project: r.project, instance: nil)
        }
    }
}

/// Validates and reports `accepted`, and plans nothing yet: the job planner (snapshot,
/// transfer, finalize, cleanup tasks) replaces it. Named for what it does so nobody mistakes
/// it for the planner.
public struct AcceptOnlyRequestHandler: RequestHandler {
    public init() {}

    public func plan(_ request: InboundRequest) async throws -> [OutgoingMessage] {
        [.result(JobResult(job: request.job, status: .accepted))]
    }
}

/// Reads instance notifications and acts on none: protection policies replace it.
public struct IgnoringNotificationHandler: NotificationHandler {
    public init() {}

    public func handle(_ event: InstanceEvent, notification: OsloNotification) async throws -> [OutgoingMessage] {
        []
    }
}
