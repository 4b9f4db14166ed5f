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
/// | `LIFEBOAT_NOTIFICATIONS` | `exchange=key,key;exchange=key`; empty to bind none | `nova=versioned_notifications.info,notifications.info` |
public struct WorkerConfiguration: Sendable {
    public var amqp: AMQPSettings
    public var prefetch: UInt16
    public var notificationSources: [LifeboatTopology.NotificationSource]

    public init(amqp: AMQPSettings, prefetch: UInt16 = 32, notificationSources: [LifeboatTopology.NotificationSource] = [.nova]) {
        self.amqp = amqp
        self.prefetch = prefetch
        self.notificationSources = notificationSources
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
        return WorkerConfiguration(amqp: amqp, prefetch: prefetch, notificationSources: sources)
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
