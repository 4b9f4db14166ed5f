import Synchronization

/// A few idle libcurl handles, each with the connections it keeps open, lent to one caller at
/// a time: a connection is reused by the next request on any thread, and no handle is ever
/// used by two threads at once.
final class CurlHandlePool: Sendable {
    /// A handle on its way between threads through the pool; the pool's lock and the lending
    /// discipline (taken out, used by one thread, put back) are what make that safe.
    private struct Lent: @unchecked Sendable { let handle: CurlHandle }

    private let idle = Mutex<[Lent]>([])
    private let capacity: Int

    init(capacity: Int) { self.capacity = max(0, capacity) }

    func withHandle<T>(_ body: (CurlHandle) throws -> T) throws -> T {
        let lent = try idle.withLock { $0.popLast() } ?? Lent(handle: CurlHandle())
        defer {
            let capacity = self.capacity
            idle.withLock { if $0.count < capacity { $0.append(lent) } }
        }
        return try body(lent.handle)
    }
}
