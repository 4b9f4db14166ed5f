import Foundation
import Glibc
import Metrics
import Prometheus

/// `GET /metrics` in Prometheus' text format, on a thread of its own (accept and write block).
///
/// A scrape is one short request a minute or so; a plain HTTP/1.0-style responder (one request
/// per connection, then close) is all Prometheus needs, without pulling an HTTP stack into the
/// worker.
enum MetricsEndpoint {
    /// Bootstraps swift-metrics with a Prometheus registry and serves it at `address`
    /// (`host:port`). Throws when the address cannot be bound.
    static func start(address: String) throws {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        let listener = try listen(on: address)
        let thread = Thread {
            while true {
                let client = accept(listener, nil, nil)
                if client < 0 { continue }
                respond(client, registry: registry)
                close(client)
            }
        }
        thread.name = "lifeboat-metrics"
        thread.start()
    }

    private static func listen(on address: String) throws -> Int32 {
        guard let colon = address.lastIndex(of: ":"), let port = UInt16(address[address.index(after: colon)...]) else {
            throw MetricsError("LIFEBOAT_METRICS_ADDRESS must be host:port, not \"\(address)\"")
        }
        let host = String(address[..<colon])
        var socketAddress = sockaddr_in()
        socketAddress.sin_family = sa_family_t(AF_INET)
        socketAddress.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host.isEmpty ? "0.0.0.0" : host, &socketAddress.sin_addr) == 1 else {
            throw MetricsError("LIFEBOAT_METRICS_ADDRESS: \"\(host)\" is not an IPv4 address")
        }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let bound = withUnsafePointer(to: &socketAddress) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, Glibc.listen(fd, 16) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw MetricsError("cannot serve metrics on \(address): \(reason)")
        }
        return fd
    }

    private static func respond(_ client: Int32, registry: PrometheusCollectorRegistry) {
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var request = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while request.count < 16_384, !request.ends(with: Array("\r\n\r\n".utf8)) {
            let count = recv(client, &buffer, buffer.count, 0)
            if count <= 0 { break }
            request += buffer[0..<count]
        }
        let line = String(decoding: request.prefix { $0 != 13 && $0 != 10 }, as: UTF8.self)
        let (status, body): (String, [UInt8]) = line.hasPrefix("GET /metrics ") || line == "GET /metrics"
            ? ("200 OK", registry.emitToBuffer())
            : ("404 Not Found", Array("only /metrics is served here\n".utf8))
        let head = "HTTP/1.1 \(status)\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        let response = Array(head.utf8) + body
        var sent = 0
        while sent < response.count {
            let count = response[sent...].withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if count <= 0 { return }
            sent += count
        }
    }
}

struct MetricsError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

private extension Array where Element == UInt8 {
    func ends(with suffix: [UInt8]) -> Bool { count >= suffix.count && Array(self[(count - suffix.count)...]) == suffix }
}
