import Dispatch
import Foundation

/// Runs independent work items on a fixed number of Dispatch threads (not Swift's
/// cooperative pool, since the work blocks on I/O), each thread with its own state
/// (a codec with its buffers). The first error stops the remaining items and is rethrown.
enum Parallel {
    static func forEach<State>(count: Int, threads: Int, makeState: @Sendable () -> State,
                               _ body: @Sendable (Int, State) throws -> Void) throws {
        guard count > 0 else { return }
        let queue = WorkQueue(count: count)
        let workers = max(1, min(threads, count))
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            let state = makeState()
            while let i = queue.next() {
                do {
                    try body(i, state)
                } catch {
                    queue.fail(error)
                }
            }
        }
        if let error = queue.error { throw error }
    }

    /// Worker threads to use by default: every core, plus one to cover time blocked in I/O.
    static var defaultThreads: Int { ProcessInfo.processInfo.activeProcessorCount + 1 }
}

/// Hands out item numbers and remembers the first failure.
private final class WorkQueue: @unchecked Sendable {
    private let lock = NSLock()
    private var nextItem = 0
    private let count: Int
    private var firstError: (any Error)?

    init(count: Int) { self.count = count }

    func next() -> Int? {
        lock.lock()
        defer { lock.unlock() }
        guard firstError == nil, nextItem < count else { return nil }
        nextItem += 1
        return nextItem - 1
    }

    func fail(_ error: any Error) {
        lock.lock()
        if firstError == nil { firstError = error }
        lock.unlock()
    }

    var error: (any Error)? {
        lock.lock()
        defer { lock.unlock() }
        return firstError
    }
}
