import Foundation
import Logging
import OpenStack
import Synchronization
import XCTest

/// The project's OpenStack (scripts/openstack.sh), as `scripts/openstack.sh env` describes it.
/// Tests that need it skip without LIFEBOAT_TEST_OPENSTACK, and fail under
/// LIFEBOAT_STRICT_TESTS (scripts/test.sh), where a missing cloud is a broken set-up.
enum TestOpenStack {
    static let environment = ProcessInfo.processInfo.environment

    static func require() throws {
        guard environment["LIFEBOAT_TEST_OPENSTACK"] != nil else {
            let message = "needs the project's OpenStack: scripts/openstack.sh start; eval \"$(scripts/openstack.sh env)\""
            if environment["LIFEBOAT_STRICT_TESTS"] != nil { throw TestEnvironmentMissing(message) }
            throw XCTSkip(message)
        }
    }

    /// `LIFEBOAT_TEST_OS_<name>`.
    static func value(_ name: String) throws -> String {
        guard let value = environment["LIFEBOAT_TEST_OS_\(name)"], !value.isEmpty else {
            throw TestEnvironmentMissing("LIFEBOAT_TEST_OS_\(name) is not set (eval \"$(scripts/openstack.sh env)\")")
        }
        return value
    }

    static func password(_ user: String) throws -> Secret { try Secret(contentsOfFile: try value("\(user)_PASSWORD_FILE")) }

    /// A cloud of the test clouds.yaml, found the way openstacksdk finds it.
    static func configuration(cloud: String) throws -> CloudConfiguration {
        try CloudConfiguration.load(cloud: cloud, environment: environment)
    }

    private static let sessions = Mutex<[String: KeystoneSession]>([:])

    /// One session per cloud for the whole test run: tests reuse its token as workers would.
    static func session(cloud: String) throws -> KeystoneSession {
        try require()
        if let session = sessions.withLock({ $0[cloud] }) { return session }
        let session = KeystoneSession(configuration: try configuration(cloud: cloud))
        try session.authenticate()
        sessions.withLock { $0[cloud] = session }
        return session
    }

    static func admin() throws -> KeystoneSession { try session(cloud: "lifeboat-admin") }

    /// A name for something a test creates, recognisable if a run leaves it behind.
    static func name(_ what: String) -> String { "lifeboat-test-\(what)-\(UUID().uuidString.prefix(8).lowercased())" }
}

struct TestEnvironmentMissing: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Log lines, kept for tests that check what a client logs (retries, and never a secret).
final class CapturedLog: Sendable {
    private let lines = Mutex<[String]>([])

    var all: [String] { lines.withLock { $0 } }
    var text: String { all.joined(separator: "\n") }

    func append(_ line: String) { lines.withLock { $0.append(line) } }

    /// A logger at trace level that writes here.
    var logger: Logger {
        Logger(label: "lifeboat.openstack.test") { _ in CapturingLogHandler(log: self) }
    }
}

struct CapturingLogHandler: LogHandler {
    let log: CapturedLog
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?
    var logLevel: Logger.Level = .trace

    func log(event: LogEvent) {
        let extra = (event.metadata ?? [:]).merging(metadata) { a, _ in a }
        log.append("\(event.level) \(event.message) \(extra)")
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
}
