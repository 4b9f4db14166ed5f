import Foundation
import Glibc

/// The unencrypted data path for trusted backup networks (vProtect's netcat option): the
/// hypervisor sends a range's bytes over a plain TCP connection to the worker instead of
/// through the SSH channel, which saves both sides the cipher (SSH still carries the command).
///
/// The worker listens on an ephemeral port of the address its SSH connection comes from, for
/// one connection, which must start with a 32-byte random token that only went through SSH:
/// a stray or hostile connection cannot inject data. The bytes themselves are neither secret
/// nor protected against a man in the middle on that network — the operator's choice, off by
/// default.
final class DataListener {
    let address: String
    let port: Int
    let token: String
    private let listener: Int32

    init(address: String) throws {
        var hints = addrinfo()
        hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var found: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(address, "0", &hints, &found) == 0, let info = found else {
            throw LibvirtError.unsupportedDisk("fast data path: \(address) is not an address to listen on")
        }
        defer { freeaddrinfo(found) }
        let fd = socket(info.pointee.ai_family, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Self.failure("socket") }
        guard bind(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0, listen(fd, 1) == 0 else {
            let error = Self.failure("bind/listen on \(address)")
            close(fd)
            throw error
        }
        var bound = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        let port = withUnsafePointer(to: &bound) { pointer -> UInt16 in
            info.pointee.ai_family == AF_INET6
                ? pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) }
                : pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
        }
        listener = fd
        self.address = address
        self.port = Int(port)
        var random = SystemRandomNumberGenerator()  // the kernel's CSPRNG
        token = (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &random)) }.joined()
    }

    deinit { close(listener) }

    /// Waits up to `seconds` for the hypervisor's connection, checks its token, and hands every
    /// byte after it to `body` until the sender closes.
    func receive(timeoutSeconds seconds: Double, into body: (UnsafeRawBufferPointer) throws -> Void) throws {
        var poller = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, Int32(seconds * 1000)) == 1 else {
            throw LibvirtError.unsupportedDisk("fast data path: the hypervisor did not connect to \(address):\(port) within \(Int(seconds)) s "
                                               + "(is that address reachable from it, and does it have bash?)")
        }
        let connection = accept(listener, nil, nil)
        guard connection >= 0 else { throw Self.failure("accept") }
        defer { close(connection) }
        var timeout = timeval(tv_sec: Int(seconds), tv_usec: 0)
        setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        var expected = Array(token.utf8)[...]
        while true {
            let count = read(connection, buffer.baseAddress, buffer.count)
            if count == 0 { break }
            guard count > 0 else {
                if errno == EINTR { continue }
                throw Self.failure("reading the data connection")
            }
            var block = UnsafeRawBufferPointer(rebasing: buffer[0..<count])
            if !expected.isEmpty {
                let n = min(expected.count, block.count)
                guard Array(block[0..<n]) == Array(expected.prefix(n)) else {
                    throw LibvirtError.unsupportedDisk("fast data path: a connection to \(address):\(port) did not present the token: refused")
                }
                expected = expected.dropFirst(n)
                block = UnsafeRawBufferPointer(rebasing: block[n...])
            }
            if !block.isEmpty { try body(block) }
        }
        guard expected.isEmpty else { throw LibvirtError.unsupportedDisk("fast data path: the connection closed before its token") }
    }

    /// The command that, run on the hypervisor, connects here, sends the token, then runs the
    /// shell script it reads from stdin with its output going to the connection.
    var senderCommand: String {
        return Shell.command(["bash", "-c", "exec 3<>/dev/tcp/\(address)/\(port) && printf %s \(token) >&3 && exec sh -s >&3"])
    }

    private static func failure(_ what: String) -> LibvirtError {
        .unsupportedDisk("fast data path: \(what) failed: \(String(cString: strerror(errno)))")
    }
}
