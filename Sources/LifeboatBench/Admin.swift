import AMQP
import Foundation

/// One-off broker calls (count, delete) on a short-lived connection of their own.
///
/// `AMQPConnection` blocks and is confined to one thread, so each call runs on a fresh OS
/// thread rather than on one of the cooperative pool's few threads.
enum Admin {
    /// Messages ready in `queue` (for a quorum queue: neither delivered nor acked).
    static func messageCount(_ queue: String, _ settings: AMQPSettings) async throws -> Int {
        try await onOwnThread {
            let connection = try AMQPConnection(settings: settings)
            defer { connection.close() }
            return Int(try connection.declare(QueueSpec(name: queue, passive: true)))
        }
    }

    static func delete(_ queue: String, _ settings: AMQPSettings) async throws {
        try await onOwnThread {
            let connection = try AMQPConnection(settings: settings)
            defer { connection.close() }
            try connection.deleteQueue(queue)
        }
    }

    private static func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try body() }) }.start()
        }
    }
}
