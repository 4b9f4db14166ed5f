import Foundation
import OpenStack
import Synchronization

/// A stand-in HTTP/1.1 server on loopback for the faults the real services here cannot be made
/// to show: Keystone answering 500 or garbage, a Glance download cut mid-stream, an image
/// whose bytes do not match its digest, a server that goes silent. NOT a model of any
/// service: each test scripts the few answers it needs. Like uwsgi, it closes the connection
/// after every answer. One thread accepts and answers connections in turn.
final class StandInServer: Sendable {
    struct Request: Sendable {
        let method: String
        let path: String
        let headers: [String: String]
        let body: Data
    }

    enum Reply: Sendable {
        case respond(status: Int, headers: [String: String] = [:], body: Data = Data())
        /// Declares `declaredLength` bytes, sends `body` (fewer), then closes: a cut transfer.
        case cut(status: Int, headers: [String: String] = [:], declaredLength: Int, body: Data)
        /// Sends the head and a first byte, then nothing until the client gives up.
        case stall(status: Int, declaredLength: Int)

        static func json(_ status: Int, _ text: String, headers: [String: String] = [:]) -> Reply {
            .respond(status: status, headers: headers.merging(["Content-Type": "application/json"]) { a, _ in a }, body: Data(text.utf8))
        }
    }

    let port: Int
    private let listener: Int32
    private let received = Mutex<[Request]>([])
    private let handler: @Sendable (Request) -> Reply

    var requests: [Request] { received.withLock { $0 } }
    var url: String { "http://127.0.0.1:\(port)" }

    init(handler: @escaping @Sendable (Request) -> Reply) throws {
        self.handler = handler
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw TestEnvironmentMissing("socket: \(String(cString: strerror(errno)))") }
        var yes: Int32 = 1
        setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(descriptor, 16) == 0 else {
            close(descriptor)
            throw TestEnvironmentMissing("bind/listen: \(String(cString: strerror(errno)))")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        listener = descriptor
        port = Int(UInt16(bigEndian: address.sin_port))
        let thread = Thread { [self] in serve() }
        thread.start()
    }

    /// Stops accepting (wakes the accept) and closes the listening socket.
    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    private func serve() {
        while true {
            let connection = accept(listener, nil, nil)
            guard connection >= 0 else {
                if errno == EINTR { continue }
                return
            }
            var timeout = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            if let request = readRequest(connection) {
                received.withLock { $0.append(request) }
                answer(handler(request), on: connection)
            }
            close(connection)
        }
    }

    private func readRequest(_ connection: Int32) -> Request? {
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        var headEnd: Range<Data.Index>?
        while headEnd == nil {
            let count = read(connection, &buffer, buffer.count)
            guard count > 0 else { return nil }
            data.append(contentsOf: buffer[0..<count])
            headEnd = data.range(of: Data("\r\n\r\n".utf8))
        }
        guard let headEnd else { return nil }
        let lines = String(decoding: data[..<headEnd.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
        let requestLine = lines[0].split(separator: " ")
        guard requestLine.count >= 2 else { return nil }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        var body = Data(data[headEnd.upperBound...])
        let length = Int(headers["content-length"] ?? "0") ?? 0
        while body.count < length {
            let count = read(connection, &buffer, min(buffer.count, length - body.count))
            guard count > 0 else { break }
            body.append(contentsOf: buffer[0..<count])
        }
        return Request(method: String(requestLine[0]), path: String(requestLine[1]), headers: headers, body: body)
    }

    private func answer(_ reply: Reply, on connection: Int32) {
        switch reply {
        case .respond(let status, let headers, let body):
            send(head(status, headers, length: body.count) + body, on: connection)
        case .cut(let status, let headers, let declared, let body):
            send(head(status, headers, length: declared) + body, on: connection)
        case .stall(let status, let declared):
            send(head(status, [:], length: declared) + Data([0]), on: connection)
            // Hold the connection open and silent until the client hangs up.
            var byte: UInt8 = 0
            var timeout = timeval(tv_sec: 30, tv_usec: 0)
            setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            _ = read(connection, &byte, 1)
        }
    }

    private func head(_ status: Int, _ headers: [String: String], length: Int) -> Data {
        var text = "HTTP/1.1 \(status) Stand-in\r\nContent-Length: \(length)\r\nConnection: close\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        return Data((text + "\r\n").utf8)
    }

    private func send(_ data: Data, on connection: Int32) {
        data.withUnsafeBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = write(connection, bytes.baseAddress! + offset, bytes.count - offset)
                if written <= 0 { return }
                offset += written
            }
        }
    }
}

/// Answers for a stand-in Keystone: a token whose catalog points every service at `url`.
enum StandInKeystone {
    static func token(catalogURL url: String, expires: String = "2099-01-01T00:00:00.000000Z") -> StandInServer.Reply {
        let services = ["image", "compute", "volumev3", "network"].map { type in
            #"{"type": "\#(type)", "name": "\#(type)", "endpoints": [{"interface": "public", "region": "RegionOne", "region_id": "RegionOne", "url": "\#(url)"}]}"#
        }.joined(separator: ", ")
        let body = #"{"token": {"methods": ["password"], "user": {"id": "u1", "name": "stand-in", "domain": {"id": "default", "name": "Default"}}, "project": {"id": "p1", "name": "p", "domain": {"id": "default", "name": "Default"}}, "roles": [{"id": "r1", "name": "member"}], "expires_at": "\#(expires)", "issued_at": "2024-01-01T00:00:00.000000Z", "catalog": [\#(services)]}}"#
        return .json(201, body, headers: ["X-Subject-Token": "stand-in-token-0123456789"])
    }

    /// A configuration that logs in at the stand-in.
    static func configuration(_ server: StandInServer, password: String = "stand-in-password-!#") -> CloudConfiguration {
        CloudConfiguration(authURL: "\(server.url)/v3", username: "stand-in", password: Secret(password), projectName: "p")
    }
}
