import AMQP
import Foundation
import XCTest

/// The broker the tests talk to: the real RabbitMQ that `scripts/broker.sh` starts
/// (`scripts/test.sh` does it, and exports these variables).
enum TestBroker {
    static var url: String {
        get throws {
            guard let url = ProcessInfo.processInfo.environment["LIFEBOAT_TEST_AMQP_URL"] else {
                // scripts/test.sh sets LIFEBOAT_STRICT_TESTS: there a missing broker is a failure.
                if ProcessInfo.processInfo.environment["LIFEBOAT_STRICT_TESTS"] != nil {
                    throw AMQPError.invalidSettings("LIFEBOAT_TEST_AMQP_URL is not set")
                }
                throw XCTSkip("LIFEBOAT_TEST_AMQP_URL is not set: run the tests through scripts/test.sh, which starts RabbitMQ")
            }
            return url
        }
    }

    static func settings(heartbeat: Int = 10, name: String = "lifeboat-test") throws -> AMQPSettings {
        var settings = try AMQPSettings(url: url)
        settings.heartbeatSeconds = heartbeat
        settings.connectionName = name
        return settings
    }

    static var tlsDirectory: String? { ProcessInfo.processInfo.environment["LIFEBOAT_TEST_TLS_DIR"] }
    static var tlsPort: Int? { ProcessInfo.processInfo.environment["LIFEBOAT_TEST_AMQPS_PORT"].flatMap(Int.init) }
    static var control: String? { ProcessInfo.processInfo.environment["LIFEBOAT_TEST_BROKER_CTL"] }

    /// `scripts/broker.sh restart`: a real stop and start of the broker process.
    static func restart() async throws {
        guard let control else { throw XCTSkip("LIFEBOAT_TEST_BROKER_CTL is not set") }
        // Not Foundation's Process: its waitUntilExit never returned here once the script had
        // started the broker daemon. posix_spawn and waitpid on a thread of its own do.
        let status = try await onThread { () -> Int32 in
            var pid: pid_t = 0
            let argv: [UnsafeMutablePointer<CChar>?] = [strdup(control), strdup("restart"), nil]
            defer { argv.forEach { free($0) } }
            guard posix_spawn(&pid, control, nil, nil, argv, environ) == 0 else { return -1 }
            var status: Int32 = 0
            while waitpid(pid, &status, 0) == -1 {
                if errno != EINTR { return 0 }  // reaped elsewhere; the reconnect below is the check
            }
            return (status >> 8) & 0xff
        }
        XCTAssertEqual(status, 0, "broker restart failed")
    }

    static func uniqueName(_ prefix: String) -> String {
        "test.\(prefix).\(UUID().uuidString.prefix(8).lowercased())"
    }
}

/// Runs blocking code (a raw AMQPConnection, a child process) on a thread of its own, so the
/// tests, like the product, keep it off Swift's cooperative pool.
func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread {
            do { continuation.resume(returning: try body()) } catch { continuation.resume(throwing: error) }
        }
        thread.start()
    }
}

/// Runs a program to its end. Its output is captured only when asked for: a program that
/// starts a daemon (the broker) would otherwise hold the pipe open forever.
@discardableResult
func runProcess(_ path: String, _ arguments: [String], stdin: Data? = nil, output: UnsafeMutablePointer<Data>? = nil) async throws -> Int32 {
    let capture = output != nil
    let (status, data) = try await onThread { () -> (Int32, Data) in
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = capture ? out : FileHandle.nullDevice
        let input = Pipe()
        process.standardInput = input
        try process.run()
        if let stdin { input.fileHandleForWriting.write(stdin) }
        try input.fileHandleForWriting.close()
        let data = capture ? out.fileHandleForReading.readDataToEndOfFile() : Data()
        process.waitUntilExit()
        return (process.terminationStatus, data)
    }
    output?.pointee = data
    return status
}

/// Blocking broker chores for tests, each on a fresh connection on its own thread.
enum BrokerChores {
    static func declare(_ topology: Topology) async throws {
        let settings = try TestBroker.settings()
        try await onThread {
            let connection = try AMQPConnection(settings: settings)
            defer { connection.close() }
            try topology.declare(on: connection)
        }
    }

    static func purge(_ queues: [String]) async throws {
        let settings = try TestBroker.settings()
        try await onThread {
            let connection = try AMQPConnection(settings: settings)
            defer { connection.close() }
            for queue in queues { try connection.purge(queue: queue) }
        }
    }

    static func delete(_ queues: [String]) async throws {
        let settings = try TestBroker.settings()
        try await onThread {
            let connection = try AMQPConnection(settings: settings)
            defer { connection.close() }
            for queue in queues { try connection.deleteQueue(queue) }
        }
    }

    /// Everything currently in `queue`, acknowledged (removed).
    static func drain(_ queue: String) async throws -> [Delivery] {
        let settings = try TestBroker.settings()
        return try await onThread {
            let connection = try AMQPConnection(settings: settings)
            defer { connection.close() }
            var deliveries: [Delivery] = []
            while let delivery = try connection.get(queue: queue) {
                deliveries.append(delivery)
                try connection.ack(delivery.deliveryTag)
            }
            return deliveries
        }
    }

    static func count(_ queue: String) async throws -> UInt32 {
        let settings = try TestBroker.settings()
        return try await onThread {
            let connection = try AMQPConnection(settings: settings)
            defer { connection.close() }
            return try connection.declare(QueueSpec(name: queue, passive: true))
        }
    }

    /// Waits (bounded) until `condition` holds over what has been drained from `queue` so far.
    static func collect(_ queue: String, attempts: Int = 100, until condition: ([Delivery]) -> Bool) async throws -> [Delivery] {
        var all: [Delivery] = []
        for _ in 0..<attempts {
            all += try await drain(queue)
            if condition(all) { return all }
            try await Task.sleep(for: .milliseconds(200))
        }
        return all
    }
}
