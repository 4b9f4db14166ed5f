import Events
import Foundation

/// What a task needs beyond its kind, disk and range, carried in `TaskEvent.parameters` so that
/// any worker can run it without looking anything up.
struct BackupPlan: Codable, Sendable, Equatable {
    struct Disk: Codable, Sendable, Equatable {
        var name: String
        var path: String
        var size: UInt64
    }

    var backupId: String
    var parent: String?
    var disks: [Disk]
    /// Number of transfer ranges over all disks: the backup is complete when all are staged.
    var rangeCount: Int
    var totalBytes: UInt64
    /// Seconds since 1970 when the job was planned: progress rates count from here.
    var plannedAt: Double
}

struct RestorePlan: Codable, Sendable, Equatable {
    var backupId: String
    var directory: String
    var disks: [String]
}

/// The metadata saved with a backup: who it belongs to, so later incrementals find their parent.
struct BackupMetadata: Codable, Sendable, Equatable {
    var project: String
    var instance: String
    var jobId: String
    var disks: [String]
}

extension TaskEvent {
    static func parameters(_ value: some Encodable) -> [String: JSONValue] {
        guard let data = try? JSONEncoder().encode(value), case .object(let object)? = try? JSONDecoder().decode(JSONValue.self, from: data) else {
            preconditionFailure("task parameters must encode as a JSON object")
        }
        return object
    }

    func parameters<T: Decodable>(as type: T.Type) throws -> T {
        guard let parameters else { throw TaskFailure("task \(taskId) carries no parameters") }
        do {
            return try JSONDecoder().decode(T.self, from: JSONEncoder().encode(parameters))
        } catch {
            throw TaskFailure("task \(taskId) has unreadable parameters: \(error)")
        }
    }
}

/// The task's backup is no longer begun: its job was cancelled, or failed in another task, which
/// already reported it. Nothing to retry and nothing to report.
struct JobAbandoned: Error {}

/// Why a task failed, in words that go into the job's `failed` result.
struct TaskFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Runs blocking work (file and repository I/O) on Dispatch's threads, never on Swift's
/// cooperative pool, and resumes the caller when it is done.
func runBlocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global(qos: .utility).async {
            continuation.resume(with: Result { try body() })
        }
    }
}
