import Foundation

/// Polls a resource until it reaches a wanted status, fails, or the time is up: what every
/// asynchronous OpenStack operation (server build, volume create, snapshot) needs. Bounded by
/// `timeout`; the interval grows from 0.5 s to `maxInterval` so short waits stay short.
enum StatusWait {
    struct Observation<Value> {
        let value: Value
        let status: String
        /// A reason the service gives for a failure (a server's fault message).
        var reason: String?
    }

    static func until<Value>(kind: String, id: String, wanted: Set<String>, failing: Set<String>, timeout: Double,
                             maxInterval: Double = 3, observe: () throws -> Observation<Value>) throws -> Value {
        let deadline = Date().addingTimeInterval(timeout)
        var interval = 0.5
        while true {
            let observation = try observe()
            if wanted.contains(observation.status) { return observation.value }
            if failing.contains(observation.status) {
                throw OpenStackError.resourceFailed(kind: kind, id: id, status: observation.status, reason: observation.reason)
            }
            guard Date() < deadline else {
                throw OpenStackError.waitTimedOut(kind: kind, id: id, wanted: wanted.sorted().joined(separator: " or "),
                                                  lastStatus: observation.status, seconds: timeout)
            }
            Thread.sleep(forTimeInterval: min(interval, max(0.05, deadline.timeIntervalSinceNow)))
            interval = min(maxInterval, interval * 1.5)
        }
    }

    /// Polls until `exists` says the resource is gone (a 404), or fails as `until` does.
    static func untilGone(kind: String, id: String, failing: Set<String>, timeout: Double,
                          observe: () throws -> String?) throws {
        _ = try until(kind: kind, id: id, wanted: ["deleted"], failing: failing, timeout: timeout) {
            Observation(value: (), status: try observe() ?? "deleted")
        }
    }
}

/// The status of a resource, or nil when the service answers 404.
func statusOrGone(_ fetch: () throws -> String) throws -> String? {
    do { return try fetch() } catch let error as HTTPError where error.statusCode == 404 { return nil }
}
