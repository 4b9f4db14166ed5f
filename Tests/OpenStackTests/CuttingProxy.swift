import Foundation
import Synchronization

/// A fault injector, not a service: a TCP relay on loopback in front of a real service that
/// passes the client's bytes through unchanged and closes both sides once `cutAfter` bytes of
/// the answer have gone back, the way a broken link or a dying load balancer cuts a transfer.
/// Each accepted connection is relayed on threads of its own.
final class CuttingProxy: Sendable {
    let port: Int
    private let listener: Int32
    private let upstreamPort: UInt16
    private let cutAfter: Int
    private let cuts = Mutex(0)

    /// Connections cut so far.
    var cutCount: Int { cuts.withLock { $0 } }

    init(upstreamPort: Int, cutAfter: Int) throws {
        self.upstreamPort = UInt16(upstreamPort)
        self.cutAfter = cutAfter
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var yes: Int32 = 1
        setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = Self.loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard descriptor >= 0, bound == 0, listen(descriptor, 16) == 0 else {
            throw TestEnvironmentMissing("proxy socket: \(String(cString: strerror(errno)))")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        listener = descriptor
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread { [self] in accepting() }.start()
    }

    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    private static func loopback(port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = port.bigEndian
        return address
    }

    private func accepting() {
        while true {
            let client = accept(listener, nil, nil)
            guard client >= 0 else {
                if errno == EINTR { continue }
                return
            }
            let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = Self.loopback(port: upstreamPort)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard connected == 0 else {
                close(client)
                close(upstream)
                continue
            }
            // Requests through unchanged; answers until the cut, then both sides closed.
            Thread { [self] in _ = relay(from: client, to: upstream, limit: nil) }.start()
            Thread { [self] in
                if relay(from: upstream, to: client, limit: cutAfter) { cuts.withLock { $0 += 1 } }
                shutdown(client, Int32(SHUT_RDWR))
                shutdown(upstream, Int32(SHUT_RDWR))
                close(client)
                close(upstream)
            }.start()
        }
    }

    /// Copies until end of stream or `limit` bytes; true when it stopped at the limit.
    private func relay(from source: Int32, to sink: Int32, limit: Int?) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        var sent = 0
        while true {
            let wanted = limit.map { min(buffer.count, $0 - sent) } ?? buffer.count
            if wanted == 0 { return true }
            let count = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress, wanted) }
            if count <= 0 { return false }
            var offset = 0
            while offset < count {
                let written = buffer.withUnsafeBytes { send(sink, $0.baseAddress! + offset, count - offset, Int32(MSG_NOSIGNAL)) }
                if written <= 0 { return false }
                offset += written
            }
            sent += count
        }
    }
}
