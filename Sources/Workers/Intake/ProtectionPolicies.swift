import AMQP
import Events
import Foundation
import Logging
import Publisher

/// Notification-driven protection: an instance whose metadata or tags name a policy is
/// protected by it from the moment Nova reports it, without anyone calling Lifeboat.
///
/// The operator lists the policies in `LIFEBOAT_POLICIES`:
///
/// ```json
/// {"policies": [{"name": "gold", "metadataKey": "lifeboat-policy", "metadataValue": "gold",
///                "tag": "lifeboat-gold", "mode": "incremental", "priority": 5}]}
/// ```
/// An instance matches a policy when its metadata has `metadataKey` (with `metadataValue`, when
/// given) or its tags include `tag`; the first matching policy wins.
///
/// - `instance.create.end` of a matching instance → its first backup is requested (a full).
/// - `instance.update` (metadata or tags changed): the policies are evaluated again; an instance
///   that matches now gets its first backup requested. The request id is the same for every
///   notification about one instance and policy (`<policy>-<instance>-first`), so a replayed or
///   repeated notification names one job, and a job already done is reported as replayed.
/// - `instance.delete.start`/`.end`: recorded in the worker's log; the instance's backups stay
///   until retention removes them, and the inventory lists it among the deleted servers it
///   holds backups of (`InventoryReport.deletedInstances`).
///
/// A policy's `schedules` (see `BackupSchedule`) are run by the `BackupScheduler`, which finds
/// the protected instances by listing Nova's servers: an instance whose metadata or tags no
/// longer match is no longer scheduled (and the scheduler says so in its log).
public struct ProtectionPolicies: NotificationHandler {
    public struct Policy: Sendable, Decodable, Equatable {
        public var name: String
        public var metadataKey: String?
        public var metadataValue: String?
        public var tag: String?
        /// How the policy's scheduled backups run; the first backup is always a full.
        public var mode: BackupMode?
        /// 0 to 9, carried as the requests' AMQP priority.
        public var priority: Int?
        /// When its instances are backed up (see `BackupScheduler`).
        public var schedules: [BackupSchedule]?

        public init(name: String, metadataKey: String? = nil, metadataValue: String? = nil, tag: String? = nil,
                    mode: BackupMode? = nil, priority: Int? = nil, schedules: [BackupSchedule]? = nil) {
            self.name = name
            self.metadataKey = metadataKey
            self.metadataValue = metadataValue
            self.tag = tag
            self.mode = mode
            self.priority = priority
            self.schedules = schedules
        }

        func matches(metadata: [String: String], tags: [String]?) -> Bool {
            if let key = metadataKey, let value = metadata[key], metadataValue == nil || metadataValue == value { return true }
            if let tag, tags?.contains(tag) == true { return true }
            return false
        }
    }

    /// The policy protecting an instance with this metadata and these tags: the first that matches.
    func policy(metadata: [String: String], tags: [String]?) -> Policy? {
        policies.first { $0.matches(metadata: metadata, tags: tags) }
    }

    public let policies: [Policy]
    private let logger: Logger

    public init(policies: [Policy], logger: Logger = Logger(label: "lifeboat.policies")) {
        self.policies = policies
        self.logger = logger
    }

    public init(contentsOf path: String, logger: Logger = Logger(label: "lifeboat.policies")) throws {
        struct File: Decodable { var policies: [Policy] }
        let file: File
        do {
            file = try JSONDecoder().decode(File.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw PolicyConfigurationError("the policy list \(path) is not valid: \(error)")
        }
        for policy in file.policies {
            // The name goes into request ids: letters, digits, '-' and '_'.
            guard (1...40).contains(policy.name.utf8.count),
                  policy.name.unicodeScalars.allSatisfy({ CharacterSet.alphanumerics.contains($0) && $0.isASCII || $0 == "-" || $0 == "_" }) else {
                throw PolicyConfigurationError("\(path): policy name \"\(policy.name)\" must be 1 to 40 letters, digits, '-' or '_'")
            }
            guard policy.metadataKey != nil || policy.tag != nil else {
                throw PolicyConfigurationError("\(path): policy \(policy.name) names neither a metadataKey nor a tag, so nothing can match it")
            }
            for priority in [policy.priority] + (policy.schedules ?? []).map(\.priority) where priority.map({ !(0...9).contains($0) }) == true {
                throw PolicyConfigurationError("\(path): policy \(policy.name): a priority is from 0 to 9")
            }
            let names = (policy.schedules ?? []).map(\.name)
            for name in names where !(1...24).contains(name.utf8.count)
                || !name.unicodeScalars.allSatisfy({ CharacterSet.alphanumerics.contains($0) && $0.isASCII || $0 == "-" || $0 == "_" }) {
                throw PolicyConfigurationError("\(path): policy \(policy.name): schedule name \"\(name)\" must be 1 to 24 letters, digits, '-' or '_'")
            }
            guard Set(names).count == names.count else {
                throw PolicyConfigurationError("\(path): policy \(policy.name) lists a schedule name twice")
            }
        }
        guard Set(file.policies.map(\.name)).count == file.policies.count else {
            throw PolicyConfigurationError("\(path): a policy name is listed twice")
        }
        self.init(policies: file.policies, logger: logger)
    }

    public func handle(_ event: InstanceEvent, notification: OsloNotification) async throws -> [OutgoingMessage] {
        switch event.action {
        case "create.end", "update":
            guard let policy = policy(metadata: event.metadata, tags: event.tags) else {
                if event.action == "update" {
                    logger.info("instance updated: no policy protects it", metadata: ["instance": "\(event.instanceId)", "project": "\(event.projectId)"])
                }
                return []
            }
            logger.info("instance protected by a policy: requesting its first backup",
                        metadata: ["instance": "\(event.instanceId)", "project": "\(event.projectId)", "policy": "\(policy.name)"])
            let request = BackupRequest(requestId: "\(policy.name)-\(event.instanceId)-first", project: event.projectId, instance: event.instanceId,
                                        mode: .full, policy: policy.name, priority: policy.priority,
                                        labels: ["trigger": "instance.\(event.action)"])
            return [.request(.backup(request))]
        case "delete.start", "delete.end":
            logger.notice("instance deleted: its backups stay until retention removes them",
                          metadata: ["instance": "\(event.instanceId)", "project": "\(event.projectId)", "action": "\(event.action)"])
            return []
        default:
            return []
        }
    }
}

public struct PolicyConfigurationError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
