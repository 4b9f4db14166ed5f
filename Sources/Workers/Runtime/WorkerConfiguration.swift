import AMQP
import Foundation
import Publisher

/// A worker's settings, read from the environment (what compose files and systemd units set).
/// Secrets come from files, never from the command line or the URL in plain configuration.
///
/// | variable | meaning | default |
/// |---|---|---|
/// | `LIFEBOAT_AMQP_URL` | `amqp://user@host:port/vhost` or `amqps://…` | `amqp://guest@127.0.0.1:5672/` |
/// | `LIFEBOAT_AMQP_PASSWORD_FILE` | file holding the broker password | the URL's password, else `guest` |
/// | `LIFEBOAT_AMQP_CA_FILE` | CA bundle for `amqps://` | Debian's system bundle |
/// | `LIFEBOAT_AMQP_CERT_FILE`, `LIFEBOAT_AMQP_KEY_FILE` | client certificate (EXTERNAL auth when no password) | none |
/// | `LIFEBOAT_AMQP_VERIFY_HOSTNAME` | `false` skips the host-name check (never in production) | `true` |
/// | `LIFEBOAT_AMQP_HEARTBEAT` | seconds | 30 |
/// | `LIFEBOAT_PREFETCH` | deliveries in hand per worker | 32 |
/// | `LIFEBOAT_REPOSITORY` | the backup repository's directory (`lifeboat repo init` made it); without it the worker only accepts requests | none |
/// | `LIFEBOAT_PASSPHRASE_FILE` | passphrase of an encrypted repository | none |
/// | `LIFEBOAT_FILE_SOURCES` | `:`-separated directories whose image files requests may back up | none |
/// | `LIFEBOAT_RESTORE_DIRECTORIES` | `:`-separated directories restores to files may write into | none |
/// | `LIFEBOAT_RANGE_MIB` | MiB per transfer task | 256 |
/// | `LIFEBOAT_TASK_ATTEMPTS` | tries of a task before its job fails | 5 |
/// | `LIFEBOAT_TASK_CONCURRENCY` | tasks running at once per worker | 2 |
/// | `LIFEBOAT_SOURCE_CONCURRENCY` | transfers at once per worker against one source host (hypervisor, cluster) | 2 |
/// | `LIFEBOAT_HYPERVISORS` | JSON file of the hypervisors the libvirt strategy may reach, with their SSH credentials (see `HypervisorDirectory`) | none |
/// | `LIFEBOAT_CEPH_CLUSTERS` | JSON file of the Ceph clusters the RBD strategy may reach, with their ceph.conf, user and keyring (see `CephClusterDirectory`) | none |
/// | `LIFEBOAT_POLICIES` | JSON file of the protection policies that instance notifications are matched against (see `ProtectionPolicies`) | none: notifications are read and ignored |
/// | `LIFEBOAT_OPENSTACK_CLOUD` | the cloud in clouds.yaml (found as openstacksdk finds it) of Lifeboat's own admin account, or `env` for the `OS_*` variables: requests without a source are resolved through Nova, and servers' metadata is saved with their backups | none |
/// | `LIFEBOAT_SCHEDULER_SECONDS` | seconds between the scheduler's passes over Nova's servers, on a worker with policies that have schedules and OpenStack configured; 0 turns it off there (one scheduler is enough; more are harmless) | 60 |
/// | `LIFEBOAT_INVENTORY_SECONDS` | seconds between inventory reports published on `lifeboat.inventory`, on a worker with OpenStack configured; 0 turns it off | 3600 |
/// | `LIFEBOAT_ATTACHMENT_PROXY` | the Nova server (id) disk attachment attaches Cinder volumes to; its compute host must be in `LIFEBOAT_HYPERVISORS` | none: no disk attachment |
/// | `LIFEBOAT_ATTACHMENT_BACKENDS` | `,`-separated Cinder backends (`backend` or `host@backend`; `*` for all) whose volumes a server's backup reads by disk attachment | none |
/// | `LIFEBOAT_NOTIFICATIONS` | `exchange=key,key;exchange=key`; empty to bind none | `nova=versioned_notifications.info,notifications.info` |
public struct WorkerConfiguration: Sendable {
    public var amqp: AMQPSettings
    public var prefetch: UInt16
    public var notificationSources: [LifeboatTopology.NotificationSource]
    public var repositoryPath: String?
    public var repositoryPassphrase: String?
    public var rangeBytes: UInt64
    public var taskAttempts: Int
    public var taskConcurrency: UInt16
    public var fileSourceRoots: [String]
    public var restoreRoots: [String]
    public var hypervisorsFile: String?
    public var cephClustersFile: String?
    public var policiesFile: String?
    public var openstackCloud: String?
    public var sourceConcurrency: Int
    /// Seconds between scheduler passes; 0: no scheduler on this worker.
    public var schedulerSeconds: Int
    /// Seconds between published inventory reports; 0: none from this worker.
    public var inventorySeconds: Int
    /// Disk attachment: the proxy server, and the Cinder backends read that way.
    public var attachmentProxy: String?
    public var attachmentBackends: [String]

    public init(amqp: AMQPSettings, prefetch: UInt16 = 32, notificationSources: [LifeboatTopology.NotificationSource] = [.nova],
                repositoryPath: String? = nil, repositoryPassphrase: String? = nil, rangeBytes: UInt64 = 256 << 20,
                taskAttempts: Int = 5, taskConcurrency: UInt16 = 2, fileSourceRoots: [String] = [], restoreRoots: [String] = [], hypervisorsFile: String? = nil,
                cephClustersFile: String? = nil, policiesFile: String? = nil, openstackCloud: String? = nil,
                sourceConcurrency: Int = 2, schedulerSeconds: Int = 60, inventorySeconds: Int = 3600, attachmentProxy: String? = nil,
                attachmentBackends: [String] = []) {
        self.amqp = amqp
        self.prefetch = prefetch
        self.notificationSources = notificationSources
        self.repositoryPath = repositoryPath
        self.repositoryPassphrase = repositoryPassphrase
        self.rangeBytes = rangeBytes
        self.taskAttempts = taskAttempts
        self.taskConcurrency = taskConcurrency
        self.fileSourceRoots = fileSourceRoots
        self.restoreRoots = restoreRoots
        self.hypervisorsFile = hypervisorsFile
        self.cephClustersFile = cephClustersFile
        self.policiesFile = policiesFile
        self.openstackCloud = openstackCloud
        self.sourceConcurrency = sourceConcurrency
        self.schedulerSeconds = schedulerSeconds
        self.inventorySeconds = inventorySeconds
        self.attachmentProxy = attachmentProxy
        self.attachmentBackends = attachmentBackends
    }

    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws -> WorkerConfiguration {
        let amqp = try amqpSettings(from: environment)
        var prefetch: UInt16 = 32
        if let text = environment["LIFEBOAT_PREFETCH"] {
            guard let value = UInt16(text), value > 0 else {
                throw AMQPError.invalidSettings("LIFEBOAT_PREFETCH must be a number from 1 to 65535, not \"\(text)\"")
            }
            prefetch = value
        }
        let sources = try environment["LIFEBOAT_NOTIFICATIONS"].map(parseNotificationSources) ?? [.nova]
        let passphrase = try environment["LIFEBOAT_PASSPHRASE_FILE"].map { path in
            do { return try Secret.fromFile(path).value } catch {
                throw AMQPError.invalidSettings("cannot read LIFEBOAT_PASSPHRASE_FILE \(path): \(error.localizedDescription)")
            }
        }
        func number(_ name: String, _ fallback: Int, _ range: ClosedRange<Int>) throws -> Int {
            guard let text = environment[name] else { return fallback }
            guard let value = Int(text), range.contains(value) else {
                throw AMQPError.invalidSettings("\(name) must be a number from \(range.lowerBound) to \(range.upperBound), not \"\(text)\"")
            }
            return value
        }
        return WorkerConfiguration(
            amqp: amqp, prefetch: prefetch, notificationSources: sources, repositoryPath: environment["LIFEBOAT_REPOSITORY"],
            repositoryPassphrase: passphrase, rangeBytes: UInt64(try number("LIFEBOAT_RANGE_MIB", 256, 1...65_536)) << 20,
            taskAttempts: try number("LIFEBOAT_TASK_ATTEMPTS", 5, 1...100),
            taskConcurrency: UInt16(try number("LIFEBOAT_TASK_CONCURRENCY", 2, 1...256)),
            fileSourceRoots: paths(environment["LIFEBOAT_FILE_SOURCES"]), restoreRoots: paths(environment["LIFEBOAT_RESTORE_DIRECTORIES"]),
            hypervisorsFile: environment["LIFEBOAT_HYPERVISORS"], cephClustersFile: environment["LIFEBOAT_CEPH_CLUSTERS"],
            policiesFile: environment["LIFEBOAT_POLICIES"], openstackCloud: environment["LIFEBOAT_OPENSTACK_CLOUD"],
            sourceConcurrency: try number("LIFEBOAT_SOURCE_CONCURRENCY", 2, 1...256),
            schedulerSeconds: try number("LIFEBOAT_SCHEDULER_SECONDS", 60, 0...86_400),
            inventorySeconds: try number("LIFEBOAT_INVENTORY_SECONDS", 3600, 0...604_800),
            attachmentProxy: environment["LIFEBOAT_ATTACHMENT_PROXY"].flatMap { $0.isEmpty ? nil : $0 },
            attachmentBackends: (environment["LIFEBOAT_ATTACHMENT_BACKENDS"] ?? "").split(separator: ",")
                .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
    }

    /// The broker settings alone: what the CLI's send and watch commands need.
    public static func amqpSettings(from environment: [String: String] = ProcessInfo.processInfo.environment) throws -> AMQPSettings {
        let url = environment["LIFEBOAT_AMQP_URL"] ?? "amqp://guest@127.0.0.1:5672/"
        let password = try environment["LIFEBOAT_AMQP_PASSWORD_FILE"].map { path in
            do { return try Secret.fromFile(path) } catch {
                throw AMQPError.invalidSettings("cannot read LIFEBOAT_AMQP_PASSWORD_FILE \(path): \(error.localizedDescription)")
            }
        }
        var tls: AMQPSettings.TLS?
        if let ca = environment["LIFEBOAT_AMQP_CA_FILE"] {
            tls = AMQPSettings.TLS(caCertificatePath: ca, clientCertificatePath: environment["LIFEBOAT_AMQP_CERT_FILE"],
                                   clientKeyPath: environment["LIFEBOAT_AMQP_KEY_FILE"],
                                   verifyHostname: environment["LIFEBOAT_AMQP_VERIFY_HOSTNAME"] != "false")
        }
        var settings = try AMQPSettings(url: url, password: password, tls: tls)
        if let text = environment["LIFEBOAT_AMQP_HEARTBEAT"] {
            guard let seconds = Int(text), seconds >= 0 else {
                throw AMQPError.invalidSettings("LIFEBOAT_AMQP_HEARTBEAT must be a number of seconds, not \"\(text)\"")
            }
            settings.heartbeatSeconds = seconds
        }
        return settings
    }

    private static func paths(_ text: String?) -> [String] {
        (text ?? "").split(separator: ":").map(String.init).filter { $0.hasPrefix("/") }
    }

    /// `nova=versioned_notifications.info,notifications.info;openstack=notifications.info`
    static func parseNotificationSources(_ text: String) throws -> [LifeboatTopology.NotificationSource] {
        try text.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.map { entry in
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty else {
                throw AMQPError.invalidSettings("LIFEBOAT_NOTIFICATIONS entry \"\(entry)\" is not exchange=key,key")
            }
            let keys = parts[1].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            guard !keys.isEmpty else { throw AMQPError.invalidSettings("LIFEBOAT_NOTIFICATIONS entry \"\(entry)\" names no routing key") }
            return LifeboatTopology.NotificationSource(exchange: parts[0], routingKeys: keys)
        }
    }
}
