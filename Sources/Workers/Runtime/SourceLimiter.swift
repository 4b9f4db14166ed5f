/// At most `limit` transfers at once against one source host (a hypervisor, a Ceph cluster),
/// per worker: a worker that takes many tasks must not open as many SSH streams against one
/// hypervisor that its guests starve. Waiting tasks queue in order, urgent jobs' tasks ahead
/// of the others; a worker's prefetch stays the bound on tasks in hand. Several workers each
/// keep their own limit (documented).
actor SourceLimiter {
    private let limit: Int
    private var running: [String: Int] = [:]
    private var waiting: [String: [(urgent: Bool, continuation: CheckedContinuation<Void, Never>)]] = [:]

    init(limit: Int) { self.limit = max(1, limit) }

    func acquire(_ source: String, urgent: Bool) async {
        if running[source, default: 0] < limit {
            running[source, default: 0] += 1
            return
        }
        await withCheckedContinuation { continuation in
            var queue = waiting[source, default: []]
            let place = urgent ? (queue.firstIndex { !$0.urgent } ?? queue.endIndex) : queue.endIndex
            queue.insert((urgent, continuation), at: place)
            waiting[source] = queue
        }
    }

    func release(_ source: String) {
        if var queue = waiting[source], !queue.isEmpty {
            let next = queue.removeFirst()
            waiting[source] = queue.isEmpty ? nil : queue
            next.continuation.resume()  // the slot passes to it
        } else {
            running[source, default: 1] -= 1
            if running[source] == 0 { running[source] = nil }
        }
    }

    /// Runs `body` holding a slot for `source`.
    func withSlot<T: Sendable>(_ source: String, urgent: Bool = false, _ body: @Sendable () async throws -> T) async rethrows -> T {
        await acquire(source, urgent: urgent)
        defer { release(source) }
        return try await body()
    }
}
