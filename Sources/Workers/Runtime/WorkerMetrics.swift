import Foundation
import Metrics

/// What a worker counts, through swift-metrics (the `lifeboat` command exports it for
/// Prometheus): deliveries by outcome, tasks by kind and outcome, task durations, bytes copied,
/// and queue lag (how long a task waited between being published and being started).
enum WorkerMetrics {
    static func intake(_ outcome: String) {
        Counter(label: "lifeboat_intake_messages_total", dimensions: [("outcome", outcome)]).increment()
    }

    static func task(_ kind: String, outcome: String) {
        Counter(label: "lifeboat_tasks_total", dimensions: [("kind", kind), ("outcome", outcome)]).increment()
    }

    static func taskDuration(_ kind: String, since start: ContinuousClock.Instant) {
        Timer(label: "lifeboat_task_duration_seconds", dimensions: [("kind", kind)]).recordInterval(since: start)
    }

    static func transferred(bytes: UInt64) {
        Counter(label: "lifeboat_transferred_bytes_total").increment(by: Int(clamping: bytes))
    }

    /// Bytes read from a source host (what crossed the network; holes and unchanged data never do).
    static func sourceBytes(_ bytes: UInt64, strategy: String) {
        Counter(label: "lifeboat_source_bytes_total", dimensions: [("strategy", strategy)]).increment(by: Int(clamping: bytes))
    }

    static func queueLag(_ queue: String, publishedAt: Date) {
        Timer(label: "lifeboat_queue_lag_seconds", dimensions: [("queue", queue)])
            .recordSeconds(max(0, Date().timeIntervalSince(publishedAt)))
    }
}

extension Timer {
    func recordInterval(since start: ContinuousClock.Instant) {
        let elapsed = start.duration(to: .now).components
        recordNanoseconds(elapsed.seconds * 1_000_000_000 + elapsed.attoseconds / 1_000_000_000)
    }
}
