import Foundation

/// Opening the TCP connection ourselves, because libssh2 only takes a connected socket.
///
/// A plain blocking `connect` waits for the kernel's own timeout (minutes) on a host that does
/// not answer; this tries each address getaddrinfo gives with a non-blocking connect and poll,
/// all within one deadline. Name resolution itself is not bounded by it.
enum TCPConnect {
    static func connect(host: String, port: Int, timeoutSeconds: Double) throws(SSHError) -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_protocol = Int32(IPPROTO_TCP)
        var list: UnsafeMutablePointer<addrinfo>?
        let resolved = getaddrinfo(host, String(port), &hints, &list)
        guard resolved == 0 else {
            throw .connectFailed(host: host, port: port, reason: "cannot resolve the name: \(String(cString: gai_strerror(resolved)))")
        }
        defer { freeaddrinfo(list) }

        let deadline = Deadline(seconds: timeoutSeconds)
        var failures: [String] = []
        var next = list
        while let address = next?.pointee {
            next = address.ai_next
            let name = numericName(address)
            switch attempt(address, deadline: deadline) {
            case .success(let fd): return fd
            case .failure(let reason): failures.append("\(name): \(reason)")
            }
            if deadline.expired { break }
        }
        throw .connectFailed(host: host, port: port, reason: failures.isEmpty ? "no address" : failures.joined(separator: "; "))
    }

    private enum Attempt { case success(Int32), failure(String) }

    private static func attempt(_ address: addrinfo, deadline: Deadline) -> Attempt {
        let fd = socket(address.ai_family, address.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), address.ai_protocol)
        guard fd >= 0 else { return .failure("socket: \(String(cString: strerror(errno)))") }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var error: Int32 = 0
        if Glibc.connect(fd, address.ai_addr, address.ai_addrlen) != 0 {
            error = errno
            if error == EINPROGRESS {
                error = 0
                var entry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                var ready: Int32
                repeat {
                    ready = poll(&entry, 1, deadline.remainingMilliseconds)
                } while ready < 0 && errno == EINTR
                if ready == 0 {
                    close(fd)
                    return .failure("no answer within \(deadline.seconds.formatted()) s")
                }
                var length = socklen_t(MemoryLayout<Int32>.size)
                if ready < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 { error = errno }
            }
        }
        if error != 0 {
            close(fd)
            return .failure(String(cString: strerror(error)))
        }
        // SSH packets are small and latency-bound (requests, window adjusts): no Nagle delay.
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        return .success(fd)
    }

    private static func numericName(_ address: addrinfo) -> String {
        var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        guard getnameinfo(address.ai_addr, address.ai_addrlen, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST) == 0 else {
            return "?"
        }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// A point in monotonic time that waits are measured against.
struct Deadline {
    let seconds: Double
    private var end: ContinuousClock.Instant

    init(seconds: Double) {
        self.seconds = seconds
        end = .now + .milliseconds(Int64(seconds * 1000))
    }

    /// Moves the deadline to `seconds` from now.
    mutating func restart() { end = .now + .milliseconds(Int64(seconds * 1000)) }

    var expired: Bool { ContinuousClock.now >= end }

    /// What is left, for poll(2): at least 0, at most Int32.max.
    var remainingMilliseconds: Int32 {
        let left = ContinuousClock.now.duration(to: end)
        let milliseconds = left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000
        return Int32(clamping: max(0, milliseconds))
    }
}
